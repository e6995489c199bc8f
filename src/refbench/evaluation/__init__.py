"""Metrics: the maths are plain functions; small classes add update()/compute()/merge()
so evaluation streams over batches and merges across processes."""
