"""What the ADE20K and Cityscapes builders share: the columns of a prepared split, cheap
header probes of images and label maps (sizes and modes without decoding, so `prepare`
of 20k images stays fast), full label-value checks for `check`, and the synthesizers'
scene painter.

Columns: `id` (the official image name without suffix), `image` and `annotation`
(`datasets.Image`, paths kept, not embedded; `annotation` is None where the release has
none, e.g. Cityscapes test without labels), `label_ids` (the convention of
`annotation`: `ade20k`, `labelIds` or `trainIds`), `height`, `width`, `group` (the
Cityscapes city; empty for ADE20K).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

#: PIL modes of a single-channel label map (8-bit grey, palette, 16/32-bit integer)
LABEL_MODES = ("L", "P", "I", "I;16")
COLUMNS = ("id", "image", "annotation", "label_ids", "height", "width", "group")


def features() -> "hf_datasets.Features":
    import datasets as hf

    return hf.Features({"id": hf.Value("string"), "image": hf.Image(),
                        "annotation": hf.Image(), "label_ids": hf.Value("string"),
                        "height": hf.Value("int32"), "width": hf.Value("int32"),
                        "group": hf.Value("string")})


def empty_rows() -> dict[str, list[Any]]:
    return {name: [] for name in COLUMNS}


def to_dataset(rows: dict[str, list[Any]], split: str) -> "hf_datasets.Dataset":
    import datasets as hf

    return hf.Dataset.from_dict(rows, features=features(), split=hf.NamedSplit(split))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image from its header; errors name the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError:
        raise RefbenchError("image not found", path=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise RefbenchError(f"unreadable image ({exc})", path=path) from None


def label_size(path: Path) -> tuple[int, int]:
    """(height, width) of a label map from its header; refuses a colour PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in LABEL_MODES:
                raise RefbenchError(f"a label map is a single-channel PNG, this one is "
                                    f"{image.mode}", path=path)
            return image.height, image.width
    except FileNotFoundError:
        raise RefbenchError("label map not found", path=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise RefbenchError(f"unreadable PNG ({exc})", path=path) from None


def check_pair(image: Path, annotation: Path) -> tuple[int, int]:
    """The shared size of an image and its label map; a mismatch names the label map."""
    size, label = image_size(image), label_size(annotation)
    if size != label:
        raise RefbenchError(f"label map is {label[1]}x{label[0]} but its image "
                            f"{image.name} is {size[1]}x{size[0]}", path=annotation)
    return size


def check_values(path: Path, allowed: Sequence[int] | np.ndarray, what: str) -> None:
    """Decode a label map and refuse a value outside `allowed` (named with its pixel)."""
    from refbench.benchmarks.formats.segmentation import read_label_png

    labels = read_label_png(path)
    bad = ~np.isin(labels, np.asarray(allowed))
    if bad.any():
        y, x = (int(v) for v in np.argwhere(bad)[0])
        raise RefbenchError(f"label {int(labels[y, x])} at pixel (x={x}, y={y}) is not {what} "
                            f"({int(bad.sum())} such pixels)", path=path)


def add_row(rows: dict[str, list[Any]], key: str, image: Path, annotation: Path | None,
            label_ids: str, size: tuple[int, int], group: str = "") -> None:
    from refbench.datasets.images.schema import stored_path

    rows["id"].append(key)
    rows["image"].append({"bytes": None, "path": stored_path(image)})
    rows["annotation"].append(None if annotation is None else
                              {"bytes": None, "path": stored_path(annotation)})
    rows["label_ids"].append(label_ids)
    rows["height"].append(size[0])
    rows["width"].append(size[1])
    rows["group"].append(group)


def check_unique(keys: Sequence[str], paths: Sequence[Path]) -> None:
    seen: dict[str, Path] = {}
    for key, path in zip(keys, paths):
        if key in seen:
            raise RefbenchError(f"image {key} appears twice (also {seen[key]})", path=path)
        seen[key] = path


# -- synthesizers ----------------------------------------------------------------------------
def paint_scene(labels: Sequence[int], colours: np.ndarray, height: int, width: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, label map) of a scene: horizontal bands of the given classes with a
    rectangle of another, each class a fixed colour plus noise, so a per-pixel classifier
    can learn it. `colours[label]` is the class's RGB colour."""
    label_map = np.empty((height, width), dtype=np.uint8)
    cuts = np.sort(rng.choice(np.arange(1, height), size=len(labels) - 1, replace=False))
    for label, band in zip(labels, np.split(np.arange(height), cuts)):
        label_map[band] = label
    top, left = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
    label_map[top:top + height // 3, left:left + width // 3] = labels[0]
    image = colours[label_map].astype(np.float32) + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label_map


def class_colours(count: int, seed: int) -> np.ndarray:
    """A fixed, distinct-enough RGB colour per class id (0..count-1)."""
    rng = np.random.default_rng(seed)
    return rng.integers(20, 236, size=(count, 3)).astype(np.float32)


def write_png(path: Path, pixels: np.ndarray) -> None:
    from refbench.datasets.images.schema import encode_png
    from refbench.io import atomic_write_bytes

    atomic_write_bytes(path, encode_png(pixels))


def write_jpeg(path: Path, pixels: np.ndarray) -> None:
    import io

    from PIL import Image

    from refbench.io import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    atomic_write_bytes(path, buffer.getvalue())
