"""memory formulas (being written)."""
