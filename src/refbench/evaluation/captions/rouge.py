"""ROUGE-L as pycocoevalcap's `Rouge` computes it (re-derived from its `rouge.py`).

- tokens are `str.split(" ")` pieces: unlike BLEU and CIDEr-D, ROUGE-L splits on single
  spaces, so a double space makes an empty token (which matches another empty token) and
  an empty string is one empty token; refbench's tokenizers write single-spaced text, so
  the difference only shows on hand-made input;
- per pair: for every reference, LCS = the length of the longest common subsequence of
  the token lists, precision = LCS / hypothesis tokens, recall = LCS / reference tokens;
  the maxima over the references are taken separately (they may come from different
  references);
- F = (1 + beta^2) P R / (R + beta^2 P) with beta = 1.2 (0 when P or R is 0);
- ROUGE-L = the mean of the per-pair F over the pairs (`numpy.mean`).

The LCS length is computed with the bit-parallel algorithm of Allison & Dix (1986) /
Hyyrö (2004) on Python integers (one word-parallel step per reference token, instead of
pycocoevalcap's cell-by-cell dynamic programme): the same integer, so the same scores to
the last bit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from refbench.evaluation.captions.ngrams import check_pairs

#: pycocoevalcap's beta ("updated ... based on discussion with Hovey")
BETA = 1.2


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """The length of the longest common subsequence of two token sequences."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):  # bit i of masks[t]: a[i] == t
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full  # bit i set: no match yet "used" at column i
    get = masks.get
    for token in b:
        match = row & get(token, 0)
        row = ((row + match) | (row - match)) & full
    return len(a) - row.bit_count()


def rouge_l_pair(hypothesis: str, references: Sequence[str], beta: float = BETA) -> float:
    """One pair's ROUGE-L F (pycocoevalcap `Rouge.calc_score`)."""
    cand = hypothesis.split(" ")
    prec_max = rec_max = 0.0
    for reference in references:
        ref = reference.split(" ")
        lcs = lcs_length(ref, cand)
        prec_max = max(prec_max, lcs / float(len(cand)))
        rec_max = max(rec_max, lcs / float(len(ref)))
    if prec_max != 0 and rec_max != 0:
        return ((1 + beta ** 2) * prec_max * rec_max) / float(rec_max + beta ** 2 * prec_max)
    return 0.0


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
            beta: float = BETA) -> tuple[float, np.ndarray]:
    """pycocoevalcap `Rouge().compute_score`: (mean ROUGE-L, per-pair values)."""
    check_pairs(hypotheses, references)
    scores = np.array([rouge_l_pair(h, r, beta) for h, r in zip(hypotheses, references)],
                      dtype=np.float64)
    return float(np.mean(scores)), scores
