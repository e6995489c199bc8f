"""What every image-classification dataset shares: the record schema (`schema.py`),
decoding in DataLoader workers (`loader.py`), learnable synthetic pictures (`paint.py`),
and two builders, `imagefolder` (any class-folder tree) and `digits` (scikit-learn's
bundled real scans).

The loader names are resolved lazily, so importing a builder does not import torch."""

from __future__ import annotations

from typing import Any

_LOADER = ("ImageBatch", "ImageClassification", "ImageTransform", "Skipped", "collate_images")
_SCHEMA = ("image_features", "image_root")


def __getattr__(attr: str) -> Any:
    if attr in _LOADER:
        from refbench.datasets.images import loader

        return getattr(loader, attr)
    if attr in _SCHEMA:
        from refbench.datasets.images import schema

        return getattr(schema, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = [*_LOADER, *_SCHEMA]
