"""M5Product classification accuracy and clustering NMI / purity.

Classification (`m5product_classification`): top-1 accuracy in percent,
`100 * correct / total`, as SCALE's `examples/SCALE/train_cls.py` prints it. Predicted and
reference labels are the id -> info JSON's `label` strings, compared verbatim. Two
differences from that loop, both deliberate: every test item is scored (the loop skips a
whole batch when an image feature holds NaN, so its total depends on the batch size), and
an item without a prediction counts as wrong (the loop predicts every item).

Clustering (`m5product_clustering`): the benchmark page reports NMI and purity, but none of
the official repositories holds clustering code, so refbench defines them. With N scored
items, classes Y (reference labels) and clusters C (submitted assignments), n_yc the items
of class y in cluster c, n_y and n_c the marginals, natural logarithms:

- H(Y) = -sum_y (n_y / N) log(n_y / N), H(C) likewise;
- I(Y; C) = sum_{y,c: n_yc > 0} (n_yc / N) log(N n_yc / (n_y n_c)), clipped below at 0;
- NMI = I(Y; C) / ((H(Y) + H(C)) / 2) (the arithmetic normaliser, scikit-learn's default
  `normalized_mutual_info_score`); 1 when Y and C both have a single group, 0 when I = 0,
  and never above 1 (rounding of a perfect match is clipped);
- purity = (1 / N) sum_c max_y n_yc.

Both in percent. Purity rewards splitting: one cluster per item scores 100, so the number of
clusters is reported and a warning names it when it exceeds the number of classes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS

#: fewer scored items than this: one item moves the score by more than 1 point
FEW_ITEMS = 100


def accuracy(predictions: Sequence[str | None], references: Sequence[str]) -> float:
    """Top-1 accuracy in percent; a None prediction is wrong."""
    if len(predictions) != len(references):
        raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise RefbenchError("no M5Product item to score")
    correct = sum(p is not None and p == r for p, r in zip(predictions, references))
    return 100 * correct / len(references)


def _codes(values: Sequence[Hashable]) -> np.ndarray:
    table: dict[Hashable, int] = {}
    return np.fromiter((table.setdefault(v, len(table)) for v in values), dtype=np.int64,
                       count=len(values))


def contingency(classes: Sequence[Hashable], clusters: Sequence[Hashable]) -> np.ndarray:
    """The (classes x clusters) count matrix n_yc."""
    if len(classes) != len(clusters):
        raise RefbenchError(f"{len(clusters)} cluster assignments for {len(classes)} items")
    if not classes:
        raise RefbenchError("no M5Product item to cluster")
    y, c = _codes(classes), _codes(clusters)
    table = np.zeros((int(y.max()) + 1, int(c.max()) + 1), dtype=np.int64)
    np.add.at(table, (y, c), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(classes: Sequence[Hashable], clusters: Sequence[Hashable]) -> float:
    """Normalised mutual information (arithmetic normaliser) in percent (module docstring)."""
    table = contingency(classes, clusters)
    if table.shape[0] == table.shape[1] == 1:
        return 100.0
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    y, c = np.nonzero(table)
    joint = table[y, c].astype(np.float64)
    mi = float(max((joint / n * (np.log(joint * n) - np.log(rows[y] * cols[c]
                                                             .astype(np.float64)))).sum(), 0.0))
    if mi == 0.0:
        return 0.0
    # rounding can put a perfect match a few ulps above 1: clipped to the definition's range
    return min(100 * mi / ((_entropy(rows) + _entropy(cols)) / 2), 100.0)


def purity(classes: Sequence[Hashable], clusters: Sequence[Hashable]) -> float:
    """Purity in percent: each cluster's largest class, summed, over the items."""
    table = contingency(classes, clusters)
    return 100 * float(table.max(axis=0).sum()) / float(table.sum())


@METRICS.register("m5product_classification", higher_is_better=True, version="1")
class M5ProductClassification(Metric):
    """Top-1 accuracy in percent over predicted label strings (module docstring)."""

    keys: ClassVar[dict[str, str]] = {
        "accuracy": "top-1 accuracy in percent (SCALE's train_cls.py), a missing prediction "
                    "counted wrong"}
    directions: ClassVar[dict[str, bool | None]] = {"accuracy": True}

    def __init__(self, **args: Any) -> None:
        if args:
            raise RefbenchError(f"metric m5product_classification takes no arguments, got "
                                f"{', '.join(sorted(args))}")
        super().__init__()
        self._pred: list[str | None] = []
        self._ref: list[str] = []

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            if not isinstance(ref, str):
                raise RefbenchError(f"reference {i}: expected a label string, got "
                                    f"{type(ref).__name__}")
            if pred is not None and not isinstance(pred, str):
                raise RefbenchError(f"prediction {i}: expected a label string, got "
                                    f"{type(pred).__name__}")
            self._pred.append(pred)
            self._ref.append(ref)

    def merge(self, other: Metric) -> None:
        if not isinstance(other, M5ProductClassification):
            raise TypeError(f"cannot merge {type(other).__name__} into M5ProductClassification")
        self._pred += other._pred
        self._ref += other._ref

    def compute(self) -> dict[str, float]:
        return {"accuracy": accuracy(self._pred, self._ref)}

    def counts(self) -> dict[str, int]:
        """`items/scored`, `items/correct`, `items/not_submitted`, `labels/reference`
        (distinct reference labels), `predictions/unseen_label` (a predicted label that no
        scored item has)."""
        seen = set(self._ref)
        return {"items/scored": len(self._ref),
                "items/correct": sum(p == r for p, r in zip(self._pred, self._ref)),
                "items/not_submitted": sum(p is None for p in self._pred),
                "labels/reference": len(seen),
                "predictions/unseen_label": sum(p is not None and p not in seen
                                                for p in self._pred)}

    def warnings(self) -> list[str]:
        n = len(self._ref)
        return [f"only {n} items were scored: one item moves the accuracy by "
                f"{100 / n:.2f} points"] if 0 < n < FEW_ITEMS else []


@METRICS.register("m5product_clustering", higher_is_better=True, version="1")
class M5ProductClustering(Metric):
    """NMI and purity in percent of submitted cluster ids against the reference labels
    (module docstring). Every item needs a cluster: a None prediction is an error."""

    keys: ClassVar[dict[str, str]] = {
        "NMI": "normalised mutual information in percent, I(Y;C) / ((H(Y) + H(C)) / 2)",
        "purity": "purity in percent: each cluster's largest class, summed, over the items"}
    directions: ClassVar[dict[str, bool | None]] = {"NMI": True, "purity": True}

    def __init__(self, **args: Any) -> None:
        if args:
            raise RefbenchError(f"metric m5product_clustering takes no arguments, got "
                                f"{', '.join(sorted(args))}")
        super().__init__()
        self._clusters: list[Hashable] = []
        self._classes: list[str] = []

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            if not isinstance(ref, str):
                raise RefbenchError(f"reference {i}: expected a label string, got "
                                    f"{type(ref).__name__}")
            if pred is None:
                raise RefbenchError(f"item {i} has no cluster: every item must be assigned")
            if isinstance(pred, bool) or not isinstance(pred, (int, str)):
                raise RefbenchError(f"prediction {i}: a cluster id is an integer or a string, "
                                    f"got {type(pred).__name__}")
            self._clusters.append(pred)
            self._classes.append(ref)

    def merge(self, other: Metric) -> None:
        if not isinstance(other, M5ProductClustering):
            raise TypeError(f"cannot merge {type(other).__name__} into M5ProductClustering")
        self._clusters += other._clusters
        self._classes += other._classes

    def compute(self) -> dict[str, float]:
        return {"NMI": nmi(self._classes, self._clusters),
                "purity": purity(self._classes, self._clusters)}

    def counts(self) -> dict[str, int]:
        """`items/scored`, `clusters/predicted`, `labels/reference`."""
        return {"items/scored": len(self._classes),
                "clusters/predicted": len(set(self._clusters)),
                "labels/reference": len(set(self._classes))}

    def warnings(self) -> list[str]:
        counts = self.counts()
        out = []
        n = counts["items/scored"]
        if 0 < n < FEW_ITEMS:
            out.append(f"only {n} items were scored: one item moves each score by about "
                       f"{100 / n:.2f} points")
        if counts["clusters/predicted"] > counts["labels/reference"]:
            out.append(f"{counts['clusters/predicted']} clusters for "
                       f"{counts['labels/reference']} reference labels: purity rises with "
                       f"the number of clusters (one per item scores 100)")
        return out
