"""norm formulas (being written)."""
