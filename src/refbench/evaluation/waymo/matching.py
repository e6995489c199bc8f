"""Waymo matching and counting: per-frame arrays with their breakdown shards, vectorised
candidate pairs, the optimal assignment per connected component, and the per-cutoff counts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.waymo.boxes import (CHUNK_PAIRS, IOU_THRESHOLDS_F32, LEVELS, MAX_IOU,
                                             MIN_HEADING_ACCURACY, N_CUT, N_SHARDS, RANGES,
                                             SCORE_CUTOFFS, TYPE_NAMES)
from refbench.evaluation.waymo.geometry import (circles_touch, heading_accuracy, iou_pairs,
                                                official_heading_accuracy)


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
    near = circles_touch(p.boxes, g.boxes, pi, gi)
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
    valid = iou >= IOU_THRESHOLDS_F32[p.types[pi]]
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
    n_cut, n_shard = N_CUT, N_SHARDS

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
    out = np.zeros((N_SHARDS, len(LEVELS), N_CUT, 4))
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


