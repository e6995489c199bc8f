"""Language baselines: BERT (`bert.py`), EfficientBERT (`efficientbert/`), and the parts they
share: SQuAD windows and post-processing (`qa.py`) and distillation from a teacher run
(`distill.py`). Recipes live in `recipes/` beside the family they configure."""
