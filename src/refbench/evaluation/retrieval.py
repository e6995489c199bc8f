"""Exact retrieval search and the standard retrieval metrics, shared by the retrieval families.

A retrieval baseline embeds queries and gallery items; this module ranks the gallery for
every query with an exact (brute-force) faiss search and turns the ranks into ids, so
that every family writes its submission file from the same, reproducible ranking:

- `exact_search(queries, gallery, k, similarity="ip")`: `faiss.IndexFlatIP`, i.e. the
  largest dot products; `similarity="cosine"` searches L2-normalised copies (the caller's
  arrays are never modified). Inputs are checked first, each problem one line: a non 2-D
  array, an empty one, a dimension mismatch, NaN or infinite values (first bad row named),
  a zero vector under cosine. `k` larger than the gallery returns the whole gallery.
- `SearchResult.ids(gallery_ids)`: the top-k gallery ids per query.

The standard metrics are reported beside a family's official keys under their own names,
because the official product-retrieval metrics are not the textbook ones (see
`refbench.evaluation.product1m`). They take a boolean relevance matrix of the ranked lists
(row = query, column = rank; padding beyond a short list is False) and, for mAP@R, each
query's number of relevant gallery items:

- `Recall@K`: the fraction of queries with at least one relevant item in the top K (the
  "recall at K" of metric-learning papers, not the fraction of relevant items found);
- `mAP@R` (Musgrave et al., "A Metric Learning Reality Check", 2020): R = the number of
  relevant gallery items, AP@R = (1/R) * sum over ranks i <= R of precision@i at the
  relevant ranks; a ranked list shorter than R counts the missing ranks as misses, and a
  query without any relevant item scores 0.

faiss is imported only when a search runs; without it the error names the extra to install
(`pip install -e '.[retrieval]'`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError, require

Similarity = Literal["ip", "cosine"]
#: the K of `Recall@K` reported beside the official keys
RECALL_KS: tuple[int, ...] = (1, 5, 10, 50, 100)


class Ranking:
    """One query's ranked gallery ids (best first), with the 1-based line of the submission
    file it was read from (None when it was not read from a file). Official scripts average
    over the file's lines in file order; keeping the line lets a metric add them in that
    order.

    A reader may give the ids as the line's comma-joined `text` (split on first use of
    `ids`) and, when every id is a canonical decimal number, their int64 `keys`
    (`decimal_keys`): a metric then looks a million ids up at C speed without making a
    million Python strings. Equality, hashing and repr are those of (ids, line)."""

    __slots__ = ("_ids", "_text", "_count", "line", "keys")

    def __init__(self, ids: Sequence[str] = (), line: int | None = None, *,
                 text: str | None = None, keys: np.ndarray | None = None) -> None:
        self._ids: tuple[str, ...] | None = None if text is not None else tuple(ids)
        self._text = text
        self._count = len(self._ids) if self._ids is not None else (
            text.count(",") + 1 if text else 0)
        self.line = line
        if keys is not None and len(keys) != self._count:
            raise ValueError(f"{len(keys)} keys for {self._count} ids")
        self.keys = keys

    @property
    def ids(self) -> tuple[str, ...]:
        if self._ids is None:
            self._ids = tuple(self._text.split(",")) if self._text else ()
        return self._ids

    def __len__(self) -> int:
        return self._count

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ranking):
            return NotImplemented
        return self.line == other.line and self.ids == other.ids

    def __hash__(self) -> int:
        return hash((self.ids, self.line))

    def __repr__(self) -> str:
        return f"Ranking(ids={self.ids!r}, line={self.line!r})"


#: 10, 100, ..., 10**18: a canonical decimal id of d digits lies in [10**(d-1), 10**d)
_POWERS = 10 ** np.arange(1, 19, dtype=np.int64)


def decimal_keys(texts: Sequence[str]) -> list[np.ndarray] | None:
    """The ids of comma-joined id lists as int64 arrays, one per text (an empty text has
    none), or None unless every id is a canonical decimal number (digits only, no leading
    zero, at most 18 digits), so that keys and ids correspond one to one."""
    counts = np.array([text.count(",") + 1 if text else 0 for text in texts], dtype=np.int64)
    joined = ",".join(text for text in texts if text)
    if not joined:
        return [np.zeros(0, dtype=np.int64) for _ in texts]
    if not joined.isascii():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            keys = np.fromstring(joined, dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            return None
    if len(keys) != counts.sum() or (keys < 0).any() or (keys >= 10**18).any():
        return None  # (an overflowing id saturates at 2**63 - 1: 19 digits are refused)
    # each id is at least as long as the canonical form of its value, so equal totals mean
    # every id is canonical ("007", "+7", " 7" and overflowing ids all fail here)
    digits = np.searchsorted(_POWERS, keys, side="right") + 1
    if int(digits.sum()) + len(keys) - 1 != len(joined):
        return None
    ends = np.cumsum(counts).tolist()
    return [keys[end - n:end] for end, n in zip(ends, counts.tolist())]


def repeated_ids(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Per key array, whether a key occurs twice in it (vectorised over all arrays)."""
    counts = np.array([len(k) for k in keys], dtype=np.int64)
    width = int(counts.max(initial=0))
    if width < 2:
        return np.zeros(len(keys), dtype=bool)
    padded = np.full((len(keys), width), -1, dtype=np.int64)
    padded[np.arange(width)[None, :] < counts[:, None]] = np.concatenate(keys)
    padded.sort(axis=1)
    return ((padded[:, 1:] == padded[:, :-1]) & (padded[:, 1:] >= 0)).any(axis=1)


@dataclass(frozen=True)
class SearchResult:
    """Top-k gallery positions per query (`indices`, int64) and their similarity
    (`scores`, float32), best first; both of shape (queries, k)."""

    scores: np.ndarray
    indices: np.ndarray

    def ids(self, gallery_ids: Sequence[str]) -> list[tuple[str, ...]]:
        """The ranked gallery ids of every query."""
        if len(gallery_ids) <= int(self.indices.max(initial=-1)):
            raise RefbenchError(f"{len(gallery_ids)} gallery ids for a search over at least "
                                f"{int(self.indices.max()) + 1} gallery items")
        table = np.asarray(gallery_ids, dtype=object)
        return [tuple(row) for row in table[self.indices].tolist()]

    def rankings(self, query_ids: Sequence[str],
                 gallery_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """`{query_id: ranked gallery ids}` (what a submission format writes)."""
        if len(query_ids) != len(self.indices):
            raise RefbenchError(f"{len(query_ids)} query ids for {len(self.indices)} searched "
                                f"queries")
        return dict(zip(query_ids, self.ids(gallery_ids)))


def as_embeddings(values: object, name: str) -> np.ndarray:
    """A C-contiguous float32 (rows, dims) array; a malformed input is one line naming
    `name` (e.g. "query") and, for NaN or infinity, the first bad row."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise RefbenchError(f"{name} embeddings must be a 2-D array (rows x dims), got shape "
                            f"{array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise RefbenchError(f"{name} embeddings are empty (shape {array.shape})")
    if array.dtype.kind not in "fiu":
        raise RefbenchError(f"{name} embeddings must be real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, reported below
        out = np.ascontiguousarray(array, dtype=np.float32)
    # a row sum in float64 is finite exactly when every value of the row is
    bad = np.flatnonzero(~np.isfinite(out.sum(axis=1, dtype=np.float64)))
    if bad.size:
        raise RefbenchError(f"{name} embeddings hold NaN or infinite values (float32) in "
                            f"{bad.size} row(s), first row {int(bad[0])}")
    return out


def l2_normalised(embeddings: np.ndarray, name: str) -> np.ndarray:
    """A unit-norm copy of checked embeddings; a zero row (no direction) is an error."""
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise RefbenchError(f"{name} embeddings have {zero.size} zero row(s) (first row "
                            f"{int(zero[0])}): cosine similarity is undefined for them")
    return np.ascontiguousarray(embeddings / norms[:, None].astype(np.float32), dtype=np.float32)


def exact_search(queries: object, gallery: object, k: int,
                 similarity: Similarity = "ip") -> SearchResult:
    """The top-`k` gallery items of every query by exact dot product (`"ip"`) or cosine
    similarity (`"cosine"`, on L2-normalised copies), with faiss's `IndexFlatIP`."""
    if similarity not in ("ip", "cosine"):
        raise RefbenchError(f"unknown similarity {similarity!r} (known: ip, cosine)")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RefbenchError(f"k must be a positive integer, got {k!r}")
    q = as_embeddings(queries, "query")
    g = as_embeddings(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise RefbenchError(f"query embeddings have {q.shape[1]} dimensions, gallery "
                            f"embeddings {g.shape[1]}")
    if similarity == "cosine":
        q, g = l2_normalised(q, "query"), l2_normalised(g, "gallery")
    require("faiss", "retrieval")
    import faiss

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    scores, indices = index.search(q, min(int(k), g.shape[0]))
    return SearchResult(scores=scores, indices=indices.astype(np.int64, copy=False))


# -- standard metrics -----------------------------------------------------------------------
def _relevance(relevant: object) -> np.ndarray:
    rel = np.asarray(relevant)
    if rel.ndim != 2 or rel.dtype != bool:
        raise RefbenchError(f"relevance must be a 2-D boolean array (queries x ranks), got "
                            f"{rel.dtype} of shape {rel.shape}")
    return rel


def hit_at_k(relevant: object, k: int) -> np.ndarray:
    """Per query: whether a relevant item is among the first `k` ranks."""
    rel = _relevance(relevant)
    return rel[:, :k].any(axis=1)


def ap_at_r(relevant: object, num_relevant: object) -> np.ndarray:
    """Per query AP@R: (1/R) * sum of precision@i over the relevant ranks i <= R, where R
    is the query's number of relevant gallery items (0 when R = 0)."""
    rel = _relevance(relevant)
    r = np.asarray(num_relevant, dtype=np.int64)
    if r.shape != (rel.shape[0],) or (r < 0).any():
        raise RefbenchError(f"num_relevant must hold one non-negative count per query, got "
                            f"shape {r.shape}")
    ranks = np.arange(1, rel.shape[1] + 1)
    within = rel & (ranks[None, :] <= r[:, None])
    hits = np.cumsum(within, axis=1)
    total = np.where(within, hits / ranks[None, :], 0.0).sum(axis=1)
    return np.divide(total, r, out=np.zeros(len(r)), where=r > 0)


def recall_at_k(relevant: object, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """`{"Recall@K": fraction of queries with a relevant item in the top K}`."""
    rel = _relevance(relevant)
    if rel.shape[0] == 0:
        raise RefbenchError("no queries to score")
    return {f"Recall@{k}": float(hit_at_k(rel, k).mean()) for k in ks}


def map_at_r(relevant: object, num_relevant: object) -> float:
    """Mean AP@R over the queries (`ap_at_r`)."""
    values = ap_at_r(relevant, num_relevant)
    if values.size == 0:
        raise RefbenchError("no queries to score")
    return float(values.mean())


def standard_metrics(relevant: object, num_relevant: object,
                     ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """`Recall@K` for every K in `ks` and `mAP@R`, from a relevance matrix."""
    return {**recall_at_k(relevant, ks), "mAP@R": map_at_r(relevant, num_relevant)}


def class_relevance(ranked_classes: object, query_classes: object) -> np.ndarray:
    """The relevance matrix of single-label retrieval: rank j of query i is relevant when
    the gallery item's class equals the query's (negative classes never match: use them
    for padding or unknown items)."""
    ranked = np.asarray(ranked_classes)
    query = np.asarray(query_classes)
    if ranked.ndim != 2 or query.shape != (ranked.shape[0],):
        raise RefbenchError(f"expected ranked classes (queries x ranks) and one class per "
                            f"query, got shapes {ranked.shape} and {query.shape}")
    return (ranked == query[:, None]) & (ranked >= 0)


def class_counts(gallery_classes: object, query_classes: object) -> np.ndarray:
    """Per query, how many gallery items share its class (R of mAP@R)."""
    gallery = np.asarray(gallery_classes, dtype=np.int64)
    query = np.asarray(query_classes, dtype=np.int64)
    counts = np.bincount(gallery[gallery >= 0], minlength=int(max(query.max(initial=0),
                                                                   gallery.max(initial=0))) + 1)
    return np.where(query >= 0, counts[np.clip(query, 0, None)], 0)


def rankings_by_id(query_ids: Sequence[str], ranked: Sequence[Sequence[str]]
                   ) -> Mapping[str, tuple[str, ...]]:
    """`{query_id: ranked ids}`, refusing a repeated query id (a file ranks each once)."""
    out: dict[str, tuple[str, ...]] = {}
    for qid, ids in zip(query_ids, ranked, strict=True):
        if qid in out:
            raise RefbenchError(f"query id {qid!r} is ranked twice")
        out[qid] = tuple(ids)
    return out
