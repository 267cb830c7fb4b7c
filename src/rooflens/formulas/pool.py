"""pool formulas (being written)."""
