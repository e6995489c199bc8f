"""Multimodal product retrieval: a query item (title + image regions) ranks a gallery of
items, and the benchmark scores the top-100 lists (Product1M's mAP@k / mAR@k / Prec@k).

Shared parts of the domain: bottom-up region features as model inputs (`regions.py`:
the 5-d box geometry, the lazily read per-item features) and embeddings
(`embedding.py`: the cross-modal contrastive loss, embedding a split on the model's
device, ranking a gallery by exact search) and the optional pretrained text tower
(`text_init.py`: all-MiniLM-L6-v2 of the `models` extra). One subpackage per model family:
`capture/` (CAPTURE, Zhan et al., 2021) and `scale/` (SCALE / M5-MMT on M5Product, Dong
et al., 2022), each with its recipes in `recipes/`. The domain's
`refbench demo` job is in `demo_jobs.py`.
"""
