"""Synthesizers that write copies of official layouts a model can actually learn from."""
