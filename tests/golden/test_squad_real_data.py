"""SQuAD on real data: the official dev subsets parse, and the official prediction files of
real leaderboard models score exactly like the official scripts' definitions.

The expected numbers come from `_official_v1` / `_official_v2` below: a second, compact
implementation written in this test straight from the semantics of `evaluate-v1.1.py` and
`evaluate-v2.0.py`, reading the raw JSON files itself. Nothing of refbench's SQuAD reader
or metric is used for them.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.base import NOT_A_FOLDER
from refbench.datasets.squad.builder import SquadBuilder
from refbench.errors import RefbenchError

V1_DEV = "squad/v1.1/xquad.en.json"
V2_DEV = "squad/v2.0/dev-v2.0.first-2-articles.json"
V1_MODELS = ["bert_ensemble_google", "logistic_regression_baseline", "r-net_plus_ensemble_msra",
             "match-lstm_boundary_ensemble_smu", "slqa_plus_ensemble_alibaba"]
V2_MODELS = ["bert_single_google", "bidaf_self_attention_elmo", "nlnet_single_msra"]
#: question ids of the XQuAD subset that a leaderboard file has no prediction for
REALLY_MISSING = {"logistic_regression_baseline": 2}


# -- the official definitions, written independently -------------------------------------
def _norm(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _f1(pred: str, gold: str, v2: bool) -> float:
    p, g = _norm(pred).split(), _norm(gold).split()
    if v2 and (not p or not g):
        return float(p == g)
    same = sum((Counter(p) & Counter(g)).values())
    if not same:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _questions(dev: Path) -> list[dict]:
    data = json.loads(dev.read_text(encoding="utf-8"))["data"]
    return [qa for article in data for para in article["paragraphs"] for qa in para["qas"]]


def _official_v1(dev: Path, preds: dict[str, str]) -> dict[str, float]:
    questions = _questions(dev)
    em = f1 = 0.0
    for qa in questions:
        if qa["id"] not in preds:
            continue  # "will receive score 0", still counted in the total
        golds = [a["text"] for a in qa["answers"]]
        em += max(float(_norm(preds[qa["id"]]) == _norm(g)) for g in golds)
        f1 += max(_f1(preds[qa["id"]], g, v2=False) for g in golds)
    return {"exact_match": 100.0 * em / len(questions), "f1": 100.0 * f1 / len(questions)}


def _official_v2(dev: Path, preds: dict[str, str], na_probs: dict[str, float] | None = None,
                 thresh: float = 1.0) -> dict[str, float]:
    """evaluate-v2.0.py's numbers. Missing predictions score 0 over the full total (the
    script itself dies on them; refbench documents this reading). Like the script, the
    best_* keys only with an na-prob file."""
    questions = _questions(dev)
    with_na_file = na_probs is not None
    if na_probs is None:
        na_probs = {k: 0.0 for k in preds}
    has_ans = {qa["id"]: bool(qa["answers"]) for qa in questions}
    raw_em: dict[str, float] = {}
    raw_f1: dict[str, float] = {}
    for qa in questions:
        if qa["id"] not in preds:
            continue
        golds = [a["text"] for a in qa["answers"] if _norm(a["text"])] or [""]
        pred = preds[qa["id"]]
        raw_em[qa["id"]] = max(float(_norm(pred) == _norm(g)) for g in golds)
        raw_f1[qa["id"]] = max(_f1(pred, g, v2=True) for g in golds)

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        return {q: (float(not has_ans[q]) if q in raw and na_probs[q] > thresh
                    else raw.get(q, 0.0)) for q in has_ans}

    em_t, f1_t = thresholded(raw_em), thresholded(raw_f1)
    out: dict[str, float] = {}
    for prefix, ids in (("", list(has_ans)), ("HasAns_", [q for q in has_ans if has_ans[q]]),
                        ("NoAns_", [q for q in has_ans if not has_ans[q]])):
        if ids:
            out[prefix + "exact"] = 100.0 * sum(em_t[q] for q in ids) / len(ids)
            out[prefix + "f1"] = 100.0 * sum(f1_t[q] for q in ids) / len(ids)
            out[prefix + "total"] = float(len(ids))
    searched = (("exact", raw_em), ("f1", raw_f1)) if with_na_file else ()
    for name, raw in searched:
        score = best = float(sum(1 for q in raw if not has_ans[q]))
        best_thresh = 0.0
        for q in sorted(na_probs, key=lambda k: na_probs[k]):
            if q not in raw:
                continue
            score += raw[q] if has_ans[q] else (-1.0 if preds[q] else 0.0)
            if score > best:
                best, best_thresh = score, na_probs[q]
        out[f"best_{name}"] = 100.0 * best / len(has_ans)
        out[f"best_{name}_thresh"] = best_thresh
    return out


# -- fixtures ----------------------------------------------------------------------------
def _restricted(shared: Path, version: str, model: str, dev: Path, out: Path) -> Path:
    """The model's dev prediction file cut down to the questions of `dev` (the Stanford
    logistic-regression file really lacks 2 of them: they stay missing)."""
    full = json.loads((shared / "squad" / "predictions" / version / f"{model}.json")
                      .read_text(encoding="utf-8"))
    ids = [qa["id"] for qa in _questions(dev)]
    missing = [q for q in ids if q not in full]
    assert len(missing) == REALLY_MISSING.get(model, 0), missing
    out.write_text(json.dumps({q: full[q] for q in ids if q in full}), encoding="utf-8")
    return out


def _root(shared: Path, tmp_path: Path) -> Path:
    """A SQuAD root of the real subsets under the official names (train = the same file:
    only dev subsets exist here)."""
    root = tmp_path / "squad"
    root.mkdir()
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (root / name).symlink_to(shared / V1_DEV)
    for name in ("train-v2.0.json", "dev-v2.0.json"):
        (root / name).symlink_to(shared / V2_DEV)
    return root


# -- the dev subsets parse --------------------------------------------------------------
def test_real_dev_subsets_check_and_prepare(shared_data: Path, tmp_path: Path) -> None:
    from refbench.datasets.base import load_prepared
    from refbench.datasets.squad.builder import SquadBuilder

    root = _root(shared_data, tmp_path)
    builder = SquadBuilder()
    report = builder.check(root)
    assert report.ok, report.problems
    manifest = builder.prepare(root, tmp_path / "cache")
    assert manifest["splits"] == {"v1.1": {"train": 1190, "validation": 1190},
                                  "v2.0": {"train": 626, "validation": 626}}
    v2 = load_prepared("squad", split="validation", config="v2.0",
                       cache_dir=str(tmp_path / "cache"))
    assert sum(v2["is_impossible"]) == 333
    raw = _questions(shared_data / V2_DEV)
    assert v2["id"] == [qa["id"] for qa in raw]
    for row, qa in zip(v2, raw):
        assert row["answers"]["text"] == [a["text"] for a in qa["answers"]]
        assert row["answers"]["answer_start"] == [a["answer_start"] for a in qa["answers"]]
        assert row["plausible_answers"]["text"] == [a["text"] for a in
                                                    qa.get("plausible_answers", [])]
        assert row["is_impossible"] == qa["is_impossible"]
    v1 = load_prepared("squad", split="validation", config="v1.1",
                       cache_dir=str(tmp_path / "cache"))
    assert not any(v1["is_impossible"]) and v1[0]["id"] == "56beb4343aeaaa14008c925b"
    assert v1[0]["answers"] == {"text": ["308"], "answer_start": [34]}


# -- official prediction files ----------------------------------------------------------
@pytest.mark.parametrize("model", V1_MODELS)
def test_v11_prediction_files_score_like_the_script(shared_data: Path, tmp_path: Path,
                                                    model: str) -> None:
    dev = shared_data / V1_DEV
    preds = _restricted(shared_data, "v1.1", model, dev, tmp_path / "predictions.json")
    expected = _official_v1(dev, json.loads(preds.read_text(encoding="utf-8")))
    assert 0 < expected["exact_match"] < expected["f1"] < 100
    result = evaluate_file("squad-v1.1", preds, dev)
    assert set(result.metrics) == {"exact_match", "f1"}
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-9), key
    missing = REALLY_MISSING.get(model, 0)
    assert result.counts == {"references": 1190, "predictions": 1190 - missing,
                             "missing": missing, "extra": 0, "scored": 1190}
    assert len(result.warnings) == (1 if missing else 0)


@pytest.mark.parametrize("model", V2_MODELS)
def test_v20_prediction_files_score_like_the_script(shared_data: Path, tmp_path: Path,
                                                    model: str) -> None:
    dev = shared_data / V2_DEV
    preds = _restricted(shared_data, "v2.0", model, dev, tmp_path / "predictions.json")
    expected = _official_v2(dev, json.loads(preds.read_text(encoding="utf-8")))
    assert expected["total"] == 626 and expected["NoAns_total"] == 333
    assert 0 < expected["NoAns_exact"] < 100 and 0 < expected["HasAns_f1"] < 100
    result = evaluate_file("squad-v2.0", preds, dev)
    assert list(result.metrics) == list(expected)  # no best_*: no na-prob file
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert result.primary == "f1"


def test_v20_with_na_prob_file_and_threshold(shared_data: Path, tmp_path: Path) -> None:
    """A na-prob file full of ties (one decimal), written in shuffled order, scored at the
    default and at a custom threshold. The script breaks na_prob ties by the file's key
    order; with these values that order changes best_f1, so the test sees it."""
    dev = shared_data / V2_DEV
    preds_path = _restricted(shared_data, "v2.0", "bidaf_self_attention_elmo", dev,
                             tmp_path / "predictions.json")
    preds = json.loads(preds_path.read_text(encoding="utf-8"))
    rng = random.Random(0)
    shuffled = list(preds)
    rng.shuffle(shuffled)
    na_probs = {q: round(rng.random(), 1) for q in shuffled}
    na_file = tmp_path / "na_prob.json"
    na_file.write_text(json.dumps(na_probs, indent=1), encoding="utf-8")
    in_dev_order = _official_v2(dev, preds, {q: na_probs[q] for q in preds})
    for thresh in (1.0, 0.5):
        expected = _official_v2(dev, preds, json.loads(na_file.read_text()), thresh)
        result = evaluate_file("squad-v2.0", preds_path, dev,
                               read_options={"na_prob_file": na_file},
                               metric_options={"na_prob_thresh": thresh})
        for key, value in expected.items():
            assert result.metrics[key] == pytest.approx(value, abs=1e-9), (thresh, key)
    assert expected["best_f1"] != pytest.approx(in_dev_order["best_f1"], abs=1e-6)
    assert expected["best_f1_thresh"] == 0.9
    assert expected["exact"] != _official_v2(dev, preds)["exact"]  # the threshold mattered


def test_unrestricted_prediction_file_scores_with_a_warning(shared_data: Path,
                                                            tmp_path: Path) -> None:
    """A leaderboard file for the whole dev set, scored against the 2-article subset: the
    script ignores the other questions, so refbench does and says so; --strict refuses."""
    full = shared_data / "squad" / "predictions" / "v2.0" / "nlnet_single_msra.json"
    dev = shared_data / V2_DEV
    known = [qa["id"] for qa in _questions(dev)]
    preds = json.loads(full.read_text(encoding="utf-8"))
    first_unknown = next(q for q in preds if q not in set(known))
    result = evaluate_file("squad-v2.0", full, dev)
    expected = _official_v2(dev, preds)
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert result.counts == {"references": 626, "predictions": 626 + 11247, "missing": 0,
                             "extra": 11247, "scored": 626}
    (warning,) = result.warnings
    assert "\n" not in warning and str(full) in warning and first_unknown in warning
    assert "11247 prediction id(s) not in the references" in warning and "ignored" in warning
    with pytest.raises(RefbenchError) as err:
        evaluate_file("squad-v2.0", full, dev, strict=True)
    message = str(err.value)
    assert "\n" not in message and str(full) in message and first_unknown in message
    assert "11247 prediction id(s) not in the references" in message


@pytest.mark.parametrize("version,model", [("v1.1", "r-net_plus_ensemble_msra"),
                                           ("v2.0", "bidaf_self_attention_elmo")])
def test_missing_predictions_score_zero_and_are_counted(shared_data: Path, tmp_path: Path,
                                                        version: str, model: str) -> None:
    dev = shared_data / (V1_DEV if version == "v1.1" else V2_DEV)
    path = _restricted(shared_data, version, model, dev, tmp_path / "predictions.json")
    preds = json.loads(path.read_text(encoding="utf-8"))
    dropped = list(preds)[::7]
    kept = {q: a for q, a in preds.items() if q not in dropped}
    path.write_text(json.dumps(kept), encoding="utf-8")
    official = _official_v1 if version == "v1.1" else _official_v2
    expected = official(dev, kept)
    assert expected["f1"] < official(dev, preds)["f1"]
    result = evaluate_file(f"squad-{version}", path, dev)
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=1e-9), key
    assert result.counts["missing"] == len(dropped)
    assert result.counts["references"] == len(preds)
    (warning,) = result.warnings
    assert f"{len(dropped)} id(s) of the references have no prediction" in warning
    assert "scored 0" in warning and dropped[0] in warning


def test_references_from_a_root_folder_and_the_prepared_split(shared_data: Path,
                                                               tmp_path: Path) -> None:
    from refbench.datasets.squad.builder import SquadBuilder

    root = _root(shared_data, tmp_path)
    dev = shared_data / V2_DEV
    preds = _restricted(shared_data, "v2.0", "bert_single_google", dev,
                        tmp_path / "predictions.json")
    by_file = evaluate_file("squad-v2.0", preds, dev).metrics
    assert evaluate_file("squad-v2.0", preds, root).metrics == by_file
    SquadBuilder().prepare(root, tmp_path / "cache", configs=["v2.0"])
    prepared = evaluate_file("squad-v2.0", preds, cache_dir=str(tmp_path / "cache"))
    assert prepared.metrics == by_file and prepared.provenance.dataset_fingerprint
    # the v1.1 benchmark refuses a v2.0 reference file instead of mis-scoring it
    with pytest.raises(RefbenchError, match="SQuAD v2.0 file"):
        evaluate_file("squad-v1.1", preds, dev)


def test_copied_dev_with_a_broken_offset_names_file_and_question(shared_data: Path,
                                                                 tmp_path: Path) -> None:
    from refbench.datasets.squad.builder import SquadBuilder

    root = _root(shared_data, tmp_path)
    data = json.loads((shared_data / V2_DEV).read_text(encoding="utf-8"))
    qa = data["data"][1]["paragraphs"][3]["qas"][0]
    target = qa["answers"][0] if qa["answers"] else qa["plausible_answers"][0]
    target["answer_start"] += 1
    (root / "dev-v2.0.json").unlink()
    (root / "dev-v2.0.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    report = SquadBuilder().check(root)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.path.endswith("dev-v2.0.json") and qa["id"] in problem.message
    line = next(i for i, text in enumerate((root / "dev-v2.0.json").read_text().splitlines(), 1)
                if f'"id": "{qa["id"]}"' in text)
    assert problem.line == line
    with pytest.raises(RefbenchError, match=qa["id"]):
        SquadBuilder().prepare(root, tmp_path / "cache")
    assert not (tmp_path / "cache" / "squad").exists()  # no cache, no temp, no empty folder


def test_check_hints_on_the_sample_folders(shared_data: Path) -> None:
    squad = shared_data / "squad"
    xquad = squad / "v1.1" / "xquad.en.json"
    report = SquadBuilder().check(xquad)
    assert [p.kind for p in report.problems] == [NOT_A_FOLDER]
    assert report.hints == [(
        "--root takes a folder holding the SQuAD files under their official names "
        "(train-v1.1.json, dev-v1.1.json, train-v2.0.json, dev-v2.0.json): put xquad.en.json "
        "into a folder under the name of its version and split, and pass that folder as "
        "--root")]
    report = SquadBuilder().check(squad / "v1.1")
    assert report.hints[0].startswith("JSON files under other names (xquad.en.json) are not "
                                      "read")
