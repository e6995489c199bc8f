"""MoCo v2 augmentations in plain torch (torchvision cannot be installed beside the CPU
torch wheel used here).

The official pipeline (`configs/pinas_learning.py`, OpenSelfSup's MoCo v2), per view:

    RandomResizedCrop(224, scale=(0.2, 1.0))
    ColorJitter(0.4, 0.4, 0.4, 0.4) applied with p = 0.8 (the four ops in random order)
    RandomGrayscale(p = 0.2)
    GaussianBlur(sigma in [0.1, 2.0]) applied with p = 0.5
    RandomHorizontalFlip(p = 0.5), ToTensor, Normalize(ImageNet mean / std)

The crop box is drawn exactly as torchvision draws it (`ImageTransform.crop_box` of the
shared image loader); the colour operations follow torchvision's tensor definitions
(brightness: scale; contrast: blend with the mean grey level; saturation: blend with the
grey image; hue: rotate the HSV hue). Each image takes its randomness from a numpy
generator the caller seeds, so a run's augmentations replay after a resume.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.datasets.images.loader import IMAGENET_MEAN, IMAGENET_STD, ImageTransform

_GREY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class MocoAugment:
    """One MoCo v2 view of a `(3, H, W)` float image in [0, 1] -> normalised `(3, size, size)`."""

    size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.4)
    jitter_p: float = 0.8
    grey_p: float = 0.2
    blur_p: float = 0.5
    sigma: tuple[float, float] = (0.1, 2.0)
    flip_p: float = 0.5

    def __call__(self, image: Tensor, rng: np.random.Generator) -> Tensor:
        height, width = image.shape[-2:]
        crop = ImageTransform(size=self.size, resize=None, train=True, scale=self.scale,
                              ratio=self.ratio)
        top, left, h, w = crop.crop_box(height, width, rng)
        x = image[:, top:top + h, left:left + w].unsqueeze(0)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=h > self.size or w > self.size)[0].clamp(0, 1)
        if rng.random() < self.jitter_p:
            x = color_jitter(x, self.jitter, rng)
        if rng.random() < self.grey_p:
            x = grey(x).expand(3, -1, -1)
        if rng.random() < self.blur_p:
            x = gaussian_blur(x, float(rng.uniform(*self.sigma)))
        if rng.random() < self.flip_p:
            x = x.flip(-1)
        return normalize(x)


def moco_views(images: list[Tensor], count: int, aug: MocoAugment,
               rng: np.random.Generator) -> Tensor:
    """`count` MoCo views of every image -> `(B, count, 3, size, size)`, the same draws as
    `aug` image by image but with the colour, grey, blur and flip steps batched (one torch
    op per step instead of per image: the difference between seconds and milliseconds per
    batch of small images)."""
    crop = ImageTransform(size=aug.size, resize=None, train=True, scale=aug.scale, ratio=aug.ratio)
    size = aug.size
    views = []
    for image in images:
        height, width = image.shape[-2:]
        for _ in range(count):
            top, left, h, w = crop.crop_box(height, width, rng)
            part = image[:, top:top + h, left:left + w].unsqueeze(0)
            views.append(F.interpolate(part, size=(size, size), mode="bilinear",
                                       align_corners=False, antialias=h > size or w > size)[0])
    x = torch.stack(views).clamp(0, 1)
    n = len(x)
    jitter = torch.from_numpy(rng.random(n) < aug.jitter_p)
    orders = torch.from_numpy(np.stack([rng.permutation(4) for _ in range(n)]))
    b, c, s, h = aug.jitter
    factors = torch.from_numpy(np.stack([rng.uniform(max(0.0, 1 - b), 1 + b, n),
                                         rng.uniform(max(0.0, 1 - c), 1 + c, n),
                                         rng.uniform(max(0.0, 1 - s), 1 + s, n),
                                         rng.uniform(-h, h, n)], axis=1)).float()
    for position in range(4):
        for op in range(4):
            mask = jitter & (orders[:, position] == op)
            if not bool(mask.any()) or aug.jitter[op] <= 0:
                continue
            f = factors[mask, op].view(-1, 1, 1, 1)
            part = x[mask]
            if op == 0:
                part = (part * f).clamp(0, 1)
            elif op == 1:
                mean = _grey_batch(part).mean(dim=(1, 2, 3), keepdim=True)
                part = (f * part + (1 - f) * mean).clamp(0, 1)
            elif op == 2:
                part = (f * part + (1 - f) * _grey_batch(part)).clamp(0, 1)
            else:
                part = adjust_hue(part, f.view(-1, 1, 1))
            x[mask] = part
    grey_mask = torch.from_numpy(rng.random(n) < aug.grey_p)
    if bool(grey_mask.any()):
        x[grey_mask] = _grey_batch(x[grey_mask]).expand(-1, 3, -1, -1)
    blur = rng.random(n) < aug.blur_p
    sigmas = rng.uniform(aug.sigma[0], aug.sigma[1], n)
    for i in np.flatnonzero(blur):
        x[i] = gaussian_blur(x[i], float(sigmas[i]))
    flip = torch.from_numpy(rng.random(n) < aug.flip_p)
    x[flip] = x[flip].flip(-1)
    return normalize(x).view(len(images), count, 3, size, size)


def _grey_batch(x: Tensor) -> Tensor:
    return (_GREY[0] * x[:, 0] + _GREY[1] * x[:, 1] + _GREY[2] * x[:, 2]).unsqueeze(1)


def normalize(x: Tensor) -> Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(3, 1, 1)  # broadcasts over batches
    return (x - mean) / std


def grey(x: Tensor) -> Tensor:
    """`(1, H, W)` luma of an RGB image."""
    r, g, b = x[0], x[1], x[2]
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(0)  # (1, H, W)


def _blend(x: Tensor, other: Tensor, factor: float) -> Tensor:
    return (factor * x + (1.0 - factor) * other).clamp(0, 1)


def color_jitter(x: Tensor, strength: tuple[float, float, float, float],
                 rng: np.random.Generator) -> Tensor:
    """torchvision's ColorJitter(brightness, contrast, saturation, hue): the four ops in a
    random order, factors uniform in [max(0, 1 - s), 1 + s] and the hue shift in [-h, h]."""
    b, c, s, h = strength
    for op in rng.permutation(4):
        if op == 0 and b > 0:
            x = (x * rng.uniform(max(0.0, 1 - b), 1 + b)).clamp(0, 1)
        elif op == 1 and c > 0:
            x = _blend(x, grey(x).mean(), rng.uniform(max(0.0, 1 - c), 1 + c))
        elif op == 2 and s > 0:
            x = _blend(x, grey(x), rng.uniform(max(0.0, 1 - s), 1 + s))
        elif op == 3 and h > 0:
            x = adjust_hue(x, float(rng.uniform(-h, h)))
    return x


def adjust_hue(x: Tensor, shift: float | Tensor) -> Tensor:
    """Rotate the hue of `(..., 3, H, W)` images by `shift` turns (-0.5..0.5; a tensor of
    shape `(..., 1, 1)` shifts each image by its own amount) through HSV, as torchvision."""
    r, g, b = x.unbind(dim=-3)
    maxc, _ = x.max(dim=-3)
    minc, _ = x.min(dim=-3)
    delta = maxc - minc
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    sat = torch.where(maxc == 0, torch.zeros_like(maxc),
                      delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta == 0, torch.zeros_like(hue), hue)
    hue = ((hue / 6.0) % 1.0 + shift) % 1.0
    i = torch.floor(hue * 6.0)
    f = hue * 6.0 - i
    v = maxc
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    idx = (i.long() % 6).unsqueeze(0)
    channels = [torch.stack(c).gather(0, idx)[0] for c in
                ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))]
    return torch.stack(channels, dim=-3).clamp(0, 1)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (kernel radius ceil(3 sigma), reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    y = F.pad(x.unsqueeze(0), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    y = F.conv2d(y, kernel.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return y[0]


def decode_image(image: dict[str, Any]) -> Tensor:
    """A stored `{"bytes", "path"}` image -> `(3, H, W)` float RGB in [0, 1] (Pillow)."""
    from PIL import Image

    source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]
    with Image.open(source) as pil:
        pixels = np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def eval_view(image: Tensor, size: int, resize: int | None) -> Tensor:
    """The evaluation transform on a decoded tensor: shorter side to `resize` (None: `size`),
    centre crop `size`, normalise (torchvision Resize + CenterCrop semantics)."""
    short = resize or size
    height, width = image.shape[-2:]
    if min(height, width) != short:
        scale = short / min(height, width)
        new = (short, max(1, int(width * scale))) if height <= width else \
            (max(1, int(height * scale)), short)
        image = F.interpolate(image.unsqueeze(0), size=new, mode="bilinear", align_corners=False,
                              antialias=scale < 1)[0].clamp(0, 1)
    height, width = image.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return normalize(image[:, top:top + size, left:left + size])


def train_view(image: Tensor, size: int, rng: np.random.Generator) -> Tensor:
    """The supervised training transform: random resized crop (scale 0.08-1) and flip."""
    view = MocoAugment(size=size, scale=(0.08, 1.0), jitter_p=0.0, grey_p=0.0, blur_p=0.0)
    return view(image, rng)
