"""Harder variants of the synthetic GLUE tasks, chosen with `synthesize_glue(sst2=...)`.

The default synthetic SST-2 is easy enough that every small student of the EfficientBERT
search's parameter budget reaches 94-95 % and architectures differ by less than
training-seed noise. The compositional variant keeps the SST-2 layout and vocabulary but
makes the label a function no bag of words expresses, so students of different FFN
architectures learn it at measurably different speeds.
"""

from __future__ import annotations

import random

from refbench.datasets.glue.synth import (FILM_PARTS, INTENSIFIERS, NEGATIVE, POSITIVE,
                                          _balanced)

#: words that flip the polarity of the clause they stand in (one flip each)
NEGATORS = ["not", "hardly", "never"]


def _clause(rng: random.Random, part: str, polarity: int, outer_share: float = 0.2
            ) -> list[str]:
    """A clause about `part` whose polarity is `polarity` (1 positive, 0 negative): the
    adjectives' polarity flipped by 0, 1 or 2 negations (a negator, and in `outer_share` of
    the clauses an outer "it is not true that"), so the clause's meaning is a parity."""
    outer = rng.random() < outer_share
    inner = rng.random() < 0.5
    adj_pol = polarity ^ int(outer) ^ int(inner)
    pool = POSITIVE if adj_pol else NEGATIVE
    words = (["it", "is", "not", "true", "that"] if outer else []) + ["the", part, "is"]
    words += ([rng.choice(NEGATORS)] if inner else []) + [rng.choice(INTENSIFIERS),
                                                          rng.choice(pool)]
    if rng.random() < 0.4:
        words += ["and", rng.choice(pool)]
    return words


def sst2_compositional(rng: random.Random, count: int, outer_share: float = 0.2
                       ) -> list[tuple]:
    """A harder SST-2 (`sst2="compositional"`): two clauses with their own (possibly double)
    negations, joined so that a connective decides which clause carries the label:
    "A , but B" and "although A , B" follow B, "A , although B" follows A, "A and B" has
    both agree. The other clause's polarity is random, so no word and no pair of adjacent
    words predicts the label: the label is the parity of negations in the clause the
    connective points to, which small models learn at different speeds (the tiny setting
    in which EfficientBERT's searched FFNs can differ from random ones). `outer_share`: the
    share of clauses with an outer "it is not true that" (double negation)."""
    out = []
    for label in _balanced(rng, count, [1, 1]):
        first, second = rng.sample(FILM_PARTS, 2)
        kind = rng.randrange(4)
        other = label if kind == 3 else rng.randrange(2)
        if kind == 0:  # A , but B
            words = [*_clause(rng, first, other, outer_share), ",", "but", *_clause(rng, second, label, outer_share)]
        elif kind == 1:  # although A , B
            words = ["although", *_clause(rng, first, other, outer_share), ",", *_clause(rng, second, label, outer_share)]
        elif kind == 2:  # A , although B
            words = [*_clause(rng, first, label, outer_share), ",", "although", *_clause(rng, second, other, outer_share)]
        else:  # A and B, both agreeing
            words = [*_clause(rng, first, label, outer_share), ",", "and", *_clause(rng, second, other, outer_share)]
        out.append((" ".join(words + ["."]) + " ", label))
    return out



def sst2_negation(rng: random.Random, count: int) -> list[tuple]:
    """The compositional SST-2 without double negation (`sst2="negation"`): the same
    connectives decide which clause carries the label, and a clause's polarity is its
    adjectives' flipped by at most one negator. A `bert_tiny_glue` teacher reaches 88 % on
    2,000 rows in 1,200 steps (hidden 128: 96 % on 4,000 rows in 3,000 steps), where the
    double-negation parity of "compositional" stalls every small model near 70 %, teacher
    included; so students of different FFNs are not all capped by one weak teacher."""
    return sst2_compositional(rng, count, outer_share=0.0)
