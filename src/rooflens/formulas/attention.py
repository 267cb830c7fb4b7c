"""attention formulas (being written)."""
