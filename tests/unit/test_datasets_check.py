"""`refbench datasets check`: the report's kinds, summary and hints (generic code), and the
command's output and exit codes (0 fine, 1 problems found, 2 usage error). Data-free: the
releases are synthesized or written here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from refbench.cli_datasets import CHECK_EXAMPLES, check_report_lines
from refbench.datasets.base import (
    MALFORMED_FILE,
    MALFORMED_LINE,
    MISSING_FILE,
    MISSING_FOLDER,
    NOT_A_FOLDER,
    OTHER_PROBLEM,
    CheckReport,
    Problem,
    get_builder,
    nearest_folder_hint,
    subfolders,
)
from refbench.datasets.glue.synth import synthesize_glue
from refbench.errors import RefbenchError
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_glue(tmp_path_factory.mktemp("glue") / "root", n=12, seed=1)


def _report(n_missing: int, root: str = "/data/k") -> CheckReport:
    report = CheckReport(root=root)
    for i in range(n_missing):
        report.add(f"{root}/training/velodyne/{i:06d}.bin", f"frame {i:06d} has no velodyne file",
                   MISSING_FILE)
    report.add(f"{root}/training/label_2/000009.txt", "expected 15 columns, found 3",
               MALFORMED_LINE, line=2)
    return report


# -- the report -----------------------------------------------------------------------------
def test_problem_kind_defaults_keep_old_builders_working() -> None:
    assert Problem("/r/a.tsv", "bad", 3).kind == MALFORMED_LINE
    assert Problem("/r/a.tsv", "missing").kind == OTHER_PROBLEM
    assert Problem("/r/a.tsv", "missing", kind=MISSING_FILE).kind == MISSING_FILE
    line = Problem.from_error(RefbenchError("bad value", path="/r/x.json", line=4, key="id"),
                              "/r/other")
    assert (line.path, line.line, line.kind, line.message) == ("/r/x.json", 4, MALFORMED_LINE,
                                                               "[id] bad value")
    whole = Problem.from_error(RefbenchError("size 3 is not a multiple of 16"), "/r/a.bin")
    assert (whole.path, whole.kind) == ("/r/a.bin", MALFORMED_FILE)
    assert whole.format("/r") == "a.bin: size 3 is not a multiple of 16"
    assert line.where("/r") == "x.json:4" and line.where("/elsewhere") == "/r/x.json:4"


def test_summary_groups_by_kind_with_counts_examples_and_notes() -> None:
    report = _report(29_915)
    report.note(MISSING_FILE, "3 of 7,481 frames of ImageSets/train.txt present")
    report.note(MISSING_FILE, "3 of 7,481 frames of ImageSets/train.txt present")  # once
    groups = report.summary(3)
    assert [(g.kind, g.count) for g in groups] == [(MISSING_FILE, 29_915), (MALFORMED_LINE, 1)]
    assert groups[0].examples == [f"training/velodyne/00000{i}.bin" for i in range(3)]
    assert groups[0].line() == ("missing file: 29,915 (training/velodyne/000000.bin, "
                                "training/velodyne/000001.bin, training/velodyne/000002.bin, "
                                "...) — 3 of 7,481 frames of ImageSets/train.txt present")
    # a single problem is shown whole
    assert groups[1].line() == ("malformed line: training/label_2/000009.txt:2: expected 15 "
                                "columns, found 3")


def test_hints_are_single_lines_given_once() -> None:
    report = CheckReport(root="/r")
    report.hint("use --root /r/kitti\n  (it holds ImageSets/)")
    report.hint("use --root /r/kitti (it holds ImageSets/)")
    report.hint("")
    assert report.hints == ["use --root /r/kitti (it holds ImageSets/)"]


def test_json_keeps_every_problem_and_adds_summary_and_hints() -> None:
    report = _report(5)
    report.hint("a hint")
    data = report.to_json()
    assert data["ok"] is False and len(data["problems"]) == 6
    assert data["problems"][0]["kind"] == MISSING_FILE
    assert data["summary"][0] == {"kind": MISSING_FILE, "count": 5,
                                  "examples": [f"training/velodyne/00000{i}.bin" for i in range(3)],
                                  "first": "training/velodyne/000000.bin: frame 000000 has no "
                                           "velodyne file", "notes": []}
    assert data["hints"] == ["a hint"]
    json.dumps(data)


def test_text_is_capped_unless_all() -> None:
    report = _report(1000)
    short = check_report_lines("kitti", report)
    assert len(short) < 10 and short[-1] == "1,001 problem(s)"
    assert "  (--all lists every problem)" in short
    assert sum("000500" in line for line in short) == 0
    full = check_report_lines("kitti", report, show_all=True)
    assert len(full) > 1000 and any("000999.bin" in line for line in full)
    assert CHECK_EXAMPLES == 3


def test_missing_root_and_file_root(tmp_path: Path) -> None:
    (tmp_path / "Kitti").mkdir()
    report = get_builder("glue").check(tmp_path / "kitti-data")
    assert [(p.kind, p.message) for p in report.problems] == [(MISSING_FOLDER,
                                                               "dataset folder not found")]
    assert report.hints and "nearest existing folder" in report.hints[0]
    assert "Kitti/" in report.hints[0]
    assert nearest_folder_hint(tmp_path / "kitti") == (
        f"{tmp_path / 'kitti'} does not exist: did you mean --root {tmp_path / 'Kitti'}?")
    assert nearest_folder_hint(tmp_path / "kitti" / "training").endswith(
        f"--root {tmp_path / 'Kitti' / 'training'}?")
    (tmp_path / "file.tsv").write_text("x\n")
    report = get_builder("glue").check(tmp_path / "file.tsv")
    assert [p.kind for p in report.problems] == [NOT_A_FOLDER]


def test_subfolders_breadth_first_bounded(tmp_path: Path) -> None:
    for rel in ("b/x/deep", "a/y", ".hidden/z"):
        (tmp_path / rel).mkdir(parents=True)
    assert [p.relative_to(tmp_path).as_posix() for p in subfolders(tmp_path)] == \
        ["a", "b", "a/y", "b/x"]
    assert len(subfolders(tmp_path, depth=3, limit=2)) == 2


# -- the command ----------------------------------------------------------------------------
def test_exit_code_0_when_the_release_is_fine(glue_root: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["datasets", "check", "glue", "--root", str(glue_root)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "ok"


def test_exit_code_1_when_problems_are_found(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["datasets", "check", "glue", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "missing folder: 9 (CoLA, SST-2, MRPC, ...)" in out
    assert out.strip().splitlines()[-1] == "10 problem(s)"
    # a root that does not exist is a problem with the data too
    assert run_cli(["datasets", "check", "glue", "--root", str(tmp_path / "nope")]) == 1
    assert "dataset folder not found" in capsys.readouterr().out


def test_exit_code_2_for_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["datasets", "check", "glu", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'glu'" in capsys.readouterr().err
    assert run_cli(["datasets", "check", "glue", "--root", str(tmp_path), "-c", "colaa"]) == 2
    assert run_cli(["datasets", "check", "glue", "--root", str(tmp_path), "--bogus"]) == 2
    assert run_cli(["datasets", "check", "glue"]) == 2  # --root is required


def test_json_and_all_options(glue_root: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(shutil.copytree(glue_root, tmp_path / "glue"))
    shutil.rmtree(root / "RTE")
    (root / "CoLA" / "dev.tsv").write_text("gj04\t1\t\tFine.\nbroken line\n")
    assert run_cli(["datasets", "check", "glue", "--root", str(root), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(g["kind"], g["count"]) for g in data["summary"]] == [(MALFORMED_LINE, 1),
                                                                  (MISSING_FOLDER, 1)]
    assert data["summary"][0]["first"].startswith("CoLA/dev.tsv:2: expected 4 tab-separated")
    assert any("-c cola -c sst2" in hint for hint in data["hints"])
    assert run_cli(["datasets", "check", "glue", "--root", str(root), "--all"]) == 1
    out = capsys.readouterr().out
    assert "every problem:" in out and "missing folder: RTE: missing GLUE task folder RTE" in out


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["datasets", "check", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--all" in out and "Exit codes: 0" in out and "1 problems were found" in out
    assert "2 usage error" in out
