"""COCO bbox / segm AP through pycocotools: pinned COCOeval parameters, perfect and
degraded results on synthesized annotations, and every refusal of bad input (real data:
tests/golden/test_coco_real_data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refbench.benchmarks.formats.coco_results import (
    CocoResultsFormat,
    read_ground_truth,
    read_results,
)
from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.coco import CocoBuilder, annotation_file
from refbench.errors import RefbenchError
from refbench.evaluation.coco_detection import STAT_KEYS, CocoDetection
from refbench.registry import get_spec
from tests.helpers import run_cli

pytest.importorskip("pycocotools", reason="the detection extra (pycocotools) is not installed")


@pytest.fixture(scope="module")
def gt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = CocoBuilder().synthesize(tmp_path_factory.mktemp("coco"), n=12, seed=4)
    return annotation_file(root, "2017", "validation")


def _perfect(gt_file: Path, iou_type: str, out: Path) -> list[dict]:
    spec = get_spec(f"coco-det-{iou_type}")
    fmt = CocoResultsFormat()
    refs = fmt.read_references(gt_file, spec)
    fmt.write(out, fmt.perfect_predictions(refs), spec)
    return json.loads(out.read_text())


def test_cocoeval_parameters_are_the_official_defaults() -> None:
    from pycocotools.cocoeval import Params

    params = Params(iouType="bbox")
    assert np.allclose(params.iouThrs, np.arange(10) * 0.05 + 0.5) and len(params.iouThrs) == 10
    assert len(params.recThrs) == 101
    assert params.maxDets == [1, 10, 100]
    assert params.areaRng == [[0, 1e10], [0, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e10]]
    assert STAT_KEYS == ("AP", "AP50", "AP75", "APs", "APm", "APl",
                         "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
    for iou_type in ("bbox", "segm"):
        spec = get_spec(f"coco-det-{iou_type}")
        assert spec.metric.kwargs() == {"iou_type": iou_type} and spec.primary == "AP"


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_perfect_results_score_one(gt_file: Path, tmp_path: Path, iou_type: str) -> None:
    _perfect(gt_file, iou_type, tmp_path / "r.json")
    result = evaluate_file(f"coco-det-{iou_type}", tmp_path / "r.json", references=gt_file,
                           strict=True)
    assert result.metrics["AP"] == pytest.approx(1.0)
    assert result.metrics["AR100"] == pytest.approx(1.0)
    assert result.counts["images/scored"] == 12


def test_missing_image_counts_its_ground_truth(gt_file: Path, tmp_path: Path) -> None:
    results = _perfect(gt_file, "bbox", tmp_path / "r.json")
    kept = [r for r in results if r["image_id"] != 1]
    (tmp_path / "some.json").write_text(json.dumps(kept))
    result = evaluate_file("coco-det-bbox", tmp_path / "some.json", references=gt_file)
    assert result.counts["missing"] == 1 and result.counts["images/no_detection"] == 1
    assert result.metrics["AR100"] < 1.0
    with pytest.raises(RefbenchError, match="strict scoring"):
        evaluate_file("coco-det-bbox", tmp_path / "some.json", references=gt_file, strict=True)


def test_score_order_is_file_order_on_ties(gt_file: Path, tmp_path: Path) -> None:
    """Equal scores: COCOeval's stable sort keeps the file order, so refbench must too."""
    gt = read_ground_truth(gt_file)
    ann = gt.dataset["annotations"][0]
    x, y, w, h = ann["bbox"]
    miss = {"image_id": ann["image_id"], "category_id": ann["category_id"],
            "bbox": [x + w, y + h, w, h], "score": 0.5}
    hit = {**miss, "bbox": ann["bbox"]}
    scores = []
    for order in ([hit, miss], [miss, hit]):
        (tmp_path / "r.json").write_text(json.dumps(order))
        scores.append(evaluate_file("coco-det-bbox", tmp_path / "r.json",
                                    references=gt_file).metrics["AP"])
    assert scores[0] != scores[1]


@pytest.mark.parametrize("result, message", [
    ({"image_id": 999, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.5},
     r"r\.json: result 1: image_id 999 is not an image of the ground truth"),
    ({"image_id": 1, "category_id": 77, "bbox": [0, 0, 4, 4], "score": 0.5},
     r"r\.json: result 1: category_id 77 is not a category"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": float("nan")},
     r"r\.json \[result 1: score\]: NaN is not a finite number"),
    ({"image_id": "1", "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.5},
     r"\[result 1\]: image_id \"1\", not an integer"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, -4, 4], "score": 0.5},
     r"\[result 1: bbox\]: .*negative width"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 4], "score": 0.5},
     r"\[result 1: bbox\]: bbox must be \[x, y, width, height\]"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}, r"\[result 1\]: missing score"),
])
def test_bad_bbox_results_are_refused(gt_file: Path, tmp_path: Path, result: dict,
                                      message: str) -> None:
    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9}
    (tmp_path / "r.json").write_text(json.dumps([good, result]))
    with pytest.raises(RefbenchError, match=message):
        evaluate_file("coco-det-bbox", tmp_path / "r.json", references=gt_file)
    assert run_cli(["evaluate", "coco-det-bbox", "--predictions", str(tmp_path / "r.json"),
                    "--references", str(gt_file)]) == 2


def test_bad_segm_results_are_refused(gt_file: Path, tmp_path: Path) -> None:
    results = _perfect(gt_file, "segm", tmp_path / "r.json")
    polygon = dict(results[0], segmentation=[[0, 0, 4, 0, 4, 4]])
    (tmp_path / "p.json").write_text(json.dumps([polygon]))
    with pytest.raises(RefbenchError, match=r"\[result 0: segmentation\]: segmentation is a polygon"):
        read_results(tmp_path / "p.json", "segm")
    wrong = dict(results[0], segmentation=dict(results[0]["segmentation"], size=[5, 5]))
    (tmp_path / "s.json").write_text(json.dumps([wrong]))
    with pytest.raises(RefbenchError, match=r"s\.json: result 0: mask size \[5, 5\] is not image"):
        evaluate_file("coco-det-segm", tmp_path / "s.json", references=gt_file)


def test_bad_files_and_ground_truth(gt_file: Path, tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"image_id": 1}')
    with pytest.raises(RefbenchError, match="is a JSON list of results"):
        read_results(tmp_path / "d.json", "bbox")
    (tmp_path / "cut.json").write_text('[{"image_id": 1, "categ')
    with pytest.raises(RefbenchError, match=r"cut\.json:1: invalid JSON"):
        read_results(tmp_path / "cut.json", "bbox")
    with pytest.raises(RefbenchError, match="found a folder"):
        read_results(tmp_path, "bbox")
    data = json.loads(gt_file.read_text())
    data["images"].append(dict(data["images"][0]))
    (tmp_path / "gt.json").write_text(json.dumps(data))
    with pytest.raises(RefbenchError, match=r"gt\.json \[images\[12\]\]: id 1 appears twice"):
        read_ground_truth(tmp_path / "gt.json")
    data = json.loads(gt_file.read_text())
    data["annotations"][0]["category_id"] = 42
    (tmp_path / "gt.json").write_text(json.dumps(data))
    with pytest.raises(RefbenchError, match="category_id 42 is not in categories"):
        read_ground_truth(tmp_path / "gt.json")


def test_metric_rejects_unknown_arguments() -> None:
    with pytest.raises(RefbenchError, match="iou_type must be one of bbox, segm"):
        CocoDetection(iou_type="keypoints")
    with pytest.raises(RefbenchError, match="takes iou_type only"):
        CocoDetection(max_dets=10)


def test_builder_prepares_synthesized_annotations(gt_file: Path, tmp_path: Path) -> None:
    from refbench.datasets.base import load_prepared

    root = gt_file.parent.parent
    builder = CocoBuilder()
    assert builder.check(root).ok
    builder.prepare(root, tmp_path, configs=["2017"])
    rows = load_prepared("coco", split="val", config="2017", cache_dir=str(tmp_path))
    assert len(rows) == 12 and rows[0]["image_id"] == 1
    assert rows[0]["category_names"] == ["square", "wide", "tall"]
