"""3D object detection from point clouds: the shared parts (boxes, voxeliser, augmentation,
BEV backbone, anchor head, RoI heads) and one module per model family: `second.py`
(SECOND), `votr.py` (VoTr-SSD / VoTr-TSD), `pyramid_rcnn.py` (Pyramid R-CNN). Recipes live
in `recipes/`."""
