"""Hand-computed cases of the Waymo 3D detection metric (refbench.evaluation.waymo)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refbench.errors import RefbenchError
from refbench.evaluation.waymo import (
    BoxFrame,
    FrameBoxes,
    Waymo3DMetric,
    assign_max,
    fast_array_repr,
    frame_measurements,
    hungarian_match,
    iou_3d,
    iou_matrix,
    mean_average_precision,
    measure_frames,
)

VEH, PED, CYCLIST_ = 1, 2, 4


def gt(boxes, types, points=None, difficulty=None, **extra):
    boxes = np.asarray(boxes, float).reshape(-1, 7)
    n = len(boxes)
    return {"boxes": boxes, "types": np.asarray(types),
            "num_points": np.asarray(points if points is not None else [100] * n),
            "difficulty": np.asarray(difficulty if difficulty is not None else [0] * n),
            **extra}


def pd(boxes, types, scores):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 7), "types": np.asarray(types),
            "scores": np.asarray(scores, float)}


def score(preds, refs, **kw):
    metric = Waymo3DMetric(**kw)
    metric.update(preds, refs)
    return metric.compute()


CAR = [10.0, 2.0, 1.0, 4.5, 2.0, 1.6, 0.3]


def test_rotated_iou_hand_values():
    a = np.array([0, 0, 0, 2, 2, 2, 0.0])
    assert iou_3d(a, a) == pytest.approx(1.0)
    b = a.copy(); b[6] = math.pi / 4  # square vs its 45 deg rotation: an octagon
    octagon = 8 * (math.sqrt(2) - 1)
    assert iou_3d(a, b) == pytest.approx(octagon * 2 / (16 - octagon * 2))
    c = a.copy(); c[0] = 1.0
    assert iou_3d(a, c) == pytest.approx(4 / 12)
    d = c.copy(); d[2] = 1.0  # half the height overlaps as well
    assert iou_3d(a, d) == pytest.approx(2 / 14)
    e = a.copy(); e[6] = math.pi / 2  # a square rotated by 90 deg is the same square
    assert iou_3d(a, e) == pytest.approx(1.0)
    far = a.copy(); far[0] = 5.0
    assert iou_matrix(a[None], far[None])[0, 0] == 0.0
    flat = a.copy(); flat[5] = 0.01  # a dimension <= 1 cm gives IoU 0, as iou.cc
    assert iou_3d(a, flat) == 0.0 and iou_3d(flat, flat) == 0.0


def test_perfect_predictions_score_one():
    boxes = [CAR, [30.0, -5.0, 1.0, 0.8, 0.8, 1.8, 1.0]]
    out = score([pd(boxes, [VEH, PED], [0.9, 0.8])], [gt(boxes, [VEH, PED])])
    for key in ("VEHICLE/L1/mAP", "VEHICLE/L2/mAPH", "PEDESTRIAN/L2/mAP",
                "PEDESTRIAN/L1/mAPH"):
        assert out[key] == pytest.approx(1.0)
    assert out["CYCLIST/L2/mAP"] == 0.0 and out["SIGN/L1/mAPH"] == 0.0
    assert out["sampled_interval"] == 1.0


def test_heading_flipped_by_pi_gives_ap_one_aph_zero():
    flipped = list(CAR); flipped[6] += math.pi
    out = score([pd([flipped], [VEH], [0.9])], [gt([CAR], [VEH])])
    assert out["VEHICLE/L2/mAP"] == pytest.approx(1.0)
    assert out["VEHICLE/L2/mAPH"] == pytest.approx(0.0)
    # a square box turned by pi/2 overlaps fully: AP 1, heading accuracy 0.5 -> APH 0.5
    square = [5.0, 5.0, 1.0, 0.8, 0.8, 1.8, 0.0]
    turned = list(square); turned[6] += math.pi / 2
    out = score([pd([turned], [PED], [0.9])], [gt([square], [PED])])
    assert out["PEDESTRIAN/L2/mAP"] == pytest.approx(1.0)
    assert out["PEDESTRIAN/L2/mAPH"] == pytest.approx(0.5)


def test_false_positive_with_higher_score_halves_ap():
    # cut-offs <= 0.5: TP 1, FP 1 -> P 0.5, R 1; above: R 0 (P forced to 1). The curve is
    # P = 0.5 on (0, 1] once the fake (recall 0, P 1) point takes the best real precision.
    fp_box = [40.0, 20.0, 1.0, 4.5, 2.0, 1.6, 0.0]
    out = score([pd([CAR, fp_box], [VEH, VEH], [0.5, 0.8])], [gt([CAR], [VEH])])
    assert out["VEHICLE/L1/mAP"] == pytest.approx(0.5)
    # the FP below the TP's score: P 1 at R 1 for cut-offs in (0.3, 0.5] -> AP 1
    out = score([pd([CAR, fp_box], [VEH, VEH], [0.5, 0.3])], [gt([CAR], [VEH])])
    assert out["VEHICLE/L1/mAP"] == pytest.approx(1.0)


def test_map_interpolation_matches_hand_area():
    # one point (P 1, R 0.5): area 0.5. Points (1, 0.5) and (0.5, 1): the curve is sampled
    # every 0.05 from recall 1 down with P 0.5 until recall 0.55, then a trapezoid to
    # (1, 0.5), then P 1 down to recall 0: 0.45 * 0.5 + 0.05 * 0.75 + 0.5 = 0.7625
    assert mean_average_precision([1.0], [0.5]) == pytest.approx(0.5)
    assert mean_average_precision([1.0, 0.5], [0.5, 1.0]) == pytest.approx(0.7625)
    assert mean_average_precision([], []) == 0.0


def test_level_2_includes_level_1_and_points_rule():
    easy = CAR
    hard = [20.0, -8.0, 1.0, 4.5, 2.0, 1.6, 0.0]
    refs = [gt([easy, hard], [VEH, VEH], points=[50, 3])]  # 3 points -> LEVEL_2
    out = score([pd([easy], [VEH], [0.9])], refs)
    assert out["VEHICLE/L1/mAP"] == pytest.approx(1.0)
    assert out["VEHICLE/L2/mAP"] == pytest.approx(0.5)  # P 1 up to recall 0.5
    explicit = [gt([easy, hard], [VEH, VEH], points=[50, 50], difficulty=[0, 2])]
    assert score([pd([easy], [VEH], [0.9])], explicit)["VEHICLE/L2/mAP"] == pytest.approx(0.5)


def test_a_match_to_a_level_2_box_is_a_tp_at_level_1():
    # detection_metrics.cc counts every matched prediction as a TP whatever the matched
    # box's level; only unmatched boxes are filtered by level (FN iff level <= LEVEL_k)
    easy = CAR
    hard = [20.0, -8.0, 1.0, 4.5, 2.0, 1.6, 0.0]
    refs = [gt([easy, hard], [VEH, VEH], points=[50, 3])]
    out = score([pd([hard], [VEH], [0.9])], refs)
    assert out["VEHICLE/L1/mAP"] == pytest.approx(0.5)  # TP 1 (the hard box), FN 1 (easy)
    assert out["VEHICLE/L2/mAP"] == pytest.approx(0.5)


def test_boxes_without_points_are_dropped():
    other = [20.0, -8.0, 1.0, 4.5, 2.0, 1.6, 0.0]
    out = score([pd([CAR], [VEH], [0.9])], [gt([CAR, other], [VEH, VEH], points=[50, 0])])
    assert out["VEHICLE/L2/mAP"] == pytest.approx(1.0)


def test_range_breakdown_by_centre_distance():
    near = [10.0, 0.0, 1.0, 4.5, 2.0, 1.6, 0.0]
    mid = [0.0, 40.0, 1.0, 4.5, 2.0, 1.6, 0.0]
    far = [60.0, 0.0, 1.0, 4.5, 2.0, 1.6, 0.0]
    out = score([pd([mid], [VEH], [0.9])], [gt([near, mid, far], [VEH] * 3)])
    assert out["VEHICLE/L1/RANGE_30_50/mAP"] == pytest.approx(1.0)
    assert out["VEHICLE/L1/RANGE_0_30/mAP"] == 0.0
    assert out["VEHICLE/L1/RANGE_50_INF/mAP"] == 0.0
    assert out["VEHICLE/L1/mAP"] == pytest.approx(1 / 3, abs=1e-6)


def test_hungarian_differs_from_greedy():
    # boxes 2x2x2 shifted along x by d: IoU = (2 - d) / (2 + d)
    gts = np.array([[0.0, 0, 0, 2, 2, 2, 0], [0.6, 0, 0, 2, 2, 2, 0]])
    preds = np.array([[0.25, 0, 0, 2, 2, 2, 0], [-0.3, 0, 0, 2, 2, 2, 0]])
    iou = iou_matrix(preds, gts)
    assert iou[0, 0] > iou[0, 1] > 0.5 and iou[1, 1] < 0.5
    # greedy by score would give pred 0 -> gt 0 and leave pred 1 unmatched
    assert hungarian_match(iou, 0.5).tolist() == [1, 0]
    out = score([pd(preds, [PED, PED], [0.9, 0.8])], [gt(gts, [PED, PED])])
    assert out["PEDESTRIAN/L1/mAP"] == pytest.approx(1.0)


def _segment(n_frames: int, hit_every: int):
    preds, refs = [], []
    for i in range(n_frames):
        refs.append(gt([CAR], [VEH], context_name="seg", timestamp=1000 + i))
        preds.append(pd([CAR], [VEH], [0.9]) if i % hit_every == 0 else pd([], [], []))
    return preds, refs


def test_sampled_interval_selects_every_kth_frame_and_is_recorded():
    preds, refs = _segment(10, 5)
    all_frames = score(preds, refs)
    sampled = score(preds[::-1], refs[::-1], sampled_interval=5)  # order does not matter
    assert all_frames["VEHICLE/L1/mAP"] == pytest.approx(0.2)
    assert sampled["VEHICLE/L1/mAP"] == pytest.approx(1.0)
    assert sampled["sampled_interval"] == 5.0
    assert Waymo3DMetric(sampled_interval=5).higher_is_better("sampled_interval") is None
    with pytest.raises(RefbenchError, match="sampled_interval"):
        Waymo3DMetric(sampled_interval=0)


def test_streaming_merge_equals_one_shot():
    rng = np.random.default_rng(0)
    preds, refs = [], []
    for i in range(6):
        boxes = np.column_stack([rng.uniform(-60, 60, (5, 2)), np.ones(5),
                                 np.tile([4.0, 2.0, 1.5], (5, 1)), rng.uniform(-3, 3, 5)])
        noisy = boxes + rng.normal(0, 0.2, boxes.shape)
        refs.append(gt(boxes, [VEH, VEH, PED, CYCLIST_, VEH], points=rng.integers(0, 20, 5),
                       context_name="s", timestamp=i))
        preds.append(pd(noisy, [VEH, VEH, PED, CYCLIST_, VEH], rng.uniform(0, 1, 5)))
    one = score(preds, refs)
    a, b = Waymo3DMetric(), Waymo3DMetric()
    a.update(preds[:2], refs[:2])
    b.update(preds[2:], refs[2:])
    a.merge(b)
    assert a.compute() == pytest.approx(one)
    assert 0 < one["VEHICLE/L2/mAP"] < 1
    with pytest.raises(RefbenchError, match="added twice"):
        a.merge(b)



# -- the fast paths keep every number ------------------------------------------------------
def _busy_frames(seed: int, n_frames: int = 12):
    """Crowded random frames: duplicates, turned copies, shared scores (many components)."""
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for i in range(n_frames):
        n = int(rng.integers(0, 25))
        types = rng.choice([0, 1, 2, 4], n, p=[0.05, 0.35, 0.4, 0.2])
        size = np.where(types[:, None] == 1, [4.5, 2.0, 1.6], [0.9, 0.9, 1.8])
        boxes = np.column_stack([rng.uniform(-8, 8, (n, 2)) + rng.choice([0, 35, 60], (n, 1)),
                                 np.zeros(n), size, rng.choice([0.0, 0.5, np.pi / 2], n)])
        twin = np.nonzero(rng.random(n) < 0.3)[0]  # boxes with a near twin: shared matches
        if n:
            src = rng.integers(0, n, len(twin))
            boxes[twin], types[twin] = boxes[src] + [0.1, 0, 0, 0, 0, 0, 0], types[src]
        refs.append(gt(boxes, types, points=rng.integers(0, 12, n),
                       difficulty=rng.choice([0, 1, 2], n), context_name="s", timestamp=i))
        src = rng.integers(0, max(n, 1), int(rng.integers(0, 30))) if n else np.zeros(0, int)
        noise = rng.normal(0, 0.1, (len(src), 7)) * rng.choice([0, 1], (len(src), 1))
        noise[:, 3:6] = 0
        noise[:, 6] += rng.choice([0, np.pi, np.pi / 2], len(src))
        preds.append(pd(boxes[src] + noise, types[src],
                        rng.choice([0.3, 0.5, 0.505, 1.0, 0.0], len(src))))
    return preds, refs


def test_chunks_and_frames_sum_to_the_same_counts():
    preds, refs = _busy_frames(1)
    p, g = FrameBoxes.gather(preds, False), FrameBoxes.gather(refs, True)
    whole = measure_frames(p, g)
    assert whole[..., 0].sum() > 0 and whole[..., 3].sum() > 0
    per_frame = sum(frame_measurements(a, b) for a, b in zip(preds, refs))
    for other in (measure_frames(p, g, chunk_pairs=1), measure_frames(p, g, chunk_pairs=37),
                  per_frame):  # a frame a chunk, a few frames a chunk, frame by frame
        assert np.array_equal(whole[..., :3], other[..., :3])  # the counts, exactly
        assert np.allclose(whole[..., 3], other[..., 3], rtol=0, atol=1e-9)  # summed HA


def test_equal_weights_go_to_the_earlier_prediction_and_box():
    # two predictions covering the box exactly (IoU 1), headings 0 and pi/2: the op
    # matches the earlier one, whatever the scores (probed), so APH follows the order
    square = [5.0, 5.0, 1.0, 0.8, 0.8, 1.8, 0.0]
    turned = square[:6] + [math.pi / 2]
    for first, second, aph in ((square, turned, 1.0), (turned, square, 0.5)):
        for scores in ([0.9, 0.9], [0.9, 0.8], [0.8, 0.9]):
            m = frame_measurements(pd([first, second], [PED, PED], scores), gt([square], [PED]))
            assert m[1, 0, 0].tolist() == [1, 1, 0, pytest.approx(aph)]
    # one prediction, two identical boxes: the earlier box is matched
    m = frame_measurements(pd([square], [PED], [0.9]), gt([square, turned], [PED, PED]))
    assert m[1, 0, 0].tolist() == [1, 0, 1, pytest.approx(1.0)]
    m = frame_measurements(pd([square], [PED], [0.9]), gt([turned, square], [PED, PED]))
    assert m[1, 0, 0].tolist() == [1, 0, 1, pytest.approx(0.5)]


def test_assign_max_is_scipys_assignment_ties_included():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(0)
    for _ in range(2000):
        rows, cols = rng.integers(1, 6, 2)
        weights = rng.integers(0, 3, (rows, cols)) * 500_000.0  # many equal weights
        r, c = linear_sum_assignment(weights, maximize=True)
        assert assign_max(weights.tolist()) == list(zip(r.tolist(), c.tolist()))


def test_frame_repr_is_the_dataclass_repr():
    # the label-set hash of a result is taken over it: it must not change by a character
    rng = np.random.default_rng(3)
    for rows in (1, 3, 40, 142, 143):
        boxes = rng.uniform(-80, 80, (rows, 7)).astype(np.float32).astype(np.float64)
        for case in (boxes, np.round(boxes, 2), np.abs(boxes) + 0.5,
                     np.where(boxes > 70, 1e-5, boxes)):
            frame = BoxFrame("seg", 1_000_000 + rows, boxes=case,
                             types=rng.integers(1, 5, rows).astype(np.int32),
                             num_points=rng.integers(0, 3000, rows).astype(np.int32),
                             difficulty=np.zeros(rows, np.int64))
            expected = (f"BoxFrame(context_name={frame.context_name!r}, "
                        f"timestamp={frame.timestamp!r}, boxes={case!r}, "
                        f"types={frame.types!r}, scores=None, "
                        f"num_points={frame.num_points!r}, difficulty={frame.difficulty!r})")
            assert repr(frame) == expected
    empty = BoxFrame("seg", 1, num_points=np.zeros(0), difficulty=np.zeros(0))
    assert repr(empty) == ("BoxFrame(context_name='seg', timestamp=1, boxes="
                           f"{np.zeros((0, 7))!r}, types={np.zeros(0, np.int64)!r}, "
                           "scores=None, num_points=array([], dtype=float64), "
                           "difficulty=array([], dtype=float64))")


@pytest.mark.parametrize("seed", range(4))
def test_fast_array_repr_is_numpys(seed: int):
    rng = np.random.default_rng(seed)
    cases = [rng.uniform(-1e3, 1e3, (20, 7)), rng.uniform(0, 9, 15),
             rng.integers(-2000, 2000, (9, 7)) / 512.0, np.array([[1.0, 2.0], [3.0, 4.5]]),
             np.array([0.0, -0.0, 1e-7, 3.0]), np.array([1e8, 2.5, -7.0]), np.array([1e-120]),
             np.array([np.nan, 1.0]), rng.integers(-5, 70000, 300).astype(np.int16),
             rng.integers(0, 9, 40).astype(np.uint8), np.arange(1001.0),
             rng.uniform(0, 1, 10).astype(np.float32), np.zeros((0, 7))]
    for case in cases:
        assert fast_array_repr(case) == repr(case)
    with np.printoptions(precision=3, linewidth=40):
        assert fast_array_repr(cases[0]) == repr(cases[0])


def test_prediction_files_are_read_column_wise_with_the_row_checks(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from refbench.benchmarks.formats.waymo import COLUMNS, read_box_file

    rows = [("b", 20, 1, 0.9), ("a", 10, 2, 0.5), ("b", 20, 4, 0.25), ("b", 10, 3, 0.0),
            ("a", 10, 1, 1.0)]  # interleaved frames
    records = [dict(zip(COLUMNS, (ctx, stamp, float(i), 2.0, 1.0, 4.0, 2.0, 1.5, 0.1 * i,
                                  kind, score)))
               for i, (ctx, stamp, kind, score) in enumerate(rows)]
    text = "\n".join(json.dumps(r) for r in records)
    (tmp_path / "p.jsonl").write_text(text + "\n\n")
    strings = [dict(r, type=["VEHICLE", "pedestrian", "TYPE_SIGN", "Cyclist"][r["type"] - 1])
               for r in records]
    pq.write_table(pa.Table.from_pylist(strings), tmp_path / "p.parquet")
    for name in ("p.jsonl", "p.parquet"):
        frames = read_box_file(tmp_path / name)
        assert list(frames) == [("b", 20), ("a", 10), ("b", 10)]  # order of first appearance
        b20 = frames[("b", 20)]
        assert b20.boxes[:, 0].tolist() == [0.0, 2.0] and b20.types.tolist() == [1, 4]
        assert frames[("a", 10)].types.tolist() == [2, 1]
        assert b20.boxes.dtype == np.float64 and b20.types.dtype == np.int64
        assert b20.scores.dtype == np.float32
        assert np.array_equal(b20.scores, np.float32([0.9, 0.25]))
    # a bad row is named exactly as the row-by-row reader names it
    records[2]["score"] = 1.5
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    with pytest.raises(RefbenchError) as err:
        read_box_file(tmp_path / "bad.jsonl")
    assert str(err.value) == f"{tmp_path / 'bad.jsonl'}:3 [score]: row 3: score must be in " \
                             f"[0, 1], got 1.5"
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "bad.parquet")
    with pytest.raises(RefbenchError, match=r"\[score\]: row 3: score must be in \[0, 1\]"):
        read_box_file(tmp_path / "bad.parquet")
