"""Clinical-content metrics: terminology precision, recall, F1 and per-term AUC.

A report-generation model may also predict the study's terms (MeSH terms for IU X-ray, the
annotated terminology for COVID-19 CT). They are scored as multi-label classification,
with scikit-learn's definitions (R2Gen's clinical-efficacy code uses `precision_score`,
`recall_score`, `f1_score` and `roc_auc_score`), so the numbers equal sklearn's on the
indicator matrices:

- the label set is the terms that occur in the scored references (sorted); a predicted term
  outside it cannot be a column, so it is left out and counted (`terms/outside_label_set`),
  as sklearn's `MultiLabelBinarizer(classes=...)` leaves it out;
- micro: one precision / recall / F1 over all (study, term) cells; macro: the mean over the
  label set of the per-term values; a term never predicted has precision 0 (sklearn's
  `zero_division=0`); F = 2 TP / (2 TP + FP + FN);
- per-term AUC (`roc_auc_score`) from predicted term scores, a term missing from a study's
  scores counting as score 0; only terms with both a positive and a negative study have an
  AUC, the others are counted (`terms/auc_undefined`); `terms/AUC_macro` is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError

TERM_KEYS = ("terms/precision_micro", "terms/recall_micro", "terms/F1_micro",
             "terms/precision_macro", "terms/recall_macro", "terms/F1_macro")
AUC_KEY = "terms/AUC_macro"


@dataclass(frozen=True)
class TermResult:
    """The term metrics with their per-term detail and counts."""

    values: dict[str, float]
    per_term: dict[str, dict[str, float]]
    counts: dict[str, int]


def label_set(references: Sequence[Sequence[str]]) -> list[str]:
    """The sorted terms of the references."""
    return sorted({t for terms in references for t in terms})


def _indicator(rows: Sequence[Sequence[str]], column: Mapping[str, int]) -> tuple[np.ndarray, int]:
    out = np.zeros((len(rows), len(column)), dtype=bool)
    outside = 0
    for i, terms in enumerate(rows):
        for term in terms:
            j = column.get(term)
            if j is None:
                outside += 1
            else:
                out[i, j] = True
    return out, outside


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall, F1 with 0 where undefined (sklearn's zero_division=0)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def term_metrics(predicted: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                 scores: Sequence[Mapping[str, float]] | None = None) -> TermResult:
    """Micro / macro precision, recall, F1 of predicted term sets, and per-term AUC when
    `scores` (one `{term: score}` per study) are given."""
    if len(predicted) != len(references):
        raise RefbenchError(f"{len(predicted)} term predictions for {len(references)} studies")
    labels = label_set(references)
    if not labels:
        raise RefbenchError("no reference carries a term: the term metrics have no label set")
    column = {t: j for j, t in enumerate(labels)}
    truth, _ = _indicator(references, column)
    pred, outside = _indicator(predicted, column)
    tp = (truth & pred).sum(axis=0)
    fp = (~truth & pred).sum(axis=0)
    fn = (truth & ~pred).sum(axis=0)
    p_t, r_t, f_t = _prf(tp, fp, fn)
    p_mi, r_mi, f_mi = (float(x) for x in _prf(tp.sum(), fp.sum(), fn.sum()))
    values = dict(zip(TERM_KEYS, (p_mi, r_mi, f_mi, float(np.mean(p_t)), float(np.mean(r_t)),
                                  float(np.mean(f_t)))))
    per_term = {t: {"precision": float(p_t[j]), "recall": float(r_t[j]), "F1": float(f_t[j]),
                    "support": int(truth[:, j].sum())} for j, t in enumerate(labels)}
    counts = {"terms/labels": len(labels), "terms/outside_label_set": outside,
              "terms/positives": int(truth.sum()), "terms/predicted": int(pred.sum())}
    if scores is not None:
        if len(scores) != len(references):
            raise RefbenchError(f"{len(scores)} term-score maps for {len(references)} studies")
        from sklearn.metrics import roc_auc_score

        matrix = np.zeros(truth.shape, dtype=np.float64)
        for i, row in enumerate(scores):
            for term, value in row.items():
                j = column.get(term)
                if j is not None:
                    matrix[i, j] = value
        aucs = []
        for j, term in enumerate(labels):
            positives = int(truth[:, j].sum())
            if 0 < positives < truth.shape[0]:
                auc = float(roc_auc_score(truth[:, j], matrix[:, j]))
                per_term[term]["AUC"] = auc
                aucs.append(auc)
        counts["terms/auc_undefined"] = len(labels) - len(aucs)
        if aucs:
            values[AUC_KEY] = float(np.mean(aucs))
    return TermResult(values, per_term, counts)
