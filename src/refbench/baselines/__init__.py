"""Reference baselines: one readable file per model family, plus YAML recipes."""
