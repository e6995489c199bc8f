"""What M3D-VTON's loader (`data/aligned_MPV3dDataset.py`) builds from an MPV3D pair, from
the prepared rows of `refbench.datasets.tryon` (schema in that package's docstring).

Per pair (`decode_pair`, on the CPU, when a batch is drawn): the person image, its LIP
parse, BODY_25 pose, palm mask, the pre-aligned garment and mask (MTM's garment input),
the person's Sobel images and, when the row has them, the front/back viewport depth
(required with `need_depth`). Images become
[-1, 1] tensors (`ToTensor` + `Normalize(0.5, 0.5)`), masks {0, 1} (the release's masks
thresholded at 128), depth world z as the loader maps it
(`refbench.evaluation.tryon.depth`: front `-(2d - 1)`, back mirrored then `2d - 1`, both
re-masked by `d > 0`).

Derived from a parse (`person_parts`, on the batch's device, because DRM and TFM take the
parse from MTM's predicted segmentation, as the official loader reads `segmt/`):
head-hand-lower image (`im * m - (1 - m)`, m = hat, hair, sunglasses, face, palms, pants,
skirt, legs, shoes), the upper-clothes mask (label 5) and garment target
(`im * pcm + (1 - pcm)`), and the masks of the Sobel inputs. MTM's own representation
(`agnostic`, 29 channels) is the body shape (the parse's foreground down-sampled to 1/16
and back, bilinear), the head-hand-lower image and 25 pose maps (a white square of radius
5 at 512 x 320, scaled with the height, per keypoint with x > 1 and y > 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from refbench.baselines.tryon.labels import label_map, row_image
from refbench.errors import RefbenchError
from refbench.evaluation.tryon.depth import gt_back_to_world, gt_front_to_world

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

HEAD_LABELS = (1, 2, 4, 13)
LOWER_LABELS = (9, 12, 16, 17, 18, 19)
ARM_LABELS = (14, 15)
UPPER_CLOTHES = 5
#: the loader's `--radius` at MPV3D's height
POSE_RADIUS, POSE_HEIGHT = 5, 512
REQUIRED = ("person", "parse", "pose", "palm_mask", "aligned_cloth", "aligned_cloth_mask")
SOBEL = ("sobel_x", "sobel_y")


def _image(row: dict[str, Any], column: str, mode: str) -> np.ndarray:
    return row_image(row, column, mode, " (M3D-VTON needs it; prepare mpv3d with the derive "
                     "option for palm masks, Sobel images and pre-aligned garments)")


def pose_maps(pose: np.ndarray, height: int, width: int, radius: int) -> np.ndarray:
    """`(K, H, W)` bool: the loader's white squares around each keypoint with x, y > 1."""
    from PIL import Image, ImageDraw

    maps = np.zeros((len(pose), height, width), dtype=bool)
    for i, (x, y, _) in enumerate(np.asarray(pose, dtype=np.float64)):
        if x > 1 and y > 1:
            canvas = Image.new("L", (width, height))
            ImageDraw.Draw(canvas).rectangle((x - radius, y - radius, x + radius, y + radius),
                                             "white", "white")
            maps[i] = np.asarray(canvas) > 0
    return maps


def body_shape(parse: np.ndarray) -> np.ndarray:
    """The parse's foreground blurred by a 1/16 bilinear round trip, uint8 (`im_shape`)."""
    from PIL import Image

    height, width = parse.shape
    shape = Image.fromarray(((parse > 0) * 255).astype(np.uint8))
    shape = shape.resize((width // 16, height // 16), Image.BILINEAR)
    return np.asarray(shape.resize((width, height), Image.BILINEAR))


def decode_pair(row: dict[str, Any], height: int, width: int, need_depth: bool,
                need_pose: bool = True) -> dict[str, Any]:
    """One row -> numpy arrays of the pair (module docstring); one-line errors name the pair.
    Without `need_pose` (no MTM runs on the batch) the pose maps are left empty."""
    pid = row.get("pair_id")
    out: dict[str, Any] = {"id": pid}
    out["person"] = _image(row, "person", "RGB")
    if out["person"].shape[:2] != (height, width):
        raise RefbenchError(f"pair {pid}: the person image is {out['person'].shape[1]}x"
                            f"{out['person'].shape[0]} (WxH), the model takes {width}x{height} "
                            f"(model.height / model.width)", key="model.height")
    out["parse"] = label_map(row, "parse")  # stored ids (a P-mode parse converted to L is not)
    out["palm"] = _image(row, "palm_mask", "L") > 0
    out["cloth"] = _image(row, "aligned_cloth", "RGB")
    out["cloth_mask"] = _image(row, "aligned_cloth_mask", "L") >= 128
    out["sobel"] = np.stack([_image(row, c, "L") for c in SOBEL])
    for key in ("parse", "palm", "cloth", "cloth_mask"):
        if out[key].shape[:2] != (height, width):
            raise RefbenchError(f"pair {pid}: {key} is {out[key].shape[1]}x{out[key].shape[0]} "
                                f"(WxH), the person {width}x{height}")
    if int(out["parse"].max()) >= 20:
        raise RefbenchError(f"pair {pid}: parse label {int(out['parse'].max())} is not a LIP "
                            f"label (0..19)", key="parse")
    if row.get("pose") is None:
        raise RefbenchError(f"pair {pid}: no pose (M3D-VTON's person representation needs it)",
                            key="pose")
    pose = np.asarray(row["pose"], dtype=np.float32)
    radius = max(1, round(POSE_RADIUS * height / POSE_HEIGHT))
    out["pose"] = (pose_maps(pose, height, width, radius) if need_pose
                   else np.zeros((0, height, width), bool))
    out["shape"] = body_shape(out["parse"])
    missing = row.get("depth_front") is None or row.get("depth_back") is None
    if missing and need_depth:
        raise RefbenchError(f"pair {pid}: no depth maps (training M3D-VTON needs MPV3D's "
                            f"depth/)", key="depth_front")
    if not missing:
        front = np.asarray(row["depth_front"], dtype=np.float64)
        back = np.asarray(row["depth_back"], dtype=np.float64)
        if front.shape != (height, width) or back.shape != (height, width):
            raise RefbenchError(f"pair {pid}: depth maps are {front.shape} / {back.shape}, the "
                                f"person {height}x{width} (HxW)", key="depth_front")
        if not (np.isfinite(front).all() and np.isfinite(back).all()):
            raise RefbenchError(f"pair {pid}: depth holds NaN/infinite values", key="depth_front")
        out["front"] = gt_front_to_world(front).astype(np.float32)
        out["back"] = gt_back_to_world(back).astype(np.float32)
    return out


class PairRows(Sequence):
    """The split's rows, decoded one pair at a time when a batch asks for it (the whole
    split never sits decoded in memory); integer and slice indexing as a list."""

    def __init__(self, rows: "hf_datasets.Dataset", height: int, width: int,
                 need_depth: bool, need_pose: bool = True) -> None:
        self.rows, self.height, self.width, self.need_depth = rows, height, width, need_depth
        self.need_pose = need_pose

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return decode_pair(self.rows[int(index)], self.height, self.width, self.need_depth,
                           self.need_pose)


def _unit(array: np.ndarray) -> Tensor:
    """uint8 -> [-1, 1] float (`ToTensor` then `Normalize(0.5, 0.5)`)."""
    return torch.from_numpy(np.array(array, dtype=np.float32)).div(255.0).sub(0.5).div(0.5)


def collate_pairs(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Decoded pairs -> one batch of tensors (`ids` stays a list of pair ids)."""
    if not samples:
        raise RefbenchError("an empty batch of try-on pairs")
    batch: dict[str, Any] = {"ids": [s["id"] for s in samples]}
    batch["person"] = torch.stack([_unit(s["person"]).permute(2, 0, 1) for s in samples])
    batch["cloth"] = torch.stack([_unit(s["cloth"]).permute(2, 0, 1) for s in samples])
    batch["cloth_mask"] = torch.stack([torch.from_numpy(s["cloth_mask"]).float()[None]
                                       for s in samples])
    batch["parse"] = torch.stack([torch.from_numpy(s["parse"].astype(np.int64)) for s in samples])
    batch["palm"] = torch.stack([torch.from_numpy(s["palm"]).float()[None] for s in samples])
    batch["pose"] = torch.stack([torch.from_numpy(s["pose"]).float() * 2 - 1 for s in samples])
    batch["shape"] = torch.stack([_unit(s["shape"])[None] for s in samples])
    batch["person_sobel"] = torch.stack([_unit(s["sobel"]) for s in samples])
    if "front" in samples[0]:
        batch["front"] = torch.stack([torch.from_numpy(s["front"])[None] for s in samples])
        batch["back"] = torch.stack([torch.from_numpy(s["back"])[None] for s in samples])
    return batch


def _labels(parse: Tensor, labels: Sequence[int]) -> Tensor:
    """`(B, 1, H, W)` float: the sum of the label indicators (disjoint labels: a 0/1 mask)."""
    return sum(((parse == label).float() for label in labels), torch.zeros_like(parse, dtype=torch.float)).unsqueeze(1)


def person_parts(person: Tensor, parse: Tensor, palm: Tensor) -> dict[str, Tensor]:
    """The parse-derived inputs and targets (module docstring) on the batch's device."""
    head, lower = _labels(parse, HEAD_LABELS), _labels(parse, LOWER_LABELS)
    arms, pcm = _labels(parse, ARM_LABELS), _labels(parse, (UPPER_CLOTHES,))
    hhl_mask = head + palm + lower
    return {"hhl": person * hhl_mask - (1 - hhl_mask),
            "parse_cloth_mask": pcm,
            "parse_cloth": person * pcm + (1 - pcm),
            "head_arm_lower": head + arms + lower,
            "arm_cloth": arms + pcm}


def mtm_agnostic(batch: dict[str, Any], hhl: Tensor) -> Tensor:
    """MTM's 29-channel person representation: body shape, head-hand-lower image, pose."""
    return torch.cat([batch["shape"], hhl, batch["pose"]], 1)


def quantize_image(image: Tensor) -> tuple[Tensor, np.ndarray]:
    """A [-1, 1] image batch as the official test script saves it (`tensor2im`:
    `(x + 1) / 2 * 255`, truncated to uint8) and read back to [-1, 1]; also the uint8 array
    `(B, H, W, 3)`."""
    as_uint8 = ((image.detach().float() + 1) / 2 * 255).clamp(0, 255).to(torch.uint8)
    array = as_uint8.permute(0, 2, 3, 1).cpu().numpy()
    return as_uint8.to(image.dtype).div(255.0).sub(0.5).div(0.5), array


def quantize_mask(mask: Tensor) -> Tensor:
    """A warped mask as saved (`mask * 255` truncated to uint8) and re-read (`>= 128`)."""
    return ((mask.detach() * 255).floor() >= 128).to(mask.dtype)


def cloth_sobel(cloth_uint8: np.ndarray, like: Tensor) -> Tensor:
    """`(B, 2, H, W)` [-1, 1]: the Sobel x / y images of warped garments, as the official
    test script writes `warp-cloth-sobel/` (5 x 5 OpenCV Sobel of the grey image, min-max
    scaled to 256 grey levels; `preprocess.sobel_images`)."""
    from refbench.datasets.tryon.preprocess import sobel_images

    out = []
    for rgb in cloth_uint8:
        grey = sobel_images(rgb)
        out.append(np.stack([grey["x"], grey["y"]]))
    return _unit(np.stack(out)).to(like)
