"""pointwise formulas (being written)."""
