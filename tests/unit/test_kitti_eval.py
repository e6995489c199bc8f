"""KITTI evaluation: box overlaps, the official AP rules on hand-made scenes, the
label-folder format and the benchmark specs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from refbench.benchmarks.formats.kitti import (KittiLabelDirFormat, KittiObjects,
                                              parse_label_file, read_label_dir,
                                              read_references, write_label_dir)
from refbench.errors import RefbenchError
from refbench.evaluation.kitti import (KittiAP, ap_r11, ap_r40, get_thresholds, interpolated,
                                       kitti_eval)
from refbench.evaluation.kitti_iou import (bev_corners, bev_iou, candidate_pair_overlaps,
                                          image_iou, iou_3d, pair_bev_3d_iou,
                                          pair_image_overlap, same_frame_pairs)


# -- overlaps --------------------------------------------------------------------------------
def test_image_iou_has_no_plus_one_pixel() -> None:
    iou = image_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]]))
    assert iou[0, 0] == pytest.approx(50 / 150)   # with +1 pixel it would be 66/176
    assert iou[0, 1] == 0.0


def test_bev_iou_hand_cases() -> None:
    base = np.array([[0, 0, 4, 2, 0.0]])
    others = np.array([
        [1, 0, 4, 2, 0.0],              # shifted along the length: 3 x 2 of 16 -> 6 / 10
        [20, 20, 4, 2, 0.0],            # disjoint
        [0, 0, 1, 1, 0.7],              # contained: 1 / 8
        [0, 0, 4, 2, 0.0],              # identical
    ])
    assert bev_iou(base, others)[0] == pytest.approx([0.6, 0.0, 1 / 8, 1.0])
    square = np.array([[0, 0, 2, 2, 0.0]])
    turned = np.array([[0, 0, 2, 2, math.pi / 4]])
    octagon = 8 * (math.sqrt(2) - 1)    # a square and itself turned by 45 degrees
    assert bev_iou(square, turned)[0, 0] == pytest.approx(octagon / (8 - octagon))


def test_bev_rotation_convention() -> None:
    """ry turns the length (camera x) towards -z: x' = cos x + sin z, z' = -sin x + cos z."""
    corners = bev_corners(np.array([[0, 0, 4, 1, math.pi / 2]]))[0]
    assert np.ptp(corners[:, 0]) == pytest.approx(1.0)
    assert np.ptp(corners[:, 1]) == pytest.approx(4.0)
    along_z = np.array([[0, 0, 4, 1, math.pi / 2]])
    probe = np.array([[0, 1.5, 0.5, 0.5, 0.0]])
    assert bev_iou(along_z, probe)[0, 0] == pytest.approx(0.25 / 4.0)
    # a small turn: the corner (l/2, w/2) moves to z = -sin(ry) l/2 + cos(ry) w/2
    ry = 0.3
    c = bev_corners(np.array([[0, 0, 4, 2, ry]]))[0]
    expected = (math.cos(ry) * 2 + math.sin(ry) * 1, -math.sin(ry) * 2 + math.cos(ry) * 1)
    assert any(np.allclose(p, expected) for p in c)


def test_rotated_iou_matches_a_dense_grid() -> None:
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(-1, 1, 12), rng.uniform(-1, 1, 12), rng.uniform(1, 4, 12),
                         rng.uniform(0.5, 2, 12), rng.uniform(-3, 3, 12)])
    b = a + np.column_stack([rng.normal(0, 0.7, (12, 2)), rng.normal(0, 0.3, (12, 2)),
                             rng.normal(0, 1, 12)])
    b[:, 2:4] = np.abs(b[:, 2:4]) + 0.3
    xs = np.linspace(-5, 5, 801)
    gx, gz = np.meshgrid(xs, xs)
    cell = (xs[1] - xs[0]) ** 2

    def inside(box: np.ndarray) -> np.ndarray:
        x, z, length, width, ry = box
        # local coordinates: invert x' = c lx + s lz, z' = -s lx + c lz
        dx, dz = gx - x, gz - z
        lx = math.cos(ry) * dx - math.sin(ry) * dz
        lz = math.sin(ry) * dx + math.cos(ry) * dz
        return (np.abs(lx) <= length / 2) & (np.abs(lz) <= width / 2)

    ious = np.diag(bev_iou(a, b))
    for k in range(12):
        ia, ib = inside(a[k]), inside(b[k])
        grid = np.sum(ia & ib) * cell / (np.sum(ia | ib) * cell)
        assert ious[k] == pytest.approx(grid, abs=0.01), k


def test_iou_3d_height_is_bottom_up_with_y_down() -> None:
    # boxes (x, y, z, h, w, l, ry); y is the bottom, the box spans [y - h, y]
    a = np.array([[0, 1.5, 10, 1.0, 2.0, 4.0, 0.0]])
    inside = np.array([[0, 1.0, 10, 0.2, 2.0, 4.0, 0.0]])     # [0.8, 1.0] inside [0.5, 1.5]
    above = np.array([[0, 0.5, 10, 1.0, 2.0, 4.0, 0.0]])       # [-0.5, 0.5]: touching
    half = np.array([[0, 2.0, 10, 1.0, 2.0, 4.0, 0.0]])        # [1.0, 2.0]: half overlaps
    assert iou_3d(a, inside)[0, 0] == pytest.approx(0.2)
    assert iou_3d(a, above)[0, 0] == 0.0
    assert iou_3d(a, half)[0, 0] == pytest.approx(0.5 / 1.5)


@pytest.mark.parametrize("floors", [(0.5, 0.5, 0.5), (0.5, 0.25, 0.25), (0.7, 0.7, 0.0)])
def test_candidate_pairs_keep_every_overlap_above_its_floor(floors) -> None:
    """The screened pairs hold exactly the brute-force overlaps that pass a floor: crowded
    frames, identical and turned boxes, zero and negative sizes."""
    rng = np.random.default_rng(7)
    sides = []
    for n in (300, 700):
        frame = np.sort(rng.integers(0, 40, n))
        left, top = rng.uniform(0, 300, n), rng.uniform(0, 100, n)
        bbox = np.column_stack([left, top, left + rng.uniform(5, 80, n),
                                top + rng.uniform(5, 60, n)])
        loc = np.column_stack([rng.uniform(-5, 5, n), rng.normal(1.6, 0.3, n),
                               rng.uniform(5, 15, n)])
        dims = rng.uniform(0.5, 4.0, (n, 3))
        ry = rng.uniform(-np.pi, np.pi, n)
        sides.append([frame, rng.random(n) < 0.9, bbox, loc, dims, ry])
    (fa, _, ba, la, da, ra), (fb, _, bb, lb, db, rb) = sides
    same = np.flatnonzero(fb < 40)[:200]        # copies of boxes of the same frame
    src = np.searchsorted(fa, fb[same])
    ok = fa[np.minimum(src, len(fa) - 1)] == fb[same]
    same, src = same[ok], src[ok]
    bb[same], lb[same], db[same], rb[same] = ba[src], la[src], da[src], ra[src]
    rb[same[::3]] += np.pi / 2                  # turned copies
    db[same[::7], 1] = 0.0                      # degenerate and negative sizes
    db[same[::11], 0] = -1.0
    g, d, ovs = candidate_pair_overlaps(tuple(sides[0]), tuple(sides[1]), floors, chunk=500)
    ag, ad = same_frame_pairs(fa, sides[0][1], fb, sides[1][1])
    full_2d = pair_image_overlap(ba[ag], bb[ad])
    full_bev, full_3d = pair_bev_3d_iou(np.column_stack([la[ag], da[ag], ra[ag]]),
                                        np.column_stack([lb[ad], db[ad], rb[ad]]))
    full = (full_2d, full_bev, full_3d)
    wanted = np.logical_or.reduce([ov > f for ov, f in zip(full, floors)])
    assert sorted(zip(g.tolist(), d.tolist())) == sorted(zip(ag[wanted].tolist(),
                                                             ad[wanted].tolist()))
    order = np.lexsort((d, g))
    expect = np.lexsort((ad[wanted], ag[wanted]))
    for got, ov, floor in zip(ovs, full, floors):
        above = ov[wanted][expect] > floor
        assert np.array_equal(got[order][above], ov[wanted][expect][above])
        assert np.all((got[order] == ov[wanted][expect]) | (ov[wanted][expect] <= floor))


# -- AP on hand-made scenes ----------------------------------------------------------------------
def obj(name: str = "Car", x: float = 0.0, left: float = 100.0, height: float = 60.0,
        occluded: int = 0, truncated: float = 0.0, score: float | None = None,
        z: float = 20.0) -> dict:
    o = {"name": name, "truncated": truncated, "occluded": occluded, "alpha": 0.2,
         "bbox": [left, 150.0, left + 80.0, 150.0 + height], "dimensions": [1.5, 1.6, 3.9],
         "location": [x, 1.6, z], "rotation_y": 0.1}
    if score is not None:
        o["score"] = score
    return o


def frame(*objects: dict) -> dict:
    keys = ["name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location",
            "rotation_y"] + (["score"] if objects and "score" in objects[0] else [])
    return {k: [o[k] for o in objects] for k in keys}


def scene(n: int = 50, extra_gt=None, extra_dt=None, score: float = 0.9):
    """n frames with one easy car each, detected perfectly at `score`; extras go to frame 0."""
    gts = [frame(obj()) for _ in range(n)]
    dts = [frame(obj(score=score)) for _ in range(n)]
    if extra_gt:
        gts[0] = frame(obj(), *extra_gt)
    if extra_dt:
        dts[0] = frame(obj(score=score), *extra_dt)
    return gts, dts


def car_keys(result: dict, value: float, kinds=("bbox", "bev", "3d", "aos")) -> None:
    for kind in kinds:
        for level in ("easy", "moderate", "hard"):
            for r in ("R11", "R40"):
                assert result[f"Car/{kind}/{level}/{r}"] == pytest.approx(value), (kind, level, r)


def test_perfect_detections_score_100() -> None:
    car_keys(kitti_eval(*scene(), ["Car"]), 100.0)


def test_one_false_positive_above_every_true_positive() -> None:
    # 50 TPs at 0.9 -> 41 thresholds, all 0.9; one FP at 1.0 counts at each: 50 / 51
    gts, dts = scene(extra_dt=[obj(x=8.0, left=600.0, score=1.0)])
    car_keys(kitti_eval(gts, dts, ["Car"]), 100 * 50 / 51)


def test_false_positive_below_every_threshold_is_free() -> None:
    gts, dts = scene(extra_dt=[obj(x=8.0, left=600.0, score=0.5)])
    car_keys(kitti_eval(gts, dts, ["Car"]), 100.0)


def test_detection_inside_dontcare_is_ignored_for_bbox_only() -> None:
    dontcare = {"name": "DontCare", "truncated": -1, "occluded": -1, "alpha": -10,
                "bbox": [590.0, 140.0, 700.0, 230.0], "dimensions": [-1, -1, -1],
                "location": [-1000, -1000, -1000], "rotation_y": -10}
    gts, dts = scene(extra_gt=[dontcare], extra_dt=[obj(x=8.0, left=600.0, score=1.0)])
    result = kitti_eval(gts, dts, ["Car"])
    car_keys(result, 100.0, kinds=("bbox", "aos"))
    car_keys(result, 100 * 50 / 51, kinds=("bev", "3d"))   # the port applies DontCare to 2D only


def test_van_is_not_penalised_for_car() -> None:
    van = obj(name="Van", x=8.0, left=600.0)
    # a Car detection on a Van box is matched to the ignored Van: neither TP nor FP
    gts, dts = scene(extra_gt=[van], extra_dt=[obj(x=8.0, left=600.0, score=1.0)])
    car_keys(kitti_eval(gts, dts, ["Car"]), 100.0)
    # a detection labelled Van is not a Car detection at all
    gts, dts = scene(extra_dt=[obj(name="Van", x=-8.0, left=300.0, score=1.0)])
    car_keys(kitti_eval(gts, dts, ["Car"]), 100.0)


def test_difficulty_and_small_detections() -> None:
    # a missed car 30 px high: not easy (<= 40 px), a miss at moderate and hard
    tiny = obj(x=8.0, left=600.0, height=30.0)
    gts, dts = scene(extra_gt=[tiny])
    result = kitti_eval(gts, dts, ["Car"])
    assert result["Car/3d/easy/R40"] == 100.0
    assert result["Car/3d/moderate/R40"] < 100.0
    # a false detection 20 px high is ignored at every level (lower than MIN_HEIGHT)
    gts, dts = scene(extra_dt=[obj(x=8.0, left=600.0, height=20.0, score=1.0)])
    car_keys(kitti_eval(gts, dts, ["Car"]), 100.0)


def test_a_single_box_gives_one_sample_point() -> None:
    """The official curve is indexed by threshold: one valid box gives one threshold."""
    result = kitti_eval([frame(obj())], [frame(obj(score=0.9))], ["Car"])
    assert result["Car/3d/moderate/R11"] == pytest.approx(100 / 11)
    assert result["Car/3d/moderate/R40"] == 0.0


def test_r11_and_r40_of_a_hand_made_curve() -> None:
    curve = np.array([1.0] * 21 + [0.5] * 20)
    assert ap_r11(curve) == pytest.approx((6 + 5 * 0.5) / 11 * 100)
    assert ap_r40(curve) == pytest.approx((20 + 20 * 0.5) / 40 * 100)
    assert interpolated(np.array([0.2, 0.9, 0.5, 0.7, 0.0])).tolist() == [0.9, 0.9, 0.7, 0.7, 0.0]
    # half of 40 cars found (score 1.0), 20 FPs at 0.5: 20 thresholds at precision 1
    gts = [frame(obj()) for _ in range(40)]
    dts = [frame(obj(score=1.0)) if i < 20 else frame(obj(x=8.0, left=600.0, score=0.5))
           for i in range(40)]
    result = kitti_eval(gts, dts, ["Car"])
    assert result["Car/3d/moderate/R11"] == pytest.approx(5 / 11 * 100)   # points 0..16
    assert result["Car/3d/moderate/R40"] == pytest.approx(19 / 40 * 100)  # points 1..19


def test_get_thresholds_samples_recall() -> None:
    assert get_thresholds(np.array([0.9]), 1).tolist() == [0.9]
    scores = np.linspace(1, 0.01, 100)
    thr = get_thresholds(scores, 100)
    assert len(thr) == 41 and thr[0] == 1.0 and thr[-1] == pytest.approx(0.01)


def port_thresholds(scores: list[float], num_gt: int, num_sample_pts: int = 41) -> list[float]:
    """The port's `get_thresholds`, loop for loop."""
    scores = sorted(scores, reverse=True)
    current, out = 0.0, []
    for i, score in enumerate(scores):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < len(scores) - 1 else l_recall
        if (r_recall - current) < (current - l_recall) and i < len(scores) - 1:
            continue
        out.append(score)
        current += 1 / (num_sample_pts - 1.0)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_get_thresholds_equals_the_ports_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(0, 400))
        scores = np.round(rng.uniform(0, 1, n), int(rng.integers(1, 4)))  # with ties
        num_gt = n + int(rng.integers(1 if n == 0 else 0, 50))
        assert get_thresholds(scores, num_gt).tolist() == port_thresholds(list(scores), num_gt)


def test_streaming_merge_equals_one_shot() -> None:
    gts, dts = scene(extra_dt=[obj(x=8.0, left=600.0, score=1.0)])
    one = KittiAP(classes=["Car", "Pedestrian"])
    one.update(dts, gts)
    a, b = KittiAP(classes=["Car", "Pedestrian"]), KittiAP(classes=["Car", "Pedestrian"])
    a.update(dts[:20], gts[:20])
    b.update(dts[20:], gts[20:])
    a.merge(b)
    assert a.compute() == one.compute()
    assert set(one.compute()) == set(one.keys)
    with pytest.raises(RefbenchError):
        a.merge(KittiAP(classes=["Car"]))


def test_metric_arguments_are_checked() -> None:
    with pytest.raises(RefbenchError, match="unknown KITTI class"):
        KittiAP(classes=["Tram"])
    with pytest.raises(RefbenchError, match="overlap"):
        KittiAP(classes=["Car"], overlap="medium")
    loose = kitti_eval(*scene(), ["Pedestrian", "Cyclist"], "loose")
    assert loose["mean/3d/moderate/R40"] == 0.0  # no pedestrians or cyclists at all


def test_missing_prediction_frame_is_empty() -> None:
    gts, _ = scene()
    metric = KittiAP(classes=["Car"])
    metric.update([None] * 50, gts)
    assert metric.compute()["Car/3d/moderate/R40"] == 0.0


# -- the label folder format ------------------------------------------------------------------
GOOD = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59 0.93\n"


def test_write_read_roundtrip_and_atomic_replace(tmp_path: Path) -> None:
    gts, dts = scene(n=3)
    preds = {f"{i:06d}": KittiObjects.from_mapping(d, True) for i, d in enumerate(dts)}
    folder = tmp_path / "label_2"
    (folder).mkdir()
    (folder / "stale.txt").write_text(GOOD)
    write_label_dir(folder, preds)
    assert sorted(p.name for p in folder.iterdir()) == ["000000.txt", "000001.txt",
                                                        "000002.txt"]
    back = read_label_dir(folder, with_score=True)
    assert back == preds
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    # ground truth (no score) written as predictions reads back equal, with score 1.0
    refs = {f"{i:06d}": KittiObjects.from_mapping(g, False) for i, g in enumerate(gts)}
    write_label_dir(folder, refs)
    assert read_label_dir(folder, with_score=True) == refs
    assert read_label_dir(folder, with_score=True)["000000"].score.tolist() == [1.0]


@pytest.mark.parametrize("line,message", [
    ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n",
     "expected 16 columns"),
    (GOOD.replace("46.70", "far"), "not a number"),
    (GOOD.replace("46.70", "nan"), "not finite"),
    (GOOD.replace("1.65", "-1.65"), "negative size"),
    (GOOD.replace(" 0 -1.58", " 0.5 -1.58"), "occluded"),
])
def test_bad_prediction_files(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "000007.txt"
    path.write_text(GOOD + line)
    with pytest.raises(RefbenchError, match=message) as err:
        parse_label_file(path, with_score=True)
    assert str(err.value).startswith(f"{path}:2: ")
    assert "\n" not in str(err.value)


def test_references_from_root_and_split(tmp_path: Path) -> None:
    labels = tmp_path / "training" / "label_2"
    labels.mkdir(parents=True)
    for fid in ("000000", "000001", "000002"):
        (labels / f"{fid}.txt").write_text(GOOD.rsplit(" ", 1)[0] + "\n")
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "val.txt").write_text("000001\n000002\n")
    assert sorted(read_references(tmp_path, "val")) == ["000001", "000002"]
    assert sorted(read_references(labels, "val")) == ["000000", "000001", "000002"]
    (tmp_path / "ImageSets" / "val.txt").write_text("000003\n")
    with pytest.raises(RefbenchError, match="missing"):
        read_references(tmp_path, "val")


def test_references_from_dataset_rows() -> None:
    import datasets as hf_datasets

    gts, _ = scene(n=2)
    rows = [{"id": f"{i:06d}", **g} for i, g in enumerate(gts)]
    rows.append({"id": "000009", **{k: [] for k in gts[0]}})  # a frame without objects
    ds = hf_datasets.Dataset.from_list(rows)
    refs = KittiLabelDirFormat().references_from_dataset(ds, None)  # type: ignore[arg-type]
    assert sorted(refs) == ["000000", "000001", "000009"]
    assert refs["000000"] == KittiObjects.from_mapping(gts[0], False)
    assert len(refs["000009"].name) == 0


def test_evaluate_file_counts_missing_frames(tmp_path: Path) -> None:
    from refbench.benchmarks.scoring import evaluate_file

    gts, dts = scene(n=50)
    write_label_dir(tmp_path / "gt", {f"{i:06d}": KittiObjects.from_mapping(g, False)
                                      for i, g in enumerate(gts)})
    # the GT folder holds 15 columns: rewrite it as label_2 files
    for path in (tmp_path / "gt").iterdir():
        path.write_text("".join(" ".join(line.split()[:15]) + "\n"
                                for line in path.read_text().splitlines()))
    write_label_dir(tmp_path / "label_2", {f"{i:06d}": d for i, d in enumerate(dts) if i})
    result = evaluate_file("kitti-car-3d", tmp_path / "label_2", tmp_path / "gt")
    assert result.counts["missing"] == 1 and result.counts["scored"] == 50
    assert any("1 id(s) of the references have no prediction (first: 000000), scored as "
               "frames without detections" in w for w in result.warnings)
    assert 0 < result.metrics["Car/3d/moderate/R40"] < 100
    assert result.primary == "Car/3d/moderate/R40"
