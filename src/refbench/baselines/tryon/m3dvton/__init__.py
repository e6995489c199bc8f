"""M3D-VTON (Zhao et al., ICCV 2021), re-derived from the official code
(github.com/fyviezhao/M3D-VTON): `mtm.py` (monocular prediction: TPS warp, initial double
depth, segmentation), `drm.py` (depth refinement), `tfm.py` (texture fusion), `inputs.py`
(what the official loader builds from a pair), `baseline.py` (the registered baselines
`m3dvton-mtm`, `m3dvton-drm`, `m3dvton-tfm`), `recipes/` (the paper's 512 x 320 schedules
and tiny CPU siblings).
"""
