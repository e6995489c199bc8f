"""The missing / extra prediction policy, for every submission format family, data-free.

A missing prediction is scored as the official tool scores it (SQuAD 0, KITTI / Waymo a
frame without detections) unless the official tool refuses the file (GLUE); an extra id
is ignored (Waymo: scored as false positives, as its official tool does). Both are always
reported: one warning line, and the counts in the table and in result.json. `--strict`
and the leaderboard refuse them with one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.scoring import align, check_ids, evaluate_file
from refbench.errors import RefbenchError
from refbench.registry import get_spec
from refbench.results import load_result
from tests.helpers import run_cli

ID_COUNT_KEYS = {"references", "predictions", "missing", "extra", "scored"}


# -- one small, hand-made label set per format family ---------------------------------------
@dataclass
class Family:
    """A benchmark, its references on disk, a complete prediction map and two ids to drop
    (`missing`) and two foreign entries to add (`extra`)."""

    benchmark: str
    references: Path
    complete: dict[Any, Any]
    missing: list[Any]
    extra: dict[Any, Any]
    shown: Callable[[Any], str] = str

    def write(self, path: Path, predictions: dict[Any, Any]) -> Path:
        spec = get_spec(self.benchmark)
        FORMATS.get(spec.submission.format)().write(path, predictions, spec)
        return path

    def without_missing(self, path: Path) -> Path:
        return self.write(path, {k: v for k, v in self.complete.items()
                                 if k not in self.missing})

    def with_extra(self, path: Path) -> Path:
        return self.write(path, {**self.complete, **self.extra})


def glue_family(root: Path) -> Family:
    labels = [1, 0, 0, 1, 1, 0]
    dev = root / "SST-2" / "dev.tsv"
    dev.parent.mkdir(parents=True)
    dev.write_text("sentence\tlabel\n" + "".join(f"sentence {i}\t{y}\n"
                                                  for i, y in enumerate(labels)))
    wrong = {0: 0}  # one wrong answer, so a changed score would show
    return Family("glue-sst2", dev, {i: wrong.get(i, y) for i, y in enumerate(labels)},
                  missing=[2, 4], extra={10: 1, 11: 0})


def squad_family(root: Path) -> Family:
    context = "Paris is the capital of France. The Seine flows through Paris."
    questions = [("q1", "Paris"), ("q2", "France"), ("q3", "The Seine"), ("q4", "capital"),
                 ("q5", "Seine")]
    qas = [{"id": qid, "question": f"question {qid}?",
            "answers": [{"text": text, "answer_start": context.index(text)}]}
           for qid, text in questions]
    dev = root / "dev-v1.1.json"
    dev.write_text(json.dumps({"version": "1.1", "data": [
        {"title": "Paris", "paragraphs": [{"context": context, "qas": qas}]}]}))
    complete = {qid: text for qid, text in questions}
    complete["q5"] = "the river"  # one wrong answer
    return Family("squad-v1.1", dev, complete, missing=["q2", "q4"],
                  extra={"zz1": "Paris", "zz2": "France"})


def _kitti_line(name: str, left: float, top: float, height_px: float, x: float, z: float,
                score: float | None = None) -> str:
    cols = [name, "0.00", "0", "0.00", f"{left:.2f}", f"{top:.2f}", f"{left + 60:.2f}",
            f"{top + height_px:.2f}", "1.50", "1.60", "3.90", f"{x:.2f}", "1.70", f"{z:.2f}",
            "0.00"]
    return " ".join(cols + ([] if score is None else [f"{score:.2f}"]))


def kitti_family(root: Path) -> Family:
    from refbench.benchmarks.formats.kitti import parse_label_file, read_label_dir

    labels = root / "label_2"
    labels.mkdir()
    for i in range(4):  # one valid moderate car per frame (45 px: easy too)
        (labels / f"{i:06d}.txt").write_text(
            _kitti_line("Car", 100 + 50 * i, 150, 45, -3.0 + i, 10.0 + 5 * i) + "\n")
    refs = read_label_dir(labels, with_score=False)
    complete = {}
    for fid, objects in refs.items():
        scored = root / "scored.txt"
        scored.write_text("\n".join(line + " 0.9" for line in objects.lines()) + "\n")
        complete[fid] = parse_label_file(scored, with_score=True)
    stray = root / "stray.txt"
    stray.write_text(_kitti_line("Car", 300, 150, 45, 2.0, 20.0, 0.8) + "\n")
    return Family("kitti-car-3d", labels, complete, missing=["000001", "000003"],
                  extra={"000098": parse_label_file(stray, True),
                         "000099": parse_label_file(stray, True)})


def write_lidar_box(folder: Path, segment: str,
                    frames: dict[int, list[tuple[list[float], int, int]]]) -> None:
    """A v2 `lidar_box` Parquet file: per frame timestamp, (box, type, lidar points)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refbench.datasets.waymo.reader import BOX, BOX_FIELDS, KEY_OBJECT, KEY_SEGMENT, KEY_TIME

    rows = [(stamp, f"obj{stamp}_{j}", box, kind, points)
            for stamp, boxes in frames.items() for j, (box, kind, points) in enumerate(boxes)]
    columns: dict[str, Any] = {KEY_SEGMENT: [segment] * len(rows),
                               KEY_TIME: pa.array([r[0] for r in rows], pa.int64()),
                               KEY_OBJECT: [r[1] for r in rows]}
    for c, name in enumerate(BOX_FIELDS):
        columns[name] = pa.array([r[2][c] for r in rows], pa.float64())
    columns[f"{BOX}.type"] = pa.array([r[3] for r in rows], pa.int8())
    columns[f"{BOX}.num_lidar_points_in_box"] = pa.array([r[4] for r in rows], pa.int32())
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / f"{segment}.parquet")


def waymo_family(root: Path) -> Family:
    from refbench.evaluation.waymo import BoxFrame

    seg = "segment-1"
    frames = {1000 * (t + 1): [([5.0 + 3 * t, 2.0, 1.0, 4.5, 2.0, 1.6, 0.1], 1, 50),
                               ([12.0, -4.0, 1.0, 0.8, 0.8, 1.8, 0.0], 2, 30)]
              for t in range(4)}
    write_lidar_box(root / "validation" / "lidar_box", seg, frames)
    complete = {}
    for stamp, boxes in frames.items():
        complete[(seg, stamp)] = BoxFrame(
            seg, stamp, boxes=np.array([b for b, _, _ in boxes]),
            types=np.array([k for _, k, _ in boxes]), scores=np.array([0.5, 0.5]))
    fp = BoxFrame(seg, 99_000, boxes=np.array([[20.0, 20.0, 1.0, 4.5, 2.0, 1.6, 0.0]]),
                  types=np.array([1]), scores=np.array([0.9]))
    other = BoxFrame("segment-9", 5000, boxes=np.array([[8.0, 1.0, 1.0, 4.5, 2.0, 1.6, 0.0]]),
                     types=np.array([1]), scores=np.array([0.9]))
    return Family("waymo-3d", root, complete, missing=[(seg, 2000), (seg, 4000)],
                  extra={(seg, 99_000): fp, ("segment-9", 5000): other},
                  shown=lambda key: f"{key[0]}/{key[1]}")


FAMILIES = {"glue_tsv": glue_family, "squad_json": squad_family,
            "kitti_label_dir": kitti_family, "waymo_boxes": waymo_family}
SCORES_MISSING = ["squad_json", "kitti_label_dir", "waymo_boxes"]


@pytest.fixture(params=list(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path: Path) -> Family:
    root = tmp_path / "refs"
    root.mkdir()
    fam = FAMILIES[request.param](root)
    assert get_spec(fam.benchmark).submission.format == request.param
    return fam


def _name(family: Family, label: str) -> str:
    return f"{label}-{get_spec(family.benchmark).submission.filename}"


# -- the policy, through evaluate_file --------------------------------------------------------
def test_complete_file_has_counts_and_no_id_warning(family: Family, tmp_path: Path) -> None:
    path = family.write(tmp_path / _name(family, "complete"), family.complete)
    result = evaluate_file(family.benchmark, path, family.references)
    n = len(family.complete)
    assert {k: result.counts[k] for k in ID_COUNT_KEYS} == {
        "references": n, "predictions": n, "missing": 0, "extra": 0, "scored": n}
    assert not any("prediction" in w for w in result.warnings)


def test_missing_ids_are_scored_or_refused_as_the_official_tool_does(family: Family,
                                                                      tmp_path: Path) -> None:
    spec = get_spec(family.benchmark)
    fmt = FORMATS.get(spec.submission.format)()
    path = family.without_missing(tmp_path / _name(family, "missing"))
    first = family.shown(family.missing[0])
    if fmt.missing == "refuse":
        assert spec.submission.format not in SCORES_MISSING
        with pytest.raises(RefbenchError) as err:
            evaluate_file(family.benchmark, path, family.references)
        message = str(err.value)
        assert "\n" not in message and str(path) in message and first in message
        assert "2 id(s) of the references have no prediction" in message
        assert "refuses" in message
        assert "refuse" in spec.description  # the spec says what refbench does
        return
    assert spec.submission.format in SCORES_MISSING
    result = evaluate_file(family.benchmark, path, family.references)
    n = len(family.complete)
    assert {k: result.counts[k] for k in ID_COUNT_KEYS} == {
        "references": n, "predictions": n - 2, "missing": 2, "extra": 0, "scored": n}
    (warning,) = [w for w in result.warnings if "prediction" in w]
    assert warning.startswith(f"{path}: 2 id(s) of the references have no prediction")
    assert "\n" not in warning and first in warning and fmt.missing_scored_as in warning
    # scored exactly like explicit "nothing" for those ids (empty answer, empty frame)
    empty = {"squad_json": "", "kitti_label_dir": {}, "waymo_boxes": None}[
        spec.submission.format]
    if empty is not None:
        explicit = family.write(tmp_path / _name(family, "explicit"), {
            **family.complete, **{k: empty for k in family.missing}})
        assert evaluate_file(family.benchmark, explicit, family.references).metrics == \
            result.metrics
    complete = evaluate_file(family.benchmark,
                             family.write(tmp_path / _name(family, "all"), family.complete),
                             family.references)
    assert result.metrics[spec.primary] < complete.metrics[spec.primary]


def test_extra_ids_are_ignored_or_scored_and_reported(family: Family, tmp_path: Path) -> None:
    spec = get_spec(family.benchmark)
    fmt = FORMATS.get(spec.submission.format)()
    path = family.with_extra(tmp_path / _name(family, "extra"))
    complete = evaluate_file(family.benchmark,
                             family.write(tmp_path / _name(family, "all"), family.complete),
                             family.references)
    result = evaluate_file(family.benchmark, path, family.references)
    n = len(family.complete)
    scored = n + 2 if fmt.extra == "score" else n
    assert {k: result.counts[k] for k in ID_COUNT_KEYS} == {
        "references": n, "predictions": n + 2, "missing": 0, "extra": 2, "scored": scored}
    (warning,) = [w for w in result.warnings if "prediction" in w]
    assert warning.startswith(f"{path}: 2 prediction id(s) not in the references (first: ")
    assert family.shown(next(iter(family.extra))) in warning and "\n" not in warning
    assert fmt.extra_scored_as in warning
    if fmt.extra == "ignore":
        assert result.metrics == complete.metrics
    else:  # Waymo: the official tool scores the boxes of unknown frames as false positives
        assert result.metrics[spec.primary] < complete.metrics[spec.primary]


def test_waymo_extra_frames_score_like_frames_without_ground_truth(tmp_path: Path) -> None:
    """What `compute_detection_metrics_main` does: the union of predicted and ground-truth
    frames is scored, so an unknown frame's boxes are false positives."""
    from refbench.benchmarks.formats.waymo import read_reference_folder
    from refbench.evaluation.waymo import BoxFrame, Waymo3DMetric

    fam = waymo_family(tmp_path)
    result = evaluate_file(fam.benchmark, fam.with_extra(tmp_path / "p.jsonl"), fam.references)
    refs = read_reference_folder(fam.references, "validation")
    for key in fam.extra:
        refs[key] = BoxFrame(key[0], key[1], num_points=np.zeros(0, np.int64),
                             difficulty=np.zeros(0, np.int64))
    metric = Waymo3DMetric()
    metric.update([{**fam.complete, **fam.extra}[k] for k in refs], list(refs.values()))
    assert result.metrics == pytest.approx(metric.compute())


def test_strict_refuses_missing_and_extra_in_one_line(family: Family, tmp_path: Path) -> None:
    both = {k: v for k, v in family.complete.items() if k not in family.missing}
    path = family.write(tmp_path / _name(family, "both"), {**both, **family.extra})
    with pytest.raises(RefbenchError) as err:
        evaluate_file(family.benchmark, path, family.references, strict=True)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "2 id(s) of the references have no prediction" in message
    assert "2 prediction id(s) not in the references" in message
    exact = family.write(tmp_path / _name(family, "exact"), family.complete)
    assert evaluate_file(family.benchmark, exact, family.references, strict=True).counts[
        "scored"] == len(family.complete)


# -- the CLI: one warning line, counts in the table and result.json, --strict -----------------
def test_cli_warns_once_and_writes_counts(family: Family, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    fmt = FORMATS.get(get_spec(family.benchmark).submission.format)()
    path = family.with_extra(tmp_path / _name(family, "extra"))
    out = tmp_path / "result.json"
    code = run_cli(["evaluate", family.benchmark, "-p", str(path), "--references",
                    str(family.references), "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [line for line in captured.err.splitlines() if "prediction id(s)" in line]
    assert len(lines) == 1 and lines[0].startswith("refbench: warning: ")
    assert "2 prediction id(s) not in the references" in lines[0]
    assert family.shown(next(iter(family.extra))) in lines[0]
    assert fmt.extra_scored_as in lines[0]
    assert "counts" in captured.out and "extra" in captured.out  # the second table
    saved = load_result(out)
    assert saved.counts["extra"] == 2 and saved.counts["references"] == len(family.complete)
    assert any("2 prediction id(s) not in the references" in w for w in saved.warnings)
    doc = json.loads(out.read_text())
    assert doc["counts"]["extra"] == 2 and len(doc["warnings"]) == len(saved.warnings)
    # --json: the same document on stdout, the warning still once on stderr
    assert run_cli(["evaluate", family.benchmark, "-p", str(path), "--references",
                    str(family.references), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["counts"]["extra"] == 2
    assert sum("prediction id(s)" in line for line in captured.err.splitlines()) == 1


def test_cli_strict_is_a_one_line_error(family: Family, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for label, path in (("missing", family.without_missing(tmp_path / _name(family, "m"))),
                        ("extra", family.with_extra(tmp_path / _name(family, "e")))):
        out = tmp_path / f"{label}.json"
        code = run_cli(["evaluate", family.benchmark, "-p", str(path), "--references",
                        str(family.references), "--strict", "--output", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and err.startswith("refbench: error: "), err
        needle = "have no prediction" if label == "missing" else "not in the references"
        assert needle in err and str(path) in err
        assert not out.exists()


# -- the pieces -------------------------------------------------------------------------------
def test_check_ids_quotes_the_first_three_ids_in_file_order() -> None:
    refs = {i: i for i in range(10)}
    preds = {i: i for i in range(10) if i % 2} | {"x": 0, "y": 0, "z": 0, "w": 0}
    check = check_ids(preds, refs, Path("p.tsv"))
    assert check.missing == [0, 2, 4, 6, 8] and check.extra == ["x", "y", "z", "w"]
    assert check.counts == {"references": 10, "predictions": 9, "missing": 5, "extra": 4,
                            "scored": 10}
    warning = check.warning("scored 0", "ignored")
    assert warning == ("5 id(s) of the references have no prediction (first: 0, 2, 4, ...), "
                       "scored 0; 4 prediction id(s) not in the references (first: x, y, z, "
                       "...), ignored")
    assert check_ids(refs, refs, Path("p.tsv")).warning("a", "b") is None
    with pytest.raises(RefbenchError, match=r"^p.tsv: 5 id\(s\) .*; 4 prediction id\(s\)"):
        check_ids(preds, refs, Path("p.tsv"), strict=True)


def test_align_keeps_its_older_keyword_and_pairs_in_reference_order() -> None:
    refs = {"a": 1, "b": 2, "c": 3}
    preds, labels, counts = align({"c": 30, "a": 10, "q": 0}, refs, Path("f"))
    assert (preds, labels) == ([10, None, 30], [1, 2, 3])
    assert counts == {"references": 3, "predictions": 3, "missing": 1, "extra": 1, "scored": 3}
    with pytest.raises(RefbenchError, match="have no prediction"):
        align({"a": 1}, refs, Path("f"), allow_missing=False)
    with pytest.raises(RefbenchError, match="not in the references"):
        align({**refs, "q": 0}, refs, Path("f"), strict=True)


def test_result_warnings_round_trip_and_old_files_load(tmp_path: Path) -> None:
    fam = squad_family(tmp_path)
    result = evaluate_file(fam.benchmark, fam.without_missing(tmp_path / "p.json"),
                           fam.references)
    path = tmp_path / "result.json"
    result.write(path)
    again = load_result(path)
    assert again.warnings == result.warnings and again.counts == result.counts
    doc = json.loads(path.read_text())
    del doc["warnings"]  # a result.json written before warnings existed
    path.write_text(json.dumps(doc))
    assert load_result(path).warnings == []
    doc["warnings"] = "not a list"
    path.write_text(json.dumps(doc))
    with pytest.raises(RefbenchError, match=r"\[warnings\]"):
        load_result(path)
