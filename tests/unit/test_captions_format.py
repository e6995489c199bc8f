"""The reports_json submission format: strict reading, writing, references, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refbench.benchmarks.formats.reports import ReportsJsonFormat, read_reports, write_reports
from refbench.benchmarks.scoring import evaluate_file
from refbench.errors import RefbenchError
from refbench.evaluation.captions.metric import ReportPrediction
from refbench.registry import get_spec

REPORTS = {"CXR1_IM-0001": "The heart is normal. No effusion.",
           "CXR2_IM-0002": "Lungs are clear. No pneumothorax.",
           "CXR3_IM-0003": "Mild cardiomegaly. Small left effusion."}


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_json_and_jsonl_round_trip(tmp_path: Path) -> None:
    preds = {k: ReportPrediction(v, ("normal",), (("normal", 0.7),)) for k, v in REPORTS.items()}
    for name in ("reports.json", "reports.jsonl"):
        write_reports(tmp_path / name, preds)
        assert read_reports(tmp_path / name) == preds
    one_pair = "".join(json.dumps({k: v}) + "\n" for k, v in REPORTS.items())
    assert {k: p.report for k, p in read_reports(_write(tmp_path / "a.jsonl", one_pair)).items()} \
        == REPORTS


@pytest.mark.parametrize("name, content, message", [
    ("r.json", b'{"a": "x", "a": "y"}', "appears twice"),
    ("r.jsonl", b'{"a": "x"}\n{"a": "y"}\n', "line 1"),
    ("r.json", b'{"a": "   "}', "empty report"),
    ("r.json", b'{"a": 3}', "a report is a string"),
    ("r.json", b'{"a": "caf\xe9"}', "not valid UTF-8"),
    ("r.json", b'\xef\xbb\xbf{"a": "x"}', "byte-order mark"),
    ("r.json", b'{"a": {"report": "x", "term_scores": {"t": NaN}}}', "finite number"),
    ("r.json", b'{"a": {"report": "x", "terms": ["t", "t"]}}', "twice"),
    ("r.json", b'{"a": {"report": "x", "extra": 1}}', "unknown field"),
    ("r.jsonl", b'{"a": "x"}\n\n{"b": "y"}\n', "empty line"),
    ("r.jsonl", b'{"a": "x"}\n{"b": \n', "malformed JSON"),
    ("r.json", b'["x"]', "one JSON object"),
    ("r.json", b'{}', "no report"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, name: str, content: bytes,
                                       message: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(RefbenchError, match=message) as info:
        read_reports(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="not found"):
        read_reports(tmp_path / "none.json")
    with pytest.raises(RefbenchError, match="found a folder"):
        read_reports(tmp_path)


def test_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.jsonl", '{"a": "x"}\n{"b": "y"}\n{"a": "z"}\n')
    with pytest.raises(RefbenchError, match=r"r.jsonl:3: study 'a' appears again \(first on line 1\)"):
        read_reports(path)
    path = _write(tmp_path / "r.json", '{\n "a": "x",\n "b": ""\n}\n')
    with pytest.raises(RefbenchError, match=r"r.json:3: study 'b': empty report"):
        read_reports(path)


def test_nothing_half_written(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RefbenchError, match="empty report"):
        write_reports(target, {"a": "x", "b": ""})
    assert not target.exists() and not list(tmp_path.iterdir())


def test_score_against_a_reference_file(tmp_path: Path) -> None:
    spec = get_spec("iu-xray-r2gen")
    refs = _write(tmp_path / "refs.json", json.dumps(REPORTS))
    result = evaluate_file(spec, refs, refs)
    assert result.metrics["BLEU-4"] == pytest.approx(1.0)
    assert result.metrics["ROUGE-L"] == pytest.approx(1.0)
    assert result.counts["reports/scored"] == 3
    assert "METEOR" not in result.metrics  # off in the spec (--option meteor=true)
    # a study missing from the predictions is refused (pycocoevalcap asserts equal ids)
    partial = _write(tmp_path / "p.json", json.dumps(dict(list(REPORTS.items())[:2])))
    with pytest.raises(RefbenchError, match="pycocoevalcap asserts"):
        evaluate_file(spec, partial, refs)
    # an extra id is ignored and reported
    extra = _write(tmp_path / "e.json", json.dumps({**REPORTS, "other": "x"}))
    result = evaluate_file(spec, extra, refs)
    assert result.counts["extra"] == 1


def test_quirks_from_a_training_file(tmp_path: Path) -> None:
    spec = get_spec("iu-xray-r2gen-published")
    refs = _write(tmp_path / "refs.json", json.dumps(REPORTS))
    train = _write(tmp_path / "train.json", json.dumps(
        {f"t{i}": "The heart is normal. Lungs are clear." for i in range(3)}))
    result = evaluate_file(spec, refs, refs, read_options={"train_reports": str(train)})
    assert result.counts["tokens/unk_references"] > 0  # effusion, cardiomegaly, ... are rare
    assert result.metrics["BLEU-1"] == pytest.approx(1.0)


def test_references_from_rows() -> None:
    import datasets

    rows = datasets.Dataset.from_dict({"study_id": list(REPORTS), "report": list(REPORTS.values()),
                                       "terms": [["normal"], [], ["cardiomegaly"]]})
    fmt = ReportsJsonFormat()
    refs = fmt.references_from_dataset(rows, get_spec("iu-xray-r2gen"))
    assert refs["CXR3_IM-0003"].terms == ("cardiomegaly",)
    twice = datasets.Dataset.from_dict({"study_id": ["a", "a"], "report": ["x", "y"]})
    with pytest.raises(RefbenchError, match="twice"):
        fmt.references_from_dataset(twice, get_spec("iu-xray-r2gen"))
