"""SQuAD builder on synthetic releases: layout, round trip, determinism, learnability, bad
input (one-line errors naming file and question id; nothing written on failure)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refbench.datasets.base import NOT_A_FOLDER, load_prepared
from refbench.datasets.squad.builder import SquadBuilder, read_squad_file
from refbench.datasets.squad.synth import synthesize_squad
from refbench.errors import RefbenchError
from refbench.io import sha256_path

FILES = ["dev-v1.1.json", "dev-v2.0.json", "train-v1.1.json", "train-v2.0.json"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_squad(tmp_path_factory.mktemp("squad") / "root", n=60, seed=3)


def _questions(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [qa for article in data["data"] for para in article["paragraphs"]
            for qa in para["qas"]]


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_import_is_light() -> None:
    code = ("import sys, refbench.datasets.squad.builder, refbench.datasets.squad.synth, "
            "refbench.evaluation.squad, refbench.benchmarks.formats.squad; "
            "print('torch' in sys.modules, 'datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_synthetic_layout_is_official(synth_root: Path) -> None:
    assert sorted(p.name for p in synth_root.iterdir()) == FILES
    v1_text = (synth_root / "dev-v1.1.json").read_text(encoding="ascii")  # \u escapes
    assert v1_text.startswith('{"data": [{"title": "') and "\n" not in v1_text
    assert v1_text.endswith('"version": "1.1"}') and "\\u00" in v1_text
    assert (synth_root / "dev-v2.0.json").read_text().startswith('{"version": "v2.0", "data"')
    for name, count in (("train-v1.1.json", 60), ("train-v2.0.json", 60),
                        ("dev-v1.1.json", 15), ("dev-v2.0.json", 15)):
        qas = _questions(synth_root / name)
        assert len(qas) == count, name
        assert all(re.fullmatch(r"[0-9a-f]{24}", qa["id"]) for qa in qas)
        impossible = [qa for qa in qas if qa.get("is_impossible")]
        if "v2.0" in name:
            assert len(impossible) == count // 3
            assert all(qa["answers"] == [] and qa["plausible_answers"] for qa in impossible)
        else:
            assert not impossible and all("is_impossible" not in qa for qa in qas)
        answered = [qa for qa in qas if qa["answers"]]
        if name.startswith("dev"):  # three golds, some identical, some differing
            assert all(len(qa["answers"]) == 3 for qa in answered)
            assert any(len({a["text"] for a in qa["answers"]}) == 3 for qa in answered)
        else:
            assert all(len(qa["answers"]) == 1 for qa in answered)


def test_synthesis_is_deterministic(tmp_path: Path, synth_root: Path) -> None:
    again = synthesize_squad(tmp_path / "again", n=60, seed=3)
    assert sha256_path(again) == sha256_path(synth_root)
    other = synthesize_squad(tmp_path / "other", n=60, seed=4)
    assert sha256_path(other) != sha256_path(synth_root)
    small = synthesize_squad(tmp_path / "small", n=1, seed=0)
    assert len(_questions(small / "dev-v2.0.json")) == 8
    with pytest.raises(RefbenchError, match="n must be at least 1"):
        synthesize_squad(tmp_path / "none", n=0)


@pytest.mark.parametrize("config", ["v1.1", "v2.0"])
def test_check_prepare_load_round_trip(synth_root: Path, tmp_path: Path, config: str) -> None:
    builder = SquadBuilder()
    assert builder.check(synth_root, [config]).ok
    manifest = builder.prepare(synth_root, tmp_path / "cache", configs=[config])
    assert manifest["splits"] == {config: {"train": 60, "validation": 15}}
    assert sorted(manifest["sources"]) == sorted(f for f in FILES if config in f)
    for split, name in (("train", f"train-{config}.json"), ("validation", f"dev-{config}.json")):
        ds = load_prepared("squad", split=split, config=config, cache_dir=str(tmp_path / "cache"))
        raw = _questions(synth_root / name)
        assert ds["id"] == [qa["id"] for qa in raw]
        assert ds.features["is_impossible"].dtype == "bool"
        for row, qa in zip(ds, raw):
            assert row["question"] == qa["question"]
            assert row["answers"] == {"text": [a["text"] for a in qa["answers"]],
                                      "answer_start": [a["answer_start"] for a in qa["answers"]]}
            assert row["is_impossible"] == qa.get("is_impossible", False)
            plausible = qa.get("plausible_answers", [])
            assert row["plausible_answers"]["text"] == [a["text"] for a in plausible]
            for key in ("answers", "plausible_answers"):
                for text, start in zip(row[key]["text"], row[key]["answer_start"]):
                    assert row["context"][start:start + len(text)] == text


def test_synthetic_answers_are_learnable(synth_root: Path) -> None:
    """Two surface rules a reader can learn solve the synthetic dev set: an unanswerable
    question names a person or object the paragraph never mentions, and a "Who <verb> the
    <object>?" answer is the name right before that verb."""
    rows = read_squad_file(synth_root / "train-v2.0.json") + read_squad_file(
        synth_root / "dev-v2.0.json")
    who_total = who_right = 0
    for row in rows:
        words = row["question"].rstrip("?").split()
        names = [w for w in words[1:] if w[0].isupper()]
        absent = [w for w in names + [words[-1]] if w not in row["context"]]
        assert bool(absent) == row["is_impossible"], row["question"]
        if words[0] == "Who" and not row["is_impossible"]:
            who_total += 1
            match = re.search(r"(\w+ \w+) " + words[1] + r" the \w+ " + words[-1], row["context"])
            who_right += match is not None and match.group(1) == row["answers"]["text"][0]
    assert who_total >= 5 and who_right == who_total


def test_missing_train_file_is_an_error(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path / "root")
    (root / "train-v2.0.json").unlink()
    report = SquadBuilder().check(root)
    assert [p.message for p in report.problems] == ["missing SQuAD v2.0 file train-v2.0.json"]
    assert SquadBuilder().check(root, ["v1.1"]).ok
    with pytest.raises(RefbenchError, match="missing SQuAD v2.0 file train-v2.0.json"):
        SquadBuilder().prepare(root, tmp_path / "cache")
    # not even an empty <cache>/squad/ folder is left behind: it would look prepared
    assert not (tmp_path / "cache" / "squad").exists()


def _break(root: Path, name: str, edit) -> str:
    """Apply `edit(data)` to one file (rewritten pretty-printed); returns the edited id."""
    path = root / name
    data = json.loads(path.read_text(encoding="utf-8"))
    qid = edit(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return qid


def _first_qa(data: dict, para: int = 1) -> dict:
    return data["data"][0]["paragraphs"][para]["qas"][0]


def _shift_start(data: dict) -> str:
    qa = next(q for q in data["data"][0]["paragraphs"][1]["qas"] if q["answers"])
    qa["answers"][-1]["answer_start"] += 2
    return qa["id"]


def _shift_plausible(data: dict) -> str:
    qa = next(q for p in data["data"][0]["paragraphs"] for q in p["qas"]
              if q.get("plausible_answers"))
    qa["plausible_answers"][0]["answer_start"] = -1
    return qa["id"]


def _duplicate(data: dict) -> str:
    qa = _first_qa(data)
    data["data"][0]["paragraphs"][0]["qas"][0]["id"] = qa["id"]
    return qa["id"]


def _flag(data: dict) -> str:
    qa = next(q for p in data["data"][0]["paragraphs"] for q in p["qas"] if q["answers"])
    qa["is_impossible"] = True
    return qa["id"]


def _drop_question(data: dict) -> str:
    qa = _first_qa(data)
    del qa["question"]
    return qa["id"]


@pytest.mark.parametrize("name,edit,match", [
    ("dev-v1.1.json", _shift_start, r"answers\[2\]: answer_start \d+ does not point at its text"),
    ("dev-v2.0.json", _shift_plausible,
     r"plausible_answers\[0\]: answer_start -1 does not point at its text"),
    ("train-v1.1.json", _duplicate, r": duplicate question id"),
    ("dev-v2.0.json", _flag, r"is_impossible is true but the question has answers"),
    ("train-v2.0.json", _drop_question, r": missing key 'question'"),
])
def test_bad_question_names_file_line_and_id(synth_root: Path, tmp_path: Path, name: str,
                                             edit, match: str) -> None:
    root = _copy(synth_root, tmp_path / "root")
    qid = _break(root, name, edit)
    text = (root / name).read_text()
    lines = [i for i, line in enumerate(text.splitlines(), 1) if f'"id": "{qid}"' in line]
    line = lines[-1]  # a duplicate is reported where it occurs the second time
    report = SquadBuilder().check(root)
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert problem.path == str(root / name) and problem.line == line
    assert f"question '{qid}'" in problem.message and re.search(match, problem.message)
    config = "v1.1" if "v1.1" in name else "v2.0"
    with pytest.raises(RefbenchError, match=match) as err:
        SquadBuilder().prepare(root, tmp_path / "cache", configs=[config])
    assert str(err.value).startswith(f"{root / name}:{line}: question '{qid}'")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache" / "squad" / "1.0").exists()


@pytest.mark.parametrize("text,match", [
    ('{"version": "1.1",\n "data": [\n}', r"dev-v1\.1\.json:3: invalid JSON"),
    ('[1, 2]', r"dev-v1\.1\.json: expected a JSON object"),
    ('{"data": []}', r"dev-v1\.1\.json \[version\]: missing key 'version'"),
    ('{"version": "1.0", "data": []}',
     r"dev-v1\.1\.json \[version\]: unknown SQuAD version '1\.0'"),
    ('{"version": "v2.0", "data": []}', r"this is a SQuAD v2\.0 file \(version 'v2\.0'\), "
                                        r"expected v1\.1"),
    ('{"version": "1.1", "data": [{"paragraphs": []}]}',
     r"dev-v1\.1\.json \[data\[0\]\]: missing key 'title'"),
    ('{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": 3, "qas": []}]}]}',
     r"\[data\[0\]\.paragraphs\[0\]\]: 'context' must be a JSON string, got 3"),
    ('{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "ab", "qas": '
     '[{"id": "q", "question": "?", "answers": [{"text": "a", "answer_start": "0"}]}]}]}]}',
     r"question 'q' answers\[0\]: 'answer_start' must be a JSON integer"),
    ('{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "ab", "qas": '
     '[{"id": "q", "question": "?", "answers": []}]}]}]}',
     r"question 'q': no answers but is_impossible is absent \(v1\.1\)"),
    ('{"version": "1.1", "data": []}', r"the file holds no question"),
])
def test_bad_files(synth_root: Path, tmp_path: Path, text: str, match: str) -> None:
    root = _copy(synth_root, tmp_path / "root")
    (root / "dev-v1.1.json").write_text(text, encoding="utf-8")
    report = SquadBuilder().check(root, ["v1.1"])
    assert len(report.problems) == 1 and report.problems[0].path.endswith("dev-v1.1.json")
    with pytest.raises(RefbenchError, match=match) as err:
        SquadBuilder().generate(root, "v1.1")
    assert "\n" not in str(err.value) and str(root / "dev-v1.1.json") in str(err.value)
    assert err.value.message in report.problems[0].message  # check reports the same problem
    assert report.problems[0].line == err.value.line


def test_v2_requires_is_impossible(synth_root: Path, tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path / "root")

    def drop(data: dict) -> str:
        qa = _first_qa(data)
        del qa["is_impossible"]
        return qa["id"]

    qid = _break(root, "dev-v2.0.json", drop)
    with pytest.raises(RefbenchError, match=f"question '{qid}': missing key 'is_impossible'"):
        read_squad_file(root / "dev-v2.0.json")


# -- check: hints ---------------------------------------------------------------------------
def test_check_a_json_file_as_root_gets_a_hint(synth_root: Path, tmp_path: Path) -> None:
    report = SquadBuilder().check(synth_root / "dev-v1.1.json")
    assert [p.kind for p in report.problems] == [NOT_A_FOLDER]
    assert report.hints == [("--root takes the folder holding the SQuAD files, not one file: "
                             f"use --root {synth_root} -c v1.1")]
    other = tmp_path / "my-squad.json"
    shutil.copyfile(synth_root / "dev-v1.1.json", other)
    report = SquadBuilder().check(other)
    assert len(report.hints) == 1 and "official names" in report.hints[0]
    assert f"put {other.name} into a folder" in report.hints[0]


def test_check_hints_for_other_names_a_parent_and_one_config(synth_root: Path,
                                                             tmp_path: Path) -> None:
    root = _copy(synth_root, tmp_path / "downloads" / "squad")
    report = SquadBuilder().check(tmp_path / "downloads")
    assert report.hints == [f"{root} holds official SQuAD files: use --root {root}"]
    (root / "train-v2.0.json").unlink()
    (root / "dev-v2.0.json").rename(root / "squad2-dev.json")
    report = SquadBuilder().check(root)
    assert len(report.problems) == 2
    assert report.hints[0].startswith("JSON files under other names (squad2-dev.json) are not "
                                      "read: refbench reads only the official names")
    assert report.hints[1] == ("only v1.1 of SQuAD v1.1, v2.0 is complete here: to check and "
                               "prepare just that, add -c v1.1")
    assert SquadBuilder().check(root, ["v1.1"]).ok
