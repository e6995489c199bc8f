"""Pi-NAS (ICCV 2021): a ResNeSt-50-D supernet trained with cross-path MoCo v2 and a
path-wise mean teacher, searched LaNAS-style with linear-probe fitness.

space.py (architecture codes), model.py (supernet, sub-networks), augment.py (MoCo v2
views in torch), moco.py (training, SPOS switch), fitness.py (BN recalibration + probe),
lanas.py (the learned-partition search), search.py (`refbench search pinas`),
ranking.py (the ranking-consistency client, `refbench search pinas-ranking`),
baseline.py (`pinas-supernet`, `pinas`), recipes/."""
