"""ImageNet (ILSVRC2012) classification in its official layouts (train/<wnid>/, val/ with
Kaggle, devkit or Caffe labels, OpenSelfSup list files), images kept on disk; and a
learnable synthetic release."""

from refbench.datasets.imagenet.builder import ImageNetBuilder

__all__ = ["ImageNetBuilder"]
