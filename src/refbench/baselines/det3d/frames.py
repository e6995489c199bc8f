"""Dataset rows <-> detector frames, and detections -> the benchmarks' submission formats.

A frame is what the detectors consume: `points` (N, C) float32 in the LiDAR / vehicle frame,
`gt_boxes` (M, 7) (x, y, z centre, dx, dy, dz, heading), `gt_names`, plus the meta data
needed to write predictions back (`id`; KITTI `calib` and `image_shape`; Waymo
`context_name` and `timestamp`).

KITTI predictions are written the way OpenPCDet's `generate_prediction_dicts` does: LiDAR
boxes turned into camera boxes, the 2D box is the projection of the 3D corners clipped to
the image, `alpha = -arctan2(-y, x) + rotation_y`, truncation and occlusion 0. Waymo
predictions keep the vehicle-frame boxes and map class names to the official type ids.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError

#: Waymo's type ids by class name (the names recipes use; case-insensitive)
WAYMO_TYPES = {"vehicle": 1, "pedestrian": 2, "sign": 3, "cyclist": 4}


def dataset_kind(spec: Any) -> str:
    """'kitti' or 'waymo', from the benchmark's dataset."""
    name = spec.dataset.name
    if name not in ("kitti", "waymo"):
        raise RefbenchError(f"3D detectors run on KITTI or Waymo benchmarks, not {spec.key} "
                            f"(dataset {name})", key="benchmark")
    return name


def check_classes(classes: Sequence[str], kind: str) -> None:
    """Recipe classes must exist in the dataset's label vocabulary."""
    if not classes:
        raise RefbenchError("at least one class is needed", key="model.classes")
    if kind == "waymo":
        unknown = [c for c in classes if c.lower() not in WAYMO_TYPES]
    else:
        unknown = [c for c in classes if c not in ("Car", "Pedestrian", "Cyclist", "Van",
                                                   "Truck", "Person_sitting", "Tram", "Misc")]
    if unknown:
        raise RefbenchError(f"unknown {kind} class {unknown[0]!r}", key="model.classes")


def frame_from_row(row: Mapping[str, Any], kind: str, classes: Sequence[str],
                   num_features: int) -> dict[str, Any]:
    """One prepared dataset row -> a frame keeping only the recipe's classes."""
    points = np.asarray(row["points"], np.float32)
    if points.size == 0:
        points = np.zeros((0, num_features), np.float32)
    if points.ndim != 2 or points.shape[1] < num_features:
        raise RefbenchError(f"frame points have shape {points.shape}, the recipe uses "
                            f"{num_features} features per point", key="model.num_point_features")
    points = points[:, :num_features].copy()
    if kind == "kitti":
        names = np.asarray(row["name"], dtype=object).reshape(-1)
        boxes = np.asarray(row["boxes_lidar"], np.float32).reshape(-1, 7)
        keep = np.isin(names, list(classes))
        frame = {"id": row["id"], "calib": row["calib"],
                 "image_shape": tuple(int(v) for v in row["image_shape"])}
        difficulty = np.asarray(row["difficulty"], np.int32).reshape(-1)
    else:
        types = np.asarray(row["types"], np.int64).reshape(-1)
        wanted = {WAYMO_TYPES[c.lower()]: c for c in classes}
        names = np.array([wanted.get(int(t), "") for t in types], dtype=object)
        boxes = np.asarray(row["boxes"], np.float32).reshape(-1, 7)
        keep = names != ""
        frame = {"id": (row["context_name"], int(row["timestamp"])),
                 "context_name": row["context_name"], "timestamp": int(row["timestamp"])}
        difficulty = np.asarray(row["difficulty"], np.int32).reshape(-1)
        points[:, 3] = np.tanh(points[:, 3])  # OpenPCDet squashes Waymo intensity
    num_points = np.asarray(row["num_points"], np.int32).reshape(-1)
    frame.update(points=points, gt_boxes=boxes[keep], gt_names=names[keep].astype(str),
                 difficulty=difficulty[keep] if len(difficulty) == len(keep) else
                 np.zeros(int(keep.sum()), np.int32),
                 num_points=num_points[keep] if len(num_points) == len(keep) else
                 np.zeros(int(keep.sum()), np.int32))
    return frame


def kitti_prediction(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                     classes: Sequence[str], calib: Mapping[str, Any],
                     image_shape: tuple[int, int]) -> dict[str, Any]:
    """Detections (LiDAR boxes, scores, 1-based labels) -> label_2 fields with a score."""
    from refbench.baselines.det3d.boxes import limit_period
    from refbench.datasets.kitti_geometry import (
        Calibration,
        box_corners_lidar,
        boxes_lidar_to_camera,
        lidar_to_img,
    )

    cal = Calibration(np.asarray(calib["P2"], np.float64).reshape(3, 4),
                      np.asarray(calib["R0_rect"], np.float64).reshape(3, 3),
                      np.asarray(calib["Tr_velo_to_cam"], np.float64).reshape(3, 4))
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    n = len(boxes)
    loc, dims, ry = boxes_lidar_to_camera(boxes, cal)
    bbox = np.zeros((n, 4))
    if n:
        corners = box_corners_lidar(boxes).reshape(-1, 3)
        uv, _ = lidar_to_img(corners, cal)
        uv = uv.reshape(n, 8, 2)
        h, w = image_shape
        bbox = np.stack([uv[..., 0].min(1), uv[..., 1].min(1), uv[..., 0].max(1),
                         uv[..., 1].max(1)], axis=1)
        bbox[:, [0, 2]] = np.clip(bbox[:, [0, 2]], 0, w - 1)
        bbox[:, [1, 3]] = np.clip(bbox[:, [1, 3]], 0, h - 1)
    alpha = -np.arctan2(-boxes[:, 1], boxes[:, 0]) + ry
    # label_2 angles lie in [-pi, pi); the decoded headings may be a period away
    ry, alpha = limit_period(ry), limit_period(alpha)
    return {"name": [classes[int(k) - 1] for k in np.asarray(labels).reshape(-1)],
            "truncated": np.zeros(n), "occluded": np.zeros(n, np.int64), "alpha": alpha,
            "bbox": bbox, "dimensions": dims, "location": loc, "rotation_y": ry,
            "score": np.asarray(scores, np.float64).reshape(-1)}


def waymo_prediction(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                     classes: Sequence[str], context_name: str, timestamp: int) -> Any:
    """Detections -> a `BoxFrame` of the waymo_boxes format."""
    from refbench.evaluation.waymo import BoxFrame

    types = np.array([WAYMO_TYPES[classes[int(k) - 1].lower()]
                      for k in np.asarray(labels).reshape(-1)], np.int64)
    return BoxFrame(context_name, int(timestamp), np.asarray(boxes, np.float64).reshape(-1, 7),
                    types, np.asarray(scores, np.float64).reshape(-1))
