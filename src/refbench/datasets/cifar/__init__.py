"""CIFAR-10 / CIFAR-100 in the official python and binary formats (restricted unpickling),
and a synthesizer of the python format with learnable classes."""

from refbench.datasets.cifar.builder import Cifar10Builder, Cifar100Builder

__all__ = ["Cifar10Builder", "Cifar100Builder"]
