"""The official `min_heading_accuracy` rule of the Waymo metric, pinned at its limit.

The rule (`Config.min_heading_accuracy`, proto default -1 = off), as the official op
behaves when probed: a match whose heading accuracy is at or below the limit is neither a
true nor a false positive, and its ground-truth box is not a false negative; it applies
after the matching, at each score cut-off. Heading accuracy and limit are compared as
float32, the accuracy computed as the op computes it. Every count expected here is what
the op (waymo-open-dataset-tf-2-12-0 1.6.7) returns for the same boxes and limit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from refbench.errors import RefbenchError
from refbench.evaluation.waymo import (
    MIN_HEADING_ACCURACY,
    SCORE_CUTOFFS,
    Waymo3DMetric,
    breakdown_names,
    frame_measurements,
    heading_accuracy,
    official_heading_accuracy,
)

VEHICLE = breakdown_names().index("VEHICLE")
#: a square footprint: turned by pi/2 it still covers the same area (IoU 1)
SQUARE = [10.0, 2.0, 1.0, 3.0, 3.0, 1.6, 0.0]
OTHER = [30.0, -4.0, 1.0, 3.0, 3.0, 1.6, 0.0]
JUST_BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0.0)))


def turned(box: list[float], angle: float) -> list[float]:
    return box[:6] + [box[6] + angle]


def frame(boxes: list[list[float]], scores: list[float] | None = None) -> dict:
    out = {"boxes": np.array(boxes, float), "types": np.ones(len(boxes), np.int64)}
    if scores is None:
        out.update(num_points=np.full(len(boxes), 50), difficulty=np.zeros(len(boxes)))
    else:
        out["scores"] = np.array(scores, np.float32)
    return out


def vehicle_counts(pred: dict, gt: dict, limit: float, cutoff: int = 0) -> dict[str, float]:
    """TP, FP, FN (LEVEL_1) and summed heading accuracy of the VEHICLE shard at a cut-off."""
    tp, fp, fn, sum_ha = frame_measurements(pred, gt, limit)[VEHICLE, 0, cutoff]
    return {"tp": tp, "fp": fp, "fn": fn, "sum_ha": sum_ha}


def test_heading_accuracy_of_a_quarter_turn_is_one_half() -> None:
    assert official_heading_accuracy(math.pi / 2, 0.0) == np.float32(0.5)
    assert official_heading_accuracy(0.0, 0.0) == np.float32(1.0)
    # a flip: not 0 in the op's float32 arithmetic (pi rounds up in float32), as probed
    assert 0 < official_heading_accuracy(math.pi, 0.0) < 1e-7


def test_official_heading_accuracy_is_the_ops_float32_value() -> None:
    # (prediction heading, ground-truth heading, the op's value): pairs where the op's
    # float32 arithmetic differs from rounding the float64 accuracy
    probed = [(4.270040988922119, 4.311171054840088, 0.986907958984375),
              (0.21455785632133484, -2.9987807273864746, 0.02283746935427189),
              (2.4736509323120117, -6.148762226104736, 0.2554006278514862),
              (-3.8175406455993652, 5.536275386810303, 0.022587863728404045)]
    for pred, gt, op in probed:
        assert official_heading_accuracy(pred, gt) == np.float32(op)
        assert np.float32(heading_accuracy(pred, gt)) != np.float32(op)


def test_default_limit_is_off_and_keeps_the_numbers() -> None:
    assert MIN_HEADING_ACCURACY == -1.0
    assert Waymo3DMetric().min_heading_accuracy == -1.0
    flipped = frame([turned(SQUARE, math.pi)], [0.9])  # heading accuracy 0: still a TP
    assert vehicle_counts(flipped, frame([SQUARE]), MIN_HEADING_ACCURACY) == \
        {"tp": 1, "fp": 0, "fn": 0, "sum_ha": 0.0}


@pytest.mark.parametrize("limit", [0.5, 0.49999999])  # both are float32 0.5
def test_a_match_exactly_at_the_limit_is_neither_tp_nor_fp_nor_fn(limit: float) -> None:
    preds = frame([SQUARE, turned(OTHER, math.pi / 2)], [0.9, 0.8])
    gts = frame([SQUARE, OTHER])
    assert vehicle_counts(preds, gts, limit) == {"tp": 1, "fp": 0, "fn": 0, "sum_ha": 1.0}
    metric = Waymo3DMetric(min_heading_accuracy=limit)
    metric.update([preds], [gts])
    out = metric.compute()
    # one TP over one countable box: recall 1 at precision 1 (AP 1, APH 1). Without the
    # rule the turned match is a TP of heading accuracy 0.5: weighted precision 0.75 at
    # recall 1 (cut-offs <= 0.8), 1 at recall 0.5, so APH = 0.45 * 0.75 + 0.05 * 0.875
    # + 0.5 = 0.88125
    assert out["VEHICLE/L1/mAP"] == pytest.approx(1.0)
    assert out["VEHICLE/L1/mAPH"] == pytest.approx(1.0)
    plain = Waymo3DMetric()
    plain.update([preds], [gts])
    assert plain.compute()["VEHICLE/L1/mAPH"] == pytest.approx(0.88125)


def test_a_match_just_above_the_limit_counts() -> None:
    preds = frame([SQUARE, turned(OTHER, math.pi / 2)], [0.9, 0.8])
    gts = frame([SQUARE, OTHER])
    assert vehicle_counts(preds, gts, JUST_BELOW_HALF) == \
        {"tp": 2, "fp": 0, "fn": 0, "sum_ha": 1.5}
    # the same at the top of the range: accuracy exactly 1 is dropped by a limit of 1
    same = frame([SQUARE], [0.9])
    assert vehicle_counts(same, frame([SQUARE]), 1.0)["tp"] == 0
    below_one = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
    assert vehicle_counts(same, frame([SQUARE]), below_one)["tp"] == 1


def test_the_rule_applies_after_matching() -> None:
    # the matcher takes the heavier pair (the flipped copy, IoU 1); the rule then drops
    # it, and the lighter, well-headed prediction stays unmatched: a false positive
    shifted = list(SQUARE)
    shifted[0] += 0.4  # IoU (3 - 0.4) / (3 + 0.4) = 0.76 >= 0.7
    preds = frame([turned(SQUARE, math.pi), shifted], [0.9, 0.8])
    assert vehicle_counts(preds, frame([SQUARE]), 0.5) == \
        {"tp": 0, "fp": 1, "fn": 0, "sum_ha": 0.0}


def test_the_box_is_a_miss_where_the_dropped_prediction_is_not_kept() -> None:
    preds = frame([turned(SQUARE, math.pi / 2)], [0.8])
    gts = frame([SQUARE])
    kept = int(np.searchsorted(SCORE_CUTOFFS, np.float32(0.8), side="right"))
    assert vehicle_counts(preds, gts, 0.5, cutoff=kept - 1) == \
        {"tp": 0, "fp": 0, "fn": 0, "sum_ha": 0.0}
    assert vehicle_counts(preds, gts, 0.5, cutoff=kept) == \
        {"tp": 0, "fp": 0, "fn": 1, "sum_ha": 0.0}


@pytest.mark.parametrize("bad", ["0.5", True, math.nan, math.inf, None])
def test_a_bad_limit_is_one_line_error(bad: object) -> None:
    with pytest.raises(RefbenchError, match="min_heading_accuracy must be a finite number") \
            as err:
        Waymo3DMetric(min_heading_accuracy=bad)
    assert "\n" not in str(err.value) and err.value.key == "min_heading_accuracy"
