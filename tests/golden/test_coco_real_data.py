"""COCO AP on real data: the ground truth of the first 100 val2014 images and cocoapi's own
demo result files (read from the shared data folder, never copied into the repository).
All 12 stats of both types must equal cocoapi's shipped `val2014_fake_eval_res.txt`
(printed to 3 decimals), and equal a plain pycocotools run bit for bit."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from refbench.benchmarks.scoring import evaluate_file
from refbench.evaluation.coco_detection import STAT_KEYS

pytest.importorskip("pycocotools", reason="the detection extra (pycocotools) is not installed")

GT = "annotations/instances_val2014_100.json"
RESULTS = {"bbox": "results/instances_val2014_fakebbox100_results.json",
           "segm": "results/instances_val2014_fakesegm100_results.json"}
#: the headline figures of the data's notes
HEADLINE = {"bbox": {"AP": 0.505, "AP50": 0.697, "AP75": 0.573}, "segm": {"AP": 0.320}}


@pytest.fixture(scope="module")
def coco(shared_data: Path) -> Path:
    folder = shared_data / "coco"
    if not all((folder / p).is_file() for p in (GT, *RESULTS.values())):
        pytest.skip(f"COCO ground truth / cocoapi result files not found in {folder}")
    return folder


def expected_stats(path: Path) -> dict[str, list[float]]:
    """`{iou type: its 12 printed stats}` from cocoapi's summarize() transcript."""
    out: dict[str, list[float]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"type=(\w+)", line.strip())
        if match:
            current = match.group(1)
            out[current] = []
        elif current and "] = " in line:
            out[current].append(float(line.rsplit("=", 1)[1]))
    return out


def plain_pycocotools(gt: Path, results: Path, iou_type: str) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_all_twelve_stats_equal_cocoapi(coco: Path, iou_type: str) -> None:
    expected = expected_stats(coco / "results" / "val2014_fake_eval_res.txt")[iou_type]
    assert len(expected) == 12
    result = evaluate_file(f"coco-det-{iou_type}", coco / RESULTS[iou_type],
                           references=coco / GT)
    got = [result.metrics[key] for key in STAT_KEYS]
    assert [round(v, 3) for v in got] == expected
    for key, value in HEADLINE[iou_type].items():
        assert round(result.metrics[key], 3) == value
    assert got == plain_pycocotools(coco / GT, coco / RESULTS[iou_type], iou_type)
    assert result.counts["images/scored"] == 100
    assert result.counts["detections/scored"] == 734
    assert result.counts["gt/annotations"] == 839 and result.counts["gt/crowd"] == 9
    assert result.counts["missing"] == 1  # one of the 100 images has no detection


def test_strict_scoring_refuses_the_demo_files_missing_image(coco: Path) -> None:
    from refbench.errors import RefbenchError

    with pytest.raises(RefbenchError, match=r"1 id\(s\) of the references have no prediction"):
        evaluate_file("coco-det-bbox", coco / RESULTS["bbox"], references=coco / GT,
                      strict=True)
