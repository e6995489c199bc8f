"""The image_classification metric: hand-computed top-1 / top-5 / mean per-class accuracy,
the reference implementations it must equal (PyTorch-Encoding's `accuracy`, the ILSVRC2012
devkit's `eval_flat.m`, scikit-learn's balanced accuracy), when top-5 is withheld, and
one-line errors for bad labels."""

from __future__ import annotations

import numpy as np
import pytest

from refbench.errors import RefbenchError
from refbench.evaluation.image_classification import (
    FEW_IMAGES,
    NO_GUESS,
    TOP_K,
    ClassNames,
    ClassRef,
    Guesses,
    ImageClassificationMetric,
    ranked,
    score,
)
from refbench.registry import METRICS


def test_limits_are_pinned() -> None:
    assert TOP_K == 5  # top-5, and the devkit's "no more than 5" labels per line
    assert FEW_IMAGES == 100  # below it one image moves the accuracy by over one point
    assert NO_GUESS == -1
    entry = METRICS.entry("image_classification")
    assert entry.meta["version"] == "1" and entry.meta["higher_is_better"] is True


def test_hand_computed_values() -> None:
    # 4 images of classes 0, 0, 1, 2 among 6 classes
    preds = [[0, 1, 2, 3, 4], [1, 2, 3, 4, 0], [1, 0, 2, 3, 4], [0, 1, 3, 4, 5]]
    refs = [0, 0, 1, 2]
    metric = ImageClassificationMetric(num_classes=6)
    metric.update(preds, refs)
    values = metric.compute()
    # top-1: images 0 and 2 -> 50 %; top-5: all but image 3 -> 75 %
    # per class: class 0 1/2, class 1 1/1, class 2 0/1 -> (50 + 100 + 0) / 3
    assert values == pytest.approx({"top1": 50.0, "top5": 75.0, "mean_class_accuracy": 50.0})
    assert metric.counts() == {"images/scored": 4, "images/no_prediction": 0,
                               "top1/correct": 2, "top5/correct": 3,
                               "classes/with_images": 3, "predictions/fewer_than_5_labels": 0}
    assert any("only 4 images" in w and "25.00 points" in w for w in metric.warnings())


def test_single_labels_give_no_top5_and_say_why() -> None:
    metric = ImageClassificationMetric()
    metric.update([3, 1, 2], [3, 1, 1])
    values = metric.compute()
    assert set(values) == {"top1", "mean_class_accuracy"}
    assert values["top1"] == pytest.approx(200 / 3)
    assert "top5/correct" not in metric.counts()
    assert any("top-5 is not reported: 3 prediction(s) give fewer than 5" in w
               for w in metric.warnings())
    # four labels are not enough either; five are
    assert "top5" not in score([[1, 2, 3, 4]], [4], num_classes=10)
    assert score([[1, 2, 3, 4, 0]], [0], num_classes=10)["top5"] == 100.0


def test_no_top5_with_fewer_than_five_classes() -> None:
    classes = ClassNames(["a", "b", "c", "d"])
    metric = ImageClassificationMetric()
    metric.update([("b", "a", "c", "d")], [ClassRef(0, classes)])
    assert "top5" not in metric.compute()
    assert "only 4 classes" in " ".join(metric.warnings())


def test_missing_prediction_is_a_miss() -> None:
    metric = ImageClassificationMetric(num_classes=10)
    metric.update([None, [1, 2, 3, 4, 5]], [1, 1])
    assert metric.compute() == pytest.approx({"top1": 50.0, "top5": 50.0,
                                              "mean_class_accuracy": 50.0})
    assert metric.counts()["images/no_prediction"] == 1


def test_scores_rank_best_first_ties_to_the_lower_index() -> None:
    scores = np.array([0.1, 0.5, 0.5, 0.2, 0.0, 0.3, 0.0])
    assert ranked(scores, None, 7) == ((1, 2, 5, 3, 0), 7)
    assert score([scores], [2], num_classes=7)["top1"] == 0.0
    assert score([Guesses(scores=scores)], [1], num_classes=7)["top5"] == 100.0


def test_topk_equals_encoding_accuracy() -> None:
    """PyTorch-Encoding's `utils.accuracy` (output.topk(maxk) vs target, x 100 / batch)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 20))
    target = rng.integers(0, 20, 300)
    _, pred = torch.from_numpy(logits).topk(5, 1, True, True)
    correct = pred.t().eq(torch.from_numpy(target).view(1, -1).expand_as(pred.t()))
    expect = [float(correct[:k].reshape(-1).float().sum(0) * 100.0 / 300) for k in (1, 5)]
    values = score(list(logits), [int(t) for t in target], num_classes=20)
    assert (values["top1"], values["top5"]) == pytest.approx(expect)


def _eval_flat(pred: list[list[int]], gt: list[int], max_num: int) -> float:
    """The devkit's eval_flat.m read line by line: rows padded with 0 (dlmread), cut to
    max_num columns, a zero column appended, error = mean over images of 'no column
    equals the ground truth'."""
    width = max(len(p) for p in pred)
    table = np.array([p + [0] * (width - len(p)) for p in pred])[:, :max_num]
    table = np.hstack([table, np.zeros((len(pred), 1), dtype=int)])
    c = (np.array(gt)[:, None] != table).min(axis=1)
    return float(c.sum() / len(pred))


def test_equals_the_devkit_flat_error_with_short_lines() -> None:
    rng = np.random.default_rng(1)
    gt = [int(x) for x in rng.integers(1, 31, 200)]  # ILSVRC-style ids 1..30
    pred = [[int(x) for x in rng.permutation(np.arange(1, 31))[:rng.integers(1, 6)]]
            for _ in gt]
    # refbench reads the ids as classes 0..29 and pads short lines with NO_GUESS
    guesses = [[p - 1 for p in line] + [NO_GUESS] * (TOP_K - len(line)) for line in pred]
    values = score(guesses, [g - 1 for g in gt], num_classes=30)
    assert values["top1"] == pytest.approx(100 * (1 - _eval_flat(pred, gt, 1)))
    assert values["top5"] == pytest.approx(100 * (1 - _eval_flat(pred, gt, 5)))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_mean_class_accuracy_equals_balanced_accuracy() -> None:
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(2)
    refs = rng.integers(0, 7, 500)
    preds = np.where(rng.random(500) < 0.6, refs, rng.integers(0, 9, 500))
    values = score([int(p) for p in preds], [int(r) for r in refs], num_classes=9)
    assert values["mean_class_accuracy"] == pytest.approx(
        100 * balanced_accuracy_score(refs, preds))


def test_class_names_resolve_before_indices() -> None:
    classes = ClassNames(["n02", "n01", "7"])
    refs = [ClassRef(0, classes), ClassRef(1, classes), ClassRef(2, classes)]
    # "n01" is class 1; "7" is the name of class 2 (not index 7); "0" is index 0
    assert score(["0", "n01", "7"], refs)["top1"] == 100.0


def test_merge_equals_one_pass() -> None:
    preds, refs = [[0, 1, 2, 3, 4], 3, None, [2, 1, 0, 3, 4]], [0, 3, 1, 1]
    whole = ImageClassificationMetric(num_classes=5)
    whole.update(preds, refs)
    a, b = ImageClassificationMetric(num_classes=5), ImageClassificationMetric(num_classes=5)
    a.update(preds[:2], refs[:2])
    b.update(preds[2:], refs[2:])
    a.merge(b)
    assert a.compute() == whole.compute() and a.counts() == whole.counts()


@pytest.mark.parametrize(("pred", "ref", "message"), [
    (["cat"], [ClassRef(0, ClassNames(["dog", "bird"]))], "'cat' is not a class name"),
    ([12], [ClassRef(0, ClassNames(["dog", "bird"]))], "out of range 0..1"),
    ([[1, 2, 1, 3, 4]], [1], "class 1 is ranked twice"),
    ([["dog", 0]], [ClassRef(0, ClassNames(["dog", "bird"]))], "class dog is ranked twice"),
    ([True], [1], "neither a class index nor a class name"),
    ([[NO_GUESS, 1]], [1], "first guess is empty"),
    ([np.array([0.1, np.nan, 0.3])], [1], "score 1 is NaN"),
    ([np.array([0.1, 0.2])], [ClassRef(0, ClassNames("abc"))], "2 scores for 3 classes"),
    ([1], [-1], "unlabelled"),
    ([1], [ClassRef(3, ClassNames("abc"))], "outside the 3 classes"),
])
def test_bad_input_is_one_line(pred: list, ref: list, message: str) -> None:
    with pytest.raises(RefbenchError, match=message) as info:
        score(pred, ref)
    assert "\n" not in str(info.value)


def test_errors_name_the_file_and_line() -> None:
    guess = Guesses(labels=("zebra",), path="preds.csv", line=7, id="img1")
    with pytest.raises(RefbenchError, match=r"^preds.csv:7: id img1: label 'zebra'"):
        score([guess], [ClassRef(0, ClassNames(["dog", "bird"]))])
    guess = Guesses(labels=("zebra",), path="preds.json", id="img1")
    with pytest.raises(RefbenchError, match=r"^preds.json \[id img1\]: label 'zebra'"):
        score([guess], [ClassRef(0, ClassNames(["dog", "bird"]))])


def test_label_sets_and_class_counts_must_agree() -> None:
    metric = ImageClassificationMetric(num_classes=10)
    with pytest.raises(RefbenchError, match="3 classes, the metric was given num_classes=10"):
        metric.update([0], [ClassRef(0, ClassNames("abc"))])
    metric = ImageClassificationMetric()
    metric.update([0], [ClassRef(0, ClassNames("abc"))])
    with pytest.raises(RefbenchError, match="two label sets"):
        metric.update([0], [ClassRef(0, ClassNames("abd"))])
    with pytest.raises(RefbenchError, match="num_classes must be an integer >= 2"):
        ImageClassificationMetric(num_classes=1)
    with pytest.raises(RefbenchError, match="no labelled image"):
        ImageClassificationMetric().compute()
    with pytest.raises(RefbenchError, match="names a class twice"):
        ClassNames(["a", "a"])
