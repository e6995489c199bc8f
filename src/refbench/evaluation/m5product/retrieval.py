"""M5Product retrieval, re-derived from SCALE's `evaluate_unit_v2.py` and its ranking script.

The official pipeline (Xiaodongsuper/SCALE_code `retrieval_unit_id_list_v2.py` +
`evaluate_unit_v2.py`; M5Product_toolkit `datatoolkit/eval/` holds the same logic):

1. Ranking. Each item's embedding is a modality's pooled [CLS] vector; a modality
   combination (`tp`, `tpiva`, ...) is the plain sum of the single-modality vectors
   (`extract_features.py`). The score is the raw dot product `query @ gallery.T` (no L2
   normalisation); the `max_topk` best gallery items are kept (`heapq.nlargest`, so equal
   scores keep gallery order), then the query's own id is dropped, so a list holds
   `max_topk - 1` ids when the query is a gallery item ranked in its own top `max_topk`.
   Every shipped evaluation script passes `--max_topk 10` (the argparse default is 110).
   The file has one line `query_id,id_1,...,id_n` per query.
2. Scoring. The ground truth is an id -> single `label` JSON; the positives of a query are
   every item of that JSON with its label, the query itself included. Per line and for
   k in 1, 5, 10: k' = min(k, |positives|, |list|); AP@k = sum over the hits at ranks
   i <= k' of (hits up to i) / i, divided by the number of hits within k' (0 without a
   hit); Prec@k = hits within k' / k'. Both are averaged over the lines of the file (in
   file order) and multiplied by 100.

refbench scores a query list against a gallery list, so its ground truth for a query is
the gallery plus the query itself: in the official runs the query set, the gallery set and
the GT file are one and the same, and there this is exactly the script's ground truth.
Hence a query that is no gallery item counts itself as one positive (k' can only shrink by
it when its label has fewer than k gallery items), and a ranked id equal to the query id is
a hit, as in the script (the submission formats refuse such lines: the ranking drops it).

Not copied, documented: the toolkit's `evaluate_unit.py` also writes @50 and @100, which
equal @10 because its `eval.sh` ranks only 10 items; both scripts write an "average" of
mAP, Prec and an `mHitRate` that is never computed (it stays 0), so "average" is not
reported. The toolkit writes fractions, SCALE_code percent: refbench reports percent.

Standard keys beside them (`refbench.evaluation.retrieval`), also in percent, with the
relevant items = the gallery items of the query's label other than the query itself:
`Recall@K` (a relevant item in the top K) for K = 1, 5, 10 and `mAP@R` over the ranked
list (ranks beyond the list count as misses, so with 10-item lists mAP@R is a lower bound
whenever R > 10).

Embeddings are ranked here with faiss's exact inner-product search (`rank_embeddings`);
equal scores are ordered by gallery position, as `heapq.nlargest` orders them. Scores are
float32, as the official float32 features give; near-ties within float32 rounding may
order differently from numpy's BLAS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.evaluation.retrieval import (
    Ranking,
    ap_at_r,
    as_embeddings,
    exact_search,
    hit_at_k,
)
from refbench.options import Option
from refbench.registry import METRICS

#: the script's `topk_list`
TOPKS: tuple[int, ...] = (1, 5, 10)
#: `--max_topk` of every shipped evaluation script (its argparse default is 110)
MAX_TOPK = 10
OFFICIAL_KEYS: tuple[str, ...] = tuple(f"{name}@{k}" for name in ("mAP", "Prec") for k in TOPKS)
STANDARD_KEYS: tuple[str, ...] = (*(f"Recall@{k}" for k in TOPKS), "mAP@R")
#: fewer scored queries than this: one query moves every key by more than 1 point
FEW_QUERIES = 100
ABSENT, PAD = -1, -2


class GalleryLabels:
    """The gallery: item ids and their single labels, coded. Its repr is a fingerprint
    (sha256 of the sorted id / label pairs), so a reference that points to it hashes the
    labels it is scored against."""

    def __init__(self, ids: Sequence[str], labels: Sequence[str]) -> None:
        if len(ids) != len(labels):
            raise RefbenchError(f"{len(ids)} gallery ids but {len(labels)} labels")
        if not ids:
            raise RefbenchError("the gallery is empty")
        self.ids: list[str] = list(ids)
        self.row_of: dict[str, int] = {item: row for row, item in enumerate(self.ids)}
        if len(self.row_of) != len(self.ids):
            seen: set[str] = set()
            again = next(item for item in self.ids if item in seen or seen.add(item))
            raise RefbenchError(f"gallery id {again!r} appears twice")
        self.label_code: dict[str, int] = {}
        codes = [self.label_code.setdefault(label, len(self.label_code)) for label in labels]
        self.item_label = np.asarray(codes, dtype=np.int64)
        self.label_count = np.bincount(self.item_label, minlength=len(self.label_code))
        text = "".join(f"{i}\t{x}\n" for i, x in sorted(zip(self.ids, labels)))
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()
        self.labels: list[str] = list(labels)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"GalleryLabels(sha256={self.fingerprint}, items={len(self.ids)})"

    def members(self, label: str) -> list[str]:
        """The gallery ids with `label`, in gallery order."""
        return [i for i, x in zip(self.ids, self.labels) if x == label]


@dataclass(frozen=True)
class M5Query:
    """One query's reference: its id, its single label and the gallery it is ranked in."""

    id: str
    label: str
    gallery: GalleryLabels


class SubmittedGallery:
    """A submission's gallery embeddings (float32 rows) and their ids, shared by the
    `QueryEmbedding`s of one submission."""

    def __init__(self, ids: Sequence[str], embeddings: np.ndarray) -> None:
        self.embeddings = as_embeddings(embeddings, "gallery")
        self.ids: list[str] = list(ids)
        if len(self.ids) != self.embeddings.shape[0]:
            raise RefbenchError(f"{len(self.ids)} gallery ids for {self.embeddings.shape[0]} "
                                f"gallery embeddings")

    def __repr__(self) -> str:
        return f"SubmittedGallery(items={len(self.ids)}, dims={self.embeddings.shape[1]})"


@dataclass(frozen=True, eq=False)
class QueryEmbedding:
    """A query's submitted embedding, to be ranked against the submission's gallery."""

    vector: np.ndarray
    gallery: SubmittedGallery


# -- ranking embeddings -----------------------------------------------------------------------
def _stable_top(scores: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows re-ordered by score (descending), equal scores by gallery position."""
    order = np.lexsort((indices, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(indices, order, 1)


def rank_embeddings(queries: object, query_ids: Sequence[str], gallery: SubmittedGallery,
                    max_topk: int = MAX_TOPK, chunk: int = 256) -> list[tuple[str, ...]]:
    """Each query's `max_topk` best gallery ids by raw dot product, its own id dropped (the
    official ranking script). Equal scores keep gallery order, also across the cut-off: a
    query whose k-th and (k+1)-th scores tie is re-ranked over the whole gallery."""
    if isinstance(max_topk, bool) or not isinstance(max_topk, (int, np.integer)) or max_topk < 1:
        raise RefbenchError(f"max_topk must be a positive integer, got {max_topk!r}")
    q = as_embeddings(queries, "query")
    if len(query_ids) != q.shape[0]:
        raise RefbenchError(f"{len(query_ids)} query ids for {q.shape[0]} query embeddings")
    n = len(gallery.ids)
    k = min(int(max_topk), n)
    found = exact_search(q, gallery.embeddings, min(k + 1, n))
    scores, indices = _stable_top(found.scores, found.indices)
    if k < n:
        tied = np.flatnonzero(scores[:, k - 1] == scores[:, k])
        for start in range(0, len(tied), chunk):
            rows = tied[start:start + chunk]
            full = exact_search(q[rows], gallery.embeddings, n)
            indices[rows] = _stable_top(full.scores, full.indices)[1][:, :k + 1]
    table = np.asarray(gallery.ids, dtype=object)
    return [tuple(x for x in ids if x != qid)
            for qid, ids in zip(query_ids, table[indices[:, :k]].tolist())]


# -- the per-query maths ----------------------------------------------------------------------
def encode(rankings: Sequence[Sequence[str]], queries: Sequence[M5Query],
           gallery: GalleryLabels) -> dict[str, np.ndarray]:
    """Ranked ids as gallery rows (-1: not a gallery item, `PAD` beyond the list), the
    rank of the query's own id (-1: absent), each query's label code and whether it is a
    gallery item itself."""
    lengths = np.fromiter(map(len, rankings), dtype=np.int64, count=len(rankings))
    width = max(int(lengths.max(initial=0)), max(TOPKS))
    rows = np.full((len(rankings), width), PAD, dtype=np.int64)
    get = gallery.row_of.get
    flat = [get(item, -1) for ids in rankings for item in ids]
    rows[np.arange(width)[None, :] < lengths[:, None]] = np.asarray(flat, dtype=np.int64)
    self_rank = np.array([ids.index(q.id) if q.id in ids else -1
                          for ids, q in zip(rankings, queries)], dtype=np.int64)
    code = np.array([gallery.label_code.get(q.label, ABSENT) for q in queries], dtype=np.int64)
    in_gallery = np.array([q.id in gallery.row_of for q in queries], dtype=bool)
    return {"rows": rows, "lengths": lengths, "self_rank": self_rank, "code": code,
            "in_gallery": in_gallery}


def _at(prefix: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Per row, the running total `prefix` over its first `cut` ranks (0 where cut is 0)."""
    taken = prefix[np.arange(prefix.shape[0]), np.maximum(cut - 1, 0)]
    return np.where(cut > 0, taken, 0)


def query_scores(coded: dict[str, np.ndarray], gallery: GalleryLabels) -> dict[str, np.ndarray]:
    """Every key's per-query value (fractions, not yet percent) plus `positives` (the
    gallery positives other than the query), `not_in_gallery` and `self_ranked`."""
    rows, lengths, code = coded["rows"], coded["lengths"], coded["code"]
    self_rank, in_gallery = coded["self_rank"], coded["in_gallery"]
    if (lengths == 0).any():
        raise RefbenchError(f"query {int(np.argmax(lengths == 0))} has an empty ranked list "
                            f"(the official script divides by k' = 0)")
    width = rows.shape[1]
    pos = np.arange(width)
    item = np.append(gallery.item_label, ABSENT)[rows]  # row -1 takes the appended ABSENT
    gallery_hit = (item == code[:, None]) & (code[:, None] >= 0) & (rows >= 0)
    own = pos[None, :] == self_rank[:, None]
    hit = gallery_hit | own  # the script's `rank_list[i] in pos_set`
    count = np.where(code >= 0, gallery.label_count[np.clip(code, 0, None)], 0)
    n_pos = count + ~in_gallery  # the query is a positive of its own (once)
    hits_cum = np.cumsum(hit, axis=1)
    ap_cum = np.cumsum(np.where(hit, hits_cum / (pos + 1), 0.0), axis=1)
    out: dict[str, np.ndarray] = {}
    for k in TOPKS:
        cut = np.minimum(np.minimum(k, n_pos), lengths)  # k'
        hits = _at(hits_cum, cut)
        out[f"mAP@{k}"] = np.where(hits > 0, _at(ap_cum, cut) / np.maximum(hits, 1), 0.0)
        out[f"Prec@{k}"] = hits / cut
        out[f"short@{k}"] = lengths < np.minimum(k, n_pos)
    relevant = gallery_hit & ~own  # the standard keys: gallery positives but the query
    r = count - in_gallery
    for k in TOPKS:
        out[f"Recall@{k}"] = hit_at_k(relevant, k) * 1.0
    out["mAP@R"] = ap_at_r(relevant, r)
    out["positives"] = r
    out["not_in_gallery"] = ((rows == -1) & ~own).sum(axis=1)
    out["self_ranked"] = self_rank >= 0
    return out


def ordered_mean(values: np.ndarray, order: np.ndarray | None = None) -> float:
    """The script's running `+=` over the lines in `order`, divided by their number,
    times 100 (SCALE's `mAP/=cnt` then `mAP*100`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise RefbenchError("no M5Product query was scored")
    if order is not None:
        values = values[order]
    return float(np.cumsum(values)[-1] / values.size * 100)


def evaluate_rankings(rankings: Sequence[Sequence[str]], queries: Sequence[M5Query],
                      gallery: GalleryLabels) -> dict[str, float]:
    """Every key (percent) over aligned ranked lists and query references, averaged in the
    given order (a submission file's line order)."""
    if len(rankings) != len(queries):
        raise RefbenchError(f"{len(rankings)} ranked lists for {len(queries)} queries")
    scores = query_scores(encode([tuple(r) for r in rankings], queries, gallery), gallery)
    return {key: ordered_mean(scores[key]) for key in (*OFFICIAL_KEYS, *STANDARD_KEYS)}


def official_results(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """The script's `metric_results.json` entry of one feature type, without the
    never-computed `mHitRate` and its `average`."""
    return {f"top{k}": {"mAP": values[f"mAP@{k}"], "Prec": values[f"Prec@{k}"]} for k in TOPKS}


# -- the streaming metric ---------------------------------------------------------------------
def _show(items: Sequence[str], total: int) -> str:
    return ", ".join(repr(x) for x in items[:3]) + (", ..." if total > 3 else "")


def check_gallery_ids(submitted: Sequence[str], gallery: GalleryLabels) -> None:
    """A submission's gallery embeddings cover exactly the reference gallery: an item left
    out could never be retrieved, an item added could be retrieved in its place."""
    given = set(submitted)
    lacking = [item for item in gallery.ids if item not in given]
    extra = [item for item in submitted if item not in gallery.row_of]
    if lacking or extra:
        parts = ([f"lack {len(lacking)} gallery item(s) (first: {_show(lacking, len(lacking))})"]
                 if lacking else []) + \
            ([f"hold {len(extra)} id(s) that are no gallery item (first: "
              f"{_show(extra, len(extra))})"] if extra else [])
        raise RefbenchError(f"the submitted gallery embeddings {' and '.join(parts)}")


@METRICS.register("m5product_retrieval", higher_is_better=True, version="1")
class M5ProductRetrieval(Metric):
    """SCALE's `evaluate_unit_v2.py` over ranked lists or query embeddings (module
    docstring), plus Recall@K and mAP@R, all in percent. Predictions are `Ranking`s
    (or sequences of gallery ids) or `QueryEmbedding`s (ranked here with `max_topk`, the
    official script's `--max_topk`); references are `M5Query`s sharing one gallery. A
    None prediction (a query without a line) is left out: the script averages over the
    lines it reads."""

    keys: ClassVar[dict[str, str]] = {
        **{f"mAP@{k}": f"official mAP@{k} (percent): precision at the hits within k' = "
                       f"min({k}, |pos|, |list|), divided by the hits" for k in TOPKS},
        **{f"Prec@{k}": f"official Prec@{k} (percent): hits within k' / k'" for k in TOPKS},
        **{f"Recall@{k}": f"percent of queries with a gallery positive in the top {k}"
           for k in TOPKS},
        "mAP@R": "mean AP@R in percent over the ranked lists, R = the query's gallery "
                 "positives (Musgrave et al. 2020)",
    }
    directions: ClassVar[dict[str, bool | None]] = {key: True for key in keys}
    options: ClassVar[tuple[Option, ...]] = (Option(
        "max_topk", "int", "How many gallery items an embedding submission ranks per query "
        "before its own id is dropped (the official scripts' --max_topk; every shipped "
        "evaluation script passes 10).", MAX_TOPK),)

    def __init__(self, max_topk: int = MAX_TOPK, **args: Any) -> None:
        if args:
            raise RefbenchError(f"metric m5product_retrieval takes only max_topk, got "
                                f"{', '.join(sorted(args))}")
        if isinstance(max_topk, bool) or not isinstance(max_topk, int) or max_topk < 1:
            raise RefbenchError(f"max_topk must be a positive integer, got {max_topk!r}",
                                key="max_topk")
        super().__init__(max_topk=max_topk)
        self.max_topk = max_topk
        self._gallery: GalleryLabels | None = None
        self._scores: list[dict[str, np.ndarray]] = []
        self._order: list[np.ndarray] = []
        self._not_submitted = 0
        self._stray: list[str] = []

    def _check_gallery(self, gallery: Any, position: int) -> GalleryLabels:
        if not isinstance(gallery, GalleryLabels):
            raise RefbenchError(f"reference {position}: its gallery is not a GalleryLabels")
        if self._gallery is None:
            self._gallery = gallery
        elif gallery is not self._gallery and gallery.fingerprint != self._gallery.fingerprint:
            raise RefbenchError(f"reference {position}: scored against another gallery "
                                f"({gallery!r}, not {self._gallery!r})")
        return self._gallery

    def _rankings(self, predictions: list[Any], queries: list[M5Query],
                  gallery: GalleryLabels) -> tuple[list[tuple[str, ...]], list[float]]:
        """Ranked ids and order keys; embeddings are ranked here, per submitted gallery."""
        ranked: list[tuple[str, ...] | None] = [None] * len(predictions)
        order = [float("inf")] * len(predictions)
        groups: dict[int, list[int]] = {}
        for i, pred in enumerate(predictions):
            if isinstance(pred, QueryEmbedding):
                groups.setdefault(id(pred.gallery), []).append(i)
            elif isinstance(pred, Ranking):
                ranked[i] = pred.ids
                order[i] = float("inf") if pred.line is None else float(pred.line)
            elif isinstance(pred, Sequence) and not isinstance(pred, (str, bytes)) \
                    and all(isinstance(x, str) for x in pred):
                ranked[i] = tuple(pred)
            else:
                raise RefbenchError(f"prediction {i}: expected a ranked list of gallery ids "
                                    f"or a query embedding, got {type(pred).__name__}")
        for members in groups.values():
            submitted = predictions[members[0]].gallery
            check_gallery_ids(submitted.ids, gallery)
            vectors = np.stack([np.asarray(predictions[i].vector) for i in members])
            lists = rank_embeddings(vectors, [queries[i].id for i in members], submitted,
                                    self.max_topk)
            for i, ids in zip(members, lists):
                ranked[i] = ids
        return ranked, order  # type: ignore[return-value]

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        preds: list[Any] = []
        queries: list[M5Query] = []
        gallery = self._gallery
        for position, (pred, ref) in enumerate(zip(predictions, references)):
            if not isinstance(ref, M5Query):
                raise RefbenchError(f"reference {position}: expected an M5Query, got "
                                    f"{type(ref).__name__}")
            gallery = self._check_gallery(ref.gallery, position)
            if pred is None:
                self._not_submitted += 1
                continue
            preds.append(pred)
            queries.append(ref)
        if not preds or gallery is None:
            return
        ranked, order = self._rankings(preds, queries, gallery)
        coded = encode(ranked, queries, gallery)
        self._scores.append(query_scores(coded, gallery))
        self._order.append(np.asarray(order, dtype=np.float64))
        for i, j in np.argwhere(coded["rows"] == -1)[:3].tolist():
            if len(self._stray) < 3 and ranked[i][j] != queries[i].id:
                self._stray.append(ranked[i][j])

    def merge(self, other: Metric) -> None:
        if not isinstance(other, M5ProductRetrieval):
            raise TypeError(f"cannot merge {type(other).__name__} into M5ProductRetrieval")
        if other._gallery is not None:
            self._check_gallery(other._gallery, 0)
        self._scores += other._scores
        self._order += other._order
        self._not_submitted += other._not_submitted
        self._stray = (self._stray + other._stray)[:3]

    def _column(self, key: str) -> np.ndarray:
        return np.concatenate([s[key] for s in self._scores]) if self._scores else np.zeros(0)

    def compute(self) -> dict[str, float]:
        if not self._scores:
            raise RefbenchError("no M5Product query was scored (no ranked list was given)")
        order = np.argsort(np.concatenate(self._order), kind="stable")
        return {key: ordered_mean(self._column(key), order) for key in self.keys}

    def counts(self) -> dict[str, int]:
        """`queries/scored`, `queries/not_submitted`, `queries/no_positive` (no gallery item
        shares the label), `positives/total` (gallery positives over the scored queries),
        `queries/short@k` (lists shorter than min(k, |pos|): k' cut by the list),
        `ranked/not_in_gallery`, `ranked/self` (the query's own id ranked: a hit, as in the
        script), `gallery/items`, `gallery/labels`."""
        positives = self._column("positives")
        out = {"queries/scored": int(positives.size), "queries/not_submitted": self._not_submitted,
               "queries/no_positive": int((positives == 0).sum()),
               "positives/total": int(positives.sum()),
               "ranked/not_in_gallery": int(self._column("not_in_gallery").sum()),
               "ranked/self": int(self._column("self_ranked").sum())}
        out.update({f"queries/short@{k}": int(self._column(f"short@{k}").sum()) for k in TOPKS})
        if self._gallery is not None:
            out.update({"gallery/items": len(self._gallery),
                        "gallery/labels": len(self._gallery.label_code)})
        return out

    def warnings(self) -> list[str]:
        counts = self.counts()
        out = []
        scored = counts["queries/scored"]
        if 0 < scored < FEW_QUERIES:
            out.append(f"only {scored} queries were scored: one query moves every key by up "
                       f"to {100 / scored:.2f} points")
        if counts["queries/no_positive"]:
            out.append(f"{counts['queries/no_positive']} query(ies) have no gallery item of "
                       f"their label: they score 0 on every key")
        stray = counts["ranked/not_in_gallery"]
        if stray:
            out.append(f"{stray} ranked id(s) are not gallery items (first: "
                       f"{_show(self._stray, stray)}): each is a miss")
        if counts["ranked/self"]:
            out.append(f"{counts['ranked/self']} query(ies) rank their own id, which the "
                       f"official script counts as a hit (its ranking drops it)")
        return out
