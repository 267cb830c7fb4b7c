"""reduction formulas (being written)."""
