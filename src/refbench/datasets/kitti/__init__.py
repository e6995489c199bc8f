"""KITTI 3D object detection: builder, camera/LiDAR geometry and the ray-cast synthesizer."""

from refbench.datasets.kitti.builder import KittiBuilder

__all__ = ["KittiBuilder"]
