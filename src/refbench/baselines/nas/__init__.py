"""Neural architecture search baselines: supernets, their training and the searches over
them, one subpackage per family (`pinas/`, `nasoa/`)."""
