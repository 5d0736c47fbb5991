"""Training and evaluation machinery: losses, metrics, embedding cache, training stages."""
