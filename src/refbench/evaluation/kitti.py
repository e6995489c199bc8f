"""KITTI 3D object detection AP (`kitti_ap`), re-derived from the official evaluation.

The numbers follow the Python port of the devkit that papers report
(`kitti_object_eval_python/eval.py` in second.pytorch / OpenPCDet), including its quirks:

- classes Car, Pedestrian, Cyclist, Van, Person_sitting, Truck (the port's class map; it
  has no Tram or Misc). For Car, Van ground truth is ignored (neither TP nor FN); for
  Pedestrian, Person_sitting is. DontCare regions: a detection whose 2D box lies inside
  a DontCare box (intersection over the detection's area > the overlap threshold) is not
  a false positive -- for the 2D `bbox` metric only, as in the port (the C++ devkit also
  applies it to BEV/3D).
- difficulty: ground truth is ignored when occluded > MAX_OCCLUSION, truncated >
  MAX_TRUNCATION or its 2D height <= MIN_HEIGHT of the level (easy, moderate, hard:
  40/25/25 px, occlusion 0/1/2, truncation 0.15/0.3/0.5); detections lower than
  MIN_HEIGHT (strictly) are ignored, whatever their class.
- matching (`compute_statistics_jit`): ground truth in file order takes, first, the
  highest-scoring unassigned detection over the threshold to collect the TP scores, from
  which `get_thresholds` picks 41 scores at recall steps of 1/40; then at each of those
  score thresholds the best-overlap detection (non-ignored ones preferred) to count TP,
  FP and FN. Precision at the i-th threshold is max over later ones.
- AP R11 = sum of precision at sample points 0, 4, ..., 40 / 11; R40 = sum over points
  1..40 / 40 (the KITTI server's metric since 2019). AOS uses (1 + cos(dalpha)) / 2 of
  each 2D TP. Values are percent. A class with no valid ground truth scores 0.
- small sets: the port picks one score threshold per valid ground-truth box, so with
  fewer than 41 valid boxes AP moves in coarse steps and even a perfect detector stays
  below 100 (1 box: R40 0, R11 9.09). The metric reports the valid boxes per class and
  difficulty (`counts()`) and warns for each count below 41.
- AOS is always computed (the port skips it when the first detection's alpha is -10),
  and a precision of 0 / 0 counts as 0 (the port would produce NaN).
- overlap thresholds (bbox, bev, 3d): "strict" Car 0.7/0.7/0.7, Pedestrian and Cyclist
  0.5/0.5/0.5, Van 0.7, Person_sitting 0.5, Truck 0.7; "loose" Car 0.7/0.5/0.5,
  Pedestrian and Cyclist 0.5/0.25/0.25, Van 0.7/0.5/0.5, Person_sitting 0.5/0.25/0.25,
  Truck 0.5/0.5/0.5.

Speed: the official loops run per frame and per threshold. Here frames only meet
through their candidate pairs (overlap > threshold), so the pairs are grouped into
connected components, components of one shape are stacked, and the same greedy rules run
vectorised over components and thresholds. The ground-truth order inside a frame and
the detection order are kept, so ties resolve as in the official loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.evaluation.kitti_iou import (pair_bev_3d_iou, pair_image_overlap,
                                          same_frame_pairs)
from refbench.registry import METRICS

CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist", "Van", "Person_sitting", "Truck")
#: class whose ground truth is ignored (not missed) when evaluating a class
NEIGHBOUR: dict[str, str] = {"car": "van", "pedestrian": "person_sitting"}
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
DIFFICULTIES = ("easy", "moderate", "hard")
METRIC_NAMES = ("bbox", "bev", "3d")
#: overlap set -> metric (bbox, bev, 3d) -> per class of CLASSES
MIN_OVERLAPS: dict[str, np.ndarray] = {
    "strict": np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.7]] * 3),
    "loose": np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.5],
                       [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
                       [0.5, 0.25, 0.25, 0.5, 0.25, 0.5]]),
}
N_SAMPLE_PTS = 41
NO_DETECTION = -10000000.0
FIELDS = ("name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location",
          "rotation_y")
_WIDTH = {"bbox": 4, "dimensions": 3, "location": 3}


# -- frames ------------------------------------------------------------------------------
@dataclass
class Frames:
    """All objects of many frames, concatenated; `frame` says which frame each is from."""

    frame: np.ndarray
    name: np.ndarray        # lower-cased class names
    raw_name: np.ndarray    # names as written (DontCare is matched case-sensitively)
    truncated: np.ndarray
    occluded: np.ndarray
    alpha: np.ndarray
    bbox: np.ndarray        # (n, 4) left, top, right, bottom
    dimensions: np.ndarray  # (n, 3) h, w, l
    location: np.ndarray    # (n, 3) x, y, z (bottom centre, camera frame)
    rotation_y: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)


def frame_arrays(frame: Mapping[str, Any] | None, with_score: bool,
                 where: str = "frame") -> dict[str, np.ndarray]:
    """Validate one frame's objects (a mapping of label_2 fields or a `KittiObjects`; None =
    no objects) into float64 / str arrays; references get a score of 0."""
    if frame is None:
        frame = {}
    if hasattr(frame, "as_dict"):  # refbench.benchmarks.formats.kitti.KittiObjects
        frame = frame.as_dict()
    if not isinstance(frame, Mapping):
        raise RefbenchError(f"{where}: expected a mapping of label_2 fields, got "
                            f"{type(frame).__name__}")
    names = list(frame.get("name", []))
    n = len(names)
    out: dict[str, np.ndarray] = {"name": np.array([str(s) for s in names], dtype=object)}
    for key in FIELDS[1:] + (("score",) if with_score else ()):
        if key not in frame:
            if n == 0 or (key == "score" and not with_score):
                out[key] = np.zeros((0, _WIDTH[key]) if key in _WIDTH else 0)
                continue
            raise RefbenchError(f"{where}: missing field {key!r}", key=key)
        try:
            arr = np.asarray(frame[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise RefbenchError(f"{where}: field {key!r} is not numeric", key=key) from None
        shape = (n, _WIDTH[key]) if key in _WIDTH else (n,)
        if arr.size == 0 and n == 0:
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise RefbenchError(f"{where}: field {key!r} has shape {arr.shape}, expected "
                                f"{shape}", key=key)
        if not np.all(np.isfinite(arr)):
            raise RefbenchError(f"{where}: field {key!r} holds NaN or inf", key=key)
        out[key] = arr
    if not with_score:
        out["score"] = np.zeros(n)
    return out


def stack_frames(frames: Sequence[dict[str, np.ndarray]]) -> Frames:
    """Concatenate validated frames (`frame_arrays`) into one `Frames`."""
    counts = np.array([len(f["name"]) for f in frames], dtype=np.int64)

    def cat(key: str, width: int = 0) -> np.ndarray:
        parts = [f[key] for f in frames]
        if not parts:
            return np.zeros((0, width) if width else 0)
        return np.concatenate(parts).reshape((-1, width) if width else -1)

    raw = cat("name").astype(object) if frames else np.array([], dtype=object)
    return Frames(
        frame=np.repeat(np.arange(len(frames)), counts), raw_name=raw,
        name=np.array([s.lower() for s in raw], dtype=object),
        truncated=cat("truncated"), occluded=cat("occluded"), alpha=cat("alpha"),
        bbox=cat("bbox", 4), dimensions=cat("dimensions", 3), location=cat("location", 3),
        rotation_y=cat("rotation_y"), score=cat("score"))


# -- overlaps ----------------------------------------------------------------------------
@dataclass
class Pairs:
    """Sparse (gt, dt) pairs of the same frame with a positive overlap per metric."""

    gt: np.ndarray
    dt: np.ndarray
    overlap: dict[str, np.ndarray]


def compute_pairs(gt: Frames, dt: Frames, classes: Sequence[str]) -> Pairs:
    """Overlaps of every same-frame pair that can matter for `classes` (bbox IoU, BEV IoU,
    3D IoU), keeping pairs where any of them is positive."""
    wanted = {c.lower() for c in classes}
    wanted |= {NEIGHBOUR[c] for c in wanted if c in NEIGHBOUR}
    gt_keep = np.isin(gt.name, list(wanted))
    height = np.abs(dt.bbox[:, 3] - dt.bbox[:, 1])
    dt_keep = np.isin(dt.name, list(wanted)) | (height < max(MIN_HEIGHT))
    g, d = same_frame_pairs(gt.frame, gt_keep, dt.frame, dt_keep)
    iou2d = pair_image_overlap(gt.bbox[g], dt.bbox[d])
    bev, iou3 = pair_bev_3d_iou(
        np.column_stack([gt.location[g], gt.dimensions[g], gt.rotation_y[g]]),
        np.column_stack([dt.location[d], dt.dimensions[d], dt.rotation_y[d]]))
    keep = (iou2d > 0) | (bev > 0) | (iou3 > 0)
    return Pairs(g[keep], d[keep], {"bbox": iou2d[keep], "bev": bev[keep], "3d": iou3[keep]})


def dontcare_max_overlap(gt: Frames, dt: Frames) -> np.ndarray:
    """Per detection, its largest intersection-over-own-area with a DontCare box of its
    frame (0 when there is none)."""
    out = np.zeros(len(dt))
    g, d = same_frame_pairs(gt.frame, gt.raw_name == "DontCare", dt.frame,
                            np.ones(len(dt), bool))
    if g.size:
        np.maximum.at(out, d, pair_image_overlap(dt.bbox[d], gt.bbox[g], criterion=0))
    return out


# -- clean_data --------------------------------------------------------------------------
def gt_ignore_flags(gt: Frames, cls: str, difficulty: int) -> np.ndarray:
    """`clean_data`'s ground-truth side: 0 (a valid box, counted), 1 (ignored: neighbour
    class or too hard for the difficulty) or -1 (another class)."""
    cls = cls.lower()
    height = gt.bbox[:, 3] - gt.bbox[:, 1]
    hard = ((gt.occluded > MAX_OCCLUSION[difficulty])
            | (gt.truncated > MAX_TRUNCATION[difficulty])
            | (height <= MIN_HEIGHT[difficulty]))
    same = gt.name == cls
    neighbour = (gt.name == NEIGHBOUR[cls]) if cls in NEIGHBOUR else np.zeros(len(gt), bool)
    return np.where(same & ~hard, 0, np.where(neighbour | (same & hard), 1, -1)).astype(np.int64)


def ignore_flags(gt: Frames, dt: Frames, cls: str,
                 difficulty: int) -> tuple[np.ndarray, np.ndarray]:
    """`clean_data`: per ground truth 0 (counts), 1 (ignored: neighbour class or too hard)
    or -1 (other class); per detection 0 (this class), 1 (lower than MIN_HEIGHT) or -1."""
    cls = cls.lower()
    ign_gt = gt_ignore_flags(gt, cls, difficulty)
    dt_height = np.abs(dt.bbox[:, 3] - dt.bbox[:, 1])
    ign_dt = np.where(dt_height < MIN_HEIGHT[difficulty], 1,
                      np.where(dt.name == cls, 0, -1))
    return ign_gt.astype(np.int64), ign_dt.astype(np.int64)


# -- thresholds and AP ---------------------------------------------------------------------
def get_thresholds(scores: np.ndarray, num_gt: int,
                   num_sample_pts: int = N_SAMPLE_PTS) -> np.ndarray:
    """The TP scores at which recall passes 0, 1/40, ..., 1 (the port's `get_thresholds`)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    current = 0.0
    out: list[float] = []
    last = len(scores) - 1
    for i, score in enumerate(scores):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < last else l_recall
        if (r_recall - current) < (current - l_recall) and i < last:
            continue
        out.append(float(score))
        current += 1 / (num_sample_pts - 1.0)
    return np.array(out[:num_sample_pts])


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
    """Component label of each candidate pair's gt and dt (connected components)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = n_gt + n_dt
    graph = coo_matrix((np.ones(len(g)), (g, d + n_gt)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels[:n_gt], labels[n_gt:]


@dataclass
class _Bucket:
    """Components of one shape (n_gt, n_dt), stacked; indices sorted in file order."""

    gt: np.ndarray       # (C, ng) global gt indices
    dt: np.ndarray       # (C, nd) global dt indices
    overlap: np.ndarray  # (C, ng, nd) overlap, -1 where not a candidate


def _buckets(g: np.ndarray, d: np.ndarray, ov: np.ndarray, n_gt: int,
             n_dt: int) -> list[_Bucket]:
    if g.size == 0:
        return []
    lab_g, lab_d = _components(g, d, n_gt, n_dt)
    out = []
    gs, ds = np.unique(g), np.unique(d)
    cg, cd = lab_g[gs], lab_d[ds]
    n_comp = int(max(cg.max(), cd.max())) + 1
    ng, nd = np.bincount(cg, minlength=n_comp), np.bincount(cd, minlength=n_comp)
    og, od = np.lexsort((gs, cg)), np.lexsort((ds, cd))   # by component, then file order
    gs, cg, ds, cd = gs[og], cg[og], ds[od], cd[od]
    pos_g = np.arange(len(gs)) - (np.cumsum(ng) - ng)[cg]
    pos_d = np.arange(len(ds)) - (np.cumsum(nd) - nd)[cd]
    where_g = np.full(n_gt, -1)
    where_g[gs] = pos_g
    where_d = np.full(n_dt, -1)
    where_d[ds] = pos_d
    present = (ng > 0) & (nd > 0)
    shape = ng * (n_dt + 1) + nd
    for key in np.unique(shape[present]):
        comps = np.flatnonzero(present & (shape == key))
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
        mp = slot[lab_g[g]] >= 0
        overlap[slot[lab_g[g[mp]]], where_g[g[mp]], where_d[d[mp]]] = ov[mp]
        out.append(_Bucket(gt_idx, dt_idx, overlap))
    return out


def _tp_scores(bucket: _Bucket, ign_gt: np.ndarray, ign_dt: np.ndarray, score: np.ndarray,
               min_overlap: float) -> np.ndarray:
    """First pass (compute_fp=False): the scores of the TP detections of these components."""
    c, ng, nd = bucket.overlap.shape
    rows = np.arange(c)
    s = score[bucket.dt]
    idt = ign_dt[bucket.dt]
    assigned = np.zeros((c, nd), bool)
    found = []
    for i in range(ng):
        det = np.full(c, -1)
        best = np.full(c, NO_DETECTION)
        for j in range(nd):
            take = (bucket.overlap[:, i, j] > min_overlap) & ~assigned[:, j] & (s[:, j] > best)
            det = np.where(take, j, det)
            best = np.where(take, s[:, j], best)
        matched = det >= 0
        dj = np.maximum(det, 0)
        ignored = (ign_gt[bucket.gt[:, i]] == 1) | (idt[rows, dj] == 1)
        found.append(best[matched & ~ignored])
        assigned[rows[matched], dj[matched]] = True
    return np.concatenate(found) if found else np.zeros(0)


def _counts(bucket: _Bucket, ign_gt: np.ndarray, ign_dt: np.ndarray, score: np.ndarray,
            alphas: tuple[np.ndarray, np.ndarray] | None, dc_hit: np.ndarray, min_overlap: float,
            thresholds: np.ndarray) -> np.ndarray:
    """Second pass (compute_fp=True) at every threshold: (T, 4) tp, fp, fn, similarity."""
    c, ng, nd = bucket.overlap.shape
    t = len(thresholds)
    rows = np.arange(c)[:, None]
    s = score[bucket.dt]
    idt = ign_dt[bucket.dt]
    eligible = s[:, None, :] >= thresholds[None, :, None]          # (C, T, nd)
    assigned = np.zeros((c, t, nd), bool)
    out = np.zeros((t, 4))
    for i in range(ng):
        det = np.full((c, t), -1)
        max_ov = np.zeros((c, t))
        on_ignored = np.zeros((c, t), bool)
        for j in range(nd):
            ov = bucket.overlap[:, i, j][:, None]
            ok = (ov > min_overlap) & ~assigned[:, :, j] & eligible[:, :, j]
            plain = (idt[:, j] == 0)[:, None]
            take_plain = ok & plain & ((ov > max_ov) | on_ignored)
            take_ignored = ok & ~plain & (det < 0)
            max_ov = np.where(take_plain, ov, max_ov)
            det = np.where(take_plain | take_ignored, j, det)
            on_ignored = np.where(take_plain, False, np.where(take_ignored, True, on_ignored))
        matched = det >= 0
        dj = np.maximum(det, 0)
        counts = (ign_gt[bucket.gt[:, i]] == 0)[:, None]
        out[:, 2] += np.sum(~matched & counts, axis=0)
        tp = matched & counts & (np.take_along_axis(idt, dj, axis=1) == 0)
        out[:, 0] += np.sum(tp, axis=0)
        if alphas is not None:  # orientation similarity of the TPs (AOS)
            delta = alphas[0][bucket.gt[:, i]][:, None] - alphas[1][bucket.dt[rows, dj]]
            out[:, 3] += np.sum(np.where(tp, (1.0 + np.cos(delta)) / 2.0, 0.0), axis=0)
        r, k = np.nonzero(matched)
        assigned[r, k, dj[r, k]] = True
    free = eligible & ~assigned & (idt == 0)[:, None, :] & ~dc_hit[bucket.dt][:, None, :]
    out[:, 1] += free.sum(axis=(0, 2))
    return out


def _count_at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ordered = np.sort(values)
    return len(ordered) - np.searchsorted(ordered, thresholds, side="left")


def evaluate_one(gt: Frames, dt: Frames, pairs: Pairs, dc_overlap: np.ndarray, cls: str,
                 difficulty: int, metric: str,
                 min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision and AOS (41 points each) of one class, difficulty, metric."""
    ign_gt, ign_dt = ignore_flags(gt, dt, cls, difficulty)
    num_valid = int(np.sum(ign_gt == 0))
    precision = np.zeros(N_SAMPLE_PTS)
    aos = np.zeros(N_SAMPLE_PTS)
    if num_valid == 0:
        return precision, aos
    ov = pairs.overlap[metric]
    cand = (ov > min_overlap) & (ign_gt[pairs.gt] != -1) & (ign_dt[pairs.dt] != -1)
    g, d, o = pairs.gt[cand], pairs.dt[cand], ov[cand]
    buckets = _buckets(g, d, o, len(gt), len(dt))
    tp_scores = [_tp_scores(b, ign_gt, ign_dt, dt.score, min_overlap) for b in buckets]
    thresholds = get_thresholds(np.concatenate(tp_scores) if tp_scores else np.zeros(0),
                                num_valid)
    if thresholds.size == 0:
        return precision, aos
    dc_hit = (dc_overlap > min_overlap) if metric == "bbox" else np.zeros(len(dt), bool)
    alphas = (gt.alpha, dt.alpha) if metric == "bbox" else None
    stats = np.zeros((len(thresholds), 4))
    for b in buckets:
        stats += _counts(b, ign_gt, ign_dt, dt.score, alphas, dc_hit, min_overlap, thresholds)
    in_pair_g = np.zeros(len(gt), bool)
    in_pair_g[g] = True
    in_pair_d = np.zeros(len(dt), bool)
    in_pair_d[d] = True
    stats[:, 2] += np.sum((ign_gt == 0) & ~in_pair_g)           # never matched: FN
    lonely = (ign_dt == 0) & ~in_pair_d & ~dc_hit                 # never matched: FP
    stats[:, 1] += _count_at_or_above(dt.score[lonely], thresholds)
    denom = stats[:, 0] + stats[:, 1]
    n = len(thresholds)
    precision[:n] = np.divide(stats[:, 0], denom, out=np.zeros(n), where=denom > 0)
    aos[:n] = np.divide(stats[:, 3], denom, out=np.zeros(n), where=denom > 0)
    return interpolated(precision), interpolated(aos)


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
    gt = stack_frames([frame_arrays(f, False, f"reference frame {i}")
                       for i, f in enumerate(gt_frames)])
    dt = stack_frames([frame_arrays(f, True, f"prediction frame {i}")
                       for i, f in enumerate(dt_frames)])
    pairs = compute_pairs(gt, dt, classes)
    dc_overlap = dontcare_max_overlap(gt, dt)
    result: dict[str, float] = {}
    for cls in classes:
        col = CLASSES.index(cls)
        for m, metric in enumerate(METRIC_NAMES):
            min_overlap = float(MIN_OVERLAPS[overlap][m, col])
            for level, difficulty in enumerate(DIFFICULTIES):
                prec, aos = evaluate_one(gt, dt, pairs, dc_overlap, cls, level, metric,
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


def valid_gt_counts(gt_frames: Sequence[Mapping[str, Any] | None],
                    classes: Sequence[str]) -> dict[str, int]:
    """`{"Car/moderate/valid_gt": n, ...}`: per class and difficulty, the ground-truth
    boxes the devkit counts (not ignored for that class and difficulty), i.e. the recall
    denominator of the AP."""
    gt = stack_frames([frame_arrays(f, False, f"reference frame {i}")
                       for i, f in enumerate(gt_frames)])
    return {f"{cls}/{name}/valid_gt": int(np.sum(gt_ignore_flags(gt, cls, level) == 0))
            for cls in check_classes(classes) for level, name in enumerate(DIFFICULTIES)}


def perfect_ap(num_valid: int) -> tuple[float, float]:
    """(R40, R11) in percent of a perfect detector on `num_valid` valid boxes: below 41
    boxes the curve has fewer thresholds than sample points, so the AP cannot reach 100."""
    if num_valid <= 0:
        return 0.0, 0.0
    precision = np.zeros(N_SAMPLE_PTS)
    precision[:len(get_thresholds(np.ones(num_valid), num_valid))] = 1.0
    return ap_r40(precision), ap_r11(precision)


def quantisation_warnings(counts: Mapping[str, int]) -> list[str]:
    """One line per class/difficulty of `valid_gt_counts` with fewer valid boxes than the
    41 recall sample points: its AP moves in coarse steps and, as the port picks one score
    threshold per valid box, even a perfect detector stays below 100 (R40 97.5 with 40)."""
    out = []
    for key, n in counts.items():
        if n >= N_SAMPLE_PTS:
            continue
        where = key.rsplit("/", 1)[0]
        boxes = "box" if n == 1 else "boxes"
        if n == 0:
            out.append(f"{where} has 0 valid ground-truth boxes: its AP is 0 by convention, "
                       f"not a measurement")
            continue
        r40, r11 = perfect_ap(n)
        out.append(f"{where} has {n} valid ground-truth {boxes}: R40 and R11 are quantised "
                   f"(fewer boxes than the 41 recall sample points; a perfect detector "
                   f"scores R40 {r40:.2f}, R11 {r11:.2f})")
    return out


def check_classes(classes: Sequence[str] | str) -> list[str]:
    """The requested classes in their official spelling; unknown ones are an error."""
    if isinstance(classes, str):
        classes = [classes]
    by_lower = {c.lower(): c for c in CLASSES}
    out = []
    for cls in classes:
        if not isinstance(cls, str) or cls.lower() not in by_lower:
            raise RefbenchError(f"unknown KITTI class {cls!r} (known: {', '.join(CLASSES)})",
                                key="classes")
        if by_lower[cls.lower()] not in out:
            out.append(by_lower[cls.lower()])
    if not out:
        raise RefbenchError("classes must name at least one KITTI class", key="classes")
    return out


def _keys(classes: Sequence[str]) -> dict[str, str]:
    out = {}
    for who in list(classes) + ["mean"]:
        for kind in METRIC_NAMES + ("aos",):
            for difficulty in DIFFICULTIES:
                for r in ("R11", "R40"):
                    what = "mean over the classes" if who == "mean" else who
                    out[f"{who}/{kind}/{difficulty}/{r}"] = (
                        f"{kind} AP (%) of {what}, {difficulty}, {r} interpolation")
    return out


@METRICS.register("kitti_ap", higher_is_better=True, version="1")
class KittiAP(Metric):
    """Streaming KITTI AP: `update` keeps the frames, `compute` runs `kitti_eval`.

    Keys `{Class}/{bbox|bev|3d|aos}/{easy|moderate|hard}/R{11|40}` and
    `mean/...` over the requested classes, in percent. A prediction frame of None is a
    frame without detections (an id missing from the prediction folder). Counts
    `{Class}/{difficulty}/valid_gt`: the valid ground-truth boxes each AP is computed over;
    a warning for each below 41, where R40 and R11 are quantised.
    """

    keys: ClassVar[dict[str, str]] = _keys(["Car", "Pedestrian", "Cyclist"])

    def __init__(self, classes: Sequence[str] = ("Car",), overlap: str = "strict",
                 **args: Any) -> None:
        if args:
            raise RefbenchError(f"unknown kitti_ap argument(s) {sorted(args)}")
        if overlap not in MIN_OVERLAPS:
            raise RefbenchError(f"overlap must be 'strict' or 'loose', got {overlap!r}",
                                key="overlap")
        self.classes = check_classes(classes)
        self.overlap = overlap
        super().__init__(classes=self.classes, overlap=overlap)
        self.keys = _keys(self.classes)  # type: ignore[misc]
        self._gt: list[dict[str, np.ndarray]] = []
        self._dt: list[dict[str, np.ndarray]] = []

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} prediction frames but {len(references)} "
                                f"reference frames")
        start = len(self._gt)
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            self._dt.append(frame_arrays(pred, True, f"prediction frame {start + i}"))
            self._gt.append(frame_arrays(ref, False, f"reference frame {start + i}"))

    def merge(self, other: Metric) -> None:
        if not isinstance(other, KittiAP) or other.classes != self.classes \
                or other.overlap != self.overlap:
            raise RefbenchError("can only merge kitti_ap metrics of the same arguments")
        self._gt.extend(other._gt)
        self._dt.extend(other._dt)

    def compute(self) -> dict[str, float]:
        return kitti_eval(self._gt, self._dt, self.classes, self.overlap)

    def counts(self) -> dict[str, int]:
        """Valid ground-truth boxes per class and difficulty (`Car/moderate/valid_gt`)."""
        return valid_gt_counts(self._gt, self.classes)

    def warnings(self) -> list[str]:
        """A line per reported class/difficulty with too few valid boxes (below 41)."""
        return quantisation_warnings(self.counts())
