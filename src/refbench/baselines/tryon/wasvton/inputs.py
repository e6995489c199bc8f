"""What WAS-VTON reads from a prepared try-on row (`refbench.datasets.tryon`: VITON,
VITON-HD, MPV3D), at the model's size, and how a batch is built from it.

Person representation (CP-VTON's, with VITON-HD's cloth-agnostic image in place of the
head-only image; see `baseline.py`): body shape, cloth-agnostic person image, 18 pose
maps in the COCO-18 order, plus the in-shop garment and its mask and the garment's
category (`space.garment_category`).

Pose conventions. The release's pose column is `(K, 3)` `x, y, confidence` per keypoint,
K from its OpenPose JSON: VITON's OpenPose 1.0 files are COCO-18, VITON-HD's and MPV3D's
are BODY_25. The convention is told by K alone (18 or 25; any other count is a one-line
error naming the pair). BODY_25 is mapped onto COCO-18 by the part names of OpenPose's
output documentation (`doc/02_output.md`, "Keypoint Ordering in C++/Python"): BODY_25
0-7 (nose, neck, right/left shoulder, elbow, wrist) are COCO 0-7; BODY_25 8 (MidHip) has
no COCO slot and is dropped; BODY_25 9-14 (RHip, RKnee, RAnkle, LHip, LKnee, LAnkle) are
COCO 8-13; BODY_25 15-18 (REye, LEye, REar, LEar) are COCO 14-17; BODY_25 19-24 (the feet)
are dropped. So one network (22 input channels) serves every release.

Sizes. The model works at `model.height x model.width` and a release may be larger
(VITON-HD 1024 x 768, MPV3D 512 x 320): every image is resized to the model's size
(photos bilinear, with PIL's antialiasing when shrinking; the parse nearest; the garment
mask bilinear then thresholded at 128), keypoints are scaled by the same factors, and the
try-on is resized back to the release's size (bilinear) when predicted, because the
benchmark scores results at the release's resolution. The aspect ratios must agree (within
`ASPECT_TOLERANCE`): a stretched person is refused, not silently distorted. The garment's
category is read from the release-size mask (finer sleeves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from refbench.baselines.tryon.labels import label_map, row_image
from refbench.baselines.tryon.m3dvton.inputs import body_shape, pose_maps
from refbench.baselines.tryon.wasvton import space
from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

#: LIP labels hidden from the cloth-agnostic person image
MASKED_LABELS = (5, 6, 7, 10, 14, 15)
UPPER_CLOTHES = 5
#: CP-VTON's pose squares: radius 5 at 256 px height, scaled with the model's height
POSE_RADIUS, POSE_HEIGHT = 5, 256
COLUMNS = ["pair_id", "person", "cloth", "cloth_mask", "parse", "pose"]
COCO_18, BODY_25 = 18, 25
#: for each COCO-18 slot, the BODY_25 keypoint of the same part (module docstring)
COCO18_FROM_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
POSE_CONVENTIONS = {COCO_18: "COCO-18", BODY_25: "BODY_25"}
#: `_image` mode of a label map: the stored ids, palette or not
LABELS = "labels"
#: largest relative difference of the release's and the model's height / width ratios
ASPECT_TOLERANCE = 0.02


def to_coco18(pose: Any, pair_id: Any = None) -> np.ndarray:
    """`(18, 3)` COCO-18 keypoints from a COCO-18 or BODY_25 pose (module docstring)."""
    array = np.asarray(pose, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] not in POSE_CONVENTIONS:
        raise RefbenchError(f"pair {pair_id}: pose is {array.shape}; WAS-VTON reads OpenPose "
                            f"COCO-18 (18, 3) or BODY_25 (25, 3) keypoints", key="pose")
    if not np.isfinite(array).all():
        raise RefbenchError(f"pair {pair_id}: pose holds NaN/infinite values", key="pose")
    return array if array.shape[0] == COCO_18 else array[list(COCO18_FROM_BODY25)]


def scale_pose(pose: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """Keypoints scaled to the model's size; a point present in the release (x, y > 1, the
    loaders' test) stays present (at least 1.01) and an absent one stays absent (0)."""
    present = (pose[:, 0] > 1) & (pose[:, 1] > 1)
    out = pose.copy()
    out[:, 0] = np.where(present, np.maximum(pose[:, 0] * sx, 1.01), 0.0)
    out[:, 1] = np.where(present, np.maximum(pose[:, 1] * sy, 1.01), 0.0)
    return out


def _image(row: Mapping[str, Any], column: str, mode: str) -> np.ndarray:
    """A column's image in PIL `mode`, or with `LABELS` the label ids of an L- or P-mode
    parse as stored (VITON-HD's parses are P mode: converting them to L would turn the
    palette's colours into grey levels, not labels)."""
    missing = " (WAS-VTON needs the person, garment, garment mask, parse and pose)"
    if mode == LABELS:
        if row.get(column) is None:
            raise RefbenchError(f"pair {row.get('pair_id')}: no {column!r}{missing}", key=column)
        return label_map(row, column)
    return row_image(row, column, mode, missing)


def _fit(array: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    from PIL import Image

    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def decode_pair(row: Mapping[str, Any], height: int, width: int) -> dict[str, Any]:
    """One row -> arrays at the model's size (module docstring); one-line errors name the
    pair and the column."""
    from PIL import Image

    pid = row.get("pair_id")
    raw: dict[str, np.ndarray] = {}
    for column, mode in (("person", "RGB"), ("cloth", "RGB"), ("cloth_mask", "L"),
                         ("parse", LABELS)):
        raw[column] = _image(row, column, mode)
    size = raw["person"].shape[:2]
    for column in ("cloth", "cloth_mask", "parse"):
        if raw[column].shape[:2] != size:
            raise RefbenchError(f"pair {pid}: {column} is {raw[column].shape[1]}x"
                                f"{raw[column].shape[0]} (WxH), the person {size[1]}x{size[0]}",
                                key=column)
    if abs((size[0] / size[1]) / (height / width) - 1) > ASPECT_TOLERANCE:
        raise RefbenchError(f"pair {pid}: the release is {size[1]}x{size[0]} (WxH), the model "
                            f"{width}x{height}: the aspect ratios differ (set model.height / "
                            f"model.width in the release's proportions)", key="model.height")
    if int(raw["parse"].max()) >= 20:
        raise RefbenchError(f"pair {pid}: parse label {int(raw['parse'].max())} is not a LIP "
                            f"label (0..19)", key="parse")
    if row.get("pose") is None:
        raise RefbenchError(f"pair {pid}: no pose", key="pose")
    pose = to_coco18(row["pose"], pid)
    sy, sx = height / size[0], width / size[1]
    mask = raw["cloth_mask"] >= 128
    out: dict[str, Any] = {"id": pid, "size": (int(size[0]), int(size[1]))}
    out["category"] = space.garment_category(mask)
    out["person"] = _fit(raw["person"], height, width, Image.BILINEAR)
    out["cloth"] = _fit(raw["cloth"], height, width, Image.BILINEAR)
    out["cloth_mask"] = _fit((mask * 255).astype(np.uint8), height, width,
                             Image.BILINEAR) >= 128
    out["parse"] = _fit(raw["parse"], height, width, Image.NEAREST)
    radius = max(1, round(POSE_RADIUS * height / POSE_HEIGHT))
    out["pose"] = pose_maps(scale_pose(pose, sy, sx), height, width, radius)
    out["shape"] = body_shape(out["parse"])
    return out


class PairRows(Sequence):
    """The split's rows decoded one pair at a time, as the batches ask for them."""

    def __init__(self, rows: "hf_datasets.Dataset", height: int, width: int) -> None:
        self.rows, self.height, self.width = rows.select_columns(COLUMNS), height, width

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return decode_pair(self.rows[int(index)], self.height, self.width)


def _unit(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32)).div(127.5).sub(1.0)


def collate_pairs(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Decoded pairs -> a batch: `agnostic` (22 ch), `cloth`, `cloth_mask`, `person`,
    `parse_cloth` and its mask, `ids`, `categories`, `sizes` (the release's H, W)."""
    if not samples:
        raise RefbenchError("an empty batch of try-on pairs")
    person = torch.stack([_unit(s["person"]).permute(2, 0, 1) for s in samples])
    parse = torch.stack([torch.from_numpy(s["parse"].astype(np.int64)) for s in samples])
    keep = 1 - sum((parse == label).float() for label in MASKED_LABELS).unsqueeze(1)
    pcm = (parse == UPPER_CLOTHES).float().unsqueeze(1)
    shape = torch.stack([_unit(s["shape"])[None] for s in samples])
    pose = torch.stack([torch.from_numpy(s["pose"]).float() * 2 - 1 for s in samples])
    return {"ids": [s["id"] for s in samples], "categories": [s["category"] for s in samples],
            "sizes": [tuple(s.get("size", s["person"].shape[:2])) for s in samples],
            "agnostic": torch.cat([shape, person * keep - (1 - keep), pose], 1),
            "cloth": torch.stack([_unit(s["cloth"]).permute(2, 0, 1) for s in samples]),
            "cloth_mask": torch.stack([torch.from_numpy(s["cloth_mask"]).float()[None]
                                       for s in samples]),
            "person": person, "parse_cloth": person * pcm + (1 - pcm), "parse_cloth_mask": pcm}


def to_uint8(image: Tensor) -> np.ndarray:
    """`(B, 3, H, W)` in [-1, 1] -> `(B, H, W, 3)` uint8, as `tensor2im` saves it."""
    return ((image.detach().float() + 1) / 2 * 255).clamp(0, 255).to(torch.uint8) \
        .permute(0, 2, 3, 1).cpu().numpy()


def at_release_size(image: Tensor, size: tuple[int, int]) -> np.ndarray:
    """One `(3, h, w)` try-on in [-1, 1] -> uint8 `(H, W, 3)` at the release's size."""
    import torch.nn.functional as F

    batch = image.unsqueeze(0)
    if tuple(batch.shape[-2:]) != tuple(size):
        batch = F.interpolate(batch.float(), size=tuple(size), mode="bilinear",
                              align_corners=False)
    return np.ascontiguousarray(to_uint8(batch)[0])
