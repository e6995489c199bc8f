"""Reference baselines, grouped by domain (`nlp/`, `det3d/`, ...): the domain's shared parts,
one module or subpackage per model family, and the family's YAML recipes in a `recipes/`
folder beside it. `base.py` holds the contract the common runner relies on."""
