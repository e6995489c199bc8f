"""Dataset rows <-> detector frames, and detections -> the benchmarks' submission formats.

A frame is what the detectors consume: `points` (N, C) float32 in the LiDAR / vehicle frame,
`gt_boxes` (M, 7) (x, y, z centre, dx, dy, dz, heading), `gt_names`, plus the meta data
needed to write predictions back (`id`; KITTI `calib` and `image_shape`; Waymo
`context_name` and `timestamp`).

The detectors predict LiDAR boxes whatever the benchmark. What differs between 3D
benchmarks is how the prepared rows are laid out and how boxes are written, and both belong
to the submission format's family. So everything layout-specific lives in one *frame
convention* class per format (`KittiFrames`, `WaymoFrames`): the class vocabulary, the
point features the rows carry, row -> frame, and detections -> prediction. `convention_for`
picks it from the benchmark spec, by `task.type` and `submission.format`, never by the
dataset's name; a new 3D benchmark adds one convention class and one `CONVENTIONS` entry.

KITTI predictions are written the way OpenPCDet's `generate_prediction_dicts` does: LiDAR
boxes turned into camera boxes, the 2D box is the projection of the 3D corners clipped to
the image, `alpha = -arctan2(-y, x) + rotation_y`, truncation and occlusion 0. Waymo
predictions keep the vehicle-frame boxes and map class names to the official type ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from refbench.baselines.det3d.boxes import limit_period
from refbench.datasets.kitti.geometry import (
    Calibration,
    box_corners_lidar,
    boxes_lidar_to_camera,
    lidar_to_img,
)
from refbench.errors import RefbenchError
from refbench.evaluation.waymo import BoxFrame

if TYPE_CHECKING:  # pragma: no cover
    from refbench.benchmarks.spec import BenchmarkSpec

#: the task type the 3D detectors answer
TASK_TYPE = "3d-detection"

#: KITTI's label_2 object classes (DontCare excluded)
KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist", "Van", "Truck", "Person_sitting", "Tram", "Misc")

#: Waymo's type ids by class name (the names recipes use; case-insensitive)
WAYMO_TYPES = {"vehicle": 1, "pedestrian": 2, "sign": 3, "cyclist": 4}


# -- detections -> submission objects ------------------------------------------------------
def kitti_prediction(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                     classes: Sequence[str], calib: Mapping[str, Any],
                     image_shape: tuple[int, int]) -> dict[str, Any]:
    """Detections (LiDAR boxes, scores, 1-based labels) -> label_2 fields with a score."""
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
                     classes: Sequence[str], context_name: str, timestamp: int) -> BoxFrame:
    """Detections -> a `BoxFrame` of the waymo_boxes format."""
    types = np.array([WAYMO_TYPES[classes[int(k) - 1].lower()]
                      for k in np.asarray(labels).reshape(-1)], np.int64)
    return BoxFrame(context_name, int(timestamp), np.asarray(boxes, np.float64).reshape(-1, 7),
                    types, np.asarray(scores, np.float64).reshape(-1))


# -- frame conventions ---------------------------------------------------------------------
class FrameConvention(ABC):
    """How one submission format's benchmarks lay out rows and take predictions.

    Subclasses name the dataset in messages (`name`), list the frame keys a prediction
    needs (`meta_keys`) and implement the class vocabulary, the point-feature check, the
    row's labelled objects and detections -> prediction; the shared row -> frame steps
    (point slicing, per-object difficulty and point counts) live here.
    """

    #: the dataset as error messages name it
    name: ClassVar[str]
    #: frame keys carried from a batch to `prediction` (always including `id`)
    meta_keys: ClassVar[tuple[str, ...]]

    def check_classes(self, classes: Sequence[str]) -> None:
        """Recipe classes must exist in the dataset's label vocabulary."""
        if not classes:
            raise RefbenchError("at least one class is needed", key="model.classes")
        unknown = [c for c in classes if not self.knows_class(c)]
        if unknown:
            raise RefbenchError(f"unknown {self.name} class {unknown[0]!r}", key="model.classes")

    @abstractmethod
    def knows_class(self, name: str) -> bool:
        """Whether a recipe class name is in the dataset's label vocabulary."""

    @abstractmethod
    def check_point_features(self, num_features: int) -> None:
        """Reject a recipe's `num_point_features` the dataset's points cannot provide."""

    @abstractmethod
    def objects(self, row: Mapping[str, Any],
                classes: Sequence[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """One row's (meta data for the frame, (M,) object class names, (M, 7) LiDAR
        boxes); `frame_from_row` keeps the objects whose name is one of `classes`."""

    def lidar_points(self, points: np.ndarray) -> np.ndarray:
        """The recipe's point features as the detectors see them (here: unchanged)."""
        return points

    @abstractmethod
    def prediction(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   classes: Sequence[str], meta: Mapping[str, Any]) -> Any:
        """Detections of one frame (with its `meta_keys`) -> the format's prediction."""

    def frame_from_row(self, row: Mapping[str, Any], classes: Sequence[str],
                       num_features: int) -> dict[str, Any]:
        """One prepared dataset row -> a frame keeping only the recipe's classes."""
        points = np.asarray(row["points"], np.float32)
        if points.size == 0:
            points = np.zeros((0, num_features), np.float32)
        if points.ndim != 2 or points.shape[1] < num_features:
            raise RefbenchError(f"frame points have shape {points.shape}, the recipe uses "
                                f"{num_features} features per point",
                                key="model.num_point_features")
        points = self.lidar_points(points[:, :num_features].copy())
        frame, names, boxes = self.objects(row, classes)
        keep = np.isin(names, list(classes))
        difficulty = np.asarray(row["difficulty"], np.int32).reshape(-1)
        num_points = np.asarray(row["num_points"], np.int32).reshape(-1)
        frame.update(points=points, gt_boxes=boxes[keep], gt_names=names[keep].astype(str),
                     difficulty=difficulty[keep] if len(difficulty) == len(keep) else
                     np.zeros(int(keep.sum()), np.int32),
                     num_points=num_points[keep] if len(num_points) == len(keep) else
                     np.zeros(int(keep.sum()), np.int32))
        return frame


class KittiFrames(FrameConvention):
    """KITTI rows (`name`, `boxes_lidar`, `calib`, `image_shape`) -> label_2 folders."""

    name = "kitti"
    meta_keys = ("id", "calib", "image_shape")

    def knows_class(self, name: str) -> bool:
        return name in KITTI_CLASSES

    def check_point_features(self, num_features: int) -> None:
        if num_features != 4:
            raise RefbenchError("KITTI points have 4 features", key="model.num_point_features")

    def objects(self, row: Mapping[str, Any],
                classes: Sequence[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        names = np.asarray(row["name"], dtype=object).reshape(-1)
        boxes = np.asarray(row["boxes_lidar"], np.float32).reshape(-1, 7)
        meta = {"id": row["id"], "calib": row["calib"],
                "image_shape": tuple(int(v) for v in row["image_shape"])}
        return meta, names, boxes

    def prediction(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   classes: Sequence[str], meta: Mapping[str, Any]) -> dict[str, Any]:
        return kitti_prediction(boxes, scores, labels, classes, meta["calib"],
                                meta["image_shape"])


class WaymoFrames(FrameConvention):
    """Waymo rows (`types`, `boxes`, `context_name`, `timestamp`) -> `BoxFrame`s."""

    name = "waymo"
    meta_keys = ("id", "context_name", "timestamp")

    def knows_class(self, name: str) -> bool:
        return name.lower() in WAYMO_TYPES

    def check_point_features(self, num_features: int) -> None:
        if num_features not in (4, 5):
            raise RefbenchError("Waymo points have 5 features (x y z intensity elongation); "
                                "use 4 or 5", key="model.num_point_features")

    def objects(self, row: Mapping[str, Any],
                classes: Sequence[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        types = np.asarray(row["types"], np.int64).reshape(-1)
        wanted = {WAYMO_TYPES[c.lower()]: c for c in classes}
        names = np.array([wanted.get(int(t), "") for t in types], dtype=object)
        boxes = np.asarray(row["boxes"], np.float32).reshape(-1, 7)
        stamp = int(row["timestamp"])
        meta = {"id": (row["context_name"], stamp), "context_name": row["context_name"],
                "timestamp": stamp}
        return meta, names, boxes

    def lidar_points(self, points: np.ndarray) -> np.ndarray:
        points[:, 3] = np.tanh(points[:, 3])  # OpenPCDet squashes Waymo intensity
        return points

    def prediction(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   classes: Sequence[str], meta: Mapping[str, Any]) -> BoxFrame:
        return waymo_prediction(boxes, scores, labels, classes, meta["context_name"],
                                meta["timestamp"])


#: submission format name -> the frame convention of its benchmarks
CONVENTIONS: dict[str, FrameConvention] = {"kitti_label_dir": KittiFrames(),
                                           "waymo_boxes": WaymoFrames()}


def convention_for(spec: "BenchmarkSpec") -> FrameConvention:
    """The frame convention of a 3D detection benchmark, from its task and submission format."""
    if spec.task.type != TASK_TYPE:
        raise RefbenchError(f"3D detectors run on {TASK_TYPE} benchmarks, not {spec.key} "
                            f"(a {spec.task.type!r} task)", key="benchmark")
    convention = CONVENTIONS.get(spec.submission.format)
    if convention is None:
        raise RefbenchError(f"3D detectors write the submission formats "
                            f"{', '.join(sorted(CONVENTIONS))}, not {spec.key}'s "
                            f"{spec.submission.format!r}", key="benchmark")
    return convention
