"""Semantic segmentation aAcc / mIoU: a hand-computed case, equality with mmseg's
histogram formulation, the ADE20K and Cityscapes label conventions, and the PNG folder
format with its refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refbench.benchmarks.formats.segmentation import SegmentationPngFormat, image_id
from refbench.benchmarks.scoring import evaluate_file
from refbench.benchmarks.spec import MetricRef, Submission
from refbench.errors import RefbenchError
from refbench.evaluation.segmentation import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_TRAIN_IDS,
    SemanticSegmentation,
    confusion,
    label_ids_to_train_ids,
    reduce_zero_label,
    scores,
)
from refbench.registry import get_spec


def mmseg_areas(pred: np.ndarray, label: np.ndarray, k: int, ignore: int = 255):
    """mmseg's intersect_and_union, written here with numpy histograms (histc semantics:
    values outside 0..k-1 fall out of every bin)."""
    keep = label != ignore
    pred, label = pred[keep], label[keep]
    inter = pred[pred == label]
    def hist(values: np.ndarray) -> np.ndarray:
        return np.bincount(values[(values >= 0) & (values < k)], minlength=k)

    return hist(inter), hist(pred), hist(label)


def test_hand_computed_case() -> None:
    label = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 7, 0]])  # 7: outside the 3 classes
    matrix = confusion(pred, label, 3)
    out = scores(matrix)
    assert out["aAcc"] == pytest.approx(3 / 5)
    # class 0: inter 1, pred 1, label 2 -> 1/2; class 1: inter 2, pred 3, label 2 -> 2/3;
    # class 2: inter 0, pred 0, label 1 -> 0
    assert out["IoU"] == pytest.approx([1 / 2, 2 / 3, 0.0])
    assert out["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert out["mAcc"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_equals_mmseg_histograms_on_random_maps() -> None:
    rng = np.random.default_rng(0)
    k = 6
    for _ in range(20):
        label = rng.integers(0, k, (17, 23))
        label[rng.random(label.shape) < 0.1] = 255
        pred = rng.integers(-1, k + 2, (17, 23))
        inter, area_pred, area_label = mmseg_areas(pred, label, k)
        matrix = confusion(pred, label, k)
        assert np.array_equal(np.diag(matrix)[:k], inter)
        assert np.array_equal(matrix[:, :k].sum(0), area_pred)
        assert np.array_equal(matrix[:k, :].sum(1), area_label)


def test_class_absent_on_both_sides_is_left_out_of_miou_only() -> None:
    out = scores(confusion(np.array([0, 0, 1]), np.array([0, 0, 1]), 4))
    assert out["mIoU"] == 1.0 and out["mIoU_all_classes"] == 0.5


def test_ade20k_reduce_zero_label() -> None:
    assert reduce_zero_label(np.array([0, 1, 150, 255])).tolist() == [255, 0, 149, 255]
    metric = SemanticSegmentation(layout="ade20k")
    label = np.array([[0, 1, 2], [150, 150, 0]])  # two "other" pixels, ignored
    pred = np.array([[5, 1, 0], [150, 149, 0]])  # predicted 0: a wrong pixel
    metric.update([pred], [label])
    out = metric.compute()
    assert out["aAcc"] == pytest.approx(2 / 4)
    assert out["IoU/1"] == 1.0 and out["IoU/2"] == 0.0 and out["IoU/150"] == pytest.approx(1 / 2)
    assert metric.counts()["pixels/labelled"] == 4


def test_cityscapes_train_id_table_is_the_official_one() -> None:
    assert len(CITYSCAPES_TRAIN_IDS) == 19 == len(CITYSCAPES_CLASSES)
    assert sorted(CITYSCAPES_TRAIN_IDS.values()) == list(range(19))
    assert (CITYSCAPES_TRAIN_IDS[7], CITYSCAPES_TRAIN_IDS[26], CITYSCAPES_TRAIN_IDS[33]) == (0, 13, 18)
    ignored = [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30]
    assert label_ids_to_train_ids(np.array(ignored)).tolist() == [255] * len(ignored)
    metric = SemanticSegmentation(layout="cityscapes")  # both sides in labelIds
    metric.update([np.array([7, 8, 26, 0])], [np.array([7, 7, 26, 4])])
    out = metric.compute()
    assert out["aAcc"] == pytest.approx(2 / 3)
    assert out["IoU/road"] == pytest.approx(1 / 2) and out["IoU/car"] == 1.0
    with pytest.raises(RefbenchError, match="layout must be one of"):
        SemanticSegmentation(layout="voc")


def _png(path: Path, array: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode=mode).save(path)


def _spec(layout: str):
    spec = get_spec("coco-det-bbox")
    return dataclasses.replace(
        spec, name=f"{layout}-seg", primary="mIoU",
        metric=MetricRef("semantic_segmentation", "1", (("layout", layout),)),
        submission=Submission("segmentation_png", "predictions"))


def test_cityscapes_folders_score_and_refuse(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gt_root, pred_root = tmp_path / "gtFine" / "val", tmp_path / "pred"
    truth = {}
    for name in ("frankfurt_000000_000294", "lindau_000001_000019"):
        city = name.split("_")[0]
        labels = rng.choice([7, 8, 11, 26, 0, 33], size=(8, 12))
        truth[name] = labels
        _png(gt_root / city / f"{name}_gtFine_labelIds.png", labels)
        _png(gt_root / city / f"{name}_gtFine_color.png", np.zeros((8, 12, 3)), "RGB")
        _png(pred_root / f"{name}_leftImg8bit.png", labels)
    spec = _spec("cityscapes")
    result = evaluate_file(spec, pred_root, references=tmp_path / "gtFine")
    assert result.metrics["mIoU"] == 1.0 and result.metrics["aAcc"] == 1.0
    assert result.counts["images/scored"] == 2
    assert image_id(Path("a_b_c_gtFine_labelTrainIds.png")) == "a_b_c"
    # a wrong size, an RGB map, a truncated file, a missing image
    _png(pred_root / "lindau_000001_000019_leftImg8bit.png", np.zeros((4, 4)))
    with pytest.raises(RefbenchError, match=r"lindau_000001_000019_leftImg8bit\.png: size"):
        evaluate_file(spec, pred_root, references=tmp_path / "gtFine")
    _png(pred_root / "lindau_000001_000019_leftImg8bit.png", np.zeros((8, 12, 3)), "RGB")
    with pytest.raises(RefbenchError, match="single-channel PNG, this one is RGB"):
        evaluate_file(spec, pred_root, references=tmp_path / "gtFine")
    data = (pred_root / "frankfurt_000000_000294_leftImg8bit.png").read_bytes()
    (pred_root / "lindau_000001_000019_leftImg8bit.png").write_bytes(data[:40])
    with pytest.raises(RefbenchError, match=r"lindau_000001_000019_leftImg8bit\.png: unreadable PNG"):
        evaluate_file(spec, pred_root, references=tmp_path / "gtFine")
    (pred_root / "lindau_000001_000019_leftImg8bit.png").unlink()
    with pytest.raises(RefbenchError, match="1 id.s. of the references have no prediction"):
        evaluate_file(spec, pred_root, references=tmp_path / "gtFine")


def test_ade20k_round_trip_and_duplicates(tmp_path: Path) -> None:
    spec = _spec("ade20k")
    gt = tmp_path / "annotations" / "validation"
    _png(gt / "ADE_val_00000001.png", np.array([[0, 1], [2, 150]]))
    fmt = SegmentationPngFormat()
    refs = fmt.read_references(gt, spec)
    fmt.write(tmp_path / "pred", fmt.perfect_predictions(refs), spec)
    result = evaluate_file(spec, tmp_path / "pred", references=gt)
    assert result.metrics["aAcc"] == 1.0 and result.counts["classes/absent"] == 147
    _png(tmp_path / "pred" / "sub" / "ADE_val_00000001.png", np.zeros((2, 2)))
    with pytest.raises(RefbenchError, match="image ADE_val_00000001 is given twice"):
        fmt.read(tmp_path / "pred", spec)
