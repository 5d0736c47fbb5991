"""Environment compatibility shims (import-light: loaded at interpreter start-up)."""
