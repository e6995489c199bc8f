"""Learnable synthetic pictures for the image synthesizers (ImageNet, CIFAR, ImageFolder).

A class is a combination of three visual factors, each drawn from the class index, so
that colour alone, shape alone or texture alone does not separate every class but a
small CNN (or a linear model on pixels) separates them clearly:

- a foreground colour (hue spread evenly over the classes, with per-image jitter);
- a shape (disc, square, triangle, cross), placed and scaled at random;
- a background texture (stripes whose orientation and frequency depend on the class).

Every image also gets Gaussian pixel noise, so no two images are identical.
"""

from __future__ import annotations

import colorsys

import numpy as np

SHAPES = ("disc", "square", "triangle", "cross")


def class_colour(label: int, num_classes: int) -> np.ndarray:
    """The RGB colour (0-255 floats) of a class: hues spread evenly around the wheel."""
    hue = (label / max(num_classes, 1) + 0.07) % 1.0
    return np.asarray(colorsys.hsv_to_rgb(hue, 0.85, 0.95)) * 255.0


def shape_mask(shape: str, size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """A boolean `(size, size)` mask of one shape centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if shape == "disc":
        return dy ** 2 + dx ** 2 <= radius ** 2
    if shape == "square":
        return (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    if shape == "triangle":
        return (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
    if shape == "cross":
        arm = radius * 0.35
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= radius)) | \
            ((np.abs(dx) <= arm) & (np.abs(dy) <= radius))
    raise ValueError(f"unknown shape {shape!r}")


def paint(label: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One `(size, size, 3)` uint8 picture of class `label` (see the module doc)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.pi * ((label // len(SHAPES)) % 4) / 4 + rng.normal(0, 0.05)
    freq = 3.0 + 2.0 * (label % 3) + rng.normal(0, 0.2)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy)
                                 + rng.uniform(0, 2 * np.pi))
    background = np.asarray(rng.uniform(40, 110, 3), np.float32)
    picture = background[None, None, :] * (0.6 + 0.8 * stripes[..., None])
    colour = class_colour(label, num_classes) + rng.normal(0, 12, 3)
    radius = size * rng.uniform(0.22, 0.34)
    cy, cx = (size / 2 + rng.uniform(-0.15, 0.15, 2) * size)
    mask = shape_mask(SHAPES[label % len(SHAPES)], size, cy, cx, radius)
    picture[mask] = colour
    picture += rng.normal(0, 10, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)
