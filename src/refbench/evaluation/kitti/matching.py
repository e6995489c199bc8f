"""KITTI AP: ignore flags, overlaps, score thresholds, the vectorised matching and
`kitti_eval` (the rules and the speed-up are in the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.kitti_iou import (candidate_pair_overlaps, pair_image_overlap,
                                          same_frame_pairs)
from refbench.evaluation.kitti.frames import (CLASSES, CLASS_CODE, DIFFICULTIES, DONTCARE,
                                              Frames, MAX_OCCLUSION, MAX_TRUNCATION,
                                              METRIC_NAMES, MIN_HEIGHT, MIN_OVERLAPS,
                                              NEIGHBOUR_CODE, NO_DETECTION, N_SAMPLE_PTS, OTHER,
                                              check_classes, stack_frames)


# -- clean_data --------------------------------------------------------------------------
def gt_ignore_flags(gt: Frames, cls: str, difficulty: int) -> np.ndarray:
    """`clean_data`'s ground-truth side: 0 (a valid box, counted), 1 (ignored: neighbour
    class or too hard for the difficulty) or -1 (another class)."""
    code = CLASS_CODE[cls.lower()]
    height = gt.bbox[:, 3] - gt.bbox[:, 1]
    hard = ((gt.occluded > MAX_OCCLUSION[difficulty])
            | (gt.truncated > MAX_TRUNCATION[difficulty])
            | (height <= MIN_HEIGHT[difficulty]))
    same = gt.cls == code
    neighbour = gt.cls == NEIGHBOUR_CODE.get(code, OTHER - 10)
    return np.where(same & ~hard, 0, np.where(neighbour | (same & hard), 1, -1)).astype(np.int64)


def ignore_flags(gt: Frames, dt: Frames, cls: str,
                 difficulty: int) -> tuple[np.ndarray, np.ndarray]:
    """`clean_data`: per ground truth 0 (counts), 1 (ignored: neighbour class or too hard)
    or -1 (other class); per detection 0 (this class), 1 (lower than MIN_HEIGHT) or -1."""
    ign_gt = gt_ignore_flags(gt, cls, difficulty)
    dt_height = np.abs(dt.bbox[:, 3] - dt.bbox[:, 1])
    ign_dt = np.where(dt_height < MIN_HEIGHT[difficulty], 1,
                      np.where(dt.cls == CLASS_CODE[cls.lower()], 0, -1))
    return ign_gt, ign_dt.astype(np.int64)


# -- overlaps ----------------------------------------------------------------------------
@dataclass
class Pairs:
    """Sparse (gt, dt) pairs of the same frame whose overlap can make them a candidate;
    an overlap at or below the smallest threshold of its metric may be stored as 0."""

    gt: np.ndarray
    dt: np.ndarray
    overlap: dict[str, np.ndarray]


def compute_pairs(gt: Frames, dt: Frames, classes: Sequence[str],
                  overlap: str = "strict") -> Pairs:
    """Overlaps (bbox IoU, BEV IoU, 3D IoU) of the same-frame pairs that can matter for
    `classes`: ground truth of a class or its neighbour, detections of a class or lower
    than the easy MIN_HEIGHT, and some overlap above the smallest threshold of `classes`
    for its metric (`overlap` set)."""
    codes = [CLASS_CODE[c.lower()] for c in check_classes(classes)]
    floors = MIN_OVERLAPS[overlap][:, codes].min(axis=1)
    wanted = codes + [NEIGHBOUR_CODE[c] for c in codes if c in NEIGHBOUR_CODE]
    gt_keep = np.logical_or.reduce([gt.cls == c for c in wanted])
    dt_keep = np.logical_or.reduce([dt.cls == c for c in codes] +
                                   [np.abs(dt.bbox[:, 3] - dt.bbox[:, 1]) < max(MIN_HEIGHT)])
    g, d, ovs = candidate_pair_overlaps(
        (gt.frame, gt_keep, gt.bbox, gt.location, gt.dimensions, gt.rotation_y),
        (dt.frame, dt_keep, dt.bbox, dt.location, dt.dimensions, dt.rotation_y),
        tuple(float(f) for f in floors))
    return Pairs(g, d, dict(zip(METRIC_NAMES, ovs)))


def dontcare_max_overlap(gt: Frames, dt: Frames) -> np.ndarray:
    """Per detection, its largest intersection-over-own-area with a DontCare box of its
    frame (0 when there is none)."""
    out = np.zeros(len(dt))
    g, d = same_frame_pairs(gt.frame, gt.cls == DONTCARE, dt.frame, np.ones(len(dt), bool))
    if g.size:
        np.maximum.at(out, d, pair_image_overlap(dt.bbox[d], gt.bbox[g], criterion=0))
    return out


# -- thresholds and AP ---------------------------------------------------------------------
def get_thresholds(scores: np.ndarray, num_gt: int,
                   num_sample_pts: int = N_SAMPLE_PTS) -> np.ndarray:
    """The TP scores at which recall passes 0, 1/40, ..., 1 (the port's `get_thresholds`:
    walking the scores from the top, a score is taken when the recall after it is no
    nearer to the next sample point than the recall before it, and always the last)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    last = len(scores) - 1
    index = np.arange(max(last, 0))
    l_recall, r_recall = (index + 1) / num_gt, (index + 2) / num_gt
    current, start, out = 0.0, 0, []
    while start <= last and len(out) < num_sample_pts:
        skip = (r_recall[start:] - current) < (current - l_recall[start:])
        stop = np.flatnonzero(~skip)
        i = start + int(stop[0]) if stop.size else last
        out.append(float(scores[i]))
        current += 1 / (num_sample_pts - 1.0)
        start = i + 1
    return np.array(out)


def interpolated(values: np.ndarray) -> np.ndarray:
    """Each point replaced by the maximum over it and every later point."""
    return np.maximum.accumulate(values[::-1])[::-1]


def ap_r11(precision: np.ndarray) -> float:
    """Mean precision at sample points 0, 4, ..., 40, in percent."""
    return float(np.sum(precision[0:N_SAMPLE_PTS:4]) / 11 * 100)


def ap_r40(precision: np.ndarray) -> float:
    """Mean precision at sample points 1, ..., 40, in percent."""
    return float(np.sum(precision[1:N_SAMPLE_PTS]) / 40 * 100)


# -- matching ------------------------------------------------------------------------------
def _components(g: np.ndarray, d: np.ndarray, n_gt: int,
                n_dt: int) -> tuple[np.ndarray, np.ndarray]:
    """Component label of every gt and dt (connected components of the pairs, by label
    propagation with pointer jumping; nodes outside every pair keep labels of their own)."""
    label = np.arange(n_gt + n_dt)
    u, v = g, d + n_gt
    while True:
        low = np.minimum(label[u], label[v])
        new = label.copy()
        np.minimum.at(new, u, low)
        np.minimum.at(new, v, low)
        while True:  # point every node at its label's label until nothing moves
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, label):
            break
        label = new
    return label[:n_gt], label[n_gt:]


@dataclass
class Bucket:
    """Components of one shape (n_gt, n_dt), stacked; indices sorted in file order."""

    gt: np.ndarray       # (C, ng) global gt indices
    dt: np.ndarray       # (C, nd) global dt indices
    overlap: np.ndarray  # (C, ng, nd) overlap, -1 where not a candidate


@dataclass
class CandidateGroups:
    """The candidate components of one class and metric, bucketed by shape."""

    buckets: list[Bucket]
    in_gt: np.ndarray    # gt in some component
    in_dt: np.ndarray    # dt in some component


def _present(index: np.ndarray, size: int) -> np.ndarray:
    """The distinct values of `index` (integers below `size`), ascending."""
    mark = np.zeros(size, bool)
    mark[index] = True
    return np.flatnonzero(mark)


def _buckets(g: np.ndarray, d: np.ndarray, ov: np.ndarray, n_gt: int,
             n_dt: int) -> list[Bucket]:
    if g.size == 0:
        return []
    lab_g, lab_d = _components(g, d, n_gt, n_dt)
    out = []
    gs, ds = _present(g, n_gt), _present(d, n_dt)
    roots = _present(np.concatenate([lab_g[gs], lab_d[ds]]), n_gt + n_dt)
    relabel = np.zeros(n_gt + n_dt, np.int64)
    relabel[roots] = np.arange(len(roots))
    cg, cd = relabel[lab_g[gs]], relabel[lab_d[ds]]
    n_comp = len(roots)
    comp_of_g = np.full(n_gt, -1)
    comp_of_g[gs] = cg
    ng, nd = np.bincount(cg, minlength=n_comp), np.bincount(cd, minlength=n_comp)
    og, od = np.argsort(cg, kind="stable"), np.argsort(cd, kind="stable")  # then file order
    gs, cg, ds, cd = gs[og], cg[og], ds[od], cd[od]
    pos_g = np.arange(len(gs)) - (np.cumsum(ng) - ng)[cg]
    pos_d = np.arange(len(ds)) - (np.cumsum(nd) - nd)[cd]
    where_g = np.full(n_gt, -1)
    where_g[gs] = pos_g
    where_d = np.full(n_dt, -1)
    where_d[ds] = pos_d
    shape = ng * (n_dt + 1) + nd
    pair_comp = comp_of_g[g]
    for key in sorted(set(shape.tolist())):
        comps = np.flatnonzero(shape == key)
        slot = np.full(n_comp, -1)
        slot[comps] = np.arange(len(comps))
        sg, sd = int(ng[comps[0]]), int(nd[comps[0]])
        gt_idx = np.zeros((len(comps), sg), np.int64)
        mg = slot[cg] >= 0
        gt_idx[slot[cg[mg]], pos_g[mg]] = gs[mg]
        dt_idx = np.zeros((len(comps), sd), np.int64)
        md = slot[cd] >= 0
        dt_idx[slot[cd[md]], pos_d[md]] = ds[md]
        overlap = np.full((len(comps), sg, sd), -1.0)
        mp = slot[pair_comp] >= 0
        overlap[slot[pair_comp[mp]], where_g[g[mp]], where_d[d[mp]]] = ov[mp]
        out.append(Bucket(gt_idx, dt_idx, overlap))
    return out


def _tp_scores(bucket: Bucket, overlap: np.ndarray, ign_gt: np.ndarray,
               ign_dt: np.ndarray, score: np.ndarray, min_overlap: float) -> np.ndarray:
    """First pass (compute_fp=False): the scores of the TP detections of these components."""
    c, ng, nd = overlap.shape
    rows = np.arange(c)
    s = score[bucket.dt]
    idt = ign_dt[bucket.dt]
    assigned = np.zeros((c, nd), bool)
    found = []
    for i in range(ng):
        det = np.full(c, -1)
        best = np.full(c, NO_DETECTION)
        for j in range(nd):
            take = (overlap[:, i, j] > min_overlap) & ~assigned[:, j] & (s[:, j] > best)
            det = np.where(take, j, det)
            best = np.where(take, s[:, j], best)
        matched = det >= 0
        dj = np.maximum(det, 0)
        ignored = (ign_gt[bucket.gt[:, i]] == 1) | (idt[rows, dj] == 1)
        found.append(best[matched & ~ignored])
        assigned[rows[matched], dj[matched]] = True
    return np.concatenate(found) if found else np.zeros(0)


def _level_changes(bucket: Bucket, overlap: np.ndarray, ign_gt: np.ndarray,
                   ign_dt: np.ndarray, score: np.ndarray,
                   alphas: tuple[np.ndarray, np.ndarray] | None, dc_hit: np.ndarray,
                   min_overlap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second pass (compute_fp=True). With the detections of a component ranked by score,
    a threshold leaves the top k eligible; the counts (tp, fp, fn, similarity) are run at
    every k. Returns the counts at k = 0 summed over the components, and for k >= 1 the
    k-th score with the change of the counts from k - 1 to k (ties telescope away)."""
    c, ng, nd = overlap.shape
    levels = nd + 1
    rows = np.arange(c)[:, None]
    s = score[bucket.dt]
    idt = ign_dt[bucket.dt]
    order = np.argsort(-s, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(nd), (c, nd)), axis=1)
    eligible = rank[:, None, :] < np.arange(levels)[None, :, None]   # (C, K, nd)
    assigned = np.zeros((c, levels, nd), bool)
    out = np.zeros((c, levels, 4))
    plain_dt = idt == 0
    for i in range(ng):
        det = np.full((c, levels), -1)
        max_ov = np.zeros((c, levels))
        on_ignored = np.zeros((c, levels), bool)
        for j in range(nd):
            ov = overlap[:, i, j][:, None]
            ok = (ov > min_overlap) & ~assigned[:, :, j] & eligible[:, :, j]
            plain = plain_dt[:, j][:, None]
            take_plain = ok & plain & ((ov > max_ov) | on_ignored)
            take_ignored = ok & ~plain & (det < 0)
            max_ov = np.where(take_plain, ov, max_ov)
            det = np.where(take_plain | take_ignored, j, det)
            on_ignored = np.where(take_plain, False, np.where(take_ignored, True, on_ignored))
        matched = det >= 0
        dj = np.maximum(det, 0)
        counts = (ign_gt[bucket.gt[:, i]] == 0)[:, None]
        out[:, :, 2] += ~matched & counts
        tp = matched & counts & (np.take_along_axis(idt, dj, axis=1) == 0)
        out[:, :, 0] += tp
        if alphas is not None:  # orientation similarity of the TPs (AOS)
            delta = alphas[0][bucket.gt[:, i]][:, None] - alphas[1][bucket.dt[rows, dj]]
            out[:, :, 3] += np.where(tp, (1.0 + np.cos(delta)) / 2.0, 0.0)
        r, k = np.nonzero(matched)
        assigned[r, k, dj[r, k]] = True
    free = eligible & ~assigned & (plain_dt & ~dc_hit[bucket.dt])[:, None, :]
    out[:, :, 1] = free.sum(axis=2)
    change = out[:, 1:] - out[:, :-1]
    return (out[:, 0].sum(axis=0), np.take_along_axis(s, order, axis=1).ravel(),
            change.reshape(-1, 4))


def class_groups(gt: Frames, dt: Frames, pairs: Pairs, cls: str, metric: str,
                 min_overlap: float) -> CandidateGroups:
    """The candidate components of `cls` and `metric` at the loosest difficulty (easy
    ignores the most detections by height, so its candidates include those of moderate
    and hard); a harder level masks the detections it does not consider."""
    code = CLASS_CODE[cls.lower()]
    ov = pairs.overlap[metric]
    gt_codes = [code] + ([NEIGHBOUR_CODE[code]] if code in NEIGHBOUR_CODE else [])
    dt_height = np.abs(dt.bbox[pairs.dt, 3] - dt.bbox[pairs.dt, 1])
    gt_cls = gt.cls[pairs.gt]
    cand = ((ov > min_overlap) & np.logical_or.reduce([gt_cls == c for c in gt_codes])
            & ((dt.cls[pairs.dt] == code) | (dt_height < MIN_HEIGHT[0])))
    g, d = pairs.gt[cand], pairs.dt[cand]
    in_gt, in_dt = np.zeros(len(gt), bool), np.zeros(len(dt), bool)
    in_gt[g] = True
    in_dt[d] = True
    return CandidateGroups(_buckets(g, d, ov[cand], len(gt), len(dt)), in_gt, in_dt)


def evaluate_one(gt: Frames, dt: Frames, groups: CandidateGroups,
                 flags: tuple[np.ndarray, np.ndarray], dc_overlap: np.ndarray, metric: str,
                 min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision and AOS (41 points each) of one class, difficulty, metric
    (`flags`: `ignore_flags` of the class and difficulty)."""
    ign_gt, ign_dt = flags
    num_valid = int(np.sum(ign_gt == 0))
    precision = np.zeros(N_SAMPLE_PTS)
    aos = np.zeros(N_SAMPLE_PTS)
    if num_valid == 0:
        return precision, aos
    overlaps = [np.where((ign_dt[b.dt] == -1)[:, None, :], -1.0, b.overlap)
                for b in groups.buckets]
    tp_scores = [_tp_scores(b, o, ign_gt, ign_dt, dt.score, min_overlap)
                 for b, o in zip(groups.buckets, overlaps)]
    thresholds = get_thresholds(np.concatenate(tp_scores) if tp_scores else np.zeros(0),
                                num_valid)
    if thresholds.size == 0:
        return precision, aos
    dc_hit = (dc_overlap > min_overlap) if metric == "bbox" else np.zeros(len(dt), bool)
    alphas = (gt.alpha, dt.alpha) if metric == "bbox" else None
    base = np.zeros(4)
    base[2] = np.sum((ign_gt == 0) & ~groups.in_gt)               # never matched: FN
    lonely = (ign_dt == 0) & ~groups.in_dt & ~dc_hit               # never matched: FP
    at, changes = [dt.score[lonely]], [np.tile([0.0, 1.0, 0.0, 0.0], (int(lonely.sum()), 1))]
    for b, o in zip(groups.buckets, overlaps):
        level0, level_scores, level_changes = _level_changes(
            b, o, ign_gt, ign_dt, dt.score, alphas, dc_hit, min_overlap)
        base += level0
        at.append(level_scores)
        changes.append(level_changes)
    # a change at score s counts at every threshold <= s: bin it at the first such
    # threshold (thresholds descend), then sum the bins down the thresholds
    n = len(thresholds)
    first = n - np.searchsorted(thresholds[::-1], np.concatenate(at), side="right")
    deltas = np.concatenate(changes)
    stats = base + np.column_stack([np.bincount(first, deltas[:, k], minlength=n + 1)[:n]
                                    for k in range(4)]).cumsum(axis=0)
    denom = stats[:, 0] + stats[:, 1]
    precision[:n] = np.divide(stats[:, 0], denom, out=np.zeros(n), where=denom > 0)
    aos[:n] = np.divide(stats[:, 3], denom, out=np.zeros(n), where=denom > 0)
    return interpolated(precision), interpolated(aos)


def evaluate_frames(gt: Frames, dt: Frames, classes: Sequence[str],
                    overlap: str = "strict") -> dict[str, float]:
    """The `kitti_ap` values of stacked ground truth and detections (see `kitti_eval`)."""
    if overlap not in MIN_OVERLAPS:
        raise RefbenchError(f"overlap must be 'strict' or 'loose', got {overlap!r}",
                            key="overlap")
    classes = check_classes(classes)
    pairs = compute_pairs(gt, dt, classes, overlap)
    dc_overlap = dontcare_max_overlap(gt, dt)
    result: dict[str, float] = {}
    for cls in classes:
        col = CLASSES.index(cls)
        flags = [ignore_flags(gt, dt, cls, level) for level in range(len(DIFFICULTIES))]
        for m, metric in enumerate(METRIC_NAMES):
            min_overlap = float(MIN_OVERLAPS[overlap][m, col])
            groups = class_groups(gt, dt, pairs, cls, metric, min_overlap)
            for level, difficulty in enumerate(DIFFICULTIES):
                prec, aos = evaluate_one(gt, dt, groups, flags[level], dc_overlap, metric,
                                         min_overlap)
                for kind, curve in ((metric, prec),) + ((("aos", aos),) if m == 0 else ()):
                    result[f"{cls}/{kind}/{difficulty}/R11"] = ap_r11(curve)
                    result[f"{cls}/{kind}/{difficulty}/R40"] = ap_r40(curve)
    for kind in METRIC_NAMES + ("aos",):
        for difficulty in DIFFICULTIES:
            for r in ("R11", "R40"):
                values = [result[f"{c}/{kind}/{difficulty}/{r}"] for c in classes]
                result[f"mean/{kind}/{difficulty}/{r}"] = float(np.mean(values))
    return result


def kitti_eval(gt_frames: Sequence[Mapping[str, Any] | None],
               dt_frames: Sequence[Mapping[str, Any] | None], classes: Sequence[str],
               overlap: str = "strict") -> dict[str, float]:
    """The `kitti_ap` values of aligned ground-truth and detection frames (see module doc)."""
    if len(gt_frames) != len(dt_frames):
        raise RefbenchError(f"{len(dt_frames)} prediction frames but {len(gt_frames)} "
                            f"reference frames")
    if overlap not in MIN_OVERLAPS:
        raise RefbenchError(f"overlap must be 'strict' or 'loose', got {overlap!r}",
                            key="overlap")
    classes = check_classes(classes)
    gt = stack_frames(gt_frames, False, "reference frame")
    dt = stack_frames(dt_frames, True, "prediction frame")
    return evaluate_frames(gt, dt, classes, overlap)


def frames_valid_gt_counts(gt: Frames, classes: Sequence[str]) -> dict[str, int]:
    """`valid_gt_counts` of stacked ground truth."""
    return {f"{cls}/{name}/valid_gt": int(np.sum(gt_ignore_flags(gt, cls, level) == 0))
            for cls in check_classes(classes) for level, name in enumerate(DIFFICULTIES)}


def valid_gt_counts(gt_frames: Sequence[Mapping[str, Any] | None],
                    classes: Sequence[str]) -> dict[str, int]:
    """`{"Car/moderate/valid_gt": n, ...}`: per class and difficulty, the ground-truth
    boxes the devkit counts (not ignored for that class and difficulty), i.e. the recall
    denominator of the AP."""
    return frames_valid_gt_counts(stack_frames(gt_frames, False, "reference frame"), classes)


