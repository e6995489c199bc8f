"""3D object detection baselines (SECOND, VoTr, Pyramid R-CNN) and their shared parts."""
