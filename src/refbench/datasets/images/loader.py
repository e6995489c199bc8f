"""Decoding in DataLoader workers: a torch `Dataset` over a prepared image split, the
transform a classifier needs, and the collate function that drops undecodable images.

torchvision cannot be installed beside the CPU torch wheel used here, so the transform is
written with Pillow and numpy and follows torchvision's definitions: `RandomResizedCrop`
(10 tries of an area in `scale` and a log-uniform aspect ratio in `ratio`, else a
centre crop clamped to the ratio range), horizontal flip with probability 0.5, `Resize`
of the shorter side + `CenterCrop` for evaluation, then `ToTensor` + `Normalize`.

A corrupt, truncated or missing image does not stop an epoch: the worker returns a
`Skipped` marker, prints one warning line naming the image, and counts it in a counter
shared by all workers (`ImageClassification.skipped`); `collate_images` drops the
markers and lists their ids in the batch (`skipped_ids`), so a training loop can report
which images it never saw.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TypedDict

import numpy as np
import torch

#: ImageNet channel statistics (RGB, 0-1 scale), the default of `ImageTransform`
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> normalised float tensor `(3, size, size)`.

    `train=True`: random resized crop to `size` and a random horizontal flip (the
    ImageNet training augmentation); `train=False`: shorter side resized to `resize`
    (None: to `size`) then a centre crop of `size` (the evaluation transform)."""

    size: int = 224
    resize: int | None = 256
    train: bool = False
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 1 or (self.resize is not None and self.resize < self.size):
            raise ValueError(f"resize ({self.resize}) must be at least size ({self.size})")

    def __call__(self, image: Any, rng: np.random.Generator) -> torch.Tensor:
        from PIL import Image

        image = image.convert("RGB")
        if self.train:
            top, left, height, width = self.crop_box(image.height, image.width, rng)
            image = image.resize((self.size, self.size), Image.BILINEAR,
                                 box=(left, top, left + width, top + height))
            if self.flip and rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            short = self.resize or self.size
            w, h = image.size
            if min(w, h) != short:
                scale = short / min(w, h)
                image = image.resize((max(1, int(short if w <= h else w * scale)),
                                      max(1, int(short if h <= w else h * scale))),
                                     Image.BILINEAR)
            w, h = image.size
            top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
            image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy())

    def crop_box(self, height: int, width: int, rng: np.random.Generator
                 ) -> tuple[int, int, int, int]:
        """(top, left, height, width) of a random resized crop, as torchvision draws it."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class Skipped:
    """What a worker returns for an image it could not decode."""

    id: str
    reason: str


class ImageBatch(TypedDict):
    """A collated batch: `images (B, 3, H, W)` float32, `labels (B,)` int64, the ids of
    its images and of the images of this batch that were skipped."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    skipped_ids: list[str]


class ImageClassification(torch.utils.data.Dataset):
    """A prepared split (`image`, `label`, `id` columns, see `schema.py`) whose images are
    decoded with Pillow in `__getitem__`, so in the DataLoader's worker processes.

    `relocate=(old_root, new_root)` reads a release that moved after it was prepared: a
    stored path under `old_root` (`schema.image_root(name)`) is read under `new_root`.
    Each item's randomness comes from `(seed, epoch, index)`, so augmentations do not
    depend on which worker draws the item."""

    def __init__(self, data: Any, transform: ImageTransform | None = None,
                 relocate: tuple[str | Path, str | Path] | None = None, seed: int = 0) -> None:
        self.data = data.cast_column("image", _undecoded(data)) if _decodes(data) else data
        self.transform = transform or ImageTransform()
        self.relocate = None if relocate is None else (Path(relocate[0]), Path(relocate[1]))
        self.seed = seed
        self.epoch = 0
        self._skipped = multiprocessing.Value("i", 0)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def skipped(self) -> int:
        """How many images were skipped so far, summed over every worker."""
        return int(self._skipped.value)

    def set_epoch(self, epoch: int) -> None:
        """Draw other augmentations next epoch (call before creating the epoch's iterator)."""
        self.epoch = epoch

    def locate(self, image: dict[str, Any]) -> tuple[bytes | None, Path | None]:
        """The stored bytes, or the file to read (moved by `relocate`)."""
        if image.get("bytes") is not None:
            return image["bytes"], None
        path = Path(image["path"])
        if self.relocate is not None and path.is_relative_to(self.relocate[0]):
            path = self.relocate[1] / path.relative_to(self.relocate[0])
        return None, path

    def __getitem__(self, index: int) -> dict[str, Any] | Skipped:
        from PIL import Image

        row = self.data[int(index)]
        data, path = self.locate(row["image"])
        try:
            with Image.open(io.BytesIO(data) if data is not None else path) as image:
                image.load()
                rng = np.random.default_rng((self.seed, self.epoch, int(index)))
                tensor = self.transform(image, rng)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return self._skip(row["id"], path, exc)
        return {"image": tensor, "label": int(row["label"]), "id": row["id"]}

    def _skip(self, key: str, path: Path | None, exc: BaseException) -> Skipped:
        with self._skipped.get_lock():
            self._skipped.value += 1
        reason = " ".join(str(exc).split()) or type(exc).__name__
        where = f" ({path})" if path is not None else ""
        print(f"warning: skipped image {key}{where}: {reason}", file=sys.stderr, flush=True)
        return Skipped(key, reason)


def collate_images(items: Sequence[dict[str, Any] | Skipped]) -> ImageBatch:
    """Stack decoded items; `Skipped` markers are dropped and named in `skipped_ids`
    (a batch whose images were all skipped has zero rows)."""
    good = [item for item in items if not isinstance(item, Skipped)]
    skipped = [item.id for item in items if isinstance(item, Skipped)]
    if good:
        images = torch.stack([item["image"] for item in good])
    else:
        images = torch.zeros((0, 3, 0, 0), dtype=torch.float32)
    labels = torch.tensor([item["label"] for item in good], dtype=torch.int64)
    return ImageBatch(images=images, labels=labels, ids=[item["id"] for item in good],
                      skipped_ids=skipped)


def _decodes(data: Any) -> bool:
    feature = getattr(data, "features", {}).get("image")
    return bool(getattr(feature, "decode", False))


def _undecoded(data: Any) -> Any:
    import datasets as hf

    return hf.Image(decode=False)
