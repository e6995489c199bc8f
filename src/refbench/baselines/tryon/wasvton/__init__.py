"""WAS-VTON (ACM MM 2021) re-implemented: its NAS-Warping and NAS-Fusion search spaces
(`space.py`), the one-shot supernet and the fixed networks (`supernet.py`), what it reads
from a VITON, VITON-HD or MPV3D row (`inputs.py`: BODY_25 poses mapped onto COCO-18, the
model's size vs the release's), the registered baselines `was-vton-supernet` and `was-vton`
(`baseline.py`) and `refbench search was-vton` (`search.py`). The official repository is
empty; each module says which details come from the paper and which are refbench's.
"""
