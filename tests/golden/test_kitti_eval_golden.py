"""KITTI AP against an independent, straightforward re-implementation of the official
Python evaluation (`kitti_object_eval_python/eval.py`), written here with plain loops:
per-frame `clean_data`, `compute_statistics_jit` run per frame and per threshold,
`get_thresholds`, and a rotated IoU by corner-in-polygon + edge-intersection points
sorted by angle (the official GPU kernel's method, not the clipping `kitti_iou` uses).

There is no official KITTI result file in the shared data, so the golden values are those
of this slow implementation on the 3 real label files (and on perturbed copies), and on
dense random scenes that exercise ties, duplicates, ignored objects and DontCare.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from refbench.benchmarks.formats.kitti import read_label_dir
from refbench.evaluation.kitti import kitti_eval

CLASS_NAMES = ["car", "pedestrian", "cyclist", "van", "person_sitting", "truck"]
STRICT = [[0.7, 0.5, 0.5, 0.7, 0.5, 0.7]] * 3
LOOSE = [[0.7, 0.5, 0.5, 0.7, 0.5, 0.5], [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
         [0.5, 0.25, 0.25, 0.5, 0.25, 0.5]]


# -- the slow reference --------------------------------------------------------------------
def ref_clean(gt, dt, cls, diff):
    min_h, max_occ, max_trunc = [40, 25, 25], [0, 1, 2], [0.15, 0.3, 0.5]
    name = CLASS_NAMES[cls]
    ign_gt, ign_dt, dc, n_valid = [], [], [], 0
    for i in range(len(gt["name"])):
        g = gt["name"][i].lower()
        h = gt["bbox"][i][3] - gt["bbox"][i][1]
        if g == name:
            valid = 1
        elif name == "pedestrian" and g == "person_sitting":
            valid = 0
        elif name == "car" and g == "van":
            valid = 0
        else:
            valid = -1
        hard = (gt["occluded"][i] > max_occ[diff] or gt["truncated"][i] > max_trunc[diff]
                or h <= min_h[diff])
        if valid == 1 and not hard:
            ign_gt.append(0)
            n_valid += 1
        elif valid == 0 or (hard and valid == 1):
            ign_gt.append(1)
        else:
            ign_gt.append(-1)
        if gt["name"][i] == "DontCare":
            dc.append(gt["bbox"][i])
    for j in range(len(dt["name"])):
        h = abs(dt["bbox"][j][3] - dt["bbox"][j][1])
        if h < min_h[diff]:
            ign_dt.append(1)
        elif dt["name"][j].lower() == name:
            ign_dt.append(0)
        else:
            ign_dt.append(-1)
    return n_valid, ign_gt, ign_dt, dc


def ref_box_overlap(a, b, criterion=-1):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    ua = area_a + area_b - iw * ih if criterion == -1 else area_a
    return iw * ih / ua


def ref_corners(x, z, length, width, ry):
    c, s = math.cos(ry), math.sin(ry)
    out = []
    for lx, lz in ((-length / 2, -width / 2), (-length / 2, width / 2),
                   (length / 2, width / 2), (length / 2, -width / 2)):
        out.append((c * lx + s * lz + x, -s * lx + c * lz + z))
    return out


def _inside(p, poly):
    # p inside (or on) a convex polygon: same side of every edge
    signs = []
    for k in range(4):
        a, b = poly[k], poly[(k + 1) % 4]
        cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
        signs.append(cross)
    return all(v >= -1e-12 for v in signs) or all(v <= 1e-12 for v in signs)


def _seg_intersection(p1, p2, q1, q2):
    d1 = (p2[0] - p1[0], p2[1] - p1[1])
    d2 = (q2[0] - q1[0], q2[1] - q1[1])
    den = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(den) < 1e-15:
        return None
    t = ((q1[0] - p1[0]) * d2[1] - (q1[1] - p1[1]) * d2[0]) / den
    u = ((q1[0] - p1[0]) * d1[1] - (q1[1] - p1[1]) * d1[0]) / den
    if 0 <= t <= 1 and 0 <= u <= 1:
        return (p1[0] + t * d1[0], p1[1] + t * d1[1])
    return None


def ref_rotated_inter(b1, b2):
    c1, c2 = ref_corners(*b1), ref_corners(*b2)
    pts = [p for p in c1 if _inside(p, c2)] + [p for p in c2 if _inside(p, c1)]
    for k in range(4):
        for m in range(4):
            p = _seg_intersection(c1[k], c1[(k + 1) % 4], c2[m], c2[(m + 1) % 4])
            if p is not None:
                pts.append(p)
    if len(pts) < 3:
        return 0.0
    cx = sum(p[0] for p in pts) / len(pts)
    cy = sum(p[1] for p in pts) / len(pts)
    pts.sort(key=lambda p: math.atan2(p[1] - cy, p[0] - cx))
    area = 0.0
    for k in range(len(pts)):
        a, b = pts[k], pts[(k + 1) % len(pts)]
        area += a[0] * b[1] - b[0] * a[1]
    return abs(area) / 2


def ref_overlap(gt, dt, i, j, metric):
    if metric == 0:
        return ref_box_overlap(dt["bbox"][j], gt["bbox"][i])
    (gx, gy, gz), (gh, gw, gl), gr = gt["location"][i], gt["dimensions"][i], gt["rotation_y"][i]
    (dx, dy, dz), (dh, dw, dl), dr = dt["location"][j], dt["dimensions"][j], dt["rotation_y"][j]
    inter = ref_rotated_inter((dx, dz, dl, dw, dr), (gx, gz, gl, gw, gr))
    if metric == 1:
        union = gl * gw + dl * dw - inter
        return inter / union if inter > 0 else 0.0
    if inter <= 0:
        return 0.0
    ih = min(gy, dy) - max(gy - gh, dy - dh)
    if ih <= 0:
        return 0.0
    inter *= ih
    return inter / (gl * gw * gh + dl * dw * dh - inter)


def ref_statistics(ov, gt, dt, ign_gt, ign_dt, dc, metric, min_ov, thresh, compute_fp):
    nd, ng = len(dt["name"]), len(gt["name"])
    assigned = [False] * nd
    below = [compute_fp and dt["score"][j] < thresh for j in range(nd)]
    tp = fp = fn = 0
    sim = 0.0
    tps = []
    for i in range(ng):
        if ign_gt[i] == -1:
            continue
        det, valid, max_ov, on_ign = -1, -10000000, 0.0, False
        for j in range(nd):
            if ign_dt[j] == -1 or assigned[j] or below[j]:
                continue
            o, s = ov[j][i], dt["score"][j]
            if not compute_fp and o > min_ov and s > valid:
                det, valid = j, s
            elif compute_fp and o > min_ov and (o > max_ov or on_ign) and ign_dt[j] == 0:
                max_ov, det, valid, on_ign = o, j, 1, False
            elif compute_fp and o > min_ov and valid == -10000000 and ign_dt[j] == 1:
                det, valid, on_ign = j, 1, True
        if valid == -10000000 and ign_gt[i] == 0:
            fn += 1
        elif valid != -10000000 and (ign_gt[i] == 1 or ign_dt[det] == 1):
            assigned[det] = True
        elif valid != -10000000:
            tp += 1
            tps.append(dt["score"][det])
            sim += (1 + math.cos(gt["alpha"][i] - dt["alpha"][det])) / 2
            assigned[det] = True
    if compute_fp:
        for j in range(nd):
            if not (assigned[j] or ign_dt[j] in (-1, 1) or below[j]):
                fp += 1
        stuff = 0
        if metric == 0:
            for box in dc:
                for j in range(nd):
                    if assigned[j] or ign_dt[j] in (-1, 1) or below[j]:
                        continue
                    if ref_box_overlap(dt["bbox"][j], box, 0) > min_ov:
                        assigned[j] = True
                        stuff += 1
        fp -= stuff
    return tp, fp, fn, sim, tps


def ref_thresholds(scores, num_gt):
    scores = sorted(scores, reverse=True)
    current, out = 0.0, []
    for i, s in enumerate(scores):
        l_rec = (i + 1) / num_gt
        r_rec = (i + 2) / num_gt if i < len(scores) - 1 else l_rec
        if (r_rec - current) < (current - l_rec) and i < len(scores) - 1:
            continue
        out.append(s)
        current += 1 / 40.0
    return out


def reference_eval(gts, dts, classes, overlap="strict"):
    table = STRICT if overlap == "strict" else LOOSE
    names = ["Car", "Pedestrian", "Cyclist", "Van", "Person_sitting", "Truck"]
    out = {}
    for metric, kind in enumerate(("bbox", "bev", "3d")):
        ovs = [[[ref_overlap(g, d, i, j, metric) for i in range(len(g["name"]))]
                for j in range(len(d["name"]))] for g, d in zip(gts, dts)]
        for name in classes:
            cls = names.index(name)
            min_ov = table[metric][cls]
            for diff, level in enumerate(("easy", "moderate", "hard")):
                cleaned = [ref_clean(g, d, cls, diff) for g, d in zip(gts, dts)]
                n_valid = sum(c[0] for c in cleaned)
                scores = []
                for f, (g, d) in enumerate(zip(gts, dts)):
                    _, ig, idt, dc = cleaned[f]
                    scores += ref_statistics(ovs[f], g, d, ig, idt, dc, metric, min_ov, 0.0,
                                             False)[4]
                thr = ref_thresholds(scores, n_valid) if n_valid else []
                prec, aos = [0.0] * 41, [0.0] * 41
                for t, th in enumerate(thr):
                    tp = fp = sim = 0.0
                    for f, (g, d) in enumerate(zip(gts, dts)):
                        _, ig, idt, dc = cleaned[f]
                        a, b, _, s, _ = ref_statistics(ovs[f], g, d, ig, idt, dc, metric,
                                                       min_ov, th, True)
                        tp, fp, sim = tp + a, fp + b, sim + s
                    prec[t] = tp / (tp + fp) if tp + fp else 0.0
                    aos[t] = sim / (tp + fp) if tp + fp else 0.0
                for t in range(41):
                    prec[t] = max(prec[t:])
                    aos[t] = max(aos[t:])
                curves = [(kind, prec)] + ([("aos", aos)] if metric == 0 else [])
                for key, curve in curves:
                    out[f"{name}/{key}/{level}/R11"] = sum(curve[0::4]) / 11 * 100
                    out[f"{name}/{key}/{level}/R40"] = sum(curve[1:]) / 40 * 100
    return out


# -- helpers ---------------------------------------------------------------------------------
def as_lists(frame):
    return {k: (list(v) if k == "name" else np.asarray(v, dtype=float).tolist())
            for k, v in frame.items()}


def perturb(frame, rng, drop=0.0, scale=1.0):
    """Detections from ground truth: jittered boxes (noise times `scale`), a score each,
    a fraction `drop` dropped."""
    keep = [i for i, n in enumerate(frame["name"]) if n != "DontCare" and rng.random() >= drop]
    out = {k: np.asarray(v)[keep] if k == "name" else np.asarray(v, dtype=float)[keep]
           for k, v in frame.items()}
    n = len(keep)
    out["bbox"] = out["bbox"] + rng.normal(0, 3.0 * scale, (n, 4))
    out["location"] = out["location"] + rng.normal(0, np.multiply([0.15, 0.05, 0.3], scale),
                                                   (n, 3))
    out["dimensions"] = out["dimensions"] * rng.normal(1, 0.05 * scale, (n, 3))
    out["rotation_y"] = out["rotation_y"] + rng.normal(0, 0.15 * scale, n)
    out["alpha"] = out["alpha"] + rng.normal(0, 0.15 * scale, n)
    out["score"] = rng.uniform(0.1, 1.0, n)
    return out


def dense_scenes(frames, seed):
    """Crowded random frames: objects on a small area, jittered and duplicated detections,
    scores from a coarse grid (ties), every class name, DontCare boxes, tiny boxes."""
    rng = np.random.default_rng(seed)
    names = ["Car", "Van", "Pedestrian", "Person_sitting", "Cyclist", "Truck"]
    gts, dts = [], []
    for _ in range(frames):
        n = int(rng.integers(3, 9))
        name = list(rng.choice(names, n, p=[0.4, 0.1, 0.2, 0.1, 0.15, 0.05]))
        loc = np.column_stack([rng.uniform(-4, 4, n), rng.normal(1.6, 0.2, n),
                               rng.uniform(8, 16, n)])
        dims = np.column_stack([rng.uniform(1.4, 1.8, n), rng.uniform(0.6, 1.8, n),
                                rng.uniform(0.8, 4.2, n)])
        left, top = rng.uniform(0, 1000, n), rng.uniform(100, 200, n)
        bbox = np.column_stack([left, top, left + rng.uniform(20, 150, n),
                                top + rng.uniform(15, 90, n)])
        gt = {"name": name, "truncated": rng.choice([0.0, 0.2, 0.4, 0.6], n),
              "occluded": rng.integers(0, 4, n).astype(float),
              "alpha": rng.uniform(-3, 3, n), "bbox": bbox, "dimensions": dims,
              "location": loc, "rotation_y": rng.uniform(-3, 3, n)}
        if rng.random() < 0.5:  # a DontCare region over a random part of the image
            gt = {k: (v + ["DontCare"] if k == "name" else np.concatenate(
                [np.asarray(v, float), np.asarray(
                    {"bbox": [[0, 100, 500, 300]], "dimensions": [[-1, -1, -1]],
                     "location": [[-1000, -1000, -1000]]}.get(k, [-1.0]), float)]))
                for k, v in gt.items()}
        src = np.concatenate([np.arange(n), rng.integers(0, n, n)])  # with duplicates
        det = perturb({k: np.asarray(v)[src] for k, v in gt.items()}, rng, drop=0.2)
        det["score"] = rng.integers(1, 6, len(det["name"])) / 5.0
        det["name"] = np.array([s if rng.random() > 0.1 else "Car" for s in det["name"]])
        gts.append(gt)
        dts.append(det)
    return gts, dts


def assert_same(fast, slow):
    for key, value in slow.items():
        assert fast[key] == pytest.approx(value, abs=1e-9), key


@pytest.fixture(scope="module")
def kitti_labels(shared_data: Path):
    folder = shared_data / "kitti" / "training" / "label_2"
    if not folder.is_dir():
        pytest.skip(f"no KITTI label_2 folder in {shared_data}")
    frames = read_label_dir(folder, with_score=False)
    assert sorted(frames) == ["000000", "000001", "000002"]
    return [frames[k].as_dict() for k in sorted(frames)]


CLASSES = ["Car", "Pedestrian", "Cyclist"]


# -- tests -------------------------------------------------------------------------------------
def test_real_frames_gt_vs_itself(kitti_labels):
    """Perfect detections of the 3 real frames. With n valid boxes of a class the official
    curve has only min(n, 41) thresholds, so AP is 100 only from 41 boxes on; with one box
    (Car easy/moderate/hard, Pedestrian easy/moderate) precision is 1 at sample point 0
    only: R11 = 100/11, R40 = 0."""
    dets = []
    for frame in kitti_labels:
        det = {k: np.asarray(v) for k, v in frame.items()}
        det["score"] = np.linspace(1.0, 0.5, len(frame["name"]))
        dets.append(det)
    fast = kitti_eval(kitti_labels, dets, CLASSES)
    slow = reference_eval([as_lists(f) for f in kitti_labels], [as_lists(d) for d in dets],
                          CLASSES)
    assert_same(fast, slow)
    # 000000: Pedestrian (occ 0, trunc 0, 165 px): valid at every level; 000001: Car 21.6 px
    # (ignored), Cyclist occluded 3 (ignored); 000002: Car 33.3 px -> moderate / hard only
    assert fast["Pedestrian/3d/easy/R11"] == pytest.approx(100 / 11)
    assert fast["Pedestrian/3d/easy/R40"] == 0.0
    assert fast["Car/3d/easy/R11"] == 0.0                     # no valid easy car
    assert fast["Car/3d/moderate/R11"] == pytest.approx(100 / 11)
    assert fast["Cyclist/bbox/hard/R11"] == 0.0               # no valid cyclist


def test_real_frames_perturbed(kitti_labels):
    rng = np.random.default_rng(3)
    # 20 copies of the 3 frames so each class has enough boxes for a real PR curve
    gts = kitti_labels * 20
    dts = [perturb(f, rng, drop=0.1, scale=0.3) for f in gts]
    for overlap in ("strict", "loose"):
        fast = kitti_eval(gts, dts, CLASSES, overlap)
        slow = reference_eval([as_lists(f) for f in gts], [as_lists(d) for d in dts],
                              CLASSES, overlap)
        assert_same(fast, slow)
        assert 0 < fast["Pedestrian/3d/moderate/R40"] < 100


def test_dense_random_scenes():
    """Crowded scenes: duplicates, ties in score, Van / Person_sitting, DontCare, small boxes."""
    gts, dts = dense_scenes(40, seed=5)
    for overlap in ("strict", "loose"):
        fast = kitti_eval(gts, dts, CLASSES, overlap)
        slow = reference_eval([as_lists(f) for f in gts], [as_lists(d) for d in dts],
                              CLASSES, overlap)
        assert_same(fast, slow)
        assert any(0 < v < 100 for v in fast.values())


@pytest.mark.parametrize("seed", [11, 12])
def test_dense_scenes_with_many_duplicates(seed):
    """Every detection duplicated a few times with tied scores: large connected components
    of candidates, where the counts change at many score levels inside one component."""
    gts, dts = dense_scenes(25, seed=seed)
    rng = np.random.default_rng(seed)
    for d in dts:
        src = np.repeat(np.arange(len(d["name"])), rng.integers(1, 4, len(d["name"])))
        for key, value in d.items():
            d[key] = np.asarray(value)[src]
        d["bbox"] = d["bbox"] + rng.normal(0, 1.0, d["bbox"].shape)
        d["score"] = rng.integers(1, 4, len(src)) / 4.0
    for overlap in ("strict", "loose"):
        fast = kitti_eval(gts, dts, CLASSES, overlap)
        slow = reference_eval([as_lists(f) for f in gts], [as_lists(d) for d in dts],
                              CLASSES, overlap)
        assert_same(fast, slow)
