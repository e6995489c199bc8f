"""The additive options of the GLUE synthesizer: the "compositional" SST-2 variant (the
tiny setting in which EfficientBERT architectures differ) and a larger dev split.

The defaults must keep writing what they always wrote (other tests pin their bytes); the
compositional labels must follow their documented rule exactly (checked by an independent
reader of the sentences), and no single word may give the label away."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest

from refbench.datasets.glue.builder import read_task_file
from refbench.datasets.glue.synth import NEGATIVE, POSITIVE, SST2_VARIANTS, synthesize_glue
from refbench.datasets.glue.synth_variants import NEGATORS, sst2_compositional, sst2_negation
from refbench.errors import RefbenchError
from refbench.io import sha256_path


def _clause_polarity(words: list[str]) -> int:
    """1 positive / 0 negative: the adjectives' polarity flipped once per negation."""
    outer = words[:5] == ["it", "is", "not", "true", "that"]
    flips = int(outer) + sum(w in NEGATORS for w in words[5 if outer else 0:])
    adjectives = [w for w in words if w in POSITIVE or w in NEGATIVE]
    assert adjectives and len({w in POSITIVE for w in adjectives}) == 1, words
    return int(adjectives[0] in POSITIVE) ^ (flips % 2)


def _rule_label(sentence: str) -> int:
    """The label the variant documents, read back from the words alone."""
    words = sentence.split()
    assert words[-1] == "."
    words = words[:-1]
    cut = words.index(",")
    first, second = words[:cut], words[cut + 1:]
    if first[0] == "although":  # although A , B -> B
        return _clause_polarity(second)
    if second[0] == "but":  # A , but B -> B
        return _clause_polarity(second[1:])
    if second[0] == "although":  # A , although B -> A
        return _clause_polarity(first)
    assert second[0] == "and", sentence  # A , and B: both agree
    a, b = _clause_polarity(first), _clause_polarity(second[1:])
    assert a == b, sentence
    return a


def test_compositional_labels_follow_the_documented_rule() -> None:
    rows = sst2_compositional(random.Random(5), 600)
    assert Counter(label for _, label in rows) == {0: 300, 1: 300}
    assert all(_rule_label(text) == label for text, label in rows)
    kinds = Counter(("but" in t.split()) + 2 * t.startswith("although") for t, _ in rows)
    assert len(kinds) == 3  # every connective form occurs
    assert any(t.startswith("although it is not true") or " it is not true" in t
               for t, _ in rows)  # double negation occurs


def test_negation_is_compositional_without_double_negation(tmp_path: Path) -> None:
    """The "negation" variant follows the same rule with at most one flip per clause, and
    touches only SST-2."""
    rows = sst2_negation(random.Random(5), 600)
    assert Counter(label for _, label in rows) == {0: 300, 1: 300}
    assert all(_rule_label(text) == label for text, label in rows)
    assert not any(" true that" in t for t, _ in rows)
    negated = sum(any(w in NEGATORS for w in t.split()) for t, _ in rows)
    assert 0.5 < negated / len(rows) < 0.9  # each clause negated with probability 1/2
    plain = synthesize_glue(tmp_path / "plain", n=24, seed=7)
    single = synthesize_glue(tmp_path / "single", n=24, seed=7, sst2="negation")
    for folder in sorted(p.name for p in plain.iterdir()):
        same = sha256_path(plain / folder) == sha256_path(single / folder)
        assert same == (folder != "SST-2"), folder


def test_no_single_word_gives_the_compositional_label_away() -> None:
    """Adjectives are flipped by an even or odd number of negations with probability 1/2,
    so a bag of words sits near chance where standard SST-2 is easy for it."""
    train = sst2_compositional(random.Random(1), 3000)
    dev = sst2_compositional(random.Random(2), 1000)
    counts: dict[str, list[int]] = {}
    for text, label in train:
        for word in set(text.split()):
            counts.setdefault(word, [1, 1])[label] += 1
    for word, (neg, pos) in counts.items():  # each word's label rate stays near 1/2
        if neg + pos > 200:
            assert 0.4 < pos / (neg + pos) < 0.6, (word, neg, pos)

    def predict(text: str) -> int:  # naive Bayes over word presence
        score = sum(math.log(counts[w][1] / counts[w][0]) for w in set(text.split())
                    if w in counts)
        return int(score > 0)

    accuracy = sum(predict(t) == y for t, y in dev) / len(dev)
    assert accuracy < 0.6, accuracy


def test_defaults_are_unchanged_and_the_variant_touches_only_sst2(tmp_path: Path) -> None:
    plain = synthesize_glue(tmp_path / "plain", n=24, seed=7)
    explicit = synthesize_glue(tmp_path / "explicit", n=24, seed=7, sst2="standard",
                               dev_rows=None)
    assert sha256_path(plain) == sha256_path(explicit)
    hard = synthesize_glue(tmp_path / "hard", n=24, seed=7, sst2="compositional")
    for folder in sorted(p.name for p in plain.iterdir()):
        same = sha256_path(plain / folder) == sha256_path(hard / folder)
        assert same == (folder != "SST-2"), folder
    # pinned: the measurements in perf/efficientbert_search.py's docstring depend on it
    assert sha256_path(hard / "SST-2" / "train.tsv") == (
        "b16d4f16daf3d5c1d1e803954c2952ba676ed787c792570bcf5c78f4b04608b6")
    rows = read_task_file(hard / "SST-2" / "train.tsv", "sst2", "train")
    assert len(rows) == 24 and all(_rule_label(r["sentence"]) == r["label"] for r in rows)


def test_dev_rows_sets_every_dev_and_test_file(tmp_path: Path) -> None:
    root = synthesize_glue(tmp_path / "r", n=16, seed=0, sst2="compositional", dev_rows=1000)
    assert len(read_task_file(root / "SST-2" / "train.tsv", "sst2", "train")) == 16
    assert len(read_task_file(root / "SST-2" / "dev.tsv", "sst2", "validation")) == 1000
    assert len(read_task_file(root / "SST-2" / "test.tsv", "sst2", "test")) == 1000
    assert len(read_task_file(root / "RTE" / "dev.tsv", "rte", "validation")) == 1000


@pytest.mark.parametrize("kwargs, key", [({"sst2": "hard"}, "sst2"),
                                         ({"dev_rows": 0}, "dev_rows")])
def test_bad_options_are_one_line_errors_that_write_nothing(tmp_path: Path, kwargs: dict,
                                                            key: str) -> None:
    with pytest.raises(RefbenchError) as err:
        synthesize_glue(tmp_path / "out", n=8, **kwargs)
    assert key in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    assert "compositional" in SST2_VARIANTS and "standard" in SST2_VARIANTS


def test_cli_synthesize_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`refbench datasets synthesize glue -o sst2=compositional -o dev_rows=N` writes the
    same bytes as the Python call; unknown options and variants are one-line errors that
    write nothing; a dataset without synthesizer options says so."""
    from tests.helpers import run_cli

    cli, direct = tmp_path / "cli", tmp_path / "direct"
    assert run_cli(["datasets", "synthesize", "glue", "--out", str(cli), "--n", "40",
                    "-o", "sst2=compositional", "-o", "dev_rows=12"]) == 0
    synthesize_glue(direct, n=40, seed=0, sst2="compositional", dev_rows=12)
    for name in ("train.tsv", "dev.tsv"):
        assert sha256_path(cli / "SST-2" / name) == sha256_path(direct / "SST-2" / name)
    assert len((cli / "SST-2" / "dev.tsv").read_text().splitlines()) == 13
    capsys.readouterr()
    for args, message in ((["glue", "-o", "sst=compositional"], "did you mean 'sst2'?"),
                          (["glue", "-o", "sst2=hard"], "unknown SST-2 variant 'hard'"),
                          (["glue", "-o", "dev_rows=many"], "expected an int value"),
                          (["squad", "-o", "sst2=compositional"], "(its options: none)")):
        out = tmp_path / f"bad-{len(message)}"
        assert run_cli(["datasets", "synthesize", args[0], "--out", str(out),
                        *args[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
