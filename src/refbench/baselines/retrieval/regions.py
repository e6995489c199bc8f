"""Bottom-up region features as model inputs: box geometry, padding, lazy per-item reads.

Product1M items carry 36 bottom-up-attention regions (2048-d features and pixel boxes
`x1, y1, x2, y2`) and the image size. The official CAPTURE data loader
(`dataloaders/pretrain_dataset_IT.py`) turns each box into 5 numbers, the corners over
the image width / height and the box's share of the image area, and pads every item to
36 regions with a mask. Items without regions (`has_regions` false, zero rows) keep only
their mask-free "global" slot, which the model adds in front of the regions.

A full release holds about 300 KB of features per item, so `ItemFeatures` keeps the
tokenised titles in memory and reads an item's regions from the memory-mapped Arrow
table when the trainer or the predictor asks for it, keeping decoded items up to
`CACHE_BYTES` (all of a small split, so later epochs skip the decoding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from refbench.baselines.lazy_rows import LazyRows, total_nbytes
from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

#: columns an item's visual input is read from
REGION_COLUMNS = ("regions", "boxes", "image_size")
#: decoded items kept in memory per split (a small split is read from the table once)
CACHE_BYTES = 256 << 20


def region_locations(boxes: np.ndarray, image_size: Sequence[float]) -> np.ndarray:
    """Pixel boxes `(R, 4)` -> `(R, 5)`: x1/w, y1/h, x2/w, y2/h and the area fraction, as the
    official loader computes them (a missing or zero image size leaves boxes unscaled)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    width, height = (float(v) for v in (list(image_size) + [0.0, 0.0])[:2])
    width, height = (width if width > 0 else 1.0), (height if height > 0 else 1.0)
    out = np.zeros((len(boxes), 5), dtype=np.float32)
    out[:, 0] = boxes[:, 0] / width
    out[:, 1] = boxes[:, 1] / height
    out[:, 2] = boxes[:, 2] / width
    out[:, 3] = boxes[:, 3] / height
    out[:, 4] = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 2] - boxes[:, 0]) / (width * height)
    return out


def item_regions(row: Mapping[str, Any], feature_size: int, max_regions: int) -> dict[str, np.ndarray]:
    """One item's `regions (R, F)` and `locations (R, 5)`, cut to `max_regions`."""
    regions = np.asarray(row.get("regions") if row.get("regions") is not None else [],
                         dtype=np.float32)
    regions = regions.reshape(-1, feature_size) if regions.size == 0 else regions
    if regions.ndim != 2 or regions.shape[1] != feature_size:
        raise RefbenchError(f"item {row.get('id')!r} has region features of shape "
                            f"{tuple(regions.shape)}; the model expects (R, {feature_size})",
                            key="model.v_feature_size")
    boxes = np.asarray(row.get("boxes") if row.get("boxes") is not None else [], dtype=np.float32)
    boxes = boxes.reshape(-1, 4)
    if len(boxes) < len(regions):  # no geometry: the whole image
        size = list(row.get("image_size") if row.get("image_size") is not None else [])
        whole = np.array([[0.0, 0.0, *(size[:2] if len(size) >= 2 else [1.0, 1.0])]],
                         dtype=np.float32)
        boxes = np.concatenate([boxes, np.repeat(whole, len(regions) - len(boxes), 0)])
    size = row.get("image_size")
    locations = region_locations(boxes[:len(regions)], [] if size is None else list(size))
    return {"regions": regions[:max_regions], "locations": locations[:max_regions]}


def collate_regions(features: Sequence[Mapping[str, Any]], max_regions: int,
                    feature_size: int) -> dict[str, torch.Tensor]:
    """Pad every item to `max_regions`: `regions (B, R, F)`, `locations (B, R, 5)` and
    `region_mask (B, R)` (1 for a real region); a fixed width, as the official loader, so
    an item's prediction never depends on the other items of its batch."""
    n = len(features)
    regions = torch.zeros(n, max_regions, feature_size)
    locations = torch.zeros(n, max_regions, 5)
    mask = torch.zeros(n, max_regions, dtype=torch.long)
    for i, f in enumerate(features):
        count = len(f["regions"])
        if count:
            regions[i, :count] = torch.from_numpy(np.ascontiguousarray(f["regions"]))
            locations[i, :count] = torch.from_numpy(np.ascontiguousarray(f["locations"]))
            mask[i, :count] = 1
    return {"regions": regions, "locations": locations, "region_mask": mask}


class ItemFeatures(LazyRows):
    """Per-item feature dicts of a split: `id`, `index`, the title's `input_ids` (held in
    memory) and the item's `regions` / `locations` (read from the Arrow table on access).

    A `Sequence`, so the trainer can index it and the predictor can slice it."""

    def __init__(self, rows: "hf_datasets.Dataset", input_ids: Sequence[Sequence[int]],
                 feature_size: int, max_regions: int) -> None:
        super().__init__(CACHE_BYTES)
        if len(input_ids) != len(rows):
            raise RefbenchError(f"{len(input_ids)} tokenised titles for {len(rows)} items")
        missing = [c for c in ("id", *REGION_COLUMNS) if c not in rows.column_names]
        if missing:
            raise RefbenchError(f"the split has no column {missing[0]!r} (columns: "
                                f"{', '.join(rows.column_names)})")
        self.ids = [str(i) for i in rows["id"]]
        self.input_ids = [list(ids) for ids in input_ids]
        self.visual = rows.with_format("numpy", columns=list(REGION_COLUMNS))
        self.feature_size, self.max_regions = feature_size, max_regions

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, index: int) -> dict[str, Any]:
        def build() -> dict[str, np.ndarray]:
            row = dict(self.visual[index])
            row["id"] = self.ids[index]
            return item_regions(row, self.feature_size, self.max_regions)

        visual = self.cached(index, build, total_nbytes)
        return {"index": index, "id": self.ids[index], "input_ids": self.input_ids[index],
                **visual}
