"""GLUE metric maths against scikit-learn / scipy, streaming, and the GLUE score."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from refbench.errors import RefbenchError
from refbench.evaluation import glue
from refbench.evaluation.glue import GlueAllMetric, GlueMetric, glue_score
from refbench.registry import METRICS

N_CASES = 300


def _classification_cases(n_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random label vectors: tiny and larger, skewed, and degenerate (one class only)."""
    rng = np.random.default_rng(n_classes)
    cases = []
    for i in range(N_CASES):
        n = int(rng.integers(1, 80))
        skew = rng.dirichlet(np.ones(n_classes))
        ref = rng.choice(n_classes, size=n, p=skew)
        pred = ref.copy() if i % 7 == 0 else rng.choice(n_classes, size=n)
        if i % 11 == 0:
            pred = np.full(n, int(rng.integers(n_classes)))
        if i % 13 == 0:
            ref = np.full(n, int(rng.integers(n_classes)))
        cases.append((pred, ref))
    return cases


def _regression_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Continuous, heavily tied (rounded to a coarse grid) and anti-correlated vectors."""
    rng = np.random.default_rng(5)
    cases = []
    for i in range(N_CASES):
        n = int(rng.integers(2, 120))
        ref = rng.uniform(0, 5, size=n)
        pred = ref + rng.normal(0, rng.uniform(0.1, 3), size=n)
        if i % 3 == 0:  # many ties on both sides
            ref, pred = np.round(ref), np.round(pred * 2) / 2
        if i % 5 == 0:
            pred = -pred
        cases.append((pred, ref))
    return cases


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("n_classes", [2, 3])
def test_classification_functions_equal_sklearn(n_classes: int) -> None:
    for pred, ref in _classification_cases(n_classes):
        assert glue.accuracy(pred, ref) == pytest.approx(skm.accuracy_score(ref, pred), abs=1e-12)
        assert glue.matthews_corrcoef(pred, ref) == pytest.approx(
            skm.matthews_corrcoef(ref, pred), abs=1e-12)
        if n_classes == 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sklearn warns on zero_division cases
                expected = skm.f1_score(ref, pred, pos_label=1, average="binary", labels=[0, 1])
            assert glue.f1_binary(pred, ref) == pytest.approx(expected, abs=1e-12)


def test_correlations_equal_scipy() -> None:
    for pred, ref in _regression_cases():
        assert glue.pearson(pred, ref) == pytest.approx(stats.pearsonr(pred, ref).statistic,
                                                        abs=1e-10)
        assert glue.spearman(pred, ref) == pytest.approx(stats.spearmanr(pred, ref).statistic,
                                                         abs=1e-10)


def test_average_ranks_equal_scipy_rankdata() -> None:
    rng = np.random.default_rng(9)
    for _ in range(100):
        values = rng.integers(0, 6, size=int(rng.integers(1, 40))).astype(float)
        np.testing.assert_array_equal(glue.average_ranks(values), stats.rankdata(values))


def test_constant_input_gives_zero_correlation_where_scipy_gives_nan() -> None:
    pred, ref = np.full(10, 2.5), np.linspace(0, 5, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(stats.pearsonr(pred, ref).statistic)
        assert math.isnan(stats.spearmanr(pred, ref).statistic)
    assert glue.pearson(pred, ref) == 0.0
    assert glue.spearman(pred, ref) == 0.0
    assert glue.pearson(ref, pred) == 0.0
    metric = GlueMetric("stsb")
    metric.update(pred, ref)
    assert metric.compute() == {"pearson": 0.0, "spearman": 0.0, "score": 0.0}


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_degenerate_classification_matches_sklearn() -> None:
    cases = [([1], [1]), ([0, 0, 0], [0, 1, 1]), ([1, 1], [1, 1]), ([0, 0], [0, 0]),
             ([2, 2, 2], [0, 1, 2])]
    for pred, ref in cases:
        assert glue.matthews_corrcoef(pred, ref) == skm.matthews_corrcoef(ref, pred)
    # no positive anywhere: F1 is 0.0 (sklearn's zero_division default)
    assert glue.f1_binary([0, 0], [0, 0]) == skm.f1_score([0, 0], [0, 0], zero_division=0.0)
    assert glue.f1_binary([0, 0], [0, 0]) == 0.0


def _task_data(task: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = glue.TASKS[task][1]
    if classes == 0:
        ref = np.round(rng.uniform(0, 5, n), 1)
        return ref + rng.normal(0, 1, n), ref
    ref = rng.integers(0, classes, n)
    pred = np.where(rng.random(n) < 0.7, ref, rng.integers(0, classes, n))
    return pred, ref


def _expected(task: str, pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The task's numbers straight from scikit-learn / scipy, in percent."""
    ref_metrics = {"mcc": lambda: skm.matthews_corrcoef(ref, pred),
                   "accuracy": lambda: skm.accuracy_score(ref, pred),
                   "f1": lambda: skm.f1_score(ref, pred),
                   "pearson": lambda: stats.pearsonr(pred, ref).statistic,
                   "spearman": lambda: stats.spearmanr(pred, ref).statistic}
    out = {k: 100 * float(ref_metrics[k]()) for k in glue.TASK_KEYS[task]}
    out["score"] = sum(out.values()) / len(out)
    return out


@pytest.mark.parametrize("task", list(glue.TASKS))
def test_glue_metric_keys_values_and_streaming(task: str) -> None:
    pred, ref = _task_data(task, 500, seed=len(task))
    one_shot = METRICS.get("glue")(task=task)
    one_shot.update(pred, ref)
    result = one_shot.compute()
    assert list(result) == one_shot.output_keys() == [*glue.TASK_KEYS[task], "score"]
    assert set(result) <= set(GlueMetric.keys)
    expected = _expected(task, pred, ref)
    for key in result:
        assert result[key] == pytest.approx(expected[key], abs=1e-9), key
    # three workers, uneven batches, merged
    cuts = [0, 7, 130, 131, 400, 500]
    workers = [GlueMetric(task) for _ in range(3)]
    for i in range(len(cuts) - 1):
        batch = slice(cuts[i], cuts[i + 1])
        workers[i % 3].update(pred[batch].tolist(), ref[batch].tolist())
    workers[0].merge(workers[1])
    workers[0].merge(workers[2])
    merged = workers[0].compute()
    for key in result:
        assert merged[key] == pytest.approx(result[key], abs=1e-9)


def test_glue_score_bert_large_leaderboard_row() -> None:
    # GLUE leaderboard, BERT-large: published GLUE score 80.5
    row = {"CoLA": 60.5, "SST-2": 94.9, "MRPC": (89.3, 85.4), "STS-B": (87.6, 86.5),
           "QQP": (72.1, 89.3), "MNLI-m": 86.7, "MNLI-mm": 85.9, "QNLI": 92.7, "RTE": 70.1,
           "WNLI": 65.1, "AX": 39.6}
    assert round(glue_score(row), 1) == 80.5
    # task names work as well, and pre-averaged pairs give the same number
    by_task = {glue.task_name(k): (sum(v) / 2 if isinstance(v, tuple) else v)
               for k, v in row.items()}
    assert glue_score(by_task) == pytest.approx(glue_score(row), abs=1e-12)
    # AX is not averaged; MNLI counts once (counting it twice would give 81.1)
    assert glue_score({k: v for k, v in by_task.items() if k != "ax"}) == glue_score(by_task)
    assert round(glue_score({**by_task, "ax": 0.0}), 1) == 80.5


def test_glue_score_subsets_and_errors() -> None:
    assert glue_score({"cola": 50.0}) == 50.0
    assert glue_score({"mnli_m": 80.0, "cola": 40.0}) == 60.0
    assert glue_score({"mnli_m": 80.0, "mnli_mm": 70.0, "cola": 40.0}) == 57.5
    with pytest.raises(RefbenchError, match="AX alone"):
        glue_score({"ax": 30.0})
    with pytest.raises(RefbenchError, match="unknown GLUE task"):
        glue_score({"mnli": 80.0})
    with pytest.raises(RefbenchError):
        glue_score({"cola": float("nan")})
    with pytest.raises(RefbenchError):
        glue_score({"mrpc": (1.0, 2.0, 3.0)})


def test_glue_all_matches_per_task_metrics() -> None:
    tasks = ["cola", "mrpc", "stsb", "mnli_m", "mnli_mm", "ax"]  # GLUE order
    data = {t: _task_data(t, 200, seed=i) for i, t in enumerate(tasks)}
    metric = METRICS.get("glue_all")()
    metric.update({t: p for t, (p, _) in data.items()}, {t: r for t, (_, r) in data.items()})
    result = metric.compute()
    per_task = {}
    for task, (pred, ref) in data.items():
        single = GlueMetric(task)
        single.update(pred, ref)
        values = single.compute()
        per_task[task] = values["score"]
        for key, value in values.items():
            assert result[f"{glue.TASKS[task][0]}/{key}"] == value
    assert "CoLA/mcc" in result and "MNLI-m/accuracy" in result and "STS-B/spearman" in result
    assert not any(k.startswith(("SST-2/", "QQP/", "RTE/")) for k in result)
    assert result["score"] == pytest.approx(glue_score(per_task), abs=1e-12)
    assert set(result) <= set(GlueAllMetric.keys)
    assert glue.tasks_in(result) == tasks
    # the aligned (task, value) pairs the scorer passes for glue_dir give the same result
    pairs_p = [(t, v) for t, (p, _) in data.items() for v in p.tolist()]
    pairs_r = [(t, v) for t, (_, r) in data.items() for v in r.tolist()]
    half = len(pairs_p) // 2
    a, b = GlueAllMetric(), GlueAllMetric()
    a.update(pairs_p[:half], pairs_r[:half])
    b.update(pairs_p[half:], pairs_r[half:])
    a.merge(b)
    assert a.compute() == pytest.approx(result, abs=1e-9)
    # so do {(task, index): value} maps
    keyed_p = {(t, i): v for t, (p, _) in data.items() for i, v in enumerate(p.tolist())}
    keyed_r = {(t, i): v for t, (_, r) in data.items() for i, v in enumerate(r.tolist())}
    c = GlueAllMetric()
    c.update(keyed_p, keyed_r)
    assert c.compute() == pytest.approx(result, abs=1e-9)


def test_glue_all_errors() -> None:
    metric = GlueAllMetric()
    with pytest.raises(RefbenchError, match="no GLUE predictions"):
        metric.compute()
    metric.update({"ax": [0, 1, 2]}, {"ax": [0, 1, 1]})
    with pytest.raises(RefbenchError, match="AX alone"):
        metric.compute()
    with pytest.raises(RefbenchError, match="different keys"):
        GlueAllMetric().update({"cola": [1]}, {"sst2": [1]})
    with pytest.raises(RefbenchError, match="one task"):
        GlueAllMetric().update([("cola", 1)], [("sst2", 1)])
    with pytest.raises(RefbenchError, match="unknown GLUE task"):
        GlueAllMetric().update({"colaa": [1]}, {"colaa": [1]})


@pytest.mark.parametrize("pred, ref, message", [
    ([0, 1], [0], "2 predictions but 1 references"),
    ([], [], "no examples"),
    ([0.5, float("nan")], [1.0, 2.0], "non-finite"),
    ([0.5, 1.0], [float("inf"), 2.0], "non-finite"),
    (["a", "b"], [1.0, 2.0], "must be numbers"),
    ([None, 1], [1.0, 2.0], "must be numbers"),
])
def test_functions_reject_bad_input(pred: list, ref: list, message: str) -> None:
    for function in (glue.accuracy, glue.f1_binary, glue.matthews_corrcoef, glue.pearson,
                     glue.spearman):
        with pytest.raises(RefbenchError, match=message):
            function(pred, ref)


def test_glue_metric_rejects_bad_input() -> None:
    with pytest.raises(RefbenchError, match="unknown GLUE task"):
        GlueMetric("mnli")
    metric = GlueMetric("cola")
    with pytest.raises(RefbenchError, match="no CoLA examples"):
        metric.compute()
    with pytest.raises(RefbenchError, match="class ids 0..1"):
        metric.update([0, 2], [0, 1])
    with pytest.raises(RefbenchError, match="unlabeled"):
        metric.update([0, 1], [0, -1])
    with pytest.raises(RefbenchError, match="class ids"):
        metric.update([0, 0.5], [0, 1])
    with pytest.raises(RefbenchError, match="non-finite"):
        GlueMetric("stsb").update([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(RefbenchError, match="3 predictions but 2"):
        metric.update([0, 1, 1], [0, 1])
    with pytest.raises(TypeError):
        metric.merge(GlueMetric("sst2"))
    # nothing bad was kept
    metric.update([1, 0], [1, 0])
    assert metric.compute()["mcc"] == 100.0
