"""Data layer: dataset readers, splits, transforms, clinical text and the synthetic phantom."""
