"""Depth metrics of a 3D try-on (MPV3D double depth), after the official conversion.

MPV3D stores each person's front and back depth as float32 512 x 320 `.npy` maps of
*viewport* depth in [0, 1], 0 = background, rendered by pyrender's
`OrthographicCamera(xmag=1, ymag=1, znear=1, zfar=3)` (`camera.txt`): the front camera at
z = +2 looking down -z, the back camera at z = -2 rotated 180 degrees about y (so its image
is mirrored left-right). M3D-VTON's loader (`data/aligned_MPV3dDataset.py`) and
`rgbd2pcd.py` turn them into world z, the values its networks predict:

    front: m = d > 0;  z = -(2 d - 1) * m
    back:  d = fliplr(d);  m = d > 0;  z = (2 d - 1) * m

(`2d - 1` is viewport -> NDC; with near 1 and far 3 the distance to the camera is
1 + 2 d, so world z = 2 - (1 + 2 d) in front and -2 + (1 + 2 d) behind.) The mask is taken
before the mapping, and the back map is flipped before its mask, as the loader does.

Predictions are world-z maps in the same layout (the DRM's `final-depth` `*_front_depth.npy`
/ `*_back_depth.npy`, back already aligned with the front). Scores are taken inside the
person mask of the ground truth (optionally intersected with a given mask, e.g. the parse's
`label > 0`), per side, per image, then averaged over images (Eigen et al.'s protocol):

- `RMSE`: on world z (the error in NDC units; equal on camera distances);
- `AbsRel`, `SqRel`, `RMSE_log`, `delta1..3` (`max(p/g, g/p) < 1.25^k`): world z crosses 0
  inside the body, so these ratio metrics are computed on the distance to the side's camera,
  `2 - z` in front and `2 + z` behind (1..3 for any rendered point), which is positive. A
  predicted distance <= 0 (a prediction outside the camera's volume) is clipped to
  `MIN_DISTANCE` for the log and ratio terms and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from refbench.errors import RefbenchError

SIDES: tuple[str, ...] = ("front", "back")
#: the cameras' distance to the world origin (`camera.txt`: translation +-2)
CAMERA_Z = 2.0
MPV3D_SHAPE: tuple[int, int] = (512, 320)
DELTA_BASE = 1.25
DEPTH_KEYS: tuple[str, ...] = ("AbsRel", "SqRel", "RMSE", "RMSE_log", "delta1", "delta2", "delta3")
MIN_DISTANCE = 1e-6

ArrayOrPath = Union[str, Path, np.ndarray]


def load_depth(depth: ArrayOrPath, what: str = "depth", shape: tuple[int, int] | None = None
               ) -> np.ndarray:
    """A finite 2-D float64 depth map from a `.npy` path or an array; a one-line error naming
    the file for a missing/unreadable file, a wrong shape, or NaN/infinity."""
    name = str(depth) if isinstance(depth, (str, Path)) else what
    if isinstance(depth, (str, Path)):
        path = Path(depth)
        if not path.exists():
            raise RefbenchError("depth map not found", path=path)
        if path.is_dir():
            raise RefbenchError("expected a depth .npy file, found a folder", path=path)
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy's errors for cut or foreign files
            raise RefbenchError(f"cannot read depth map: {' '.join(str(exc).split())[:160]}",
                                path=path) from None
    else:
        array = np.asarray(depth)
    if array.ndim == 3 and array.shape[0] == 1:  # a saved 1 x H x W tensor
        array = array[0]
    if array.ndim != 2:
        raise RefbenchError(f"{name}: expected an H x W depth map, got shape {array.shape}")
    if shape is not None and array.shape != tuple(shape):
        raise RefbenchError(f"{name}: depth map is {array.shape[0]}x{array.shape[1]} (HxW), "
                            f"expected {shape[0]}x{shape[1]}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise RefbenchError(f"{name}: depth must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise RefbenchError(f"{name}: depth holds {bad} NaN/infinite value(s)")
    return array


def gt_front_to_world(viewport: np.ndarray) -> np.ndarray:
    """The loader's front mapping: `-(2d - 1)` where `d > 0`, else 0."""
    d = np.asarray(viewport, dtype=np.float64)
    return -(2.0 * d - 1.0) * (d > 0)


def gt_back_to_world(viewport: np.ndarray) -> np.ndarray:
    """The loader's back mapping: mirrored left-right, then `2d - 1` where `d > 0`, else 0."""
    d = np.flip(np.asarray(viewport, dtype=np.float64), axis=1)
    return (2.0 * d - 1.0) * (d > 0)


def gt_to_world(viewport: np.ndarray, side: str) -> np.ndarray:
    if side == "front":
        return gt_front_to_world(viewport)
    if side == "back":
        return gt_back_to_world(viewport)
    raise RefbenchError(f"unknown depth side {side!r}; choose front or back")


def gt_mask(viewport: np.ndarray, side: str) -> np.ndarray:
    """The person mask of a viewport map as the loader takes it (`d > 0`, the back one
    mirrored)."""
    d = np.asarray(viewport)
    return (np.flip(d, axis=1) if side == "back" else d) > 0


def camera_distance(world_z: np.ndarray, side: str) -> np.ndarray:
    """Distance along the optical axis from the side's camera: `2 - z` front, `2 + z` back."""
    return CAMERA_Z - world_z if side == "front" else CAMERA_Z + world_z


def depth_errors(pred_world: np.ndarray, gt_world: np.ndarray, mask: np.ndarray, side: str
                 ) -> tuple[dict[str, float], int, int]:
    """One image's `DEPTH_KEYS` on one side inside `mask`: (values, pixels, clipped)."""
    if pred_world.shape != gt_world.shape or mask.shape != gt_world.shape:
        raise RefbenchError(f"depth shapes differ: prediction {pred_world.shape}, ground truth "
                            f"{gt_world.shape}, mask {mask.shape}")
    pixels = int(mask.sum())
    if pixels == 0:
        raise RefbenchError(f"the {side} ground-truth depth has no person pixel")
    p, g = pred_world[mask], gt_world[mask]
    rmse = float(np.sqrt(np.mean((p - g) ** 2)))
    pd, gd = camera_distance(p, side), camera_distance(g, side)
    clipped = int((pd <= MIN_DISTANCE).sum())
    pd = np.maximum(pd, MIN_DISTANCE)
    ratio = np.maximum(pd / gd, gd / pd)
    values = {
        "AbsRel": float(np.mean(np.abs(pd - gd) / gd)),
        "SqRel": float(np.mean((pd - gd) ** 2 / gd)),
        "RMSE": rmse,
        "RMSE_log": float(np.sqrt(np.mean((np.log(pd) - np.log(gd)) ** 2))),
    }
    for k in (1, 2, 3):
        values[f"delta{k}"] = float(np.mean(ratio < DELTA_BASE ** k))
    return values, pixels, clipped


def score_pair(pred_front: ArrayOrPath, pred_back: ArrayOrPath, gt_front: ArrayOrPath,
               gt_back: ArrayOrPath, mask: np.ndarray | None = None, name: str = "pair"
               ) -> dict[str, tuple[dict[str, float], int, int]]:
    """Both sides of one person: `{side: (values, pixels, clipped)}`. Ground truth is MPV3D
    viewport depth, predictions world z (module docstring); `mask` (H x W bool, front
    layout) restricts both sides further."""
    gts = {"front": load_depth(gt_front, f"{name} ground-truth front depth"),
           "back": load_depth(gt_back, f"{name} ground-truth back depth")}
    shape = gts["front"].shape
    if gts["back"].shape != shape:
        raise RefbenchError(f"{name}: ground-truth front {shape} and back {gts['back'].shape} "
                            f"depth differ in shape")
    preds = {"front": load_depth(pred_front, f"{name} predicted front depth", shape),
             "back": load_depth(pred_back, f"{name} predicted back depth", shape)}
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape:
            raise RefbenchError(f"{name}: mask {mask.shape} and depth {shape} differ in shape")
    out = {}
    for side in SIDES:
        keep = gt_mask(gts[side], side) if mask is None else gt_mask(gts[side], side) & mask
        out[side] = depth_errors(preds[side], gt_to_world(gts[side], side), keep, side)
    return out
