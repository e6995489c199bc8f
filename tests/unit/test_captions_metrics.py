"""coco-caption metrics, tokenizers and term metrics: hand-computed values, the constants
pycocoevalcap's code fixes, and the edge cases its code defines (no pycocoevalcap needed)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from refbench.errors import RefbenchError
from refbench.evaluation.captions import bleu as bleu_mod
from refbench.evaluation.captions import cider as cider_mod
from refbench.evaluation.captions import rouge as rouge_mod
from refbench.evaluation.captions import tokenize as tok
from refbench.evaluation.captions.bleu import bleu
from refbench.evaluation.captions.cider import cider_d
from refbench.evaluation.captions.metric import ReportGeneration, ReportPrediction, ReportReference
from refbench.evaluation.captions.rouge import lcs_length, rouge_l
from refbench.evaluation.captions.terms import term_metrics


def test_constants_are_pycocoevalcaps() -> None:
    assert (bleu_mod.SMALL, bleu_mod.TINY) == (1e-9, 1e-15)
    assert rouge_mod.BETA == 1.2
    assert cider_mod.SIGMA == 6.0
    assert (tok.R2GEN_MAX_SEQ_LENGTH, tok.R2GEN_THRESHOLD) == (60, 3)
    assert tok.UNK == "<unk>"


def test_bleu_by_hand() -> None:
    corpus, per_pair = bleu(["a b c d"], [["a b c e"]])
    assert corpus[0] == pytest.approx(0.75, abs=1e-9)
    assert corpus[1] == pytest.approx(math.sqrt(0.5), abs=1e-9)
    assert corpus[2] == pytest.approx(0.25 ** (1 / 3), abs=1e-9)
    # no matching 4-gram: the 1e-15 / 1e-9 smoothing, not 0 and not an error
    assert corpus[3] == pytest.approx((0.25 * 1e-15 / (1 + 1e-9)) ** 0.25, rel=1e-9)
    assert per_pair.shape == (1, 4) and per_pair[0].tolist() == corpus


def test_bleu_closest_reference_length_and_brevity() -> None:
    # hypothesis of 2 tokens; references of 1 and 3 tokens are equally close: the shorter
    # one (1) is taken, so no brevity penalty although the other reference is longer
    corpus, _ = bleu(["a b"], [["a", "a b c"]])
    assert corpus[0] == pytest.approx(1.0, abs=1e-9)
    # a single 4-token reference: ratio 2/4, penalty exp(1 - 2)
    corpus, _ = bleu(["a b"], [["a b c d"]])
    assert corpus[0] == pytest.approx(math.exp(-1), abs=1e-9)


def test_bleu_clips_to_the_max_count_over_references() -> None:
    corpus, _ = bleu(["the the the"], [["the cat", "the the dog"]])
    assert corpus[0] == pytest.approx(2 / 3, abs=1e-9)


def test_lcs_against_dynamic_programme() -> None:
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 70))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = (table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1]
                               else max(table[i - 1][j], table[i][j - 1]))
        assert lcs_length(a, b) == table[-1][-1]


def test_rouge_by_hand_and_single_space_split() -> None:
    assert rouge_l(["a b c d"], [["a b c e"]])[0] == pytest.approx(0.75)
    # P = 3/3, R = 3/4: F = 2.44 * 0.75 / (0.75 + 1.44)
    assert rouge_l(["a b c"], [["a b c e"]])[0] == pytest.approx(2.44 * 0.75 / 2.19)
    # a double space is an empty token for ROUGE-L (not for BLEU)
    assert rouge_l(["a  b"], [["a b"]])[0] != rouge_l(["a b"], [["a b"]])[0]
    assert bleu(["a  b"], [["a b"]])[0] == bleu(["a b"], [["a b"]])[0]
    # precision and recall maxima may come from different references
    value = rouge_l(["a b"], [["a", "a b x y"]])[0]
    p, r = 1.0, 1.0  # P from "a b x y" (2/2), R from "a" (1/1)
    assert value == pytest.approx((1 + 1.44) * p * r / (r + 1.44 * p))


def test_cider_by_hand() -> None:
    # two pairs: IDF = log 2 for every n-gram (each is in one pair's reference, or none)
    value, per_pair = cider_d(["a b", "c d"], [["a b"], ["c e"]])
    assert per_pair.tolist() == pytest.approx([5.0, 1.25])
    assert value == pytest.approx(3.125)
    # a single pair: log(1) - log(1) = 0 weights, so 0
    assert cider_d(["a b"], [["a b"]])[0] == 0.0


def test_cider_length_penalty_counts_bigrams() -> None:
    hyps, refs = ["x y z w", "p"], [["x y z w v u"], ["q"]]
    _, per_pair = cider_d(hyps, refs)
    delta = 3 - 5  # bigram counts 3 and 5
    base = cider_d(["x y z w", "p"], [["x y z w"], ["q"]])[1][0]
    assert per_pair[0] < base
    assert math.exp(-(delta ** 2) / (2 * 36.0)) == pytest.approx(np.e ** (-4 / 72))


def test_pairs_are_checked() -> None:
    with pytest.raises(RefbenchError, match="2 hypotheses for 1"):
        bleu(["a", "b"], [["a"]])
    with pytest.raises(RefbenchError, match="non-empty list"):
        cider_d(["a"], [[]])


def test_r2gen_cleaning() -> None:
    report = ("1. The heart is normal in size.. 2. No effusion;  no pneumothorax! "
              "3. XXXX degenerative changes (T-spine)")
    cleaned = tok.clean_report_iu_xray(report)
    # ";" goes, the double space it leaves stays; "-" is not in R2Gen's class (":-[" is a
    # range there, not a hyphen)
    assert cleaned == ("the heart is normal in size . no effusion  no pneumothorax . "
                       "xxxx degenerative changes t-spine .")
    assert tok.tokenize(report).split(" ") == cleaned.split()
    # R2Gen keeps empty sentences, which leaves a double space; the tokens are single-spaced
    assert tok.clean_report_iu_xray("Normal. . Clear.") == "normal .  . clear ."
    assert tok.tokenize("Normal. . Clear.") == "normal . . clear ."


def test_r2gen_deleted_characters_are_its_regex_class() -> None:
    # R2Gen's class [.,?;*!%^&_+():-\[\]{}] holds the range ':'..'[' (A-Z, <, =, >, @ too)
    deleted = "".join(c for c in map(chr, range(33, 127))
                      if tok._clean_sentence("x" + c + "y") == "xy")
    assert deleted == "!\"%&'()*+,./:;<=>?@[\\]^_{}"


def test_chinese_tokenizers() -> None:
    assert tok.tokenize("两肺 纹理清晰。", "chinese_char") == "两 肺 纹 理 清 晰 。"
    import importlib.util

    if importlib.util.find_spec("jieba") is None:
        with pytest.raises(RefbenchError, match="pip install jieba"):
            tok.tokenizer("chinese_word")
    with pytest.raises(RefbenchError, match="unknown report tokenizer"):
        tok.tokenizer("bpe")


def test_r2gen_quirks() -> None:
    train = ["Heart normal. Lungs clear."] * 3 + ["Rare word here."]
    quirks = tok.R2GenQuirks.from_training_reports(train)
    assert "heart" in quirks.vocabulary and "rare" not in quirks.vocabulary
    long = ["heart"] * 70
    assert len(quirks.reference(long)) == 59
    assert quirks.unk(["rare", "heart"]) == ["<unk>", "heart"]
    assert "sha256=" in repr(quirks)
    with pytest.raises(RefbenchError, match="max_seq_length"):
        tok.R2GenQuirks.from_training_reports(train, max_seq_length=1)
    with pytest.raises(RefbenchError, match="training reports"):
        tok.R2GenQuirks.from_training_reports([])


def test_terms_equal_sklearn() -> None:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
    from sklearn.preprocessing import MultiLabelBinarizer

    rng = random.Random(1)
    vocab = ["cardiomegaly", "effusion", "opacity", "nodule", "normal"]
    refs = [tuple(t for t in vocab if rng.random() < 0.4) for _ in range(40)]
    preds = [tuple(t for t in vocab + ["outside"] if rng.random() < 0.4) for _ in range(40)]
    scores = [{t: rng.random() for t in vocab} for _ in range(40)]
    result = term_metrics(preds, refs, scores)
    labels = sorted({t for r in refs for t in r})
    binarizer = MultiLabelBinarizer(classes=labels)
    y = binarizer.fit_transform(refs)
    with pytest.warns(UserWarning):  # "outside" is an unknown class, as refbench counts it
        p = binarizer.transform(preds)
    for avg in ("micro", "macro"):
        assert result.values[f"terms/precision_{avg}"] == pytest.approx(
            precision_score(y, p, average=avg, zero_division=0))
        assert result.values[f"terms/recall_{avg}"] == pytest.approx(
            recall_score(y, p, average=avg, zero_division=0))
        assert result.values[f"terms/F1_{avg}"] == pytest.approx(
            f1_score(y, p, average=avg, zero_division=0))
    s = np.array([[row[t] for t in labels] for row in scores])
    aucs = [roc_auc_score(y[:, j], s[:, j]) for j in range(len(labels))]
    assert result.values["terms/AUC_macro"] == pytest.approx(np.mean(aucs))
    assert result.counts["terms/outside_label_set"] == sum("outside" in x for x in preds)


def test_metric_counts_warnings_and_merge() -> None:
    refs = [ReportReference("Heart normal. Lungs clear.", ("normal",)),
            ReportReference("Small effusion.", ("effusion",))]
    preds = [ReportPrediction("Heart normal.", term_scores=(("normal", 0.9),)),
             ReportPrediction("...", term_scores=(("effusion", 0.2),))]
    whole = ReportGeneration(meteor=False)
    whole.update(preds, refs)
    a, b = ReportGeneration(meteor=False), ReportGeneration(meteor=False)
    a.update(preds[:1], refs[:1])
    b.update(preds[1:], refs[1:])
    a.merge(b)
    assert a.compute() == whole.compute()
    values = whole.compute()
    assert "METEOR" not in values
    assert values["terms/recall_micro"] == 0.5  # effusion scored 0.2 < 0.5
    counts = whole.counts()
    # R2Gen's cleaning always ends with " .", so no report is empty after it
    assert counts["reports/scored"] == 2 and counts["reports/empty_after_tokenization"] == 0
    assert any("only 2 reports" in w for w in whole.warnings())
    with pytest.raises(RefbenchError, match="no argument"):
        ReportGeneration(bleu_n=3)


def test_empty_report_after_tokenization_is_counted() -> None:
    metric = ReportGeneration(tokenizer="whitespace", meteor=False)
    metric.update(["  ", "a b"], ["a b", "a b"])
    metric.compute()
    assert metric.counts()["reports/empty_after_tokenization"] == 1
    assert any("hold no token" in w for w in metric.warnings())


def test_metric_quirks_need_the_vocabulary() -> None:
    metric = ReportGeneration(r2gen_quirks=True, meteor=False)
    with pytest.raises(RefbenchError, match="training vocabulary"):
        metric.update(["a"], [ReportReference("a")])
