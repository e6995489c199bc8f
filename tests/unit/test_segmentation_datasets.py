"""ADE20K and Cityscapes in their official layouts: builders, references from the release
(or its annotation folder, or the prepared split), scores equal to re-derivations of the
official evaluations (the ADE20K devkit's histograms, cityscapesScripts' confusion matrix
over labelIds), bad input in one line, and the leaderboard with the release as hidden
references."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refbench.benchmarks.formats.segmentation import SegmentationPngFormat, read_label_png
from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.segmentation.ade20k import RELEASE, ADE20KBuilder
from refbench.datasets.segmentation.cityscapes import CityscapesBuilder
from refbench.errors import RefbenchError
from refbench.evaluation.segmentation import CITYSCAPES_TRAIN_IDS
from refbench.registry import get_spec

ADE, CITY = "ade20k-val-segmentation", "cityscapes-val-segmentation"


@pytest.fixture()
def ade(tmp_path: Path) -> Path:
    return ADE20KBuilder().synthesize(tmp_path / "ade", n=12, seed=3)


@pytest.fixture()
def city(tmp_path: Path) -> Path:
    return CityscapesBuilder().synthesize(tmp_path / "city", n=15, seed=4)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _corrupt(maps: dict[str, np.ndarray], rng: np.random.Generator,
             values: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions = ground truth with a random rectangle of random values per image."""
    out = {}
    for key, label in maps.items():
        pred = label.copy()
        h, w = pred.shape
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        pred[y:y + h // 2, x:x + w // 2] = rng.choice(values, size=(h // 2, w // 2))
        out[key] = pred
    return out


def test_spec_and_builder_limits() -> None:
    ade, city = get_spec(ADE), get_spec(CITY)
    assert (ade.primary, ade.split, ade.metric.kwargs()) == ("mIoU", "validation",
                                                           {"layout": "ade20k"})
    assert city.metric.kwargs() == {"layout": "cityscapes", "label_ids": "labelIds",
                                    "prediction_ids": "labelIds"}
    assert ade.task.num_labels == 150 and city.task.num_labels == 19
    assert RELEASE == "ADEChallengeData2016"
    assert ADE20KBuilder().splits("default") == ["train", "validation"]
    assert CityscapesBuilder().canonical_split("val") == "validation"


def test_ade20k_layout_and_devkit_scores(ade: Path, tmp_path: Path) -> None:
    builder = ADE20KBuilder()
    assert builder.check(ade).ok
    splits = builder.generate(ade, "default")
    val = splits["validation"]
    assert len(splits["train"]) == 9 and len(val) == 3
    assert val["id"] == ["ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003"]
    assert set(val.column_names) >= {"image", "annotation", "label_ids", "height", "width"}
    assert (val[0]["height"], val[0]["width"]) == (24, 32)
    spec, fmt = get_spec(ADE), SegmentationPngFormat()
    refs = fmt.read_references(ade, spec)
    truth = {k: v.array() for k, v in refs.items()}
    preds = _corrupt(truth, np.random.default_rng(0), np.arange(0, 151))
    fmt.write(tmp_path / "pred", preds, spec)
    results = [evaluate_file(spec, tmp_path / "pred", references=r, strict=True) for r in
               (ade, ade / RELEASE, ade / RELEASE / "annotations",
                ade / RELEASE / "annotations" / "validation")]
    for result in results[1:]:
        assert result.metrics == results[0].metrics
        assert result.provenance.label_set_sha256 == results[0].provenance.label_set_sha256
    # the ADE20K devkit (utils_eval.intersectionAndUnion + pixelAccuracy), re-derived
    inter = np.zeros(150)
    union = np.zeros(150)
    correct = labelled = 0
    for key, lab in truth.items():
        pred = preds[key] * (lab > 0)
        hist = lambda v: np.histogram(v, bins=150, range=(1, 150))[0]  # noqa: E731
        i = hist(pred[pred == lab])
        inter += i
        union += hist(pred) + hist(lab) - i
        correct += int(((pred == lab) & (lab > 0)).sum())
        labelled += int((lab > 0).sum())
    metrics = results[0].metrics
    assert metrics["aAcc"] == pytest.approx(correct / labelled)
    for c in range(150):
        expected = inter[c] / union[c] if union[c] else 0.0
        assert metrics[f"IoU/{c + 1}"] == pytest.approx(expected), c
    assert metrics["mIoU"] == pytest.approx(np.mean(inter[union > 0] / union[union > 0]))
    assert metrics["mIoU_all_classes"] == pytest.approx(np.mean(inter / (union + np.spacing(1))))


def test_ade20k_bad_input(ade: Path, tmp_path: Path) -> None:
    spec, fmt = get_spec(ADE), SegmentationPngFormat()
    truth = {k: v.array() for k, v in fmt.read_references(ade, spec).items()}
    fmt.write(tmp_path / "pred", truth, spec)
    pred = tmp_path / "pred" / "ADE_val_00000002.png"
    _png(pred, np.full(truth["ADE_val_00000002"].shape, 151))
    with pytest.raises(RefbenchError, match=r"ADE_val_00000002\.png: label 151 at pixel "
                                            r"\(x=0, y=0\) is not an ADE20K class"):
        evaluate_file(spec, tmp_path / "pred", references=ade)
    _png(pred, np.ones((5, 5)))
    with pytest.raises(RefbenchError, match=r"ADE_val_00000002\.png: size \(5, 5\) differs"):
        evaluate_file(spec, tmp_path / "pred", references=ade)
    pred.unlink()
    with pytest.raises(RefbenchError, match="1 id.s. of the references have no prediction"):
        evaluate_file(spec, tmp_path / "pred", references=ade)
    _png(pred, truth["ADE_val_00000002"])
    annotations = ade / RELEASE / "annotations" / "validation"
    _png(annotations / "ADE_val_00000001.png", np.full((24, 32), 200))
    with pytest.raises(RefbenchError, match=r"ADE_val_00000001\.png: label 200 at pixel"):
        evaluate_file(spec, tmp_path / "pred", references=ade)
    assert not ADE20KBuilder().check(ade).ok
    _png(annotations / "ADE_val_00000001.png", np.zeros((10, 32)))
    with pytest.raises(RefbenchError, match=r"ADE_val_00000001\.png: label map is 32x10 but "
                                            r"its image ADE_val_00000001\.jpg is 32x24"):
        ADE20KBuilder().generate(ade, "default")
    Image.new("RGB", (32, 24)).save(annotations / "ADE_val_00000001.png")
    with pytest.raises(RefbenchError, match="single-channel PNG, this one is RGB"):
        ADE20KBuilder().generate(ade, "default")
    (annotations / "ADE_val_00000001.png").unlink()
    with pytest.raises(RefbenchError, match=r"ADE_val_00000001\.jpg: image has no annotation"):
        ADE20KBuilder().generate(ade, "default")
    (ade / RELEASE / "images" / "validation" / "ADE_val_00000001.jpg").unlink()
    _png(annotations / "ADE_val_00000009.png", np.zeros((24, 32)))
    with pytest.raises(RefbenchError, match=r"ADE_val_00000009\.png: annotation has no image"):
        ADE20KBuilder().generate(ade, "default")
    jpg = ade / RELEASE / "images" / "validation" / "ADE_val_00000002.jpg"
    jpg.write_bytes(jpg.read_bytes()[:30])
    (annotations / "ADE_val_00000009.png").unlink()
    with pytest.raises(RefbenchError, match=r"ADE_val_00000002\.jpg: unreadable image"):
        ADE20KBuilder().generate(ade, "default")


def official_cityscapes(truth: dict[str, np.ndarray], preds: dict[str, np.ndarray]
                        ) -> tuple[dict[int, float], float]:
    """cityscapesScripts' evalPixelLevelSemanticLabeling, re-derived: a 34x34 confusion
    matrix over labelIds; IoU of a train class = tp / (tp + fp + fn) where fp only counts
    pixels whose ground truth is an evaluated label; the score averages non-NaN IoUs."""
    conf = np.zeros((34, 34), dtype=np.int64)
    for key, gt in truth.items():
        np.add.at(conf, (gt.ravel(), preds[key].ravel()), 1)
    evaluated = sorted(CITYSCAPES_TRAIN_IDS)
    ious = {}
    for label in evaluated:
        tp = conf[label, label]
        fn = conf[label, :].sum() - tp
        fp = conf[[x for x in evaluated if x != label], label].sum()
        ious[label] = tp / (tp + fp + fn) if tp + fp + fn else float("nan")
    values = np.array(list(ious.values()))
    return ious, float(np.nanmean(values))


def test_cityscapes_layout_and_official_scores(city: Path, tmp_path: Path) -> None:
    builder = CityscapesBuilder()
    assert builder.check(city).ok
    splits = builder.generate(city, "default")
    assert {s: len(d) for s, d in splits.items()} == {"train": 9, "validation": 3, "test": 3}
    val = splits["validation"]
    assert set(val["group"]) == {"frankfurt", "lindau"}
    assert all(k.startswith(f"{g}_") for k, g in zip(val["id"], val["group"]))
    assert set(splits["train"]["label_ids"]) == {"labelIds"}  # preferred over trainIds
    spec, fmt = get_spec(CITY), SegmentationPngFormat()
    refs = fmt.read_references(city, spec)
    truth = {k: v.array() for k, v in refs.items()}
    preds = _corrupt(truth, np.random.default_rng(1), np.arange(0, 34))
    # the official submission: labelIds PNGs in any folder, found by <city>_<seq>_<frame>
    for i, (key, pred) in enumerate(preds.items()):
        name = f"{key}_leftImg8bit.png" if i % 2 else f"sub/{key}_pred.png"
        _png(tmp_path / "pred" / name, pred)
    result = evaluate_file(spec, tmp_path / "pred", references=city, strict=True)
    again = evaluate_file(spec, tmp_path / "pred", references=city / "gtFine", strict=True)
    assert again.metrics == result.metrics
    ious, score = official_cityscapes(truth, preds)
    names = {label: n for label, n in zip(sorted(CITYSCAPES_TRAIN_IDS),
                                          [k[4:] for k in result.metrics if k.startswith("IoU/")])}
    for label, iou in ious.items():
        assert result.metrics[f"IoU/{names[label]}"] == pytest.approx(np.nan_to_num(iou))
    assert result.metrics["mIoU"] == pytest.approx(score)
    # a train image whose labelIds PNG is gone is scored from its labelTrainIds PNG
    train = dataclasses.replace(spec, split="train")
    train_truth = {k: v.array() for k, v in fmt.read_references(city, train).items()}
    first = sorted(train_truth)[0]
    next(city.glob(f"gtFine/train/*/{first}_gtFine_labelIds.png")).unlink()
    rows = builder.generate(city, "default")["train"]
    assert rows["label_ids"][rows["id"].index(first)] == "trainIds"
    fmt.write(tmp_path / "train_pred", train_truth, train)
    assert evaluate_file(train, tmp_path / "train_pred", references=city).metrics["mIoU"] == 1.0
    converted = fmt.read_references(city, train)[first].array()
    unlabelled = train_truth[first].copy()
    unlabelled[~np.isin(unlabelled, list(CITYSCAPES_TRAIN_IDS))] = 0  # ignored ids -> 0
    assert np.array_equal(converted, unlabelled)


def test_cityscapes_bad_input(city: Path, tmp_path: Path) -> None:
    spec, fmt = get_spec(CITY), SegmentationPngFormat()
    truth = {k: v.array() for k, v in fmt.read_references(city, spec).items()}
    fmt.write(tmp_path / "pred", truth, spec)
    key = sorted(truth)[0]
    _png(tmp_path / "pred" / f"{key}.png", np.full(truth[key].shape, 34))
    with pytest.raises(RefbenchError, match=rf"{key}\.png: label 34 at pixel \(x=0, y=0\) is "
                                            r"not a Cityscapes labelId \(0\.\.33\)"):
        evaluate_file(spec, tmp_path / "pred", references=city)
    _png(tmp_path / "pred" / f"{key}.png", truth[key])
    gt = next(city.glob(f"gtFine/val/*/{key}_gtFine_labelIds.png"))
    _png(gt, np.full(truth[key].shape, 40))
    with pytest.raises(RefbenchError, match=r"_gtFine_labelIds\.png: label 40 at pixel"):
        evaluate_file(spec, tmp_path / "pred", references=city)
    assert not CityscapesBuilder().check(city).ok
    gt.unlink()
    with pytest.raises(RefbenchError, match=rf"{key}_leftImg8bit\.png: image has no label map"):
        CityscapesBuilder().generate(city, "default")
    shutil.copy(next(city.glob("leftImg8bit/val/*/*.png")), gt.parent / "weird.png")
    _png(gt, np.zeros(truth[key].shape))
    shutil.move(gt.parent / "weird.png", city / "leftImg8bit" / "val" / "Frankfurt_1_2_leftImg8bit.png")
    with pytest.raises(RefbenchError, match=r"Frankfurt_1_2_leftImg8bit\.png: not a Cityscapes "
                                            r"file name"):
        CityscapesBuilder().generate(city, "default")


def test_segmentation_on_the_leaderboard(ade: Path, tmp_path: Path) -> None:
    """Hidden references = the release folder; the prediction folder is uploaded as a zip;
    a zip without one image fails in one line that names no server path."""
    from refbench.leaderboard.archive import zip_folder
    from refbench.leaderboard.db import LeaderboardDB
    from refbench.leaderboard.worker import Worker

    hidden = tmp_path / "hidden"
    shutil.copytree(ade, hidden / "ade20k")
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    board.set_references_dir(hidden)
    board.add_benchmark(ADE, "ade20k", seed=1)
    team = board.add_team("alpha")
    spec, fmt = get_spec(ADE), SegmentationPngFormat()
    truth = {k: v.array() for k, v in fmt.read_references(ade, spec).items()}
    fmt.write(tmp_path / "best", truth, spec)
    good = board.submit(team, ADE, "predictions.zip", zip_folder(tmp_path / "best"))
    (tmp_path / "best" / "ADE_val_00000003.png").unlink()
    short = board.submit(team, ADE, "predictions.zip", zip_folder(tmp_path / "best"))
    assert Worker(board, context="fork", time_limit=120.0).run(until_idle=True) == 2
    assert board.submission(good)["status"] == "scored", board.submission(good)["error"]
    scores = board.scores(good, reveal=True)
    assert scores["public"]["aAcc"] == scores["private"]["aAcc"] == 1.0
    failed = board.submission(short)
    assert failed["status"] == "failed" and "\n" not in failed["error"]
    assert str(hidden) not in failed["error"] and "no prediction" in failed["error"]


def test_read_label_png_refuses_truncated(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", np.zeros((4, 4)))
    (tmp_path / "a.png").write_bytes((tmp_path / "a.png").read_bytes()[:20])
    with pytest.raises(RefbenchError, match=r"a\.png: unreadable PNG"):
        read_label_png(tmp_path / "a.png")
