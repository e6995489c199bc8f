"""Ranking consistency: how well a predicted score orders architectures like their ground truth.

A supernet, a zero-cost proxy or a predictor gives each architecture a score; the ground
truth is its stand-alone accuracy (NAS-Bench-Macro's mean test accuracy over three seeds,
NAS-Bench-201's validation accuracy, ...). No official script exists (Pi-NAS ships no
ranking code; papers call `scipy.stats.kendalltau` / `spearmanr`), so the statistics are
re-derived from their definitions and cross-checked against scipy in the tests.

Argument order is fixed: `(ground_truth, predicted)`. Kendall tau and Spearman rho are
symmetric, precision@k is too (two top-k sets of the same size); the top pick is not: it
is the architecture the *prediction* ranks first, valued by the *ground truth*. Larger is
better on both sides (negate a lower-is-better proxy before submitting it).

Ties. Real tables tie often (NAS-Bench-Macro's 6,561 mean accuracies take only 2,331
distinct values), so the tau variant matters:
- `kendall_tau_b` = (P - Q) / sqrt((n0 - n1)(n0 - n2)), n0 = n(n-1)/2, n1 / n2 the pairs
  tied in the ground truth / in the prediction; it is 1 for identical orders even with
  ties, which tau-a is not, and is scipy's default (`variant="b"`). Benchmarks rank by it.
- `kendall_tau_a` = (P - Q) / n0 (ties count as neither concordant nor discordant);
- `kendall_tau_c` = 2 (P - Q) / (n^2 (m - 1) / m), m = the fewer distinct values of the
  two (Stuart's tau-c, scipy's `variant="c"`).
- `spearman_rho`: Pearson correlation of the average ranks (ties share their mean rank).
- `P@k`: |top-k by prediction & top-k by ground truth| / k. Each top-k set is made by a
  stable sort, ties broken by architecture id (ascending), so the value never depends on
  the order of the submission; ties straddling the k-th place are counted in `counts()`.
- `top_pick/ground_truth`: the ground truth of the predicted best architecture; when
  several share the best prediction, their mean (the expected value of a random pick
  among them); `top_pick/rank`: its 1-based ground-truth rank (1 + the architectures with
  a strictly better ground truth, so ties share the best rank; averaged like the value
  over tied picks), `ground_truth/best` the best value there is.

Kendall's P - Q is counted in O(n log n) (Knight 1966): sort by ground truth (ties by
prediction), then count the inversions of the predictions level by level of a bottom-up
merge, vectorised with numpy. A constant ground truth or prediction leaves tau and rho
undefined: that is an error, never a silent 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS

#: the default k's of precision@k
DEFAULT_KS: tuple[int, ...] = (10, 50, 100)
#: fewer architectures than this: one swapped pair moves tau by more than 0.01
FEW_ARCHITECTURES = 15


@dataclass(frozen=True)
class KendallCounts:
    """The pair counts every Kendall variant is built from."""

    n: int
    concordant_minus_discordant: int
    ties_truth: int  # n1: pairs tied in the ground truth
    ties_pred: int  # n2: pairs tied in the prediction
    distinct_min: int  # m: the fewer distinct values of the two sides

    @property
    def pairs(self) -> int:
        return self.n * (self.n - 1) // 2

    def tau(self, variant: str = "b") -> float:
        """Kendall's tau of the given variant (`a`, `b` or `c`)."""
        s, n0 = self.concordant_minus_discordant, self.pairs
        if variant == "a":
            return s / n0 if n0 else math.nan
        if variant == "b":
            denom = (n0 - self.ties_truth) * (n0 - self.ties_pred)
            return s / math.sqrt(denom) if denom > 0 else math.nan
        if variant == "c":
            m = self.distinct_min
            return 2.0 * s / (self.n ** 2 * (m - 1) / m) if m > 1 else math.nan
        raise ValueError(f"unknown Kendall tau variant {variant!r} (a, b or c)")


def _dense_ranks(values: np.ndarray) -> np.ndarray:
    """0-based dense ranks (equal values share one)."""
    return np.unique(values, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _tied_pairs(codes: np.ndarray) -> int:
    counts = np.bincount(codes)
    return int((counts * (counts - 1) // 2).sum())


def _inversions(values: np.ndarray) -> int:
    """Pairs i < j with values[i] > values[j] (strictly), for non-negative int codes."""
    a = np.asarray(values, dtype=np.int64).copy()
    n = a.size
    if n < 2:
        return 0
    span = int(a.max()) + 1
    position = np.arange(n, dtype=np.int64)
    total, width = 0, 1
    while width < n:
        block = position // width
        group = block // 2  # two neighbouring blocks, already sorted, merge into one group
        offset = group * span  # groups never interleave once offset
        left = block % 2 == 0
        keyed = a + offset
        lefts = keyed[left]  # sorted overall: sorted within a block, groups ascending
        rights, right_group = keyed[~left], offset[~left]
        end = np.searchsorted(lefts, right_group + span, side="left")
        total += int((end - np.searchsorted(lefts, rights, side="right")).sum())
        a = np.sort(keyed, kind="stable") - offset
        width *= 2
    return total


def kendall_counts(truth: Sequence[float] | np.ndarray,
                   predicted: Sequence[float] | np.ndarray) -> KendallCounts:
    """Concordant minus discordant pairs and the tie counts of two aligned score lists."""
    x, y = _aligned(truth, predicted)
    rx, ry = _dense_ranks(x), _dense_ranks(y)
    n = x.size
    order = np.lexsort((ry, rx))  # by truth, ties by prediction
    discordant = _inversions(ry[order])
    n1, n2 = _tied_pairs(rx), _tied_pairs(ry)
    joint = _tied_pairs(_dense_ranks(rx * (int(ry.max()) + 1) + ry)) if n else 0
    n0 = n * (n - 1) // 2
    concordant = n0 - n1 - n2 + joint - discordant
    m = min(int(rx.max()) + 1, int(ry.max()) + 1) if n else 0
    return KendallCounts(n, concordant - discordant, n1, n2, m)


def kendall_tau(truth: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray,
                variant: str = "b") -> float:
    """Kendall's tau (`variant` a, b or c) of two aligned score lists; NaN when undefined."""
    return kendall_counts(truth, predicted).tau(variant)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (scipy's `rankdata`)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], values.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks start+1 .. end, averaged
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman_rho(truth: Sequence[float] | np.ndarray,
                 predicted: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks; NaN when undefined."""
    x, y = _aligned(truth, predicted)
    rx, ry = average_ranks(x), average_ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum()) / denom if denom > 0 else math.nan


def top_k(scores: np.ndarray, ids: Sequence[str], k: int) -> np.ndarray:
    """Indices of the k best scores, ties broken by id ascending."""
    order = np.lexsort((np.asarray(ids, dtype=object).argsort().argsort(), -np.asarray(scores)))
    return order[:k]


def precision_at_k(truth: np.ndarray, predicted: np.ndarray, ids: Sequence[str], k: int) -> float:
    """|top-k by prediction & top-k by ground truth| / k (module docstring: ties)."""
    if not 1 <= k <= len(ids):
        raise RefbenchError(f"precision@{k} needs 1 <= k <= {len(ids)} (the architectures scored)")
    both = np.intersect1d(top_k(truth, ids, k), top_k(predicted, ids, k))
    return both.size / k


def boundary_ties(scores: np.ndarray, k: int) -> int:
    """Architectures tied with the k-th best score but placed below it by the tie break."""
    ordered = np.sort(np.asarray(scores))[::-1]
    if k >= ordered.size:
        return 0
    return int((ordered[k:] == ordered[k - 1]).sum())


def _aligned(truth: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(truth, dtype=np.float64).reshape(-1)
    y = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise RefbenchError(f"{x.size} ground-truth values for {y.size} predicted scores")
    if np.isnan(x).any() or np.isnan(y).any():
        side = "ground truth" if np.isnan(x).any() else "predicted score"
        raise RefbenchError(f"a {side} is NaN: a ranking needs every value to be ordered")
    return x, y


# -- the streaming metric ---------------------------------------------------------------
@dataclass(frozen=True)
class ArchitectureTruth:
    """The reference of one architecture: its canonical id and ground-truth value."""

    arch: str
    value: float


def ranking_keys(ks: Sequence[int]) -> dict[str, str]:
    return {
        "kendall_tau_b": "Kendall tau-b (ties corrected; the benchmarks' variant)",
        "kendall_tau_a": "Kendall tau-a ((P - Q) / n(n-1)/2)",
        "kendall_tau_c": "Stuart's Kendall tau-c",
        "spearman_rho": "Spearman rho (Pearson correlation of the average ranks)",
        **{f"P@{k}": f"|top-{k} by prediction & top-{k} by ground truth| / {k}" for k in ks},
        "top_pick/ground_truth": "ground truth of the predicted best architecture",
        "top_pick/rank": "1-based ground-truth rank of the predicted best architecture",
        "ground_truth/best": "the best ground-truth value among the scored architectures",
    }


@METRICS.register("ranking_consistency", higher_is_better=True, version="1")
class RankingConsistency(Metric):
    """Kendall tau-a/b/c, Spearman rho, precision@k and the top pick's ground truth over
    (predicted score, `ArchitectureTruth`) pairs (module docstring). Arguments: `ks` (the
    k of precision@k), `sample_size` (when given, exactly that many architectures must be
    scored: the spec fixes N). Predictions are finite floats or +-inf (ordered); NaN and a
    missing prediction are errors."""

    keys: ClassVar[dict[str, str]] = ranking_keys(DEFAULT_KS)
    directions: ClassVar[dict[str, bool | None]] = {"top_pick/rank": False,
                                                    "ground_truth/best": None}

    def __init__(self, ks: Sequence[int] = DEFAULT_KS, sample_size: int | None = None,
                 sample_seed: int | None = None, **args: Any) -> None:
        if args:
            raise RefbenchError(f"metric ranking_consistency takes ks, sample_size and "
                                f"sample_seed, got {', '.join(sorted(args))}")
        if isinstance(ks, (str, bytes)) or not all(isinstance(k, int) and k >= 1 for k in ks):
            raise RefbenchError(f"ks must be a list of positive integers, got {ks!r}")
        if sample_size is not None and (not isinstance(sample_size, int) or sample_size < 2):
            raise RefbenchError(f"sample_size must be an integer >= 2, got {sample_size!r}")
        super().__init__(ks=list(ks), sample_size=sample_size, sample_seed=sample_seed)
        self.ks = tuple(ks)
        self.sample_size = sample_size
        self._ids: list[str] = []
        self._truth: list[float] = []
        self._pred: list[float] = []
        self._counts: dict[str, int] = {}

    def output_keys(self) -> list[str]:
        return list(ranking_keys(self.ks))

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        for position, (pred, ref) in enumerate(zip(predictions, references)):
            if not isinstance(ref, ArchitectureTruth):
                raise RefbenchError(f"reference {position}: expected an ArchitectureTruth, got "
                                    f"{type(ref).__name__}")
            if pred is None:
                raise RefbenchError(f"architecture {ref.arch}: no predicted score (a ranking "
                                    f"over a partial set is another ranking)")
            if isinstance(pred, bool) or not isinstance(pred, (int, float)) or math.isnan(pred):
                raise RefbenchError(f"architecture {ref.arch}: predicted score {pred!r} is not a "
                                    f"number")
            if math.isnan(ref.value):
                raise RefbenchError(f"architecture {ref.arch}: ground truth is NaN")
            self._ids.append(ref.arch)
            self._truth.append(float(ref.value))
            self._pred.append(float(pred))

    def merge(self, other: Metric) -> None:
        if not isinstance(other, RankingConsistency):
            raise TypeError(f"cannot merge {type(other).__name__} into RankingConsistency")
        self._ids += other._ids
        self._truth += other._truth
        self._pred += other._pred

    def compute(self) -> dict[str, float]:
        n = len(self._ids)
        if len(set(self._ids)) != n:
            seen: set[str] = set()
            again = next(a for a in self._ids if a in seen or seen.add(a))
            raise RefbenchError(f"architecture {again} is scored twice")
        if self.sample_size is not None and n != self.sample_size:
            raise RefbenchError(f"{n} architectures were scored; this benchmark fixes the sample "
                                f"at {self.sample_size}")
        if n < 2:
            raise RefbenchError(f"a ranking needs at least 2 architectures, got {n}")
        truth, pred = np.asarray(self._truth), np.asarray(self._pred)
        for side, values in (("ground truth", truth), ("predicted score", pred)):
            if np.unique(values).size == 1:
                raise RefbenchError(f"every {side} is {float(values[0])!r}: Kendall tau and Spearman "
                                    f"rho are undefined for a constant ranking")
        counts = kendall_counts(truth, pred)
        out = {f"kendall_tau_{v}": counts.tau(v) for v in ("b", "a", "c")}
        out["spearman_rho"] = spearman_rho(truth, pred)
        for k in self.ks:
            if k > n:
                raise RefbenchError(f"precision@{k} needs at least {k} architectures, got {n}")
            out[f"P@{k}"] = precision_at_k(truth, pred, self._ids, k)
        best = pred == pred.max()
        out["top_pick/ground_truth"] = float(truth[best].mean())
        ranks = 1 + (truth[None, :] > truth[best][:, None]).sum(axis=1)
        out["top_pick/rank"] = float(ranks.mean())
        out["ground_truth/best"] = float(truth.max())
        self._counts = {"architectures/scored": n,
                        "pairs/tied_ground_truth": counts.ties_truth,
                        "pairs/tied_predicted": counts.ties_pred,
                        "top_pick/tied": int(best.sum())}
        for k in self.ks:
            self._counts[f"P@{k}/boundary_ties_ground_truth"] = boundary_ties(truth, k)
            self._counts[f"P@{k}/boundary_ties_predicted"] = boundary_ties(pred, k)
        return out

    def counts(self) -> dict[str, int]:
        """`architectures/scored`, the tied pairs on each side, how many architectures share
        the best prediction, and per k the architectures tied with the k-th place but left
        out of the top k by the id tie break."""
        return dict(self._counts)

    def warnings(self) -> list[str]:
        out = []
        n = self._counts.get("architectures/scored", 0)
        if 0 < n < FEW_ARCHITECTURES:
            out.append(f"only {n} architectures were ranked: one swapped pair moves "
                       f"Kendall tau by {2 / (n * (n - 1)):.3f}")
        if self._counts.get("top_pick/tied", 0) > 1:
            out.append(f"{self._counts['top_pick/tied']} architectures share the best predicted "
                       f"score: top_pick/ground_truth is their mean")
        return out

    def scores(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, ground truth, predicted) added so far, for plots and reports."""
        return list(self._ids), np.asarray(self._truth), np.asarray(self._pred)
