"""coco-caption metrics on real IU X-ray reports (the R2Gen split's annotation.json and the
Open-i / Kaggle report tables in ../shared/data/iu_xray), against pycocoevalcap 1.2 where it
is installed (the `captions` extra; skipped with a reason otherwise), and against values
pycocoevalcap computed once (pinned here, so they run without it)."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest

from refbench.evaluation.captions.bleu import bleu
from refbench.evaluation.captions.cider import cider_d
from refbench.evaluation.captions.meteor import meteor, unavailable_reason
from refbench.evaluation.captions.rouge import rouge_l
from refbench.evaluation.captions.tokenize import clean_report_iu_xray, tokenize

HAS_COCO = importlib.util.find_spec("pycocoevalcap") is not None
needs_coco = pytest.mark.skipif(not HAS_COCO, reason="pycocoevalcap is not installed (the "
                                "`captions` extra): the cross-check needs it")


def _annotation(shared: Path) -> dict:
    return json.loads((shared / "iu_xray" / "r2gen_split" / "x-rgen" / "annotation.json")
                      .read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def reports(shared_data: Path) -> list[str]:
    """Every real report text: the R2Gen split and the Kaggle findings + impressions."""
    ann = _annotation(shared_data)
    out = [e["report"] for split in ann.values() for e in split]
    table = shared_data / "iu_xray" / "kaggle_openi_csv" / "indiana_reports.csv"
    with table.open(encoding="utf-8", newline="") as handle:
        out += [f"{r['findings']} {r['impression']}".strip() for r in csv.DictReader(handle)]
    return [r for r in out if r.strip()]


def test_real_split_sizes(shared_data: Path) -> None:
    ann = _annotation(shared_data)
    assert {k: len(v) for k, v in ann.items()} == {"train": 2069, "val": 296, "test": 590}


def test_pinned_values_on_real_test_reports(shared_data: Path) -> None:
    """Test studies 0-3 each scored against the next one: values pycocoevalcap 1.2 gave."""
    test = _annotation(shared_data)["test"]
    assert [e["id"] for e in test[:5]] == ["CXR3030_IM-1405", "CXR38_IM-1911",
                                           "CXR3957_IM-2022", "CXR621_IM-2203",
                                           "CXR1347_IM-0225"]
    hyps = [tokenize(test[i]["report"]) for i in range(4)]
    refs = [[tokenize(test[i + 1]["report"])] for i in range(4)]
    assert bleu(hyps, refs)[0] == [0.44067796609796034, 0.3108695945974714,
                                   0.24133923423104747, 0.1908290470153118]
    assert rouge_l(hyps, refs)[0] == 0.34703569595594413
    assert cider_d(hyps, refs)[0] == 0.4615487678506409


def _random_pairs(reports: list[str], n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    clean = [tokenize(r) for r in reports]
    hyps = [rng.choice(clean) for _ in range(n)]
    refs = [[rng.choice(clean) for _ in range(rng.choice((1, 1, 1, 2, 3)))] for _ in range(n)]
    # hand-made edge cases: raw R2Gen output with its double spaces, an empty hypothesis,
    # a hypothesis equal to its reference, a one-token reference
    raw = clean_report_iu_xray(reports[0] + " . . ")
    hyps += [raw, "", clean[1], "normal"]
    refs += [[clean[0]], [clean[2]], [clean[1]], ["."]]
    return hyps, refs


@needs_coco
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_pycocoevalcap_on_random_real_pairs(reports: list[str], seed: int) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    hyps, refs = _random_pairs(reports, 300, seed)
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    theirs_bleu, theirs_bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    ours_bleu, ours_bleu_each = bleu(hyps, refs)
    assert ours_bleu == theirs_bleu  # to the last bit
    assert np.array_equal(ours_bleu_each, np.asarray(theirs_bleu_each).T)
    theirs, theirs_each = Rouge().compute_score(gts, res)
    ours, ours_each = rouge_l(hyps, refs)
    assert ours == theirs and np.array_equal(ours_each, theirs_each)
    theirs, theirs_each = Cider().compute_score(gts, res)
    ours, ours_each = cider_d(hyps, refs)
    assert ours == theirs and np.array_equal(ours_each, theirs_each)


@pytest.mark.slow
@needs_coco
def test_meteor_equals_pycocoevalcap(reports: list[str]) -> None:
    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason())
    from pycocoevalcap.meteor.meteor import Meteor

    hyps, refs = _random_pairs(reports, 30, 2)
    hyps = [h for h in hyps if h]  # the jar answers an empty hypothesis oddly in both
    refs = refs[:len(hyps)]
    theirs, theirs_each = Meteor().compute_score({i: r for i, r in enumerate(refs)},
                                                 {i: [h] for i, h in enumerate(hyps)})
    ours, ours_each = meteor(hyps, refs)
    assert ours == theirs and ours_each.tolist() == list(theirs_each)
