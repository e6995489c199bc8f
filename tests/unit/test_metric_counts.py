"""Small-sample honesty, data-free: metrics report the reference counts they used and warn
when a tiny set quantises the score (KITTI), and the scorer puts both into the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refbench.benchmarks.formats.kitti import write_label_dir
from refbench.benchmarks.scoring import ID_COUNTS, evaluate_file
from refbench.evaluation.base import Metric
from refbench.evaluation.kitti import (KittiAP, kitti_eval, perfect_ap, quantisation_warnings,
                                       valid_gt_counts)
from refbench.evaluation.waymo import Waymo3DMetric
from refbench.registry import METRICS
from tests.helpers import run_cli


# -- KITTI: a hand-made frame set with exactly one valid moderate Car --------------------------
def _obj(name: str, top: float, height: float, occluded: int = 0, truncated: float = 0.0,
         x: float = 0.0, z: float = 20.0) -> dict:
    return {"name": name, "truncated": truncated, "occluded": occluded, "alpha": 0.0,
            "bbox": [500.0, top, 560.0, top + height], "dimensions": [1.5, 1.6, 3.9],
            "location": [x, 1.7, z], "rotation_y": 0.0}


def _frame(*objects: dict) -> dict:
    return {key: [o[key] for o in objects] for key in
            ("name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location",
             "rotation_y")}


def one_moderate_car() -> list[dict]:
    """Frame 0: a 30 px Car (too low for easy, valid at moderate and hard), a Van (ignored
    for Car), a Pedestrian; frame 1: a 20 px Car (too low for every level) and a Car
    occluded 3 (ignored everywhere); frame 2: empty."""
    return [_frame(_obj("Car", 150, 30), _obj("Van", 150, 50, x=4.0),
                   _obj("Pedestrian", 150, 80, x=-4.0, z=10.0)),
            _frame(_obj("Car", 170, 20, x=2.0), _obj("Car", 120, 60, occluded=3, x=-3.0)),
            _frame()]


def _perfect(frames: list[dict]) -> list[dict]:
    return [{**f, "score": [0.9] * len(f["name"])} for f in frames]


def test_valid_gt_counts_follow_the_devkit_ignore_rules() -> None:
    counts = valid_gt_counts(one_moderate_car(), ["Car", "Pedestrian"])
    assert counts == {"Car/easy/valid_gt": 0, "Car/moderate/valid_gt": 1,
                      "Car/hard/valid_gt": 1, "Pedestrian/easy/valid_gt": 1,
                      "Pedestrian/moderate/valid_gt": 1, "Pedestrian/hard/valid_gt": 1}


def test_one_valid_box_quantises_r40_and_r11_and_warns() -> None:
    gts = one_moderate_car()
    values = kitti_eval(gts, _perfect(gts), ["Car"])
    # the devkit's curve has one threshold per valid box: precision 1 at sample point 0 only
    assert values["Car/3d/moderate/R40"] == 0.0
    assert values["Car/3d/moderate/R11"] == pytest.approx(100 / 11)
    metric = KittiAP(classes=["Car"])
    metric.update(_perfect(gts), gts)
    assert metric.compute() == values
    assert metric.counts() == {"Car/easy/valid_gt": 0, "Car/moderate/valid_gt": 1,
                               "Car/hard/valid_gt": 1}
    warnings = metric.warnings()
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert warnings[0] == ("Car/easy has 0 valid ground-truth boxes: its AP is 0 by "
                           "convention, not a measurement")
    assert warnings[1] == ("Car/moderate has 1 valid ground-truth box: R40 and R11 are "
                           "quantised (fewer boxes than the 41 recall sample points; a "
                           "perfect detector scores R40 0.00, R11 9.09)")
    assert warnings[2].startswith("Car/hard has 1 valid ground-truth box")


@pytest.mark.parametrize("n", [1, 2, 5, 39, 40, 41])
def test_perfect_ap_is_what_a_perfect_detector_scores(n: int) -> None:
    """The ceiling the warning quotes equals kitti_eval on perfect detections of n valid
    boxes; from 41 boxes on it is 100 and there is no warning."""
    gts = [_frame(_obj("Car", 150, 50, x=float(i % 5), z=10.0 + 8 * (i // 5)))
           for i in range(n)]
    values = kitti_eval(gts, _perfect(gts), ["Car"])
    r40, r11 = perfect_ap(n)
    assert values["Car/3d/moderate/R40"] == pytest.approx(r40)
    assert values["Car/3d/moderate/R11"] == pytest.approx(r11)
    counts = valid_gt_counts(gts, ["Car"])
    assert counts["Car/moderate/valid_gt"] == n
    assert bool(quantisation_warnings(counts)) == (n < 41)
    assert (r40 == 100.0) == (n >= 41)


def test_evaluate_file_puts_kitti_counts_and_warnings_in_the_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gts = one_moderate_car()
    ids = [f"{i:06d}" for i in range(len(gts))]
    write_label_dir(tmp_path / "gt", dict(zip(ids, gts)))
    for path in (tmp_path / "gt").iterdir():  # references: 15 label_2 columns
        path.write_text("".join(" ".join(line.split()[:15]) + "\n"
                                for line in path.read_text().splitlines()))
    write_label_dir(tmp_path / "label_2", dict(zip(ids, _perfect(gts))))
    result = evaluate_file("kitti-car-3d", tmp_path / "label_2", tmp_path / "gt")
    assert result.counts["Car/moderate/valid_gt"] == 1
    assert result.counts["Car/easy/valid_gt"] == 0 and result.counts["scored"] == 3
    assert result.metrics["Car/3d/moderate/R40"] == 0.0
    assert any(w.startswith("kitti_ap: Car/moderate has 1 valid ground-truth box: R40 and R11 "
                            "are quantised") for w in result.warnings)
    # the evaluate table: the counts below the metrics, each warning once on stderr
    assert run_cli(["evaluate", "kitti-car-3d", "-p", str(tmp_path / "label_2"),
                    "--references", str(tmp_path / "gt")]) == 0
    captured = capsys.readouterr()
    assert captured.out.index("Car/3d/moderate/R40") < captured.out.index(
        "Car/moderate/valid_gt")
    lines = captured.err.splitlines()
    assert len(lines) == 3 and len(set(lines)) == 3
    assert all(line.startswith("refbench: warning: kitti_ap: Car/") for line in lines)


# -- Waymo: ground-truth boxes per type and level ---------------------------------------------
def _gt(stamp: int, rows: list[tuple[int, int, int]]) -> dict:
    """A reference frame of (type, lidar points, difficulty) boxes, spread along x."""
    n = len(rows)
    boxes = np.array([[5.0 + 6 * i, 0.0, 1.0, 4.0, 2.0, 1.5, 0.0] for i in range(n)])
    return {"context_name": "seg", "timestamp": stamp, "boxes": boxes.reshape(-1, 7),
            "types": np.array([r[0] for r in rows], np.int64),
            "num_points": np.array([r[1] for r in rows], np.int64),
            "difficulty": np.array([r[2] for r in rows], np.int64)}


def test_waymo_counts_ground_truth_per_type_and_level() -> None:
    frames = [
        # vehicle > 5 points (L1), vehicle <= 5 points (L2), pedestrian without points
        # (dropped), cyclist marked LEVEL_2, sign marked LEVEL_1
        _gt(100, [(1, 40, 0), (1, 3, 0), (2, 0, 0), (4, 50, 2), (3, 2, 1)]),
        _gt(200, [(2, 9, 0)]),
        _gt(300, [(1, 12, 0), (2, 4, 0)]),
    ]
    metric = Waymo3DMetric()
    metric.update([None] * len(frames), frames)
    metric.compute()
    assert metric.counts() == {
        "VEHICLE/L1/gt_boxes": 2, "VEHICLE/L2/gt_boxes": 3,
        "PEDESTRIAN/L1/gt_boxes": 1, "PEDESTRIAN/L2/gt_boxes": 2,
        "SIGN/L1/gt_boxes": 1, "SIGN/L2/gt_boxes": 1,
        "CYCLIST/L1/gt_boxes": 0, "CYCLIST/L2/gt_boxes": 1, "frames/scored": 3}
    assert metric.warnings() == []
    # every 2nd frame of the segment (100 and 300): only those boxes are counted
    sampled = Waymo3DMetric(sampled_interval=2)
    sampled.update([None] * len(frames), frames)
    counts = sampled.counts()
    assert counts["frames/scored"] == 2 and counts["PEDESTRIAN/L2/gt_boxes"] == 1
    assert counts["VEHICLE/L1/gt_boxes"] == 2 and counts["VEHICLE/L2/gt_boxes"] == 3


# -- the generic hook ----------------------------------------------------------------------------
def test_metric_hooks_default_to_nothing_and_counts_never_shadow_id_counts() -> None:
    class Plain(Metric):
        keys = {"x": "a value"}

        def update(self, predictions, references) -> None: ...

        def merge(self, other) -> None: ...

        def compute(self) -> dict[str, float]:
            return {"x": 1.0}

    assert Plain().counts() == {} and Plain().warnings() == []
    assert all(issubclass(METRICS.entry(name).obj, Metric) for name in METRICS.names())
    kitti = KittiAP(classes=["Car", "Cyclist"])
    kitti.update([None], [one_moderate_car()[0]])
    assert all("/" in key for key in kitti.counts())
    assert not set(kitti.counts()) & set(ID_COUNTS)
    assert all("/" in key for key in Waymo3DMetric().counts())
