"""matmul formulas (being written)."""
