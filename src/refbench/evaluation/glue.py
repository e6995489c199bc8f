"""GLUE metrics: the official task metrics, the GLUE task score and the benchmark score.

The maths are plain functions written from their definitions (tests check them against
scikit-learn and scipy): `accuracy`, `f1_binary`, `matthews_corrcoef`, `pearson` and
`spearman`. Two streaming classes wrap them:

- `glue` (`GlueMetric(task=...)`) scores one task; values are in percent, as the GLUE
  leaderboard shows them, and `score` is the GLUE task score (the task's single metric,
  or the mean of its pair: MRPC/QQP F1 and accuracy, STS-B Pearson and Spearman);
- `glue_all` (`GlueAllMetric()`) scores any subset of the tasks at once and adds the
  GLUE benchmark `score` (`glue_score`) over the tasks present.

Pearson and Spearman are undefined when one side is constant (scipy returns nan). A
constant predictor (for example the training-set mean) is a legitimate baseline and a
result must be valid JSON, so both return 0.0 then: the predictions carry no linear or
rank information about the labels, which is what a correlation of zero means.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS

# -- tasks -----------------------------------------------------------------------------
#: metric task name -> (display name used in keys and server files, number of classes;
#: 0 = regression)
TASKS: dict[str, tuple[str, int]] = {
    "cola": ("CoLA", 2), "sst2": ("SST-2", 2), "mrpc": ("MRPC", 2), "stsb": ("STS-B", 0),
    "qqp": ("QQP", 2), "mnli_m": ("MNLI-m", 3), "mnli_mm": ("MNLI-mm", 3), "qnli": ("QNLI", 2),
    "rte": ("RTE", 2), "wnli": ("WNLI", 2), "ax": ("AX", 3),
}
#: the keys each task reports (besides `score`), in leaderboard order
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",), "ax": ("mcc",), "mrpc": ("f1", "accuracy"), "qqp": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    **{t: ("accuracy",) for t in ("sst2", "mnli_m", "mnli_mm", "qnli", "rte", "wnli")},
}
DISPLAY_TO_TASK: dict[str, str] = {display: task for task, (display, _) in TASKS.items()}
#: tasks averaged into one before the benchmark mean (GLUE counts MNLI once)
_MERGED = {"mnli_m": "mnli", "mnli_mm": "mnli"}


def task_name(name: str) -> str:
    """The metric task name of `name`, given as a task (`mnli_m`) or display name (`MNLI-m`)."""
    if name in TASKS:
        return name
    if name in DISPLAY_TO_TASK:
        return DISPLAY_TO_TASK[name]
    raise RefbenchError(f"unknown GLUE task {name!r} (known: {', '.join(TASKS)})", key="task")


# -- plain functions -------------------------------------------------------------------
def _pair(predictions: Any, references: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long, non-empty, finite float64 arrays, or a `RefbenchError`."""
    arrays = []
    for name, values in (("predictions", predictions), ("references", references)):
        try:
            raw = np.asarray(values)
        except (TypeError, ValueError) as exc:
            raise RefbenchError(f"{name} must be a flat sequence of numbers: {exc}") from None
        if raw.dtype.kind not in "biuf":  # strings, None, nested objects
            raise RefbenchError(f"{name} must be numbers (class ids or floats), got "
                                f"{raw.reshape(-1)[:3].tolist()!r}...")
        arrays.append(raw.astype(np.float64).reshape(-1))
    pred, ref = arrays
    if pred.shape != ref.shape:
        raise RefbenchError(f"{pred.size} predictions but {ref.size} references")
    if pred.size == 0:
        raise RefbenchError("no examples to score")
    for name, arr in (("predictions", pred), ("references", ref)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise RefbenchError(f"{name} hold {bad.size} non-finite value(s) (NaN/inf), "
                                f"first at position {bad[0]}")
    return pred, ref


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Fraction of predictions equal to their reference."""
    pred, ref = _pair(predictions, references)
    return float(np.mean(pred == ref))


def f1_binary(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """F1 of the positive class 1: 2TP / (2TP + FP + FN); 0.0 when there is no positive at
    all on either side (scikit-learn's `zero_division` default)."""
    pred, ref = _pair(predictions, references)
    p, r = pred == 1, ref == 1
    tp = float(np.sum(p & r))
    denominator = 2 * tp + float(np.sum(p & ~r)) + float(np.sum(~p & r))
    return 0.0 if denominator == 0 else 2 * tp / denominator


def matthews_corrcoef(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Matthews correlation coefficient, multi-class (Gorodkin's R_K) form.

    With the confusion matrix C, s = number of samples, c = correctly classified, t_k =
    times class k truly occurs, p_k = times it is predicted:
    MCC = (c*s - t.p) / sqrt((s^2 - p.p) (s^2 - t.t)); 0.0 when a factor of the denominator
    is zero (all predictions, or all references, one class), like scikit-learn.
    """
    pred, ref = _pair(predictions, references)
    classes, codes = np.unique(np.concatenate([ref, pred]), return_inverse=True)
    k = classes.size
    true_codes, pred_codes = codes[: ref.size], codes[ref.size:]
    confusion = np.bincount(true_codes * k + pred_codes, minlength=k * k).reshape(k, k)
    confusion = confusion.astype(np.float64)
    t = confusion.sum(axis=1)
    p = confusion.sum(axis=0)
    c = float(np.trace(confusion))
    s = float(confusion.sum())
    cov_ytyp = c * s - float(t @ p)
    cov_ypyp = s * s - float(p @ p)
    cov_ytyt = s * s - float(t @ t)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return cov_ytyp / math.sqrt(cov_ytyt * cov_ypyp)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two finite arrays; 0.0 when either is constant (see module doc)."""
    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    xc = x - x.mean()
    yc = y - y.mean()
    nx, ny = float(np.linalg.norm(xc)), float(np.linalg.norm(yc))
    if nx == 0.0 or ny == 0.0:  # pragma: no cover - only from underflow of tiny spreads
        return 0.0
    r = float(np.dot(xc / nx, yc / ny))
    return max(-1.0, min(1.0, r))


def pearson(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Pearson correlation: covariance over the product of standard deviations."""
    pred, ref = _pair(predictions, references)
    return _correlation(pred, ref)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values all get the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # start of each run of equal values in sorted order, and one past the last
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.concatenate((starts[1:], [values.size]))
    # positions start..end-1 hold ranks start+1..end; their mean is (start + 1 + end) / 2
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    pred, ref = _pair(predictions, references)
    return _correlation(average_ranks(pred), average_ranks(ref))


# -- GLUE scores -----------------------------------------------------------------------
def _finite(value: Any, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RefbenchError(f"expected a number, got {value!r}", key=key) from None
    if not math.isfinite(number):
        raise RefbenchError(f"expected a finite number, got {value!r}", key=key)
    return number


def task_score(value: float | Sequence[float], key: str = "score") -> float:
    """A GLUE task score: the number itself, or the mean of a metric pair such as
    MRPC's (F1, accuracy)."""
    if isinstance(value, (list, tuple)):
        if len(value) not in (1, 2):
            raise RefbenchError(f"expected one score or a pair, got {value!r}", key=key)
        return sum(_finite(v, key) for v in value) / len(value)
    return _finite(value, key)


def glue_score(task_scores: Mapping[str, float | Sequence[float]]) -> float:
    """The GLUE benchmark score: the unweighted mean of the task scores.

    Keys are task names (`cola`, `mnli_m`, ...) or display names (`CoLA`, `MNLI-m`); a value
    is a task score or a metric pair, which is averaged first. MNLI-m and MNLI-mm are
    averaged into one MNLI task (the mean of those present), as on the GLUE leaderboard,
    and the diagnostic AX is not part of the average. Only the tasks given are averaged.
    """
    groups: dict[str, list[float]] = {}
    for name, value in task_scores.items():
        task = task_name(name)
        if task == "ax":
            task_score(value, key=name)  # still validated
            continue
        groups.setdefault(_MERGED.get(task, task), []).append(task_score(value, key=name))
    if not groups:
        raise RefbenchError("no GLUE task score to average (AX alone is not scored)")
    return sum(sum(v) / len(v) for v in groups.values()) / len(groups)


def score_task(task: str, predictions: Any, references: Any) -> dict[str, float]:
    """One task's leaderboard numbers in percent, plus `score` (the GLUE task score)."""
    task = task_name(task)
    pred, ref = _pair(predictions, references)
    _check_labels(task, pred, ref)
    functions = {"mcc": matthews_corrcoef, "accuracy": accuracy, "f1": f1_binary,
                 "pearson": pearson, "spearman": spearman}
    values = {key: 100.0 * functions[key](pred, ref) for key in TASK_KEYS[task]}
    values["score"] = sum(values.values()) / len(values)
    return values


def _check_labels(task: str, pred: np.ndarray, ref: np.ndarray) -> None:
    """Classification tasks take class ids 0..n-1; -1 (unlabeled) is not a reference."""
    classes = TASKS[task][1]
    if classes == 0:
        return
    for name, arr in (("prediction", pred), ("reference", ref)):
        bad = np.flatnonzero((arr != np.round(arr)) | (arr < 0) | (arr >= classes))
        if bad.size:
            hint = " (-1 marks an unlabeled row)" if arr[bad[0]] == -1 else ""
            raise RefbenchError(f"{TASKS[task][0]} {name}s must be class ids 0..{classes - 1}; "
                                f"got {arr[bad[0]]!r} at position {bad[0]}{hint}")


# -- streaming classes -----------------------------------------------------------------
class _Buffer:
    """Predictions and references added so far (correlations and MCC need all of them)."""

    def __init__(self) -> None:
        self.pred: list[np.ndarray] = []
        self.ref: list[np.ndarray] = []

    def add(self, pred: np.ndarray, ref: np.ndarray) -> None:
        self.pred.append(pred)
        self.ref.append(ref)

    def extend(self, other: "_Buffer") -> None:
        self.pred.extend(other.pred)
        self.ref.extend(other.ref)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.pred), np.concatenate(self.ref)

    def __len__(self) -> int:
        return sum(a.size for a in self.pred)


#: what each key of one task means
KEY_MEANINGS: dict[str, str] = {
    "mcc": "Matthews correlation x100", "accuracy": "accuracy in percent",
    "f1": "F1 of the positive class 1, in percent", "pearson": "Pearson correlation x100",
    "spearman": "Spearman correlation x100",
    "score": "GLUE task score: the single metric, or the mean of the pair",
}


@METRICS.register("glue", higher_is_better=True, version="1")
class GlueMetric(Metric):
    """One GLUE task scored like the leaderboard (percent).

    Keys by task: cola, ax -> `mcc`; sst2, mnli_m, mnli_mm, qnli, rte, wnli -> `accuracy`;
    mrpc, qqp -> `f1`, `accuracy`; stsb -> `pearson`, `spearman`; every task also `score`.
    Predictions and references are class ids (floats for stsb).
    """

    keys: ClassVar[dict[str, str]] = dict(KEY_MEANINGS)

    def __init__(self, task: str) -> None:
        super().__init__(task=task)
        self.task = task_name(task)
        self._buffer = _Buffer()

    def output_keys(self) -> list[str]:
        return [*TASK_KEYS[self.task], "score"]

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        pred, ref = _pair(predictions, references)
        _check_labels(self.task, pred, ref)
        self._buffer.add(pred, ref)

    def merge(self, other: Metric) -> None:
        if not isinstance(other, GlueMetric) or other.task != self.task:
            raise TypeError(f"cannot merge {other!r} into a GlueMetric of task {self.task}")
        self._buffer.extend(other._buffer)

    def compute(self) -> dict[str, float]:
        if not len(self._buffer):
            raise RefbenchError(f"no {TASKS[self.task][0]} examples were added")
        return score_task(self.task, *self._buffer.arrays())


def _group(predictions: Any, references: Any) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per-task (predictions, references) from any of the accepted input shapes."""
    if isinstance(predictions, Mapping) != isinstance(references, Mapping):
        raise RefbenchError("predictions and references must both be mappings or both "
                            "sequences of (task, value) pairs")
    groups: dict[str, tuple[list[Any], list[Any]]] = {}
    if isinstance(predictions, Mapping):
        if set(predictions) != set(references):
            diff = sorted(map(str, set(predictions) ^ set(references)))
            raise RefbenchError(f"predictions and references cover different keys: {diff[:3]}")
        for key in predictions:
            if isinstance(key, tuple):  # {(task, index): value}, as the glue_dir format keys
                pred, ref = _untag(key[0], predictions[key]), _untag(key[0], references[key])
                entry = groups.setdefault(task_name(key[0]), ([], []))
                entry[0].append(pred)
                entry[1].append(ref)
            else:  # {task: sequence}
                task = task_name(key)
                entry = groups.setdefault(task, ([], []))
                entry[0].extend(predictions[key])
                entry[1].extend(references[key])
        return groups
    pred_list, ref_list = list(predictions), list(references)
    if len(pred_list) != len(ref_list):
        raise RefbenchError(f"{len(pred_list)} predictions but {len(ref_list)} references")
    for pos, (pred, ref) in enumerate(zip(pred_list, ref_list)):
        if not (_is_tagged(pred) and _is_tagged(ref)) or pred[0] != ref[0]:
            raise RefbenchError(f"item {pos}: expected (task, value) pairs of one task, got "
                                f"{pred!r} and {ref!r}")
        entry = groups.setdefault(task_name(pred[0]), ([], []))
        entry[0].append(pred[1])
        entry[1].append(ref[1])
    return groups


def _is_tagged(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str)


def _untag(task: str, value: Any) -> Any:
    if _is_tagged(value):
        if value[0] != task:
            raise RefbenchError(f"value tagged {value[0]!r} stored under task {task!r}")
        return value[1]
    return value


def _all_task_keys() -> dict[str, str]:
    keys = {f"{TASKS[t][0]}/{k}": f"{TASKS[t][0]}: {KEY_MEANINGS[k]}"
            for t in TASKS for k in (*TASK_KEYS[t], "score")}
    keys["score"] = ("GLUE score: mean of the task scores present (MNLI-m/-mm averaged into "
                     "one MNLI task, AX excluded)")
    return keys


@METRICS.register("glue_all", higher_is_better=True, version="1")
class GlueAllMetric(Metric):
    """Any subset of the GLUE tasks at once, plus the GLUE benchmark score.

    `update` takes `{task: predictions}, {task: references}`, or `{(task, index): value}`
    maps, or aligned sequences of `(task, value)` pairs (what the scorer passes for the
    `glue_dir` format). Keys are `{Task}/{key}` for each task present (`CoLA/mcc`,
    `MNLI-m/accuracy`, `STS-B/spearman`, `MRPC/score`, ...) and `score`, the GLUE score over
    the tasks present: absent tasks get no key and no invented value.
    """

    keys: ClassVar[dict[str, str]] = _all_task_keys()

    def __init__(self) -> None:
        super().__init__()
        self._tasks: dict[str, GlueMetric] = {}

    def update(self, predictions: Any, references: Any) -> None:
        for task, (pred, ref) in _group(predictions, references).items():
            self._metric(task).update(pred, ref)

    def _metric(self, task: str) -> GlueMetric:
        if task not in self._tasks:
            self._tasks[task] = GlueMetric(task)
        return self._tasks[task]

    def merge(self, other: Metric) -> None:
        if not isinstance(other, GlueAllMetric):
            raise TypeError(f"cannot merge {other!r} into a GlueAllMetric")
        for task, metric in other._tasks.items():
            self._metric(task).merge(metric)

    def tasks(self) -> list[str]:
        """The tasks added so far, in GLUE order."""
        return [t for t in TASKS if t in self._tasks]

    def compute(self) -> dict[str, float]:
        if not self._tasks:
            raise RefbenchError("no GLUE predictions were added")
        out: dict[str, float] = {}
        scores: dict[str, float] = {}
        for task in self.tasks():
            values = self._tasks[task].compute()
            out.update({f"{TASKS[task][0]}/{k}": v for k, v in values.items()})
            scores[task] = values["score"]
        out["score"] = glue_score(scores)
        return out


def tasks_in(keys: Iterable[str]) -> list[str]:
    """The tasks a `glue_all` result covers, read back from its keys."""
    present = {k.split("/", 1)[0] for k in keys if "/" in k}
    return [t for t, (display, _) in TASKS.items() if display in present]
