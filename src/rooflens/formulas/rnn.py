"""rnn formulas (being written)."""
