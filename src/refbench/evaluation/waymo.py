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
  dimension <= 1 cm). Arithmetic is float64 where the official code uses float32, so
  values agree to ~1e-6.
- heading rule (`min_heading_accuracy`, the config field of that name, default -1 = off):
  a match whose heading accuracy is at or below the limit (both float32, computed as the
  op does: `official_heading_accuracy`) is neither a true nor a false positive, and its
  ground truth box is not a false negative either; the rule is applied after matching
  (a dropped match does not free its box for another prediction), at each cut-off.
- APH weights each TP by its heading accuracy `1 - min(|d|, 2pi - |d|) / pi`.
- PR curve: precision = TP / (TP + FP) (0 when there is none), recall = TP / (TP + FN),
  precision forced to 1 where recall is 0; AP is the area under the max-interpolated
  curve sampled with `desired_recall_delta` 0.05 (`ComputeMeanAveragePrecision`).
- breakdowns: OBJECT_TYPE, and RANGE by the 3D distance of each box's own centre
  (ground truth and predictions alike) to the origin: [0, 30), [30, 50), [50, inf) m.

How it is computed (fast, and still exact): frames are processed in chunks of about
`CHUNK_PAIRS` same-type box pairs with whole-array numpy (bounded memory); IoUs only for
the pairs of a frame and type whose BEV circumcircles touch. A maximum-weight matching
decomposes over the connected components of the graph of above-threshold pairs, so a
lone pair is matched at exactly the cut-offs that keep its prediction, a component with
one box or one prediction takes its heaviest kept pair, and only the rest run the
Hungarian solver (`assign_max`, scipy's algorithm), once per distinct set of kept
predictions. Among equal-weight assignments the earlier prediction / box wins, as in the
official op on every tie probed. No numba: numpy alone is faster than the op.

Version 2 (benchmark `waymo-3d@2`): equal-weight assignments are broken as the official op
breaks them; version 1 could pick the other prediction of an exact tie, moving APH (never
AP) by up to 6e-3 in such cases. Every other value is unchanged.

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
from dataclasses import dataclass, field, fields
from itertools import pairwise
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
MIN_HEADING_ACCURACY = -1.0  # `metrics.proto` default: no match is dropped
#: candidate pairs (same frame and type) evaluated at once: bounds the working memory
CHUNK_PAIRS = 400_000
_N_CUT = len(SCORE_CUTOFFS)
_N_SHARDS = len(TYPE_NAMES) * (1 + len(RANGES))
_THRESHOLD32 = np.array([0.0] + [IOU_THRESHOLDS[t] for t in TYPE_NAMES], np.float32)
_PRINT_DEFAULTS = {"edgeitems": 3, "threshold": 1000, "floatmode": "maxprec", "precision": 8,
                   "suppress": False, "linewidth": 75, "nanstr": "nan", "infstr": "inf",
                   "sign": "-", "formatter": None, "legacy": False, "override_repr": None}


@dataclass(eq=False, repr=False)
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

    def __repr__(self) -> str:
        """The dataclass repr, character for character (the label-set hash of a result is
        taken over it), with the arrays printed by `fast_array_repr`."""
        fast = np.get_printoptions() == _PRINT_DEFAULTS
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            text = _array_repr(value) if fast and isinstance(value, np.ndarray) \
                else repr(value)
            parts.append(f"{item.name}={text}")
        return f"{type(self).__qualname__}({', '.join(parts)})"

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


# -- repr -------------------------------------------------------------------------------
def _array_words(arr: np.ndarray) -> list[str] | None:
    """numpy's element strings of a small 1-D/2-D int or float64 array under the default
    print options (all of equal width), or None where this fast path does not apply."""
    if type(arr) is not np.ndarray or arr.ndim not in (1, 2) or not 0 < arr.size <= 1000 \
            or not arr.dtype.isnative:
        return None
    values = arr.ravel().tolist()
    if arr.dtype.kind in "iu":
        spec = f"%{max(len(str(max(values))), len(str(min(values))))}d"
        return [spec % v for v in values]
    if arr.dtype != np.float64 or not np.isfinite(arr).all():
        return None
    magnitudes = np.abs(arr[arr != 0])
    big, small = (magnitudes.max(), magnitudes.min()) if len(magnitudes) else (0.0, 1.0)
    if big >= 1e8 or small < 1e-4 or big / small > 1000.0:
        if big >= 1e100 or small < 1e-99:  # three exponent digits: numpy pads them
            return None
        spec = "% .8e" if np.signbit(arr).any() else "%.8e"  # a space pads like a '-'
        texts = [spec % v for v in values]  # numpy's digits, as many as the most needed
        if any(t[-5] != "0" for t in texts):  # some value needs all 8: no trimming
            return texts
        mantissas, exponents = zip(*(t.split("e") for t in texts))
        ints, fracs = zip(*(m.split(".") for m in mantissas))
        digits = max(len(f.rstrip("0")) for f in fracs)
        if digits == 0:
            return None
        return [f"{i}.{f[:digits]}e{e}" for i, f, e in zip(ints, fracs, exponents)]
    texts = ["%.8f" % v for v in values]  # noqa: UP031 (the fastest float formatting)
    if all(t[-1] != "0" for t in texts):  # nothing to trim: equal fractions, pad the left
        width = max(map(len, texts))
        return texts if min(map(len, texts)) == width else [t.rjust(width) for t in texts]
    ints, fracs = zip(*(t.rstrip("0").split(".") for t in texts))
    left, right = max(len(i) for i in ints), max(len(f) for f in fracs)
    return [f"{i.rjust(left)}.{f.ljust(right)}" for i, f in zip(ints, fracs)]


def _row_template(count: int, width: int, indent: int, limit: int) -> str:
    """A `str.format` template of one bracket-less row of `count` words of `width`
    characters, wrapped as numpy's `_formatArray` wraps them (`limit`: the last column a
    word may reach, `indent`: the continuation lines' indent)."""
    per_line = max(1, (limit - indent - width) // (width + 2) + 1)
    breaks = [", " if (j + 1) % per_line else ",\n" + " " * indent for j in range(count - 1)]
    return "".join("{}" + b for b in breaks) + "{}"


def fast_array_repr(arr: np.ndarray) -> str:
    """`repr(arr)`, character for character, several times faster for the small int and
    float64 arrays of a frame (numpy's own repr for anything else, or under non-default
    print options)."""
    return _array_repr(arr) if np.get_printoptions() == _PRINT_DEFAULTS else repr(arr)


def _array_repr(arr: np.ndarray) -> str:
    """`fast_array_repr` under numpy's default print options."""
    words = _array_words(arr)
    if words is None:
        return repr(arr)
    if arr.ndim == 1:
        body = "[" + _row_template(len(words), len(words[0]), 7, 73).format(*words) + "]"
    else:
        row = _row_template(arr.shape[1], len(words[0]), 8, 72)
        body = ("[[" + "],\n       [".join([row] * arr.shape[0]) + "]]").format(*words)
    if arr.dtype in (np.dtype(np.float64), np.dtype(np.int_)):
        return f"array({body})"
    text = f"array({body},"
    extra = f"dtype={arr.dtype.name})"
    last = len(text) - (text.rfind("\n") + 1)
    return text + ("\n      " if last + len(extra) + 1 > 75 else " ") + extra


# -- geometry ----------------------------------------------------------------------------
def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """The 4 BEV corners (counter-clockwise) of boxes [..., 7] (cx, cy, cz, l, w, h,
    heading) -> [..., 4, 2]."""
    boxes = np.asarray(boxes, np.float64)
    half_l, half_w = boxes[..., 3:4] / 2, boxes[..., 4:5] / 2
    local_x = np.concatenate([-half_l, half_l, half_l, -half_l], axis=-1)
    local_y = np.concatenate([-half_w, -half_w, half_w, half_w], axis=-1)
    cos, sin = np.cos(boxes[..., 6:7]), np.sin(boxes[..., 6:7])
    x = local_x * cos + local_y * -sin + boxes[..., 0:1]
    y = local_x * sin + local_y * cos + boxes[..., 1:2]
    return np.stack([x, y], axis=-1)


def _clip_polygons(poly: np.ndarray, count: np.ndarray, a: np.ndarray, b: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sutherland-Hodgman for many polygons at once: the part of each polygon [N, M, 2]
    (first `count` vertices valid) left of its directed edge a->b [N, 2]."""
    n, m = poly.shape[:2]
    idx = np.arange(m)
    valid = idx < count[:, None]
    prev_idx = (idx - 1) % np.maximum(count, 1)[:, None]
    ex, ey = (b[:, 0] - a[:, 0])[:, None], (b[:, 1] - a[:, 1])[:, None]
    side = ex * (poly[..., 1] - a[:, 1:2]) - ey * (poly[..., 0] - a[:, 0:1])
    side_prev = np.take_along_axis(side, prev_idx, axis=1)
    prev = np.take_along_axis(poly, prev_idx[..., None], axis=1)
    inside, inside_prev = side >= 0, side_prev >= 0
    cross = valid & (inside != inside_prev)
    with np.errstate(divide="ignore", invalid="ignore"):  # used only where it crosses
        t = (side_prev / (side_prev - side))[..., None]
        crossing = prev + t * (poly - prev)
    out = np.stack([crossing, poly], axis=2).reshape(n, 2 * m, 2)
    keep = np.stack([cross, valid & inside], axis=2).reshape(n, 2 * m)
    new_count = keep.sum(axis=1)
    width = max(int(new_count.max(initial=0)), 1)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    clipped = np.take_along_axis(out, order[..., None], axis=1)
    clipped[np.arange(width) >= new_count[:, None]] = 0.0
    return clipped, new_count


def convex_intersection_area(p: np.ndarray, q: np.ndarray) -> np.ndarray | float:
    """Area of the intersection of convex counter-clockwise polygons: p [..., K, 2] clipped
    by q [..., 4, 2] (one pair -> float)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    single = p.ndim == 2
    p, q = p.reshape(-1, *p.shape[-2:]), q.reshape(-1, *q.shape[-2:])
    poly, count = p.copy(), np.full(len(p), p.shape[1])
    for i in range(q.shape[1]):
        poly, count = _clip_polygons(poly, count, q[:, i], q[:, (i + 1) % q.shape[1]])
    nxt = (np.arange(poly.shape[1]) + 1) % np.maximum(count, 1)[:, None]
    valid = np.arange(poly.shape[1]) < count[:, None]
    xs, ys = poly[..., 0], poly[..., 1]
    cross = np.where(valid, xs * np.take_along_axis(ys, nxt, 1)
                     - ys * np.take_along_axis(xs, nxt, 1), 0.0)
    area = np.where(count >= 3, np.abs(cross.sum(axis=1)) / 2, 0.0)
    return float(area[0]) if single else area


def iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3D IoU of box pairs a[i], b[i] ([N, 7] each; upright, rotated around z) as float64:
    0 for a dimension <= 1 cm or >= 1e6 m, or a union <= 1e-6, as `ComputeIoU3d`."""
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    out = np.zeros(len(a))
    dims = np.concatenate([a[:, 3:6], b[:, 3:6]], axis=1)
    z_overlap = (np.minimum(a[:, 2] + a[:, 5] / 2, b[:, 2] + b[:, 5] / 2)
                 - np.maximum(a[:, 2] - a[:, 5] / 2, b[:, 2] - b[:, 5] / 2))
    ok = (dims.min(axis=1, initial=np.inf) > MIN_BOX_DIM) \
        & (dims.max(axis=1, initial=0.0) < MAX_BOX_DIM) & (z_overlap >= 0)
    if not ok.any():
        return out
    a, b, z_overlap = a[ok], b[ok], z_overlap[ok]
    inter = convex_intersection_area(bev_corners(a), bev_corners(b)) * z_overlap
    union = a[:, 3] * a[:, 4] * a[:, 5] + b[:, 3] * b[:, 4] * b[:, 5] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out[ok] = np.where(union > 1e-6, np.clip(inter / union, 0.0, 1.0), 0.0)
    return out


def iou_3d(a: np.ndarray, b: np.ndarray) -> float:
    """3D IoU of two upright boxes rotated around z (see `iou_pairs`)."""
    return float(iou_pairs(np.asarray(a)[None, :7], np.asarray(b)[None, :7])[0])


def _touching(preds: np.ndarray, gts: np.ndarray, pi: np.ndarray, gi: np.ndarray
              ) -> np.ndarray:
    """Whether the BEV circumcircles of the pairs (preds[pi], gts[gi]) touch (others
    cannot intersect)."""
    dist = np.hypot(preds[pi, 0] - gts[gi, 0], preds[pi, 1] - gts[gi, 1])
    radius_p = np.hypot(preds[:, 3], preds[:, 4]) / 2
    radius_g = np.hypot(gts[:, 3], gts[:, 4]) / 2
    return dist <= radius_p[pi] + radius_g[gi]


def iou_matrix(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """[P, G] 3D IoUs as float32 (the official matcher caches them as floats); pairs whose
    BEV circumcircles do not touch are skipped (IoU 0)."""
    preds = np.asarray(preds, np.float64).reshape(-1, 7)
    gts = np.asarray(gts, np.float64).reshape(-1, 7)
    out = np.zeros((len(preds), len(gts)), dtype=np.float32)
    pi, gi = (g.ravel() for g in np.meshgrid(np.arange(len(preds)), np.arange(len(gts)),
                                              indexing="ij"))
    near = _touching(preds, gts, pi, gi)
    out[pi[near], gi[near]] = iou_pairs(preds[pi[near]], gts[gi[near]])
    return out


def heading_accuracy(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """`1 - min(|d|, 2pi - |d|) / pi` of headings normalized to [-pi, pi), clamped to [0, 1]."""
    def norm(x: np.ndarray) -> np.ndarray:
        return np.mod(x + np.pi, 2 * np.pi) - np.pi

    diff = np.abs(norm(np.asarray(pred, float)) - norm(np.asarray(gt, float)))
    diff = np.where(diff > np.pi, 2 * np.pi - diff, diff)
    return np.clip(1.0 - diff / np.pi, 0.0, 1.0)


def official_heading_accuracy(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The heading accuracy as the official op computes it for its `min_heading_accuracy`
    rule, float32: headings normalized in float64 then rounded to float32, their float32
    difference wrapped to [0, pi], `1 - d / pi` clamped and rounded to float32 (found by
    probing the op: bit-identical on every pair tried)."""
    def norm(x: np.ndarray) -> np.ndarray:
        return (np.mod(np.asarray(x, np.float64) + np.pi, 2 * np.pi) - np.pi).astype(np.float32)

    diff = np.abs(norm(pred) - norm(gt)).astype(np.float64)
    diff = np.where(diff > np.pi, 2 * np.pi - diff, diff).astype(np.float32).astype(np.float64)
    return np.clip(1.0 - diff / np.pi, 0.0, 1.0).astype(np.float32)


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


# -- per-frame arrays ----------------------------------------------------------------------
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


@dataclass
class FrameBoxes:
    """The boxes of many frames, concatenated: `frame` [N] numbers each box's frame (0..);
    `value` is the score (predictions) or the level (references). Only boxes of a known
    type (1-4) are kept, each frame's boxes in their original order."""

    frames: int
    boxes: np.ndarray
    types: np.ndarray
    frame: np.ndarray
    value: np.ndarray

    @classmethod
    def gather(cls, frames: Sequence[Mapping[str, Any] | None], is_gt: bool) -> "FrameBoxes":
        """Validate (`_as_frame`) and concatenate frames; references lose their 0-point
        boxes and carry their level."""
        parts = [_as_frame(f, is_gt) for f in frames]
        key = "level" if is_gt else "scores"
        sizes = np.array([len(p["types"]) for p in parts], dtype=np.int64)
        cat = (lambda name, shape, dtype: np.concatenate([p[name] for p in parts])
               if parts else np.zeros(shape, dtype))
        out = cls(len(parts), cat("boxes", (0, 7), np.float64), cat("types", 0, np.int64),
                  np.repeat(np.arange(len(parts)), sizes),
                  cat(key, 0, np.int64 if is_gt else np.float32))
        known = (out.types >= 1) & (out.types <= len(TYPE_NAMES))
        if not known.all():
            out = cls(out.frames, out.boxes[known], out.types[known], out.frame[known],
                      out.value[known])
        return out

    def take(self, first: int, last: int) -> "FrameBoxes":
        """The boxes of frames first..last-1 (renumbered from 0)."""
        lo, hi = np.searchsorted(self.frame, [first, last])
        return FrameBoxes(last - first, self.boxes[lo:hi], self.types[lo:hi],
                          self.frame[lo:hi] - first, self.value[lo:hi])


# -- matching and counting ---------------------------------------------------------------
def _candidate_pairs(p: FrameBoxes, g: FrameBoxes) -> tuple[np.ndarray, np.ndarray]:
    """(pred index, gt index) of every pair of the same frame and type whose BEV
    circumcircles touch, predictions in order."""
    p_key, g_key = p.frame * 8 + p.types, g.frame * 8 + g.types
    g_order = np.argsort(g_key, kind="stable")
    g_sorted = g_key[g_order]
    start = np.searchsorted(g_sorted, p_key, side="left")
    count = np.searchsorted(g_sorted, p_key, side="right") - start
    total = int(count.sum())
    pi = np.repeat(np.arange(len(p_key)), count)
    offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    gi = g_order[np.repeat(start, count) + offset]
    near = _touching(p.boxes, g.boxes, pi, gi)
    return pi[near], gi[near]


def _kept_until(scores: np.ndarray) -> np.ndarray:
    """Per prediction, the number of cut-offs that keep it (score >= cut-off): it is kept
    exactly at cut-off indices below this."""
    k = np.searchsorted(SCORE_CUTOFFS, scores.astype(np.float32), side="right")
    return np.where(np.isnan(scores), 0, k)


def component_matches(edges: list[int], pred: list[int], gt: list[int], weight: list[float],
                      until: list[int]) -> list[tuple[int, int, int]]:
    """The matches of one connected component of above-threshold pairs (`edges` index the
    per-pair lists `pred`, `gt`, integer `weight`; `until[p]`: cut-offs keeping prediction
    p) at every cut-off: (edge, first cut-off, end cut-off) per match and run of cut-offs
    with the same kept predictions. One box or one prediction: the heaviest pair, ties to
    the earlier index, which is what the Hungarian solver returns there; otherwise the
    solver (`assign_max`), once per distinct kept set."""
    preds = sorted({pred[e] for e in edges})
    gts = sorted({gt[e] for e in edges})
    if len(preds) == 1:  # one prediction, several boxes: kept from cut-off 0
        best = min(edges, key=lambda e: (-weight[e], gt[e]))
        return [(best, 0, until[preds[0]])] if until[preds[0]] > 0 else []
    out: list[tuple[int, int, int]] = []
    lo = 0
    if len(gts) == 1:  # one box: the heaviest kept prediction
        ranked = sorted(edges, key=lambda e: (-weight[e], pred[e]))
        for hi in sorted({until[p] for p in preds}):
            if hi > lo:
                out.append((next(e for e in ranked if until[pred[e]] >= hi), lo, hi))
            lo = hi
        return out
    row_of = {p: i for i, p in enumerate(preds)}
    col_of = {g: j for j, g in enumerate(gts)}
    w = [[0.0] * len(gts) for _ in preds]
    edge_of = [[-1] * len(gts) for _ in preds]
    for e in edges:
        w[row_of[pred[e]]][col_of[gt[e]]] = weight[e]
        edge_of[row_of[pred[e]]][col_of[gt[e]]] = e
    for hi in sorted({until[p] for p in preds}):
        if hi > lo:
            rows = [i for i, p in enumerate(preds) if until[p] >= hi]
            for r, c in assign_max([w[i] for i in rows]):
                if edge_of[rows[r]][c] >= 0:
                    out.append((edge_of[rows[r]][c], lo, hi))
        lo = hi
    return out


def assign_max(weights: list[list[float]]) -> list[tuple[int, int]]:
    """(row, col) pairs of `scipy.optimize.linear_sum_assignment(weights, maximize=True)`,
    same algorithm (Crouse's shortest augmenting path) and so the same choice among
    equal-weight assignments, in plain Python for the few small matrices of a component
    (the Waymo op breaks such ties the same way where probed)."""
    nr, nc = len(weights), len(weights[0])
    transpose = nc < nr  # scipy solves the transposed problem of a tall matrix
    if transpose:
        cost = [[-weights[i][j] for i in range(nr)] for j in range(nc)]
        nr, nc = nc, nr
    else:
        cost = [[-x for x in row] for row in weights]
    u, v = [0.0] * nr, [0.0] * nc
    col4row, row4col, path = [-1] * nr, [-1] * nc, [-1] * nc
    for cur in range(nr):
        min_val, remaining, left = 0.0, list(range(nc - 1, -1, -1)), nc
        seen_r, seen_c, short = [False] * nr, [False] * nc, [math.inf] * nc
        sink, i = -1, cur
        while sink == -1:
            index, lowest = -1, math.inf
            seen_r[i] = True
            for it in range(left):
                j = remaining[it]
                r = min_val + cost[i][j] - u[i] - v[j]
                if r < short[j]:
                    path[j], short[j] = i, r
                if short[j] < lowest or (short[j] == lowest and row4col[j] == -1):
                    lowest, index = short[j], it
            min_val = lowest
            j = remaining[index]
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
            seen_c[j] = True
            left -= 1
            remaining[index] = remaining[left]
        u[cur] += min_val
        for i in range(nr):
            if seen_r[i] and i != cur:
                u[i] += min_val - short[col4row[i]]
        for j in range(nc):
            if seen_c[j]:
                v[j] -= min_val - short[j]
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == cur:
                break
    if transpose:
        return sorted((col4row[k], k) for k in range(nr))
    return [(i, col4row[i]) for i in range(nr)]


def component_labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A connected-component label per edge (a[i], b[i]) of an undirected graph: the
    smallest node index of its component (min-label propagation with pointer jumping)."""
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    u, v = inverse[:len(a)], inverse[len(a):]
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[u], label[v])
        new = label.copy()
        np.minimum.at(new, u, low)
        np.minimum.at(new, v, low)
        new = new[new]
        if np.array_equal(new, label):
            return label[u]
        label = new


def chunk_measurements(p: FrameBoxes, g: FrameBoxes, min_heading_accuracy: float
                       ) -> np.ndarray:
    """[breakdowns, 2 levels, cut-offs, 4 (tp, fp, fn, sum_ha)] counts summed over the
    frames of `p` and `g` (the same frames, numbered alike)."""
    n_p, n_g = len(p.types), len(g.types)
    kept_until = _kept_until(p.value)
    p_range, g_range = _range_shard(p.boxes), _range_shard(g.boxes)
    p_shard = (p.types - 1, len(TYPE_NAMES) + 3 * (p.types - 1) + p_range)
    g_shard = (g.types - 1, len(TYPE_NAMES) + 3 * (g.types - 1) + g_range)

    pi, gi = _candidate_pairs(p, g)
    iou = iou_pairs(p.boxes[pi], g.boxes[gi]).astype(np.float32)
    valid = iou >= _THRESHOLD32[p.types[pi]]
    vp, vg, iou = pi[valid], gi[valid], iou[valid]
    weight = np.round(iou.astype(np.float64) * MAX_IOU)
    ha = heading_accuracy(p.boxes[vp, 6], g.boxes[vg, 6])
    good = ~(official_heading_accuracy(p.boxes[vp, 6], g.boxes[vg, 6])
             <= np.float32(min_heading_accuracy))

    simple: list[np.ndarray] = []
    hard: list[np.ndarray] = []
    for view in (0, 1):  # 0: the type shard, 1: the range shard (same range only)
        e = np.arange(len(vp)) if view == 0 else np.nonzero(p_range[vp] == g_range[vg])[0]
        deg_p = np.bincount(vp[e], minlength=n_p)
        deg_g = np.bincount(vg[e], minlength=n_g)
        lone = (deg_p[vp[e]] == 1) & (deg_g[vg[e]] == 1)
        simple.append(np.stack([e[lone], np.full(int(lone.sum()), view)]))
        hard.append(np.stack([e[~lone], np.full(int((~lone).sum()), view)]))
    e, view = np.concatenate(simple, axis=1)
    shards = np.where(view == 0, p_shard[0][vp[e]], p_shard[1][vp[e]])

    hard_edge, hard_view = np.concatenate(hard, axis=1)
    found: list[tuple[int, int, int]] = []  # (index into hard_edge, lo, hi)
    if len(hard_edge):  # the components with a choice
        offset = hard_view * (n_p + n_g)
        label = component_labels(offset + vp[hard_edge], offset + n_p + vg[hard_edge])
        order = np.argsort(label, kind="stable")
        lists = (vp[hard_edge].tolist(), vg[hard_edge].tolist(), weight[hard_edge].tolist(),
                 kept_until.tolist())
        for group in np.split(order, np.flatnonzero(np.diff(label[order])) + 1):
            found += component_matches(group.tolist(), *lists)
    h, lo, hi = (np.array(x, np.int64).reshape(-1) for x in zip(*found)) if found \
        else (np.zeros(0, np.int64),) * 3
    he, hv = hard_edge[h], hard_view[h]
    h_shard = np.where(hv == 0, p_shard[0][vp[he]], p_shard[1][vp[he]])
    return _accumulate(p_shard, kept_until, g_shard, g.value,
                       (shards, kept_until[vp[e]], g.value[vg[e]], ha[e], good[e]),
                       (h_shard, lo, hi, g.value[vg[he]], ha[he], good[he]))


def _accumulate(p_shard: tuple[np.ndarray, np.ndarray], kept_until: np.ndarray,
                g_shard: tuple[np.ndarray, np.ndarray], g_level: np.ndarray,
                simple: tuple[np.ndarray, ...], events: tuple[np.ndarray, ...]
                ) -> np.ndarray:
    """Counts per shard, level and cut-off from the kept predictions, the ground truth and
    the matched pairs (simple ones held from cut-off 0, component ones over [lo, hi))."""
    n_cut, n_shard = _N_CUT, _N_SHARDS

    def below(shard: np.ndarray, until: np.ndarray, weights: np.ndarray | None = None
              ) -> np.ndarray:
        """Per shard and cut-off c, the sum of `weights` of the items with until > c."""
        bins = np.bincount(shard * (n_cut + 1) + until, weights,
                           minlength=n_shard * (n_cut + 1)).reshape(n_shard, n_cut + 1)
        return np.cumsum(bins[:, :0:-1], axis=1)[:, ::-1]

    def spans(shard: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              weights: np.ndarray | None = None) -> np.ndarray:
        """Per shard and cut-off c, the sum of `weights` of the items with lo <= c < hi."""
        length = hi - lo
        cell = np.repeat(shard * n_cut + lo - np.cumsum(length) + length, length) \
            + np.arange(int(length.sum()))
        w = None if weights is None else np.repeat(weights, length)
        return np.bincount(cell, w, minlength=n_shard * n_cut).reshape(n_shard, n_cut)

    kept = sum(below(s, kept_until) for s in p_shard)
    s_shard, s_until, s_level, s_ha, s_good = simple
    e_shard, e_lo, e_hi, e_level, e_ha, e_good = events
    matched = below(s_shard, s_until) + spans(e_shard, e_lo, e_hi)
    tp = below(s_shard, s_until, s_good.astype(float)) \
        + spans(e_shard, e_lo, e_hi, e_good.astype(float))
    sum_ha = below(s_shard, s_until, np.where(s_good, s_ha, 0.0)) \
        + spans(e_shard, e_lo, e_hi, np.where(e_good, e_ha, 0.0))
    out = np.zeros((n_shard, len(LEVELS), n_cut, 4))
    for l_i, level in enumerate(LEVELS):
        n_gt = sum(np.bincount(s[g_level <= level], minlength=n_shard) for s in g_shard)
        hit = below(s_shard, s_until, (s_level <= level).astype(float)) \
            + spans(e_shard, e_lo, e_hi, (e_level <= level).astype(float))
        out[:, l_i, :, 0] = tp
        out[:, l_i, :, 1] = kept - matched
        out[:, l_i, :, 2] = n_gt[:, None] - hit
        out[:, l_i, :, 3] = sum_ha
    return out


def measure_frames(preds: FrameBoxes, gts: FrameBoxes,
                   min_heading_accuracy: float = MIN_HEADING_ACCURACY,
                   chunk_pairs: int = CHUNK_PAIRS) -> np.ndarray:
    """[breakdowns, 2 levels, cut-offs, 4 (tp, fp, fn, sum_ha)] counts over all frames,
    computed in chunks of whole frames of about `chunk_pairs` same-type box pairs."""
    out = np.zeros((_N_SHARDS, len(LEVELS), _N_CUT, 4))
    frames = max(preds.frames, gts.frames)
    p_count = np.bincount(preds.frame * 8 + preds.types, minlength=frames * 8)
    g_count = np.bincount(gts.frame * 8 + gts.types, minlength=frames * 8)
    pairs = (p_count * g_count).reshape(frames, 8).sum(axis=1) + 1
    chunk = (np.cumsum(pairs) - 1) // max(int(chunk_pairs), 1)
    edges = [0, *(np.flatnonzero(np.diff(chunk)) + 1).tolist(), frames]
    for first, last in pairwise(edges):
        out += chunk_measurements(preds.take(first, last), gts.take(first, last),
                                  min_heading_accuracy)
    return out


def frame_measurements(pred: Mapping[str, Any] | None, gt: Mapping[str, Any] | None,
                       min_heading_accuracy: float = MIN_HEADING_ACCURACY) -> np.ndarray:
    """[breakdowns, 2 levels, cut-offs, 4 (tp, fp, fn, sum_ha)] counts of one frame."""
    return measure_frames(FrameBoxes.gather([pred], False), FrameBoxes.gather([gt], True),
                          min_heading_accuracy)


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


@METRICS.register("waymo_3d", higher_is_better=True, version="2")
class Waymo3DMetric(Metric):
    """Waymo 3D detection AP/APH (see the module doc); `sampled_interval` scores every k-th
    frame of each segment (by timestamp), as OpenPCDet's default of 5 does;
    `min_heading_accuracy` is the official config field (default -1: off)."""

    keys: ClassVar[dict[str, str]] = _result_keys()
    directions: ClassVar[dict[str, bool | None]] = {"sampled_interval": None}

    def __init__(self, sampled_interval: int = 1,
                 min_heading_accuracy: float = MIN_HEADING_ACCURACY, **args: Any) -> None:
        super().__init__(sampled_interval=sampled_interval,
                         min_heading_accuracy=min_heading_accuracy, **args)
        if isinstance(sampled_interval, bool) or not isinstance(sampled_interval, int) \
                or sampled_interval < 1:
            raise RefbenchError(f"sampled_interval must be an integer >= 1, got "
                                f"{sampled_interval!r}", key="sampled_interval")
        if isinstance(min_heading_accuracy, bool) \
                or not isinstance(min_heading_accuracy, (int, float)) \
                or not math.isfinite(min_heading_accuracy):
            raise RefbenchError(f"min_heading_accuracy must be a finite number, got "
                                f"{min_heading_accuracy!r}", key="min_heading_accuracy")
        self.sampled_interval = sampled_interval
        self.min_heading_accuracy = float(min_heading_accuracy)
        #: (context_name, timestamp) -> (prediction frame, reference frame)
        self.frames: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._gathered: tuple[FrameBoxes, FrameBoxes, int] | None = None

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} prediction frames but {len(references)} "
                                f"reference frames")
        for pred, ref in zip(predictions, references):
            key = _frame_key(ref, len(self.frames))
            if key in self.frames:
                raise RefbenchError(f"frame {key[0]}@{key[1]} was added twice")
            self.frames[key] = (pred, ref)
        self._gathered = None

    def merge(self, other: Metric) -> None:
        if not isinstance(other, Waymo3DMetric):
            raise TypeError(f"cannot merge {type(other).__name__} into Waymo3DMetric")
        for key, value in other.frames.items():
            if key in self.frames:
                raise RefbenchError(f"frame {key[0]}@{key[1]} was added twice")
            self.frames[key] = value
        self._gathered = None

    def selected_frames(self) -> list[tuple[str, int]]:
        """Every `sampled_interval`-th frame of each segment, in timestamp order."""
        by_segment: dict[str, list[int]] = {}
        for context, stamp in self.frames:
            by_segment.setdefault(context, []).append(stamp)
        return [(context, stamp) for context in sorted(by_segment)
                for stamp in sorted(by_segment[context])[::self.sampled_interval]]

    def gathered(self) -> tuple[FrameBoxes, FrameBoxes, int]:
        """(predictions, references, frame count) of the selected frames, concatenated once
        per state (`compute()` and `counts()` share them)."""
        if self._gathered is None:
            selected = [self.frames[key] for key in self.selected_frames()]
            self._gathered = (FrameBoxes.gather([p for p, _ in selected], False),
                              FrameBoxes.gather([r for _, r in selected], True), len(selected))
        return self._gathered

    def measurements(self) -> np.ndarray:
        preds, refs, _ = self.gathered()
        return measure_frames(preds, refs, self.min_heading_accuracy)

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
        _, refs, scored = self.gathered()
        out = {}
        for t, name in TYPE_NAMES.items():
            for level in LEVELS:
                out[f"{name}/L{level}/gt_boxes"] = int(np.sum((refs.types == t)
                                                              & (refs.value <= level)))
        out["frames/scored"] = scored
        return out


def _frame_key(ref: Any, counter: int) -> tuple[str, int]:
    """(context_name, timestamp) of a reference frame; a running number when absent."""
    get = ref.get if isinstance(ref, Mapping) else (lambda k, d=None: getattr(ref, k, d))
    context = get("context_name", None)
    stamp = get("timestamp", None)
    if context is None or stamp is None:
        return ("", counter)
    return (str(context), int(stamp))
