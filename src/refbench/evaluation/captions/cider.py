"""CIDEr-D as pycocoevalcap's `Cider` computes it (re-derived from its `cider_scorer.py`).

pycocoevalcap's `Cider` is the CIDEr-D variant (clipping and a length penalty), with n = 4
and sigma = 6:

- tokens are `str.split()` tokens; n-grams of orders 1..4 with their counts (tf);
- document frequency df(g) = the number of *evaluated pairs* whose references (any of them)
  hold g, so the IDF depends on the evaluated set: log(pairs) - log(max(1, df(g))); an
  n-gram in no reference gets the full log(pairs); a single pair scores 0;
- per order n, each sentence is a vector tf * idf; per (hypothesis, reference) the
  similarity is sum over the hypothesis n-grams of min(h, r) * r (the clipping), divided
  by |h| |r| when neither norm is 0, times exp(-delta^2 / (2 sigma^2)) (the Gaussian length
  penalty), where delta is the difference of the two sentences' *bigram* counts (pycocoevalcap
  sums the tf of its order index 1, so a sentence of 0 or 1 token has length 0 there);
- per pair: the similarities summed over its references, averaged over the 4 orders,
  divided by the number of references, times 10; CIDEr-D = the mean over the pairs.

The sums run in pycocoevalcap's order (its dict order: first occurrence in the sentence),
so values agree to the last bit (`ngrams.sequential_sums`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from refbench.evaluation.captions.ngrams import (Corpus, build_corpus, factorize, lookup,
                                                 sequential_sums)

SIGMA = 6.0


def _penalty(delta: np.ndarray, sigma: float) -> np.ndarray:
    """exp(-delta^2 / (2 sigma^2)) as pycocoevalcap writes it (`np.e ** x` on Python floats)."""
    values: dict[int, float] = {}
    out = np.empty(delta.size, dtype=np.float64)
    for i, d in enumerate(delta.tolist()):
        if d not in values:
            x = float(d)
            values[d] = np.e ** (-(x ** 2) / (2 * sigma ** 2))
        out[i] = values[d]
    return out


def _squares(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """`pow(v, 2)` of every value as pycocoevalcap squares its tf-idf weights: C `pow`,
    which differs from `v * v` (numpy's square) in the last bit for about 1 value in 1,000.
    Called once per distinct value (`keys` identify equal values: n-gram and count)."""
    codes, distinct = factorize(keys)
    first = np.zeros(distinct.size, dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size)[::-1]  # an occurrence of each distinct key
    squares = np.fromiter((math.pow(v, 2.0) for v in values[first].tolist()),
                          dtype=np.float64, count=distinct.size)
    return squares[codes]


def cider_from_corpus(corpus: Corpus, sigma: float = SIGMA) -> tuple[float, np.ndarray]:
    """(CIDEr-D, per-pair values) of a corpus built with `max_n` orders."""
    pairs, ref_pair = corpus.pairs, corpus.ref_pair
    n_orders = len(corpus.entries)
    n_refs = corpus.lengths.size - pairs
    log_pairs = np.log(float(pairs))
    sims = np.zeros((n_refs, n_orders), dtype=np.float64)
    for k, e in enumerate(corpus.entries):
        is_hyp = e.doc < pairs
        refs = ~is_hyp
        # document frequency over pairs: distinct (pair, n-gram) among the references
        _, pair_gram = factorize(ref_pair[e.doc[refs] - pairs] * e.size + e.gram[refs])
        df = np.bincount(pair_gram % e.size, minlength=e.size).astype(np.float64)
        weight = log_pairs - np.log(np.maximum(1.0, df))
        vec = e.count.astype(np.float64) * weight[e.gram]
        squares = _squares(vec, e.gram * (int(e.count.max(initial=0)) + 1) + e.count)
        norms = np.sqrt(sequential_sums(e.doc, e.rank, squares, corpus.lengths.size))
        # hypothesis entries against each reference of their pair
        h_idx = np.flatnonzero(is_hyp)
        h_pair = e.doc[h_idx]
        per_pair = corpus.ref_count[h_pair]
        h_rep = np.repeat(h_idx, per_pair)
        # the j-th reference of the pair, for every repeated entry
        first_ref = corpus.ref_bounds[e.doc[h_rep]]
        offset = np.arange(h_rep.size) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
        ref_doc = first_ref + offset
        r_idx = np.flatnonzero(refs)
        r_key = e.doc[r_idx] * e.size + e.gram[r_idx]
        r_vec = lookup(ref_doc * e.size + e.gram[h_rep], r_key, vec[r_idx], 0.0)
        h_vec = vec[h_rep]
        terms = np.minimum(h_vec, r_vec) * r_vec
        num = sequential_sums(ref_doc - pairs, e.rank[h_rep], terms, n_refs)
        norm_h = norms[ref_pair]
        norm_r = norms[pairs:]
        both = (norm_h != 0) & (norm_r != 0)
        sims[:, k] = np.where(both, num / np.where(both, norm_h * norm_r, 1.0), num)
    bigrams = np.maximum(corpus.lengths - 1, 0)
    sims *= _penalty(bigrams[ref_pair] - bigrams[pairs:], sigma)[:, None]
    # per pair: the references' similarity vectors added in order, from 0.0
    rank_in_pair = np.arange(n_refs) - (corpus.ref_bounds[:-1] - pairs)[ref_pair]
    score = np.stack([sequential_sums(ref_pair, rank_in_pair, sims[:, k], pairs)
                      for k in range(n_orders)], axis=1)
    per_pair = np.array([np.mean(row) for row in score], dtype=np.float64)
    per_pair /= corpus.ref_count
    per_pair *= 10.0
    return float(np.mean(per_pair)), per_pair


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], n: int = 4,
            sigma: float = SIGMA) -> tuple[float, np.ndarray]:
    """pycocoevalcap `Cider(n, sigma).compute_score`: (CIDEr-D, per-pair values)."""
    return cider_from_corpus(build_corpus(hypotheses, references, n), sigma)
