"""Every limit the official KITTI and Waymo rules name, pinned at exactly its value.

No real data needed. One ground-truth Car and a perfect detection score R11 = 100/11 when
the box is valid at a difficulty (one valid box: only recall point 0 is reached) and 0 when
it is ignored there; these tests move each attribute to just below, exactly at and just
above its limit, so a limit moved by one unit or a `<=` turned into `<` fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from refbench.evaluation.kitti import KittiAP
from refbench.evaluation.waymo import BoxFrame, Waymo3DMetric

ONE_BOX_R11 = 100.0 / 11


def car(height: float = 50.0, occluded: int = 0, truncated: float = 0.0, *, top: float = 100.0,
        left: float = 100.0, y: float = 1.5, h3d: float = 1.5, alpha: float = 0.0,
        score: float | None = None) -> dict:
    """One Car of label_2 fields: a 2D box `height` px tall, a 3D box 20 m ahead."""
    obj = {"name": ["Car"], "truncated": [truncated], "occluded": [occluded], "alpha": [alpha],
           "bbox": [[left, top, left + 100.0, top + height]],
           "dimensions": [[h3d, 1.6, 3.9]], "location": [[0.0, y, 20.0]], "rotation_y": [0.0]}
    if score is not None:
        obj["score"] = [score]
    return obj


def merge(*frames: dict) -> dict:
    return {k: [v for f in frames for v in f[k]] for k in frames[0]}


def kitti(pred: dict, gt: dict, overlap: str = "strict") -> dict[str, float]:
    metric = KittiAP(classes=["Car"], overlap=overlap)
    metric.update([pred], [gt])
    return metric.compute()


def r11(values: dict[str, float], difficulty: str, kind: str = "bbox") -> float:
    return values[f"Car/{kind}/{difficulty}/R11"]


@pytest.mark.parametrize(("height", "easy", "moderate"), [
    (24.99, False, False), (25.0, False, False), (25.01, False, True),
    (39.99, False, True), (40.0, False, True), (40.01, True, True)])
def test_ground_truth_height_limits_40_and_25_px(height: float, easy: bool, moderate: bool) -> None:
    """Ground truth is ignored at a level when its 2D height is <= the level's minimum."""
    values = kitti(car(height, score=0.9), car(height))
    assert r11(values, "easy") == pytest.approx(ONE_BOX_R11 if easy else 0.0)
    assert r11(values, "moderate") == pytest.approx(ONE_BOX_R11 if moderate else 0.0)
    assert r11(values, "hard") == pytest.approx(ONE_BOX_R11 if moderate else 0.0)


@pytest.mark.parametrize(("occluded", "valid"), [
    (0, ("easy", "moderate", "hard")), (1, ("moderate", "hard")), (2, ("hard",)), (3, ())])
def test_occlusion_levels(occluded: int, valid: tuple[str, ...]) -> None:
    values = kitti(car(occluded=occluded, score=0.9), car(occluded=occluded))
    for difficulty in ("easy", "moderate", "hard"):
        expected = ONE_BOX_R11 if difficulty in valid else 0.0
        assert r11(values, difficulty) == pytest.approx(expected), difficulty


@pytest.mark.parametrize(("truncated", "valid"), [
    (0.14, ("easy", "moderate", "hard")), (0.15, ("easy", "moderate", "hard")),
    (0.16, ("moderate", "hard")), (0.3, ("moderate", "hard")), (0.31, ("hard",)),
    (0.5, ("hard",)), (0.51, ())])
def test_truncation_limits(truncated: float, valid: tuple[str, ...]) -> None:
    values = kitti(car(truncated=truncated, score=0.9), car(truncated=truncated))
    for difficulty in ("easy", "moderate", "hard"):
        expected = ONE_BOX_R11 if difficulty in valid else 0.0
        assert r11(values, difficulty) == pytest.approx(expected), difficulty


@pytest.mark.parametrize(("height", "counts_as_fp"), [(24.99, False), (25.0, True)])
def test_detections_lower_than_the_minimum_height_are_ignored(height: float,
                                                             counts_as_fp: bool) -> None:
    """A detection strictly lower than the level's minimum height is ignored; one exactly at
    it is scored (here a false positive ranked above the true positive: precision 1/2)."""
    gt = car(30.0)
    stray = car(height, left=600.0, score=0.95)
    values = kitti(merge(car(30.0, score=0.9), stray), gt)
    expected = ONE_BOX_R11 / 2 if counts_as_fp else ONE_BOX_R11
    assert r11(values, "moderate") == pytest.approx(expected)


def test_aos_of_a_quarter_turn_is_half() -> None:
    """Orientation similarity (1 + cos(dalpha)) / 2: an alpha error of pi/2 gives 0.5."""
    values = kitti(car(alpha=math.pi / 2, score=0.9), car(alpha=0.0))
    assert values["Car/aos/easy/R11"] == pytest.approx(ONE_BOX_R11 * 0.5)
    assert values["Car/bbox/easy/R11"] == pytest.approx(ONE_BOX_R11)


def test_3d_iou_uses_the_bottom_centre_height_convention() -> None:
    """label_2 locations are bottom centres (y points down): a box spans [y - h, y]. The
    detection shares the ground truth's bottom, so 3D IoU = 1.6 / 2.0 = 0.8 > 0.7 (a TP);
    read as box centres, the two would overlap 1.4 of 2.2 m (IoU 0.64, a miss)."""
    values = kitti(car(y=1.6, h3d=1.6, score=0.9), car(y=2.0, h3d=2.0))
    assert r11(values, "easy", "3d") == pytest.approx(ONE_BOX_R11)
    shifted = kitti(car(y=2.2, h3d=1.6, score=0.9), car(y=2.0, h3d=2.0))
    assert r11(shifted, "easy", "3d") == 0.0  # [0.6, 2.2] vs [0, 2]: 1.4 / 2.2 < 0.7


# -- Waymo ---------------------------------------------------------------------------------
def waymo_frame(boxes: list[list[float]], **fields: list) -> BoxFrame:
    n = len(boxes)
    return BoxFrame("seg", 1, np.asarray(boxes, np.float64).reshape(n, 7),
                    np.ones(n, np.int64),
                    **{k: np.asarray(v) for k, v in fields.items()})


@pytest.mark.parametrize(("points", "level"), [(5, 2), (6, 1)])
def test_waymo_level_2_is_at_most_5_points(points: int, level: int) -> None:
    """A box of unset difficulty with <= 5 points is LEVEL_2, with 6 LEVEL_1: the unmatched
    second box is a false negative at LEVEL_1 only when it is a LEVEL_1 box."""
    seen = [0.0, 0.0, 0.0, 4.5, 2.0, 1.6, 0.0]
    missed = [20.0, 0.0, 0.0, 4.5, 2.0, 1.6, 0.0]
    gt = waymo_frame([seen, missed], num_points=[100, points], difficulty=[0, 0])
    pred = waymo_frame([seen], scores=[0.9])
    metric = Waymo3DMetric()
    metric.update([pred], [gt])
    values = metric.compute()
    assert values["VEHICLE/L1/mAP"] == pytest.approx(0.5 if level == 1 else 1.0)
    assert values["VEHICLE/L2/mAP"] == pytest.approx(0.5)
