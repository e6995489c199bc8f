"""Waymo geometry: BEV corners, rotated-box IoU (convex clipping), heading accuracy,
Hungarian matching and the PR-curve -> AP rule of the official C++."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from refbench.evaluation.waymo.boxes import (DESIRED_RECALL_DELTA, MAX_BOX_DIM, MAX_IOU,
                                             MIN_BOX_DIM)


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


def circles_touch(preds: np.ndarray, gts: np.ndarray, pi: np.ndarray, gi: np.ndarray
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
    near = circles_touch(preds, gts, pi, gi)
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


