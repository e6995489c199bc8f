"""Virtual try-on baselines: the parts every try-on family shares (`tps.py` thin-plate-spline
warping, `losses.py` image and depth losses, `unet.py` the U-Net generator and pix2pix
initialisation) and one subpackage per model family (`m3dvton/`: M3D-VTON's MTM, DRM and
TFM). The datasets are `refbench.datasets.tryon`, the metrics `refbench.evaluation.tryon`,
the submission format `tryon_results`.
"""
