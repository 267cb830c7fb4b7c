"""Analyses over the captured operator records."""
