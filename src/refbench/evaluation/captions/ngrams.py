"""The n-gram tables BLEU and CIDEr-D share, built once with numpy.

pycocoevalcap counts the n-grams of every sentence in a Python dict per sentence (its
`precook`, on `str.split()` tokens) and loops over them; refbench codes every token as an
integer, every n-gram as a dense integer per order n (an n-gram's code is the code of the
pair (its (n-1)-gram prefix, its last token)), and counts (document, n-gram) pairs with
sorting, so both metrics read the same arrays.

An entry is one distinct n-gram of one document: its document, code, count and `rank`, the
order of its first occurrence among the document's distinct n-grams of that order. The
rank is the key order of pycocoevalcap's per-sentence dict, which fixes the order in which
CIDEr-D adds floating-point terms; `sequential_sums` adds in that order, so sums agree with
pycocoevalcap's to the last bit rather than to a rounding error.

Documents are laid out as a `Corpus`: the hypotheses (one per scored pair, document i of
pair i), then every pair's references, contiguous and in the given order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from refbench.errors import RefbenchError


@dataclass(frozen=True)
class Entries:
    """The distinct n-grams of one order n, sorted by (document, rank)."""

    doc: np.ndarray
    gram: np.ndarray
    count: np.ndarray
    rank: np.ndarray
    #: how many distinct n-grams of this order the whole corpus holds (codes are below it)
    size: int


@dataclass(frozen=True)
class Corpus:
    """Hypotheses and references as integer tokens, with their n-gram entries."""

    pairs: int
    #: per pair, the first reference document and one past its last (length pairs + 1)
    ref_bounds: np.ndarray
    #: tokens per document (hypotheses first)
    lengths: np.ndarray
    #: entries per order: `entries[k]` holds the (k+1)-grams
    entries: tuple[Entries, ...]

    @property
    def ref_pair(self) -> np.ndarray:
        """The pair of every reference document."""
        counts = np.diff(self.ref_bounds)
        return np.repeat(np.arange(self.pairs), counts)

    @property
    def ref_count(self) -> np.ndarray:
        return np.diff(self.ref_bounds)


def check_pairs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """One hypothesis string per pair, at least one reference string each."""
    if len(hypotheses) != len(references):
        raise RefbenchError(f"{len(hypotheses)} hypotheses for {len(references)} reference lists")
    if not hypotheses:
        raise RefbenchError("nothing to score: no hypothesis was given")
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if not isinstance(hyp, str):
            raise RefbenchError(f"hypothesis {i}: expected a string, got {type(hyp).__name__}")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise RefbenchError(f"pair {i}: expected a non-empty list of reference strings")


def build_corpus(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                 max_n: int = 4) -> Corpus:
    """Tokenize with `str.split()` (as pycocoevalcap's `precook`), code and count n-grams
    of orders 1..max_n."""
    check_pairs(hypotheses, references)
    docs = [h.split() for h in hypotheses] + [r.split() for refs in references for r in refs]
    tokens = [t for doc in docs for t in doc]
    flat, uniques = factorize(np.array(tokens, dtype=object)) if tokens else (
        np.zeros(0, dtype=np.int64), [])
    vocab_size = max(len(uniques), 1)
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    ref_bounds = np.concatenate([[0], np.cumsum([len(r) for r in references])]) + len(hypotheses)
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    left = lengths[doc_of] - (np.arange(flat.size, dtype=np.int64) - starts[doc_of])
    code, size = flat, vocab_size
    entries = []
    for n in range(1, max_n + 1):
        if n > 1:  # positions that start an n-gram: code the (prefix code, next token) pair
            keep = left >= n
            starts_n = np.flatnonzero(keep)
            code_n = np.full(flat.size, -1, dtype=np.int64)
            size = 1
            if starts_n.size:
                inverse, distinct = factorize(code[starts_n] * vocab_size + flat[starts_n + n - 1])
                code_n[starts_n] = inverse
                size = len(distinct)
            code = code_n
        valid = np.flatnonzero(code >= 0)
        entries.append(_entries(doc_of[valid], code[valid], size))
    return Corpus(len(hypotheses), ref_bounds.astype(np.int64), lengths, tuple(entries))


def _entries(doc: np.ndarray, gram: np.ndarray, size: int) -> Entries:
    """Distinct (document, n-gram) entries of position-ordered occurrences, sorted by
    (document, first occurrence)."""
    if doc.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Entries(empty, empty, empty, empty, size)
    # factorize numbers keys in order of first appearance, and occurrences are in position
    # order: the distinct keys come out sorted by (document, first occurrence)
    codes, unique = factorize(doc * size + gram)
    counts = np.bincount(codes, minlength=len(unique)).astype(np.int64)
    e_doc, e_gram = unique // size, unique % size
    group_start = np.flatnonzero(np.r_[True, e_doc[1:] != e_doc[:-1]])
    rank = np.arange(e_doc.size) - np.repeat(group_start, np.diff(np.r_[group_start, e_doc.size]))
    return Entries(e_doc, e_gram, counts, rank.astype(np.int64), size)


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct values): codes number the values in order of first appearance (a
    hash table in C: pandas' factorize)."""
    import pandas as pd

    codes, unique = pd.factorize(values, sort=False)
    return codes.astype(np.int64, copy=False), np.asarray(unique)


def lookup(keys: np.ndarray, table_keys: np.ndarray, table_values: np.ndarray,
           default: float | int = 0) -> np.ndarray:
    """`table_values` at `keys` (distinct `table_keys`, any order), `default` where a key is
    absent (a hash lookup: pandas' Index)."""
    import pandas as pd

    if table_keys.size == 0:
        return np.full(keys.size, default, dtype=table_values.dtype)
    where = pd.Index(table_keys).get_indexer(keys)
    return np.where(where >= 0, table_values[where], default)


def sequential_sums(segment: np.ndarray, rank: np.ndarray, values: np.ndarray,
                    segments: int) -> np.ndarray:
    """Per segment, the sum of its values added one at a time in rank order, starting from
    0.0 -- the order of a Python `+=` loop -- with one vectorized step per rank (each
    segment holds at most one value of each rank)."""
    out = np.zeros(segments, dtype=np.float64)
    if values.size == 0:
        return out
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(int(rank.max()) + 2))
    for r in range(bounds.size - 1):
        idx = order[bounds[r]:bounds[r + 1]]
        out[segment[idx]] += values[idx]
    return out
