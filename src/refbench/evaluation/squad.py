"""SQuAD v1.1 / v2.0 metrics, with the semantics of the official `evaluate-v1.1.py` and
`evaluate-v2.0.py` (re-derived from the scripts, numbers in percent like they print them).

Shared by both versions:

- `normalize_answer`: lower-case, delete ASCII punctuation (`string.punctuation`, so
  unicode punctuation such as "’" or "—" stays), replace the articles `\\b(a|an|the)\\b`
  by a space, collapse whitespace. The v2.0 script compiles the article pattern with
  `re.UNICODE`; the v1.1 script does not, but under Python 3 a `str` pattern is unicode
  anyway, so the two are identical (`normalize_answer_v1 is normalize_answer_v2`). Only
  under Python 2 did v1.1's `\\b` treat accented letters as non-word characters.
- exact match: the normalized strings are equal; each question takes the max over its
  gold answers.

Where they differ:

- token F1 (`f1_score(..., version=)`): v1.1 returns 0 whenever no token is shared, so an
  empty prediction against an empty gold scores 0; v2.0 first checks for an empty side:
  if either token list is empty, F1 is 1 iff both are.
- gold answers: v1.1 uses every answer text as given; v2.0 drops gold texts that
  normalize to "" and scores an unanswerable question (no gold left) against `[""]`.
- v2.0 has the no-answer machinery: a prediction whose `na_prob` exceeds `na_prob_thresh`
  (default 1.0) counts as "no answer" (1 on an unanswerable question, 0 otherwise,
  whatever its text); `best_exact`/`best_f1` are the scores at the best threshold found by
  `find_best_thresh`, `best_*_thresh` that threshold (`na_prob` units, not percent).

Decisions where the scripts leave a gap (documented for result readers):

- A missing prediction (`None`) scores 0 in every key and counts in every total. That is
  what v1.1 does ("will receive score 0", divided by the full total). The v2.0 script
  cannot score such a file at all: it skips the question and then dies with a KeyError in
  the HasAns/NoAns breakdown; scoring the gap as 0 (never as a correct abstention) is the
  only reading that cannot reward leaving questions out. Missing questions also score 0
  at every threshold of the best-threshold search.
- Like the v2.0 script, which prints `best_*` only with `--na-prob-file`, refbench
  reports `best_exact`, `best_exact_thresh`, `best_f1` and `best_f1_thresh` only when the
  predictions carry no-answer probabilities (an na-prob file was given); without one,
  the best-threshold search has nothing to search over. Should only some predictions
  carry one (possible through the Python API only), the others count as `na_prob = 0`,
  the script's own default (`{qid: 0.0}`).
- `find_best_thresh` scans questions in na_prob order and may stop inside a run of equal
  na_probs (a threshold no rule "no answer iff na_prob > t" can realize). The script's
  tie order is the key order of its na_prob dict (the na-prob file, else the prediction
  file); predictions carry that position as `order`, so ties break the same way.

Directions: `exact`, `f1`, `exact_match`, `HasAns_*`, `NoAns_*`, `best_exact`, `best_f1`
are higher-is-better scores. `total`, `HasAns_total`, `NoAns_total` are counts and
`best_*_thresh` are thresholds: neither larger nor smaller is better, so their direction
is None ("none" in result.json) and nothing may rank by them (leaderboards rank by `f1`).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, ClassVar, Mapping, Sequence

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.options import Option
from refbench.registry import METRICS

VERSIONS = ("1.1", "2.0")

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


# -- plain functions -------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, replace articles by a space, fix whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


#: the two scripts' normalizations are the same function under Python 3 (see module doc)
normalize_answer_v1 = normalize_answer
normalize_answer_v2 = normalize_answer


def check_version(version: Any) -> str:
    """"1.1" or "2.0" from "1.1", "v1.1", 2.0 (a YAML float), ...; else `RefbenchError`."""
    text = str(version).strip().lower().removeprefix("v")
    if text not in VERSIONS:
        raise RefbenchError(f"unknown SQuAD version {version!r} (known: 1.1, 2.0)",
                            key="version")
    return text


def exact_match(prediction: str, ground_truth: str) -> int:
    """1 when both normalize to the same string, else 0 (both versions)."""
    return int(normalize_answer(prediction) == normalize_answer(ground_truth))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str], version: str) -> float:
    if version == "2.0" and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def f1_score(prediction: str, ground_truth: str, version: str = "2.0") -> float:
    """Token F1 of the normalized strings; the empty-side rule depends on `version`."""
    return _token_f1(normalize_answer(prediction).split(),
                     normalize_answer(ground_truth).split(), check_version(version))


def gold_answers(answers: Sequence[str], version: str) -> list[str]:
    """The gold texts a question is scored against: v1.1 all of them (at least one is
    required), v2.0 those that do not normalize to "" or else `[""]` (no answer)."""
    version = check_version(version)
    texts = list(answers)
    if version == "1.1":
        if not texts:
            raise RefbenchError("a SQuAD v1.1 question needs at least one gold answer")
        return texts
    return [t for t in texts if normalize_answer(t)] or [""]


def score_question(prediction: str, answers: Sequence[str],
                   version: str) -> tuple[float, float]:
    """(exact, f1) of one prediction: the max over the question's gold answers."""
    version = check_version(version)
    golds = gold_answers(answers, version)
    pred_norm = normalize_answer(prediction)
    pred_tokens = pred_norm.split()
    exact = max(int(pred_norm == normalize_answer(g)) for g in golds)
    f1 = max(_token_f1(pred_tokens, normalize_answer(g).split(), version) for g in golds)
    return float(exact), f1


def apply_no_ans_threshold(score: float, na_prob: float, has_ans: bool,
                           na_prob_thresh: float) -> float:
    """A question's score after thresholding: a prediction with `na_prob > thresh` is a
    "no answer", worth 1 on an unanswerable question and 0 on an answerable one."""
    if na_prob > na_prob_thresh:
        return float(not has_ans)
    return score


def find_best_thresh(preds: Mapping[Any, str], scores: Mapping[Any, float],
                     na_probs: Mapping[Any, float], qid_to_has_ans: Mapping[Any, bool],
                     total: int | None = None) -> tuple[float, float]:
    """The best score over no-answer thresholds and the threshold reaching it.

    Start from "no answer everywhere" (each unanswerable question in `qid_to_has_ans`
    right), then switch questions to "answer" in increasing na_prob order (a stable sort
    of `na_probs`' keys, so ties keep that mapping's order; ids absent from `scores` are
    skipped): an answerable one adds its raw score, an unanswerable one loses 1 if its
    predicted text is non-empty. The best running total is returned in percent of `total`
    (default `len(scores)`), with the na_prob at which it was first reached (0.0 if never
    beaten). Scores are the raw (un-thresholded) per-question scores.
    """
    num_no_ans = sum(1 for has in qid_to_has_ans.values() if not has)
    current = float(num_no_ans)
    best, best_thresh = current, 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1.0 if preds[qid] else 0.0
        current += diff
        if current > best:
            best, best_thresh = current, na_probs[qid]
    count = len(scores) if total is None else total
    return 100.0 * best / count, best_thresh


# -- the streaming class ---------------------------------------------------------------
_V2_KEYS: dict[str, str] = {
    "exact": "exact match (%) after the no-answer threshold, over all questions",
    "f1": "token F1 (%) after the no-answer threshold, over all questions",
    "total": "number of questions scored (missing predictions included); a count",
    "HasAns_exact": "exact (%) over answerable questions (only when there are some)",
    "HasAns_f1": "F1 (%) over answerable questions",
    "HasAns_total": "number of answerable questions; a count",
    "NoAns_exact": "exact (%) over unanswerable questions (only when there are some)",
    "NoAns_f1": "F1 (%) over unanswerable questions",
    "NoAns_total": "number of unanswerable questions; a count",
    "best_exact": "exact (%) at the best no-answer threshold (only with na_probs, i.e. an "
                  "na-prob file)",
    "best_exact_thresh": "that threshold, in na_prob units (not a score; only with na_probs)",
    "best_f1": "F1 (%) at the best no-answer threshold (only with na_probs)",
    "best_f1_thresh": "that threshold, in na_prob units (not a score; only with na_probs)",
}
_V1_KEYS: dict[str, str] = {
    "exact_match": "SQuAD v1.1 exact match (%), max over gold answers",
    "f1": "SQuAD v1.1 token F1 (%), max over gold answers",
}


def _prediction_parts(value: Any, position: int) -> tuple[str, float | None, int | None]:
    """(text, na_prob, order) of one prediction: a string or `{"text", "na_prob"[, "order"]}`."""
    if isinstance(value, str):
        return value, None, None
    if not isinstance(value, Mapping) or "text" not in value:
        raise RefbenchError(f"prediction {position}: expected a string or a mapping with "
                            f"'text', got {value!r:.80}")
    text, na_prob, order = value["text"], value.get("na_prob"), value.get("order")
    if not isinstance(text, str):
        raise RefbenchError(f"prediction {position}: text must be a string, got {text!r:.80}")
    if na_prob is not None:
        if isinstance(na_prob, bool) or not isinstance(na_prob, (int, float)) \
                or not math.isfinite(na_prob):
            raise RefbenchError(f"prediction {position}: na_prob must be a finite number, "
                                f"got {na_prob!r}")
        na_prob = float(na_prob)
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        raise RefbenchError(f"prediction {position}: order must be an integer, got {order!r}")
    return text, na_prob, order


@METRICS.register("squad", higher_is_better=True, version="1")
class SquadMetric(Metric):
    """SQuAD scored like the official script of `version` ("1.1" or "2.0").

    `update(predictions, references)`: a prediction is `None` (missing), a string, or
    `{"text": str, "na_prob": float | None}` (optionally `"order"`: the question's position
    in the na-prob file, which breaks na_prob ties like the script); a reference is the
    list of gold answer texts (`[]` for an unanswerable v2.0 question). Keys: v1.1
    `exact_match`, `f1`; v2.0 `exact`, `f1`, `total`, `HasAns_*` / `NoAns_*` (only for the
    kinds of question present), and `best_exact`, `best_exact_thresh`, `best_f1`,
    `best_f1_thresh` only when predictions carry an na_prob (an na-prob file was given, as
    the script prints them). See the module doc for missing predictions and directions.
    """

    keys: ClassVar[dict[str, str]] = {**_V2_KEYS, **_V1_KEYS}
    #: counts and the chosen thresholds are not scores: direction None ("none" in result.json)
    directions: ClassVar[dict[str, bool | None]] = {
        key: (None if key.endswith(("_total", "_thresh")) or key == "total" else True)
        for key in {**_V2_KEYS, **_V1_KEYS}}

    options = (Option("na_prob_thresh", "float",
                      "SQuAD v2.0 only: a prediction whose no-answer probability exceeds this "
                      "counts as \"no answer\" (evaluate-v2.0.py's --na-prob-thresh).", 1.0),)

    def __init__(self, version: str, na_prob_thresh: float = 1.0) -> None:
        self.version = check_version(version)
        if isinstance(na_prob_thresh, bool) or not isinstance(na_prob_thresh, (int, float)) \
                or not math.isfinite(na_prob_thresh):
            raise RefbenchError(f"na_prob_thresh must be a finite number, got "
                                f"{na_prob_thresh!r}", key="na_prob_thresh")
        if self.version == "1.1" and na_prob_thresh != 1.0:
            raise RefbenchError("na_prob_thresh applies to SQuAD v2.0 only",
                                key="na_prob_thresh")
        super().__init__(version=self.version, na_prob_thresh=float(na_prob_thresh))
        self.na_prob_thresh = float(na_prob_thresh)
        # one entry per question, in update order
        self._exact: list[float] = []
        self._f1: list[float] = []
        self._has_ans: list[bool] = []
        self._missing: list[bool] = []
        self._na_prob: list[float] = []
        self._nonempty: list[bool] = []
        self._order: list[int | None] = []
        #: whether any prediction carried an na_prob (the script's --na-prob-file)
        self._na_probs_given = False

    def output_keys(self) -> list[str]:
        return list(_V1_KEYS if self.version == "1.1" else _V2_KEYS)

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions but {len(references)} "
                                f"references")
        rows = []
        given = False
        for position, (pred, ref) in enumerate(zip(predictions, references)):
            if isinstance(ref, str) or not isinstance(ref, (list, tuple)) \
                    or not all(isinstance(t, str) for t in ref):
                raise RefbenchError(f"reference {position}: expected a list of gold answer "
                                    f"texts, got {ref!r:.80}")
            if self.version == "1.1" and not ref:
                raise RefbenchError(f"reference {position}: a SQuAD v1.1 question needs at "
                                    f"least one gold answer")
            if pred is None:
                rows.append((0.0, 0.0, bool(ref), True, 0.0, False, None))
                continue
            text, na_prob, order = _prediction_parts(pred, position)
            if self.version == "1.1" and na_prob is not None:
                raise RefbenchError(f"prediction {position}: na_prob is a SQuAD v2.0 notion; "
                                    f"v1.1 predictions carry none")
            exact, f1 = score_question(text, ref, self.version)
            given |= na_prob is not None
            rows.append((exact, f1, bool(ref), False, 0.0 if na_prob is None else na_prob,
                         bool(text), order))
        for exact, f1, has_ans, missing, na_prob, nonempty, order in rows:
            self._exact.append(exact)
            self._f1.append(f1)
            self._has_ans.append(has_ans)
            self._missing.append(missing)
            self._na_prob.append(na_prob)
            self._nonempty.append(nonempty)
            self._order.append(order)
        self._na_probs_given |= given

    def merge(self, other: Metric) -> None:
        if not isinstance(other, SquadMetric) or other.version != self.version \
                or other.na_prob_thresh != self.na_prob_thresh:
            raise TypeError(f"cannot merge {other!r} into a SquadMetric(version="
                            f"{self.version}, na_prob_thresh={self.na_prob_thresh})")
        self._exact += other._exact
        self._f1 += other._f1
        self._has_ans += other._has_ans
        self._missing += other._missing
        self._na_prob += other._na_prob
        self._nonempty += other._nonempty
        self._order += other._order
        self._na_probs_given |= other._na_probs_given

    def __len__(self) -> int:
        return len(self._exact)

    def compute(self) -> dict[str, float]:
        total = len(self._exact)
        if total == 0:
            raise RefbenchError("no SQuAD questions were added")
        if self.version == "1.1":
            return {"exact_match": 100.0 * sum(self._exact) / total,
                    "f1": 100.0 * sum(self._f1) / total}
        thresh = self.na_prob_thresh
        exact_t, f1_t = [], []
        for i in range(total):
            if self._missing[i]:
                exact_t.append(0.0)
                f1_t.append(0.0)
                continue
            exact_t.append(apply_no_ans_threshold(self._exact[i], self._na_prob[i],
                                                  self._has_ans[i], thresh))
            f1_t.append(apply_no_ans_threshold(self._f1[i], self._na_prob[i],
                                               self._has_ans[i], thresh))
        out: dict[str, float] = {"exact": 100.0 * sum(exact_t) / total,
                                 "f1": 100.0 * sum(f1_t) / total, "total": float(total)}
        for prefix, wanted in (("HasAns", True), ("NoAns", False)):
            ids = [i for i in range(total) if self._has_ans[i] is wanted]
            if ids:
                out[f"{prefix}_exact"] = 100.0 * sum(exact_t[i] for i in ids) / len(ids)
                out[f"{prefix}_f1"] = 100.0 * sum(f1_t[i] for i in ids) / len(ids)
                out[f"{prefix}_total"] = float(len(ids))
        if self._na_probs_given:  # the script prints best_* only with an na-prob file
            out.update(self._best_thresholds(total))
        return out

    def _best_thresholds(self, total: int) -> dict[str, float]:
        """`find_best_thresh` over the predicted questions (missing ones score 0 at any
        threshold); ties in na_prob keep the file order (`order`), else update order."""
        scored = [i for i in range(total) if not self._missing[i]]
        scored.sort(key=lambda i: i if self._order[i] is None else self._order[i])
        na_probs = {i: self._na_prob[i] for i in scored}
        preds = {i: "x" if self._nonempty[i] else "" for i in scored}
        has_ans = {i: self._has_ans[i] for i in scored}
        exact = {i: self._exact[i] for i in scored}
        f1 = {i: self._f1[i] for i in scored}
        best_exact, exact_thresh = find_best_thresh(preds, exact, na_probs, has_ans, total)
        best_f1, f1_thresh = find_best_thresh(preds, f1, na_probs, has_ans, total)
        return {"best_exact": best_exact, "best_exact_thresh": float(exact_thresh),
                "best_f1": best_f1, "best_f1_thresh": float(f1_thresh)}
