"""The record schema every image-classification dataset shares, and its checks.

Every split of `imagenet`, `cifar10`, `cifar100`, `imagefolder` and `digits` has the
columns

    id          string   unique within the dataset (a file stem, `batch/row`, ...)
    image       datasets.Image(decode=False): {"bytes", "path"}
    label       datasets.ClassLabel(names=...)   -1 where a list file gives no label
    class_name  string   the human-readable name of the label ('' without one)

so a model reads any of them the same way (`refbench.datasets.images.ImageClassification`
decodes them in DataLoader workers). Where an image lives is the builder's choice, made
by size: small sets (CIFAR, digits) keep the encoded PNG in `bytes`, large on-disk
releases (ImageNet, ImageFolder trees) keep the image's absolute path in `path` (the
release root is resolved at prepare time and also recorded as `source_root` in the
cache's manifest.json) and are saved without embedding (`ondisk.save_references`), so
150 GB are never copied into Arrow and `datasets.Image(decode=True)` opens the files
from any working folder. A release that moves is either prepared again or read with
`ImageClassification(..., relocate=(old_root, new_root))`.

Nothing here decodes a whole image: `sniff_image` reads the first and last bytes of a
file to catch non-images and truncated JPEG/PNG files when a release is checked or
prepared; full decoding happens in the workers, where a bad image is counted and skipped.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

#: file name endings an ImageFolder tree may hold (torchvision's IMG_EXTENSIONS), any case
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: how far from the end of a file the JPEG end-of-image marker / PNG IEND chunk may lie
#: (some encoders pad a few bytes after it)
TRAILER_WINDOW = 4096
_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP", b"GIF8": "GIF",
          b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "WEBP", b"P5": "PGM", b"P6": "PPM",
          b"P2": "PGM", b"P3": "PPM"}


def image_features(names: Sequence[str], extra: dict[str, Any] | None = None
                   ) -> "hf_datasets.Features":
    """The explicit features of every split (`names`: the class names, label order), plus
    a family's `extra` columns (CIFAR-100's `coarse_label`, CIFAR's `filename`)."""
    import datasets as hf

    return hf.Features({"id": hf.Value("string"), "image": hf.Image(decode=False),
                        "label": hf.ClassLabel(names=list(names)),
                        "class_name": hf.Value("string"), **(extra or {})})


def is_image_name(name: str) -> bool:
    """Whether a file name ends like an image (case-insensitive, hidden files excluded)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def sniff_image(path: Path) -> str | None:
    """Why `path` is not a readable image ('' never), or None when it looks whole.

    Reads the first 8 bytes (the format's magic number; the content decides, not the
    name: ImageNet holds a PNG named .JPEG) and, for JPEG and PNG, the last
    `TRAILER_WINDOW` bytes (a truncated download lacks the end marker)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if size == 0:
                return "empty file (0 bytes)"
            kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
            if kind is None:
                return f"not an image (starts with {head[:4]!r})"
            if kind in ("JPEG", "PNG"):
                handle.seek(max(0, size - TRAILER_WINDOW))
                tail = handle.read()
                marker = b"\xff\xd9" if kind == "JPEG" else b"IEND"
                if marker not in tail:
                    return f"truncated {kind} (no end marker in its last {len(tail)} bytes)"
    except IsADirectoryError:
        return "a folder, where an image file belongs"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


def check_image_file(path: Path, where: Path | None = None, line: int | None = None) -> None:
    """Raise a one-line `RefbenchError` when `path` is missing or not a whole image; the
    error names `where:line` (a list file naming the image) when given, else the image."""
    if not path.exists():
        problem = "missing image"
    else:
        problem = sniff_image(path)
        if problem is None:
            return
    if where is None:
        raise RefbenchError(problem, path=path)
    raise RefbenchError(f"{problem}: {path}", path=where, line=line)


def check_unique_ids(ids: Iterable[str], source: Path | str) -> None:
    """A duplicate id is an error naming the source and the id's two positions."""
    seen: dict[str, int] = {}
    for position, key in enumerate(ids, start=1):
        first = seen.setdefault(key, position)
        if first != position:
            raise RefbenchError(f"duplicate id {key!r} (rows {first} and {position})",
                                path=source)


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of a uint8 `(H, W)` grey or `(H, W, 3)` RGB array."""
    from PIL import Image

    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected uint8 (H, W[, 3]) pixels, got {pixels.dtype} {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def rows_to_dataset(rows: dict[str, list[Any]], names: Sequence[str], split: str,
                    extra: dict[str, Any] | None = None) -> "hf_datasets.Dataset":
    """A `Dataset` with `image_features(names, extra)` from column lists; `rows["image"]`
    holds `{"bytes": ..., "path": ...}` dicts."""
    import datasets as hf

    feats = image_features(names, extra)
    missing = set(feats) - set(rows)
    if missing:
        raise ValueError(f"columns missing: {sorted(missing)}")
    return hf.Dataset.from_dict({k: rows[k] for k in feats}, features=feats,
                                split=hf.NamedSplit(split))


def empty_rows() -> dict[str, list[Any]]:
    """Column lists for `rows_to_dataset`, empty."""
    return {"id": [], "image": [], "label": [], "class_name": []}


def relative_path(path: Path, root: Path) -> str:
    """`path` relative to the release root, with forward slashes (ids, messages)."""
    return Path(os.path.relpath(path, root)).as_posix()


def stored_path(path: Path) -> str:
    """What the cache stores for an on-disk image: its absolute path."""
    return str(Path(os.path.abspath(path)))


def image_root(name: str, cache_dir: str | None = None) -> Path:
    """The release root a prepared on-disk dataset was read from (`source_root` of its
    manifest): the `old_root` of `ImageClassification(relocate=...)`."""
    from refbench.datasets.base import default_cache_dir, get_builder, read_manifest

    builder = get_builder(name)
    folder = builder.cache_path(Path(cache_dir) if cache_dir else default_cache_dir())
    return Path(read_manifest(folder)["source_root"])
