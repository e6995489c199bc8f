"""The Waymo Open Dataset 3D detection metric (AP / APH, LEVEL_1 / LEVEL_2), in numpy.

Re-derived from the official C++ (`metrics_utils.cc`, `detection_metrics.cc`,
`breakdown_generator.cc`, `protos/metrics.proto`) with the configuration OpenPCDet and
the leaderboard use:

- ground truth: boxes with 0 lidar points are dropped; a box whose detection difficulty
  is 0 (unset) is LEVEL_2 when it holds <= 5 points, else LEVEL_1. Matching sees every
  ground truth box of the type; at LEVEL_k only an *unmatched* box of level <= k is a
  false negative (so LEVEL_2 includes LEVEL_1), while every matched prediction is a TP.
- matching: per frame, per breakdown shard and per score cut-off (0.00, 0.01 ... 0.99,
  1.0; a prediction is kept when score >= cut-off), Hungarian matching maximizing the
  summed IoU (quantized to round(IoU * 1e6), like `matcher.cc`) over the pairs whose IoU
  >= threshold (0.7 vehicle, 0.5 pedestrian, sign, cyclist). 3D IoU of upright boxes
  rotated around z: exact BEV polygon intersection times the z overlap (0 for a box
  dimension <= 1 cm). Assignments of equal total weight may be broken differently from
  the official solver (this can only move APH, never AP). Arithmetic is float64 where the
  official code uses float32, so values agree to ~1e-6.
- APH weights each TP by its heading accuracy `1 - min(|d|, 2pi - |d|) / pi`.
- PR curve: precision = TP / (TP + FP) (0 when there is none), recall = TP / (TP + FN),
  precision forced to 1 where recall is 0; AP is the area under the max-interpolated
  curve sampled with `desired_recall_delta` 0.05 (`ComputeMeanAveragePrecision`).
- breakdowns: OBJECT_TYPE, and RANGE by the 3D distance of each box's own centre
  (ground truth and predictions alike) to the origin: [0, 30), [30, 50), [50, inf) m.

Values are fractions in [0, 1], as the official tool prints them. Keys:
`{TYPE}/L{1|2}/{mAP|mAPH}` and `{TYPE}/L{1|2}/RANGE_{0_30|30_50|50_INF}/{mAP|mAPH}` with
TYPE in VEHICLE, PEDESTRIAN, SIGN, CYCLIST, plus `sampled_interval` (not a score: every
k-th frame of each segment, by timestamp, was scored; 1 = all frames). Counts (`counts()`,
in the result's `counts`): `{TYPE}/L{1|2}/gt_boxes`, the ground-truth boxes each AP's
recall is computed over, and `frames/scored`.

A frame is a mapping with `boxes` [N, 7] (cx, cy, cz, length, width, height, heading),
`types` [N] (1 vehicle, 2 pedestrian, 3 sign, 4 cyclist; 0 unknown is ignored), and
`scores` [N] for predictions or `num_points` [N] and `difficulty` [N] for references;
optional `context_name` and `timestamp` identify it (needed for `sampled_interval` > 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS

TYPE_NAMES: dict[int, str] = {1: "VEHICLE", 2: "PEDESTRIAN", 3: "SIGN", 4: "CYCLIST"}
IOU_THRESHOLDS: dict[int, float] = {1: 0.7, 2: 0.5, 3: 0.5, 4: 0.5}
SCORE_CUTOFFS: np.ndarray = np.array([i * 0.01 for i in range(100)] + [1.0], dtype=np.float32)
RANGES: tuple[tuple[str, float, float], ...] = (("0_30", 0.0, 30.0), ("30_50", 30.0, 50.0),
                                                ("50_INF", 50.0, math.inf))
DESIRED_RECALL_DELTA = 0.05
MIN_BOX_DIM, MAX_BOX_DIM = 1e-2, 1e6  # `iou.cc`: degenerate boxes have IoU 0
MAX_IOU = 1_000_000  # `kMaxIoU`: matching weights are round(IoU * kMaxIoU)
LEVELS = (1, 2)


@dataclass(eq=False)
class BoxFrame:
    """The boxes of one frame: a prediction (with `scores`) or a reference (with
    `num_points` and `difficulty`). Two frames are equal when they are the same frame with
    the same boxes and types (float32 tolerance) and agree on every field both carry:
    what a round trip through a prediction file must keep."""

    context_name: str
    timestamp: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    types: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scores: np.ndarray | None = None
    num_points: np.ndarray | None = None
    difficulty: np.ndarray | None = None

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoxFrame):
            return NotImplemented
        if (self.context_name, int(self.timestamp)) != (other.context_name, int(other.timestamp)):
            return False
        a, b = np.asarray(self.boxes, float), np.asarray(other.boxes, float)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-4):
            return False
        if not np.array_equal(np.asarray(self.types), np.asarray(other.types)):
            return False
        for name in ("scores", "num_points", "difficulty"):
            x, y = getattr(self, name), getattr(other, name)
            if x is not None and y is not None and not np.allclose(x, y, atol=1e-6):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


# -- geometry --------------------------------------------------------------------------
def bev_corners(box: np.ndarray) -> np.ndarray:
    """The 4 BEV corners (counter-clockwise) of one box (cx, cy, cz, l, w, h, heading)."""
    cx, cy, _, length, width, _, heading = (float(v) for v in box[:7])
    c, s = math.cos(heading), math.sin(heading)
    local = np.array([[length, width], [-length, width], [-length, -width], [length, -width]]) / 2
    local = local[[2, 3, 0, 1]]  # (-l,-w), (l,-w), (l,w), (-l,w): counter-clockwise
    rot = np.array([[c, -s], [s, c]])
    return local @ rot.T + np.array([cx, cy])


def _clip(subject: list[tuple[float, float]], a: np.ndarray, b: np.ndarray
          ) -> list[tuple[float, float]]:
    """Sutherland-Hodgman: the part of a polygon left of the directed edge a->b."""
    out: list[tuple[float, float]] = []
    ex, ey = b[0] - a[0], b[1] - a[1]

    def side(p: tuple[float, float]) -> float:
        return ex * (p[1] - a[1]) - ey * (p[0] - a[0])

    for i, cur in enumerate(subject):
        prev = subject[i - 1]
        s_cur, s_prev = side(cur), side(prev)
        if s_cur >= 0:
            if s_prev < 0:
                t = s_prev / (s_prev - s_cur)
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            out.append(cur)
        elif s_prev >= 0:
            t = s_prev / (s_prev - s_cur)
            out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
    return out


def convex_intersection_area(p: np.ndarray, q: np.ndarray) -> float:
    """Area of the intersection of two convex counter-clockwise polygons [K, 2]."""
    poly = [(float(x), float(y)) for x, y in p]
    for i in range(len(q)):
        if not poly:
            return 0.0
        poly = _clip(poly, q[i], q[(i + 1) % len(q)])
    if len(poly) < 3:
        return 0.0
    xs = np.array([v[0] for v in poly])
    ys = np.array([v[1] for v in poly])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def iou_3d(a: np.ndarray, b: np.ndarray) -> float:
    """3D IoU of two upright boxes rotated around z (0 for a dimension <= 1 cm or >= 1e6 m,
    or a union <= 1e-6, as `ComputeIoU3d`)."""
    dims = np.concatenate([a[3:6], b[3:6]])
    if dims.min() <= MIN_BOX_DIM or dims.max() >= MAX_BOX_DIM:
        return 0.0
    z_overlap = (min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
    if z_overlap < 0:
        return 0.0
    inter = convex_intersection_area(bev_corners(a), bev_corners(b)) * z_overlap
    union = a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter
    if union <= 1e-6:
        return 0.0
    return float(min(max(inter / union, 0.0), 1.0))


def iou_matrix(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """[P, G] 3D IoUs as float32 (the official matcher caches them as floats); pairs whose
    BEV circumcircles do not touch are skipped (IoU 0)."""
    out = np.zeros((len(preds), len(gts)), dtype=np.float32)
    if len(preds) == 0 or len(gts) == 0:
        return out
    radius_p = np.hypot(preds[:, 3], preds[:, 4]) / 2
    radius_g = np.hypot(gts[:, 3], gts[:, 4]) / 2
    dist = np.hypot(preds[:, None, 0] - gts[None, :, 0], preds[:, None, 1] - gts[None, :, 1])
    for i, j in zip(*np.nonzero(dist <= radius_p[:, None] + radius_g[None, :])):
        out[i, j] = iou_3d(preds[i], gts[j])
    return out


def heading_accuracy(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """`1 - min(|d|, 2pi - |d|) / pi` of headings normalized to [-pi, pi), clamped to [0, 1]."""
    def norm(x: np.ndarray) -> np.ndarray:
        return np.mod(x + np.pi, 2 * np.pi) - np.pi

    diff = np.abs(norm(np.asarray(pred, float)) - norm(np.asarray(gt, float)))
    diff = np.where(diff > np.pi, 2 * np.pi - diff, diff)
    return np.clip(1.0 - diff / np.pi, 0.0, 1.0)


def hungarian_match(iou: np.ndarray, threshold: float) -> np.ndarray:
    """pred index -> gt index (or -1): the assignment maximizing the summed IoU, quantized
    to integers `round(iou * 1e6)` as the official matcher does, over the pairs whose
    float32 IoU >= the float32 threshold (pairs below it cannot match)."""
    from scipy.optimize import linear_sum_assignment

    matches = np.full(iou.shape[0], -1, dtype=np.int64)
    if iou.size == 0:
        return matches
    iou = np.asarray(iou, dtype=np.float32)
    valid = iou >= np.float32(threshold)
    weights = np.where(valid, np.round(iou.astype(np.float64) * MAX_IOU), 0).astype(np.int64)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    keep = valid[rows, cols]
    matches[rows[keep]] = cols[keep]
    return matches


# -- PR curve -> AP ----------------------------------------------------------------------
def mean_average_precision(precisions: Sequence[float], recalls: Sequence[float],
                           max_recall_delta: float = DESIRED_RECALL_DELTA) -> float:
    """Area under the max-interpolated PR curve, as `ComputeMeanAveragePrecision`."""
    if len(precisions) == 0:
        return 0.0
    best: dict[float, float] = {0.0: 1.0}
    for p, r in zip(precisions, recalls):
        best[float(r)] = max(best.get(float(r), 0.0), float(p))
    curve: list[tuple[float, float]] = []  # (precision, recall), recall descending
    last_recall = min(best)
    max_precision = 0.0
    for recall in sorted(best, reverse=True):
        while last_recall - recall > max_recall_delta + 1e-6:
            last_recall -= max_recall_delta
            curve.append((max_precision, last_recall))
        max_precision = max(best[recall], max_precision)
        curve.append((max_precision, recall))
        last_recall = recall
    if len(curve) >= 2:  # the (1.0, recall 0) entry is fake: use the best real precision
        curve[-1] = (curve[-2][0], curve[-1][1])
    return float(sum(0.5 * (curve[i - 1][1] - curve[i][1]) * (curve[i - 1][0] + curve[i][0])
                     for i in range(1, len(curve))))


def pr_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, sum_ha: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precisions, APH-weighted precisions, recalls) per cut-off, float32 like the tool."""
    tp_fp = tp + fp
    tp_fn = tp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp_fp > 0, tp / np.maximum(tp_fp, 1), 0.0).astype(np.float32)
        prec_ha = np.where(tp_fp > 0, sum_ha / np.maximum(tp_fp, 1), 0.0).astype(np.float32)
        rec = np.where(tp_fn > 0, tp / np.maximum(tp_fn, 1), 0.0).astype(np.float32)
    prec = np.where(rec == 0, np.float32(1.0), prec)
    prec_ha = np.where(rec == 0, np.float32(1.0), prec_ha)
    return prec, prec_ha, rec


# -- per-frame measurement ---------------------------------------------------------------
def breakdown_names() -> list[str]:
    """Breakdown shard prefixes in state order: 4 object types, then 4 x 3 ranges."""
    names = [TYPE_NAMES[t] for t in TYPE_NAMES]
    names += [f"{TYPE_NAMES[t]}|RANGE_{r[0]}" for t in TYPE_NAMES for r in RANGES]
    return names


def _range_shard(boxes: np.ndarray) -> np.ndarray:
    dist = np.sqrt((boxes[:, :3].astype(np.float64) ** 2).sum(axis=1))
    return np.where(dist < 30.0, 0, np.where(dist < 50.0, 1, 2))


def _as_frame(frame: Mapping[str, Any] | None, is_gt: bool) -> dict[str, np.ndarray]:
    frame = frame or {}
    boxes = np.asarray(frame.get("boxes", np.zeros((0, 7))), dtype=np.float64).reshape(-1, 7)
    n = len(boxes)
    types = np.asarray(frame.get("types", np.zeros(0)), dtype=np.int64).reshape(-1)
    if len(types) != n:
        raise RefbenchError(f"a frame has {n} boxes but {len(types)} types")
    out = {"boxes": boxes, "types": types}
    if is_gt:
        points = np.asarray(frame.get("num_points", np.full(n, 6)), dtype=np.int64).reshape(-1)
        diff = np.asarray(frame.get("difficulty", np.zeros(n)), dtype=np.int64).reshape(-1)
        if len(points) != n or len(diff) != n:
            raise RefbenchError("a reference frame's num_points/difficulty do not match its boxes")
        keep = points > 0  # boxes without any lidar point are not evaluated
        level = np.where(diff[keep] == 0, np.where(points[keep] <= 5, 2, 1), diff[keep])
        out = {"boxes": boxes[keep], "types": types[keep], "level": level}
    else:
        scores = np.asarray(frame.get("scores", np.zeros(0)), dtype=np.float32).reshape(-1)
        if len(scores) != n:
            raise RefbenchError(f"a prediction frame has {n} boxes but {len(scores)} scores")
        out["scores"] = scores
    return out


def frame_measurements(pred: Mapping[str, Any] | None, gt: Mapping[str, Any] | None
                       ) -> np.ndarray:
    """[breakdowns, 2 levels, cut-offs, 4 (tp, fp, fn, sum_ha)] counts of one frame."""
    p, g = _as_frame(pred, False), _as_frame(gt, True)
    out = np.zeros((len(breakdown_names()), len(LEVELS), len(SCORE_CUTOFFS), 4))
    p_range, g_range = _range_shard(p["boxes"]), _range_shard(g["boxes"])
    for t_i, t in enumerate(TYPE_NAMES):
        p_t, g_t = p["types"] == t, g["types"] == t
        if not p_t.any() and not g_t.any():
            continue
        shards = [(t_i, p_t, g_t)]
        shards += [(len(TYPE_NAMES) + 3 * t_i + r, p_t & (p_range == r), g_t & (g_range == r))
                   for r in range(3)]
        for b, p_mask, g_mask in shards:
            _shard_counts(out[b], p["boxes"][p_mask], p["scores"][p_mask], g["boxes"][g_mask],
                          g["level"][g_mask], IOU_THRESHOLDS[t])
    return out


def _shard_counts(out: np.ndarray, pb: np.ndarray, ps: np.ndarray, gb: np.ndarray,
                  gl: np.ndarray, threshold: float) -> None:
    iou = iou_matrix(pb, gb)
    ha = heading_accuracy(pb[:, 6][:, None], gb[:, 6][None, :]) if iou.size else iou
    previous: tuple[int, ...] | None = None
    row: np.ndarray | None = None
    for c, cutoff in enumerate(SCORE_CUTOFFS):
        subset = np.nonzero(ps >= cutoff)[0]
        key = tuple(subset)
        if key != previous:  # the matching only changes when the kept predictions do
            matches = hungarian_match(iou[subset], threshold)
            matched = matches >= 0
            tp = int(matched.sum())
            fp = int((~matched).sum())
            sum_ha = float(ha[subset[matched], matches[matched]].sum()) if tp else 0.0
            gt_hit = np.zeros(len(gb), dtype=bool)
            gt_hit[matches[matched]] = True
            row = np.array([[tp, fp, int(((~gt_hit) & (gl <= level)).sum()), sum_ha]
                            for level in LEVELS], dtype=np.float64)
            previous = key
        out[:, c, :] = row


# -- the streaming metric ------------------------------------------------------------------
def _result_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for t in TYPE_NAMES.values():
        for level in LEVELS:
            for kind in ("mAP", "mAPH"):
                keys[f"{t}/L{level}/{kind}"] = f"{kind} of {t} at LEVEL_{level} (fraction)"
            for r, lo, hi in RANGES:
                for kind in ("mAP", "mAPH"):
                    keys[f"{t}/L{level}/RANGE_{r}/{kind}"] = (
                        f"{kind} of {t} at LEVEL_{level}, centre range [{lo}, {hi}) m")
    keys["sampled_interval"] = "every k-th frame of each segment was scored (1 = all)"
    return keys


@METRICS.register("waymo_3d", higher_is_better=True, version="1")
class Waymo3DMetric(Metric):
    """Waymo 3D detection AP/APH (see the module doc); `sampled_interval` scores every k-th
    frame of each segment (by timestamp), as OpenPCDet's default of 5 does."""

    keys: ClassVar[dict[str, str]] = _result_keys()
    directions: ClassVar[dict[str, bool | None]] = {"sampled_interval": None}

    def __init__(self, sampled_interval: int = 1, **args: Any) -> None:
        super().__init__(sampled_interval=sampled_interval, **args)
        if isinstance(sampled_interval, bool) or not isinstance(sampled_interval, int) \
                or sampled_interval < 1:
            raise RefbenchError(f"sampled_interval must be an integer >= 1, got "
                                f"{sampled_interval!r}", key="sampled_interval")
        self.sampled_interval = sampled_interval
        #: (context_name, timestamp) -> (prediction frame, reference frame)
        self.frames: dict[tuple[str, int], tuple[Any, Any]] = {}

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} prediction frames but {len(references)} "
                                f"reference frames")
        for pred, ref in zip(predictions, references):
            key = _frame_key(ref, len(self.frames))
            if key in self.frames:
                raise RefbenchError(f"frame {key[0]}@{key[1]} was added twice")
            self.frames[key] = (pred, ref)

    def merge(self, other: Metric) -> None:
        if not isinstance(other, Waymo3DMetric):
            raise TypeError(f"cannot merge {type(other).__name__} into Waymo3DMetric")
        for key, value in other.frames.items():
            if key in self.frames:
                raise RefbenchError(f"frame {key[0]}@{key[1]} was added twice")
            self.frames[key] = value

    def selected_frames(self) -> list[tuple[str, int]]:
        """Every `sampled_interval`-th frame of each segment, in timestamp order."""
        by_segment: dict[str, list[int]] = {}
        for context, stamp in self.frames:
            by_segment.setdefault(context, []).append(stamp)
        return [(context, stamp) for context in sorted(by_segment)
                for stamp in sorted(by_segment[context])[::self.sampled_interval]]

    def measurements(self) -> np.ndarray:
        total = np.zeros((len(breakdown_names()), len(LEVELS), len(SCORE_CUTOFFS), 4))
        for key in self.selected_frames():
            total += frame_measurements(*self.frames[key])
        return total

    def compute(self) -> dict[str, float]:
        counts = self.measurements()
        out: dict[str, float] = {}
        names = breakdown_names()
        for t in TYPE_NAMES.values():
            for l_i, level in enumerate(LEVELS):
                for suffix in [""] + [f"|RANGE_{r[0]}" for r in RANGES]:
                    m = counts[names.index(t + suffix), l_i]
                    prec, prec_ha, rec = pr_from_counts(m[:, 0], m[:, 1], m[:, 2], m[:, 3])
                    prefix = f"{t}/L{level}" + suffix.replace("|", "/")
                    out[f"{prefix}/mAP"] = mean_average_precision(prec, rec)
                    out[f"{prefix}/mAPH"] = mean_average_precision(prec_ha, rec)
        out["sampled_interval"] = float(self.sampled_interval)
        return {k: out[k] for k in self.keys}

    def counts(self) -> dict[str, int]:
        """The ground truth the values were computed over: `{TYPE}/L{1|2}/gt_boxes`, the
        boxes of the scored frames that can be missed at that level (lidar points > 0,
        level <= k, so L2 includes L1), and `frames/scored` (after `sampled_interval`)."""
        selected = self.selected_frames()
        out = {f"{name}/L{level}/gt_boxes": 0 for name in TYPE_NAMES.values() for level in LEVELS}
        for key in selected:
            gt = _as_frame(self.frames[key][1], True)
            for t, name in TYPE_NAMES.items():
                of_type = gt["types"] == t
                for level in LEVELS:
                    at_level = of_type & (gt["level"] <= level)
                    out[f"{name}/L{level}/gt_boxes"] += int(np.sum(at_level))
        out["frames/scored"] = len(selected)
        return out


def _frame_key(ref: Any, counter: int) -> tuple[str, int]:
    """(context_name, timestamp) of a reference frame; a running number when absent."""
    get = ref.get if isinstance(ref, Mapping) else (lambda k, d=None: getattr(ref, k, d))
    context = get("context_name", None)
    stamp = get("timestamp", None)
    if context is None or stamp is None:
        return ("", counter)
    return (str(context), int(stamp))
