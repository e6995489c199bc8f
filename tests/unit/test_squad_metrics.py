"""SQuAD metrics and the prediction format: hand-computed cases, streaming, strict reading."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from refbench.registry import get_spec
from refbench.benchmarks.formats.squad import (SquadJsonFormat, na_prob_path, read_predictions,
                                              write_predictions)
from refbench.errors import RefbenchError
from refbench.evaluation.squad import (SquadMetric, apply_no_ans_threshold, exact_match,
                                       f1_score, find_best_thresh, gold_answers,
                                       normalize_answer, normalize_answer_v1,
                                       normalize_answer_v2, score_question)
from refbench.registry import METRICS


# -- normalization ----------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("Theater of the absurd", "theater of absurd"),  # articles only as whole words
    ("A-team", "ateam"),  # punctuation goes first, so "a-" never becomes an article
    ("the", ""),
    ("  \t\n ", ""),
    ("U.S.A.", "usa"),
    ("1,000.5 $", "10005"),
    ("Café’s menu", "café’s menu"),  # U+2019 is not ASCII punctuation: kept
    ("em—dash", "em—dash"),
    ("NBSP\u00a0here\u3000too", "nbsp here too"),  # unicode whitespace splits
    ("Über the Élan", "über élan"),
    ("éthe", "éthe"),  # unicode \b: é is a word character, no article inside
    ("the\u00e9", "theé"),
])
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_v1_and_v2_normalizations_are_the_same_function() -> None:
    assert normalize_answer_v1 is normalize_answer_v2 is normalize_answer


# -- exact match and F1 -----------------------------------------------------------------
@pytest.mark.parametrize("pred,gold,v1,v2", [
    ("", "", 0.0, 1.0),  # v1.1: no shared token -> 0; v2.0: both empty -> 1
    ("", "the", 0.0, 1.0),  # "the" normalizes to nothing
    ("a", "", 0.0, 1.0),
    ("cat", "", 0.0, 0.0),
    ("", "cat", 0.0, 0.0),
    ("the cat sat", "cat sat down", 0.8, 0.8),  # p = 1, r = 2/3
    ("cat cat", "cat", 2 / 3, 2 / 3),  # shared tokens count with multiplicity
    ("Denver Broncos", "denver broncos!", 1.0, 1.0),
    ("dog", "cat", 0.0, 0.0),
])
def test_f1_score(pred: str, gold: str, v1: float, v2: float) -> None:
    assert f1_score(pred, gold, version="1.1") == pytest.approx(v1, abs=1e-12)
    assert f1_score(pred, gold, version="2.0") == pytest.approx(v2, abs=1e-12)


def test_exact_match_quirks() -> None:
    assert exact_match("", "the") == 1  # both normalize to "" (even in v1.1)
    assert exact_match("The Cat.", "cat") == 1
    assert exact_match("cats", "cat") == 0


def test_gold_answers_per_version() -> None:
    assert gold_answers(["the", "Paris"], "2.0") == ["Paris"]
    assert gold_answers(["the"], "2.0") == [""]
    assert gold_answers([], "2.0") == [""]
    assert gold_answers(["the", "Paris"], "1.1") == ["the", "Paris"]
    with pytest.raises(RefbenchError, match="at least one gold"):
        gold_answers([], "1.1")
    # max over golds; a gold that normalizes away is ignored in v2.0 only
    assert score_question("", ["the", "Paris"], "2.0") == (0.0, 0.0)
    assert score_question("", ["the", "Paris"], "1.1") == (1.0, 0.0)
    assert score_question("in Paris", ["Paris", "France"], "2.0") == (0.0, pytest.approx(2 / 3))


# -- best threshold ---------------------------------------------------------------------
def test_find_best_thresh_hand_computed() -> None:
    # q1 answerable, right (1), na .2 | q2 unanswerable, answered "y", na .4
    # q3 answerable, wrong (0), na .1 | q4 unanswerable, abstains, na .9 | q5 right, na .6
    preds = {"q1": "x", "q2": "y", "q3": "z", "q4": "", "q5": "w"}
    scores = {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 1.0, "q5": 1.0}
    na = {"q1": 0.2, "q2": 0.4, "q3": 0.1, "q4": 0.9, "q5": 0.6}
    has = {"q1": True, "q2": False, "q3": True, "q4": False, "q5": True}
    # start 2 (both unanswerable right); q3 +0 = 2; q1 +1 = 3 (best, at .2); q2 -1 = 2;
    # q5 +1 = 3 (not better); q4 +0 = 3  ->  3 / 5
    assert find_best_thresh(preds, scores, na, has) == (60.0, 0.2)
    # partial credit: F1 0.5 on q5 and 0.25 on q3
    f1 = {**scores, "q5": 0.5, "q3": 0.25}
    # 2; q3 2.25 (best at .1); q1 3.25 (best at .2); q2 2.25; q5 2.75; q4 2.75
    assert find_best_thresh(preds, f1, na, has) == (65.0, 0.2)
    # nothing beats "no answer everywhere": 0.0 is returned
    assert find_best_thresh({"a": "x"}, {"a": 0.0}, {"a": 0.3}, {"a": False}) == (100.0, 0.0)


def test_find_best_thresh_ties_follow_the_na_prob_order() -> None:
    preds = {"a": "x", "b": "x"}
    scores = {"a": 1.0, "b": 0.0}
    has = {"a": True, "b": False}
    # a first: 1 -> 2 (best, .5) -> 1;  b first: 1 -> 0 -> 1, never better
    assert find_best_thresh(preds, scores, {"a": 0.5, "b": 0.5}, has) == (100.0, 0.5)
    assert find_best_thresh(preds, scores, {"b": 0.5, "a": 0.5}, has) == (50.0, 0.0)


# -- the metric class -------------------------------------------------------------------
def _five() -> tuple[list, list]:
    preds = [{"text": "Paris", "na_prob": 0.2}, {"text": "y", "na_prob": 0.4},
             {"text": "London", "na_prob": 0.1}, {"text": "", "na_prob": 0.9},
             {"text": "the Seine", "na_prob": 0.6}]
    refs = [["Paris"], [], ["Berlin", "berlin city"], [], ["Seine", "the river Seine"]]
    return preds, refs


def test_v2_metric_hand_computed() -> None:
    preds, refs = _five()
    metric = SquadMetric(version="2.0")
    metric.update(preds, refs)
    out = metric.compute()
    assert list(out) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                         "NoAns_exact", "NoAns_f1", "NoAns_total", "best_exact",
                         "best_exact_thresh", "best_f1", "best_f1_thresh"]
    assert out["exact"] == pytest.approx(60.0) and out["f1"] == pytest.approx(60.0)
    assert out["HasAns_exact"] == pytest.approx(200 / 3) and out["HasAns_total"] == 3
    assert out["NoAns_exact"] == pytest.approx(50.0) and out["NoAns_total"] == 2
    assert (out["best_exact"], out["best_exact_thresh"]) == (pytest.approx(60.0), 0.2)
    # threshold .5: q5 (na .6, answerable) becomes "no answer" -> 0; q4 stays right
    strict = SquadMetric(version="2.0", na_prob_thresh=0.5)
    strict.update(preds, refs)
    values = strict.compute()
    assert values["exact"] == pytest.approx(40.0) and values["NoAns_exact"] == pytest.approx(50.0)
    assert values["best_exact"] == out["best_exact"]  # raw scores: the threshold plays no part


BEST_KEYS = {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}


def test_v2_keys_only_for_kinds_present_and_best_only_with_na_probs() -> None:
    """Like evaluate-v2.0.py, which prints best_* only with --na-prob-file."""
    metric = SquadMetric(version="2.0")
    metric.update(["Paris", "x"], [["Paris"], ["Rome"]])
    out = metric.compute()
    assert "NoAns_total" not in out and out["HasAns_total"] == 2
    assert not BEST_KEYS & set(out) and out["f1"] == pytest.approx(50.0)
    # with na_probs (an na-prob file): the best_* keys; one without counts as na_prob 0
    given = SquadMetric(version="2.0")
    given.update([{"text": "Paris", "na_prob": 0.0}, "x"], [["Paris"], ["Rome"]])
    out = given.compute()
    assert BEST_KEYS <= set(out)
    # all na_probs 0: best is the best prefix in update order -> 1 of 2 at threshold 0
    assert out["best_exact"] == pytest.approx(50.0) and out["best_exact_thresh"] == 0.0
    # merging keeps them when either part had na_probs
    plain = SquadMetric(version="2.0")
    plain.update(["x"], [["Rome"]])
    with_probs = SquadMetric(version="2.0")
    with_probs.update([{"text": "Paris", "na_prob": 0.3}], [["Paris"]])
    plain.merge(with_probs)
    assert BEST_KEYS <= set(plain.compute())


def test_f1_is_the_max_over_every_gold_answer() -> None:
    """The prediction matches the SECOND gold answer best: F1 (both versions) must be that
    answer's 2/3, not the first's 0 or the last's 1/2."""
    golds = ["city of Paris", "the river Seine in Paris", "a long river"]
    assert [f1_score("Seine river", g) for g in golds] == [0.0, pytest.approx(2 / 3), 0.5]
    for version in ("1.1", "2.0"):
        assert score_question("Seine river", golds, version) == (0.0, pytest.approx(2 / 3))
        metric = SquadMetric(version=version)
        metric.update(["Seine river", "Paris"], [golds, ["London", "paris"]])
        out = metric.compute()
        assert out["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2), version
        assert out["exact" if version == "2.0" else "exact_match"] == pytest.approx(50.0)


def test_no_answer_threshold_is_strictly_greater() -> None:
    """An na_prob exactly equal to the threshold is NOT "no answer" (the script's
    `na_probs[qid] > na_prob_thresh`); just above it is."""
    assert apply_no_ans_threshold(1.0, 0.5, True, 0.5) == 1.0
    assert apply_no_ans_threshold(0.0, 0.5, False, 0.5) == 0.0
    above = math.nextafter(0.5, 1.0)
    assert apply_no_ans_threshold(1.0, above, True, 0.5) == 0.0
    assert apply_no_ans_threshold(0.0, above, False, 0.5) == 1.0
    refs = [["Paris"], []]
    at = SquadMetric(version="2.0", na_prob_thresh=0.5)
    at.update([{"text": "Paris", "na_prob": 0.5}, {"text": "x", "na_prob": 0.5}], refs)
    out = at.compute()
    assert (out["HasAns_exact"], out["NoAns_exact"]) == (100.0, 0.0)  # both still answers
    over = SquadMetric(version="2.0", na_prob_thresh=0.5)
    over.update([{"text": "Paris", "na_prob": above}, {"text": "x", "na_prob": above}], refs)
    out = over.compute()
    assert (out["HasAns_exact"], out["NoAns_exact"]) == (0.0, 100.0)  # both "no answer"


def test_missing_predictions_score_zero() -> None:
    metric = SquadMetric(version="2.0")
    metric.update([{"text": "Paris", "na_prob": 0.0}, None, None], [["Paris"], ["Rome"], []])
    out = metric.compute()
    assert out["exact"] == pytest.approx(100 / 3) and out["total"] == 3
    assert out["HasAns_exact"] == pytest.approx(50.0) and out["NoAns_exact"] == 0.0
    assert out["best_exact"] == pytest.approx(100 / 3)  # a missing abstention is not credited
    v1 = SquadMetric(version="1.1")
    v1.update(["Paris", None], [["Paris"], ["Rome"]])
    assert v1.compute() == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(50.0)}


def test_ties_use_the_order_field() -> None:
    refs = [["Paris"], []]
    first = SquadMetric(version="2.0")
    first.update([{"text": "Paris", "na_prob": 0.5, "order": 0},
                  {"text": "x", "na_prob": 0.5, "order": 1}], refs)
    second = SquadMetric(version="2.0")
    second.update([{"text": "Paris", "na_prob": 0.5, "order": 1},
                   {"text": "x", "na_prob": 0.5, "order": 0}], refs)
    assert first.compute()["best_exact"] == pytest.approx(100.0)
    assert second.compute()["best_exact"] == pytest.approx(50.0)


def test_streaming_update_and_merge_equal_one_shot() -> None:
    rng = random.Random(3)
    words = ["Paris", "the Seine", "river", "in 1998", "Maria Lopez", "a red car", ""]
    refs, preds = [], []
    for i in range(300):
        gold = [] if i % 3 == 0 else rng.sample(words[:-1], rng.randint(1, 3))
        refs.append(gold)
        preds.append(None if i % 17 == 0 else {"text": rng.choice(words),
                                                "na_prob": round(rng.random(), 1)})
    for version in ("2.0", "1.1"):
        if version == "1.1":
            refs = [r or ["Paris"] for r in refs]
            preds = [p if p is None else {"text": p["text"], "na_prob": None} for p in preds]
        whole = SquadMetric(version=version, na_prob_thresh=1.0)
        whole.update(preds, refs)
        parts = [SquadMetric(version=version) for _ in range(3)]
        for k, (start, stop) in enumerate([(0, 70), (70, 71), (71, 300)]):
            for a in range(start, stop, 25):  # several updates per process
                b = min(a + 25, stop)
                parts[k].update(preds[a:b], refs[a:b])
        parts[0].merge(parts[1])
        parts[0].merge(parts[2])
        assert parts[0].compute() == whole.compute()


def test_metric_input_errors() -> None:
    with pytest.raises(RefbenchError, match="unknown SQuAD version"):
        SquadMetric(version="3.0")
    with pytest.raises(RefbenchError, match="v2.0 only"):
        SquadMetric(version="1.1", na_prob_thresh=0.5)
    with pytest.raises(RefbenchError, match="finite"):
        SquadMetric(version="2.0", na_prob_thresh=float("nan"))
    metric = SquadMetric(version="2.0")
    with pytest.raises(RefbenchError, match="2 predictions but 1 references"):
        metric.update(["a", "b"], [["a"]])
    with pytest.raises(RefbenchError, match="prediction 0: text must be a string"):
        metric.update([{"text": 3}], [["a"]])
    with pytest.raises(RefbenchError, match="na_prob must be a finite number"):
        metric.update([{"text": "a", "na_prob": float("nan")}], [["a"]])
    with pytest.raises(RefbenchError, match="reference 0: expected a list"):
        metric.update(["a"], ["a"])
    with pytest.raises(RefbenchError, match="reference 0: a SQuAD v1.1 question needs"):
        SquadMetric(version="1.1").update(["a"], [[]])
    with pytest.raises(RefbenchError, match="no SQuAD questions"):
        metric.compute()
    with pytest.raises(TypeError):
        metric.merge(SquadMetric(version="1.1"))


def test_registration_and_directions() -> None:
    entry = METRICS.entry("squad")
    assert entry.obj is SquadMetric and entry.meta["version"] == "1"
    assert SquadMetric(version="1.1").output_keys() == ["exact_match", "f1"]
    assert set(SquadMetric(version="2.0").output_keys()) <= set(SquadMetric.keys)
    # every key has an explicit direction; scores are higher-is-better
    assert set(SquadMetric.directions) == set(SquadMetric.keys)
    assert SquadMetric(version="2.0").higher_is_better("best_f1", default=False)


# -- the prediction format --------------------------------------------------------------
@pytest.fixture()
def v2_spec():
    return get_spec("squad-v2.0")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_predictions_and_na_probs(tmp_path: Path, v2_spec) -> None:
    preds = _write(tmp_path / "p.json", '{"q1": "Paris", "q2": ""}')
    na = _write(tmp_path / "na.json", '{"x": 0.3, "q2": 0.9, "q1": 0.25}')
    fmt = SquadJsonFormat()
    assert fmt.read(preds, v2_spec) == {"q1": {"text": "Paris", "na_prob": None, "order": 0},
                                        "q2": {"text": "", "na_prob": None, "order": 1}}
    # order = position in the na-prob file; extra na-prob ids are ignored like the script
    assert fmt.read(preds, v2_spec, {"na_prob_file": na}) == {
        "q1": {"text": "Paris", "na_prob": 0.25, "order": 2},
        "q2": {"text": "", "na_prob": 0.9, "order": 1}}


@pytest.mark.parametrize("name,text,na_text,match,line", [
    ("invalid JSON", '{\n "q1": "a",\n "q2": \n}', None, r"p\.json:4: invalid JSON", 4),
    ("not an object", '["a", "b"]', None, r"p\.json:1: expected one JSON object", 1),
    ("non-string", '{\n "q1": "a",\n "q2": 7\n}', None,
     r"p\.json:3 \[q2\]: the prediction of question 'q2' must be a string", 3),
    ("duplicate", '{\n "q1": "a",\n "q1": "b"\n}', None,
     r"p\.json:3 \[q1\]: duplicate question id 'q1'", 3),
    ("NaN na_prob", '{"q1": "a", "q2": ""}', '{\n "q1": 0.5,\n "q2": NaN\n}',
     r"na\.json:3 \[q2\]: the na_prob of question 'q2' must be a finite number", 3),
    ("string na_prob", '{"q1": "a"}', '{"q1": "0.5"}', r"na\.json:1 \[q1\]: the na_prob", 1),
    ("boolean na_prob", '{"q1": "a"}', '{"q1": true}', r"na\.json:1 \[q1\]: the na_prob", 1),
    ("na_prob missing", '{"q1": "a", "q2": ""}', '{"q1": 0.5}',
     r"na\.json \[q2\]: no na_prob for question 'q2'", None),
])
def test_strict_reading_errors(tmp_path: Path, v2_spec, name: str, text: str,
                               na_text: str | None, match: str, line: int | None) -> None:
    preds = _write(tmp_path / "p.json", text)
    options = None if na_text is None else {"na_prob_file": _write(tmp_path / "na.json", na_text)}
    with pytest.raises(RefbenchError, match=match) as err:
        SquadJsonFormat().read(preds, v2_spec, options)
    assert "\n" not in str(err.value) and err.value.line == line


def test_na_prob_file_is_refused_for_v11(tmp_path: Path) -> None:
    preds = _write(tmp_path / "p.json", '{"q1": "a"}')
    with pytest.raises(RefbenchError, match="v2.0 only"):
        SquadJsonFormat().read(preds, get_spec("squad-v1.1"),
                               {"na_prob_file": _write(tmp_path / "na.json", '{"q1": 1}')})
    with pytest.raises(RefbenchError, match="unknown read option"):
        SquadJsonFormat().read(preds, get_spec("squad-v1.1"), {"na_prob": 1})


def test_write_round_trip_and_companion(tmp_path: Path, v2_spec) -> None:
    fmt = SquadJsonFormat()
    path = tmp_path / "predictions.json"
    fmt.write(path, {"q1": {"text": "Zoë", "na_prob": 0.1}, "q2": {"text": "", "na_prob": 0.8}},
              v2_spec)
    companion = tmp_path / "predictions.na_prob.json"
    assert na_prob_path(path) == companion
    assert json.loads(path.read_text(encoding="utf-8")) == {"q1": "Zoë", "q2": ""}
    assert json.loads(companion.read_text()) == {"q1": 0.1, "q2": 0.8}
    assert fmt.companions(path, v2_spec) == {"na_prob_file": companion}
    back = fmt.read(path, v2_spec, fmt.companions(path, v2_spec))
    assert {k: (v["text"], v["na_prob"]) for k, v in back.items()} == {"q1": ("Zoë", 0.1),
                                                                        "q2": ("", 0.8)}
    # a later write without na_probs removes the stale companion
    fmt.write(path, {"q1": "Paris"}, v2_spec)
    assert not companion.exists() and fmt.companions(path, v2_spec) == {}
    assert read_predictions(path) == {"q1": {"text": "Paris", "na_prob": None, "order": 0}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.json"]


@pytest.mark.parametrize("predictions,config,match", [
    ({"q1": {"text": "a", "na_prob": 0.1}, "q2": "b"}, "v2.0", "'q2' has no na_prob"),
    ({"q1": {"text": "a", "na_prob": float("nan")}}, "v2.0", "finite number"),
    ({"q1": 3}, "v2.0", "'q1' must be a string"),
    ({1: "a"}, "v2.0", "ids are strings"),
    ({"q1": {"text": "a", "na_prob": 0.5}}, "v1.1", "SQuAD v1.1 has no unanswerable"),
    ({"q1": {"text": "a", "score": 2}}, "v2.0", "unknown field"),
])
def test_write_errors_write_nothing(tmp_path: Path, predictions: dict, config: str,
                                    match: str) -> None:
    with pytest.raises(RefbenchError, match=match):
        write_predictions(tmp_path / "predictions.json", predictions, config)
    assert list(tmp_path.iterdir()) == []


# -- the evaluate command's SQuAD options ----------------------------------------------
def _run_cli(args: list[str]) -> int:
    from refbench.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_na_prob_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from refbench.datasets.squad.synth import synthesize_squad

    root = synthesize_squad(tmp_path / "squad", n=8, seed=0)
    dev = root / "dev-v2.0.json"
    qas = [qa for a in json.loads(dev.read_text())["data"] for p in a["paragraphs"]
           for qa in p["qas"]]
    # answer everything with the first answer / plausible answer: unanswerable ones are
    # wrong unless the na-prob file and threshold turn them into "no answer"
    preds = {qa["id"]: (qa["answers"] or qa["plausible_answers"])[0]["text"] for qa in qas}
    na = {qa["id"]: 0.9 if qa["is_impossible"] else 0.2 for qa in qas}
    pred_path = _write(tmp_path / "predictions.json", json.dumps(preds))
    na_path = _write(tmp_path / "na.json", json.dumps(na))
    base = ["evaluate", "squad-v2.0", "-p", str(pred_path), "--references", str(dev), "--json"]
    assert _run_cli(base) == 0
    plain = json.loads(capsys.readouterr().out)["metrics"]
    assert plain["NoAns_exact"] == 0.0 and plain["HasAns_exact"] == 100.0
    assert _run_cli(base + ["--na-prob-file", str(na_path)]) == 0  # 0.9 > 1.0 is false
    assert json.loads(capsys.readouterr().out)["metrics"]["exact"] == plain["exact"]
    assert _run_cli(base + ["--na-prob-file", str(na_path), "--na-prob-thresh", "0.5"]) == 0
    tuned = json.loads(capsys.readouterr().out)["metrics"]
    assert tuned["exact"] == 100.0 and tuned["best_exact"] == 100.0
    assert tuned["best_exact_thresh"] == 0.2
    # the options belong to SQuAD v2.0: refused elsewhere with a one-line error, exit 2
    v1 = ["evaluate", "squad-v1.1", "-p", str(pred_path), "--references", str(dev)]
    assert _run_cli(v1 + ["--na-prob-file", str(na_path)]) == 2
    assert _run_cli(["evaluate", "glue-sst2", "-p", str(pred_path), "--na-prob-thresh",
                     "0.5"]) == 2
    err = capsys.readouterr().err
    assert "v2.0 only" in err
    assert "unknown option '--na-prob-thresh' for benchmark glue-sst2" in err
