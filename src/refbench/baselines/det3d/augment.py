"""Training-time augmentation of LiDAR frames (numpy), OpenPCDet's KITTI recipe.

The KITTI numbers of SECOND-family detectors depend on these augmentations as much as on
the network, so they follow OpenPCDet (`database_sampler.py`, `augmentor_utils.py`,
`kitti_dataset.yaml`): ground-truth sampling from a database of object point clouds,
then a random flip of the y axis, a global rotation about z and a global scaling. Every
random draw comes from the `rng` argument, so a fixed seed gives a fixed frame.

A frame is a dict with `points` (N, 4) float32 [x, y, z, intensity], `gt_boxes` (M, 7)
lidar boxes (x, y, z centre, dx, dy, dz, heading), `gt_names` (M,) str and optionally
`difficulty` (M,) int and `num_points` (M,) int. Functions return new arrays/dicts and
never modify their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from refbench.datasets.kitti.geometry import points_in_boxes

#: OpenPCDet `kitti_dataset.yaml` gt_sampling settings (used by second.yaml)
KITTI_SAMPLE_GROUPS: dict[str, int] = {"Car": 20, "Pedestrian": 15, "Cyclist": 15}
KITTI_MIN_POINTS: dict[str, int] = {"Car": 5, "Pedestrian": 5, "Cyclist": 5}


def _bev_overlap(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) rotated BEV IoU (exact polygon clipping of `det3d.boxes`)."""
    from refbench.baselines.det3d.boxes import boxes_bev_iou

    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros((len(boxes_a), len(boxes_b)))
    return boxes_bev_iou(torch.from_numpy(np.asarray(boxes_a, np.float64)[:, :7]),
                         torch.from_numpy(np.asarray(boxes_b, np.float64)[:, :7])).numpy()


@dataclass(frozen=True)
class GTDatabase:
    """Object point clouds cut out of training frames (OpenPCDet's gt_database).

    `points[i]` holds the points inside `boxes[i]` with x, y, z relative to the box
    centre, so an object can be pasted back at its box; `num_points[i]` is their count
    (OpenPCDet's `num_points_in_gt`)."""

    points: tuple[np.ndarray, ...]
    boxes: np.ndarray  # (K, 7)
    names: np.ndarray  # (K,) str
    difficulty: np.ndarray  # (K,) int
    num_points: np.ndarray  # (K,) int

    def __len__(self) -> int:
        return len(self.points)

    @classmethod
    def build(cls, frames: Iterable[dict]) -> GTDatabase:
        """Every object of every frame except DontCare, with its points."""
        pts: list[np.ndarray] = []
        boxes, names, diff = [], [], []
        for frame in frames:
            points = np.asarray(frame["points"], np.float32)
            gt = np.asarray(frame["gt_boxes"], np.float64).reshape(-1, 7)
            gt_names = np.asarray(frame["gt_names"]).astype(str)
            difficulty = np.asarray(frame.get("difficulty", np.zeros(len(gt), int)), int)
            inside = points_in_boxes(points, gt)
            for i in range(len(gt)):
                if gt_names[i] == "DontCare":
                    continue
                obj = points[inside[i]].copy()
                obj[:, :3] -= gt[i, :3].astype(np.float32)
                pts.append(obj)
                boxes.append(gt[i])
                names.append(gt_names[i])
                diff.append(difficulty[i])
        return cls(tuple(pts), np.asarray(boxes, np.float64).reshape(-1, 7),
                   np.asarray(names, dtype=str), np.asarray(diff, int),
                   np.asarray([len(p) for p in pts], int))

    def select(self, mask: np.ndarray) -> GTDatabase:
        """The entries where `mask` is true."""
        keep = np.nonzero(mask)[0]
        return GTDatabase(tuple(self.points[i] for i in keep), self.boxes[keep],
                          self.names[keep], self.difficulty[keep], self.num_points[keep])

    def filter(self, min_points: dict[str, int],
               remove_difficulty: Sequence[int] = (-1,)) -> GTDatabase:
        """OpenPCDet's PREPARE step: drop objects of a listed class with fewer than its
        minimum number of points, and objects whose difficulty is listed."""
        keep = ~np.isin(self.difficulty, np.asarray(list(remove_difficulty), int))
        for name, least in min_points.items():
            keep &= ~((self.names == name) & (self.num_points < int(least)))
        return self.select(keep)


def _extend(frame: dict, key: str, extra: np.ndarray) -> None:
    if key in frame:
        frame[key] = np.concatenate([np.asarray(frame[key]), extra])


def gt_sampling(frame: dict, db: GTDatabase, sample_groups: dict[str, int],
                rng: np.random.Generator, limit_whole_scene: bool = True) -> dict:
    """Paste database objects into a frame (OpenPCDet `DataBaseSampler`).

    Per class, in `sample_groups` order: draw (target - objects of that class already in
    the frame) entries (just target when `limit_whole_scene` is false), without
    replacement; drop every drawn box whose BEV overlaps an existing or previously
    accepted box, or another box drawn in the same round (OpenPCDet's rule); then remove
    the scene points inside the accepted boxes and put the objects' points (first) and
    boxes (last) in. The result carries `gt_sampled`, true for the pasted boxes."""
    out = dict(frame)
    gt_boxes = np.asarray(frame["gt_boxes"], np.float64).reshape(-1, 7)
    gt_names = np.asarray(frame["gt_names"]).astype(str)
    existed = gt_boxes.copy()
    accepted: list[int] = []
    for name, target in sample_groups.items():
        count = int(target) - (int(np.sum(gt_names == name)) if limit_whole_scene else 0)
        pool = np.nonzero(db.names == name)[0]
        count = min(count, len(pool))
        if count <= 0:
            continue
        drawn = pool[rng.choice(len(pool), size=count, replace=False)]
        boxes = db.boxes[drawn]
        iou_existing = _bev_overlap(boxes, existed)
        iou_self = _bev_overlap(boxes, boxes)
        np.fill_diagonal(iou_self, 0.0)
        hit = iou_self.max(axis=1) > 0
        if iou_existing.shape[1]:
            hit |= iou_existing.max(axis=1) > 0
        valid = drawn[~hit]
        accepted.extend(int(i) for i in valid)
        existed = np.concatenate([existed, db.boxes[valid]])
    points = np.asarray(frame["points"], np.float32)
    if accepted:
        new_boxes = db.boxes[accepted]
        obj = [db.points[i].copy() for i in accepted]
        for o, box in zip(obj, new_boxes):
            o[:, :3] += box[:3].astype(np.float32)
        inside = points_in_boxes(points, new_boxes).any(axis=0)
        points = np.concatenate([np.concatenate(obj)[:, :points.shape[1]], points[~inside]])
        out["gt_boxes"] = np.concatenate([gt_boxes, new_boxes])
        out["gt_names"] = np.concatenate([gt_names, db.names[accepted]])
        _extend(out, "difficulty", db.difficulty[accepted])
        _extend(out, "num_points", db.num_points[accepted])
    else:
        out["gt_boxes"], out["gt_names"] = gt_boxes.copy(), gt_names.copy()
    out["points"] = points
    out["gt_sampled"] = np.concatenate([np.zeros(len(gt_boxes), bool),
                                        np.ones(len(accepted), bool)])
    return out


def random_flip_x(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """With probability 0.5 mirror the y axis: y -> -y, heading -> -heading
    (OpenPCDet `random_flip_along_x`)."""
    points, boxes = np.array(points, copy=True), np.array(boxes, copy=True)
    if rng.random() < 0.5:
        points[:, 1] = -points[:, 1]
        boxes[:, 1] = -boxes[:, 1]
        boxes[:, 6] = -boxes[:, 6]
    return points, boxes


def _rotate_z(xyz: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = xyz.copy()
    out[:, 0] = xyz[:, 0] * c - xyz[:, 1] * s
    out[:, 1] = xyz[:, 0] * s + xyz[:, 1] * c
    return out


def global_rotation(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                    range: tuple[float, float] = (-np.pi / 4, np.pi / 4)
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Turn points and box centres about z by a uniform angle; heading += angle."""
    angle = float(rng.uniform(range[0], range[1]))
    points, boxes = np.array(points, copy=True), np.array(boxes, copy=True)
    points[:, :3] = _rotate_z(points[:, :3].astype(np.float64), angle).astype(points.dtype)
    boxes[:, :3] = _rotate_z(boxes[:, :3], angle)
    boxes[:, 6] += angle
    return points, boxes


def global_scaling(points: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                   range: tuple[float, float] = (0.95, 1.05)
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Scale coordinates and box centres/sizes by one uniform factor."""
    points, boxes = np.array(points, copy=True), np.array(boxes, copy=True)
    if range[1] - range[0] < 1e-3:
        return points, boxes
    scale = float(rng.uniform(range[0], range[1]))
    points[:, :3] *= scale
    boxes[:, :6] *= scale
    return points, boxes


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation recipe; defaults are OpenPCDet's KITTI ones (second.yaml).

    OpenPCDet also lifts sampled objects onto the road plane (`USE_ROAD_PLANE`); road
    planes are not part of the prepared data, so objects keep their database height."""

    gt_sampling: bool = True
    sample_groups: dict[str, int] = field(default_factory=lambda: dict(KITTI_SAMPLE_GROUPS))
    min_points: dict[str, int] = field(default_factory=lambda: dict(KITTI_MIN_POINTS))
    remove_difficulty: tuple[int, ...] = (-1,)
    limit_whole_scene: bool = True
    flip_x: bool = True
    rotation: tuple[float, float] = (-0.78539816, 0.78539816)
    scaling: tuple[float, float] = (0.95, 1.05)

    def prepare(self, db: GTDatabase) -> GTDatabase:
        """The database filtered as the recipe says (do this once, not per frame)."""
        return db.filter(self.min_points, self.remove_difficulty)


def apply(frame: dict, db: GTDatabase | None, cfg: AugmentConfig,
          rng: np.random.Generator) -> dict:
    """The whole recipe in OpenPCDet's order: gt sampling (with a database already
    passed through `cfg.prepare`), flip, rotation, scaling. Returns a new frame."""
    out = dict(frame)
    out["points"] = np.asarray(frame["points"], np.float32)
    out["gt_boxes"] = np.asarray(frame["gt_boxes"], np.float64).reshape(-1, 7)
    if cfg.gt_sampling and db is not None and len(db):
        out = gt_sampling(out, db, cfg.sample_groups, rng, cfg.limit_whole_scene)
    points, boxes = out["points"], out["gt_boxes"]
    if cfg.flip_x:
        points, boxes = random_flip_x(points, boxes, rng)
    points, boxes = global_rotation(points, boxes, rng, cfg.rotation)
    points, boxes = global_scaling(points, boxes, rng, cfg.scaling)
    out["points"], out["gt_boxes"] = points, boxes
    return out


def mask_points_in_range(points: np.ndarray, pc_range: Sequence[float]) -> np.ndarray:
    """(N,) bool: x and y inside the range, bounds included (OpenPCDet
    `mask_points_by_range`; z is left to the voxelizer)."""
    r = np.asarray(pc_range, np.float64)
    p = np.asarray(points)
    return (p[:, 0] >= r[0]) & (p[:, 0] <= r[3]) & (p[:, 1] >= r[1]) & (p[:, 1] <= r[4])


def mask_boxes_outside_range(boxes: np.ndarray, pc_range: Sequence[float]) -> np.ndarray:
    """(M,) bool: the boxes to KEEP, those whose centre lies inside the range, bounds
    included (OpenPCDet `mask_boxes_outside_range_numpy` with its centre test)."""
    r = np.asarray(pc_range, np.float64)
    c = np.asarray(boxes, np.float64).reshape(-1, np.asarray(boxes).shape[-1])[:, :3]
    return ((c >= r[:3]) & (c <= r[3:6])).all(axis=1)
