"""BLEU-1..4 as pycocoevalcap's `Bleu(4)` computes it (re-derived from its `bleu_scorer.py`).

pycocoevalcap's BLEU is a corpus BLEU with its own details, all kept here:

- tokens are `str.split()` tokens of the given strings (no further normalisation);
- a hypothesis n-gram counts at most as often as it occurs in the one reference holding it
  most often ("clipping" against the per-n-gram maximum over the references);
- the reference length of a pair is the *closest* reference length (`option='closest'`):
  the length with the smallest absolute difference to the hypothesis length, the shorter
  one on a tie;
- BLEU-k = (prod over n <= k of (correct_n + 1e-15) / (guess_n + 1e-9)) ** (1 / k), with
  guess_n = max(0, hypothesis length - n + 1), summed over the corpus; the 1e-15 / 1e-9
  terms keep an empty count from dividing by zero (BLEU-k is ~0, not an error, when no
  k-gram matches);
- brevity penalty exp(1 - 1 / ratio) when ratio = (total hypothesis length + 1e-15) /
  (total reference length + 1e-9) is below 1; it multiplies every BLEU-k.

The per-pair values (pycocoevalcap's second return value) follow the same formula on one
pair's counts. Counts are integers, and the floating-point steps run in pycocoevalcap's
order, so the numbers are the same to the last bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from refbench.evaluation.captions.ngrams import Corpus, build_corpus, factorize, lookup

#: pycocoevalcap's smoothing terms: `small` on the denominator, `tiny` on the numerator
SMALL, TINY = 1e-9, 1e-15


@dataclass(frozen=True)
class BleuCounts:
    """What BLEU needs per pair: clipped matches and guesses per order, hypothesis length,
    closest reference length."""

    correct: np.ndarray  # pairs x n
    guess: np.ndarray  # pairs x n
    testlen: np.ndarray
    reflen: np.ndarray


def bleu_counts(corpus: Corpus, n: int = 4) -> BleuCounts:
    """Clipped n-gram matches and guesses of every pair, and its closest reference length."""
    pairs = corpus.pairs
    ref_pair = corpus.ref_pair
    correct = np.zeros((pairs, n), dtype=np.int64)
    for k in range(n):
        e = corpus.entries[k]
        is_hyp = e.doc < pairs
        refs = ~is_hyp
        # per (pair, n-gram): the largest count in any of the pair's references
        r_key = ref_pair[e.doc[refs] - pairs] * e.size + e.gram[refs]
        codes, r_key = factorize(r_key)
        r_count = np.zeros(r_key.size, dtype=np.int64)
        np.maximum.at(r_count, codes, e.count[refs])
        h_key = e.doc[is_hyp] * e.size + e.gram[is_hyp]
        clipped = np.minimum(e.count[is_hyp], lookup(h_key, r_key, r_count, 0))
        correct[:, k] = np.bincount(e.doc[is_hyp], weights=clipped, minlength=pairs)
    testlen = corpus.lengths[:pairs]
    guess = np.maximum(0, testlen[:, None] - np.arange(n)[None, :])
    # closest reference length: the smallest (|l - testlen|, l), per pair
    ref_len = corpus.lengths[pairs:]
    diff = np.abs(ref_len - testlen[ref_pair])
    packed = diff * (int(ref_len.max(initial=0)) + 1) + ref_len
    best = np.minimum.reduceat(packed, corpus.ref_bounds[:-1] - pairs) if packed.size else packed
    reflen = best % (int(ref_len.max(initial=0)) + 1)
    return BleuCounts(correct, guess, testlen.astype(np.int64), reflen.astype(np.int64))


def _bleu(correct: Sequence[int], guess: Sequence[int], testlen: int | float,
          reflen: int | float) -> list[float]:
    """pycocoevalcap's BLEU-1..n from counts, its operations in its order."""
    scores = []
    product = 1.0
    for k in range(len(correct)):
        product *= (float(correct[k]) + TINY) / (float(guess[k]) + SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (testlen + TINY) / (reflen + SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def bleu_from_counts(counts: BleuCounts) -> tuple[list[float], np.ndarray]:
    """(corpus BLEU-1..n, per-pair BLEU-1..n as a pairs x n array)."""
    correct, guess = counts.correct.tolist(), counts.guess.tolist()
    per_pair = [_bleu(c, g, t, r) for c, g, t, r in
                zip(correct, guess, counts.testlen.tolist(), counts.reflen.tolist())]
    total_correct = [int(x) for x in counts.correct.sum(axis=0)]
    total_guess = [int(x) for x in counts.guess.sum(axis=0)]
    corpus = _bleu(total_correct, total_guess, int(counts.testlen.sum()), int(counts.reflen.sum()))
    return corpus, np.asarray(per_pair, dtype=np.float64).reshape(len(per_pair), -1)


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
         n: int = 4) -> tuple[list[float], np.ndarray]:
    """pycocoevalcap `Bleu(n).compute_score`: (corpus BLEU-1..n, per-pair values)."""
    return bleu_from_counts(bleu_counts(build_corpus(hypotheses, references, n), n))
