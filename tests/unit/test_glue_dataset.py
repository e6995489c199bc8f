"""GLUE builder on synthetic releases: round trip, determinism, learnability, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import refbench
from refbench.datasets.base import MALFORMED_LINE, MISSING_FILE
from refbench.datasets.glue.builder import (TASKS, GlueBuilder, locate_files, read_config,
                                    read_task_file)
from refbench.datasets.glue.synth import synthesize_glue
from refbench.errors import RefbenchError
from refbench.io import sha256_path


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_glue(tmp_path_factory.mktemp("glue") / "root", n=40, seed=3)


def _data_lines(path: Path, has_header: bool) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    assert lines[-1] == ""
    return [line.split("\t") for line in lines[1 if has_header else 0:-1]]


def test_task_table_matches_the_hf_and_server_conventions() -> None:
    assert list(TASKS) == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli",
                           "ax"]
    assert TASKS["wnli"].label_names == ("not_entailment", "entailment")
    assert TASKS["wnli"].file_labels == ("0", "1")
    assert TASKS["rte"].file_labels == ("entailment", "not_entailment")
    assert TASKS["ax"].file_labels == ("entailment", "neutral", "contradiction")
    assert TASKS["stsb"].is_regression and TASKS["stsb"].label_names == ()
    assert not any(t.is_regression for c, t in TASKS.items() if c != "stsb")
    assert TASKS["mnli"].server_files == {"test_matched": "MNLI-m.tsv",
                                          "test_mismatched": "MNLI-mm.tsv"}
    assert TASKS["sst2"].server_files == {"test": "SST-2.tsv"}
    assert TASKS["mnli"].splits["validation_matched"] == "dev_matched.tsv"
    assert TASKS["qnli"].text_fields == ("question", "sentence")
    for task in TASKS.values():
        assert len(task.label_names) == len(task.file_labels)


def test_import_is_light() -> None:
    code = ("import sys, refbench.datasets.glue.builder, refbench.datasets.glue.synth; "
            "print('torch' in sys.modules, 'datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_synthetic_layout_is_official(synth_root: Path) -> None:
    assert (synth_root / "MRPC" / "train.tsv").read_bytes().startswith(
        b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
    assert (synth_root / "MRPC" / "test.tsv").read_bytes().startswith(b"index\t#1 ID")
    cola = _data_lines(synth_root / "CoLA" / "train.tsv", has_header=False)
    assert len(cola) == 40 and all(len(f) == 4 for f in cola)
    assert all((f[2] == "*") == (f[1] == "0") for f in cola)
    widths = {name: {len(f) for f in _data_lines(synth_root / "MNLI" / name, True)}
              for name in ("train.tsv", "dev_matched.tsv", "test_matched.tsv")}
    assert widths == {"train.tsv": {12}, "dev_matched.tsv": {16}, "test_matched.tsv": {10}}
    assert (synth_root / "diagnostic" / "diagnostic.tsv").is_file()
    assert len(_data_lines(synth_root / "STS-B" / "test.tsv", True)[0]) == 9


def test_round_trip_all_configs(synth_root: Path, tmp_path: Path) -> None:
    import refbench

    builder = GlueBuilder()
    report = builder.check(synth_root)
    assert report.ok, [p.format() for p in report.problems]
    assert len(report.found) == 30
    cache = tmp_path / "cache"
    manifest = builder.prepare(synth_root, cache)
    assert sorted(manifest["splits"]) == sorted(TASKS)
    for config, task in TASKS.items():
        data = refbench.load_dataset("glue", config=config, cache_dir=str(cache))
        assert list(data) == builder.splits(config)
        for split, ds in data.items():
            name = task.splits[split]
            path = synth_root / ("diagnostic" if config == "ax" else task.folder) / name
            rows = _data_lines(path, has_header=config != "cola" or split == "test")
            assert len(ds) == len(rows) == (40 if split == "train" else 10)
            assert ds["idx"] == list(range(len(rows)))
            assert set(ds.column_names) == {"idx", "label", *task.text_fields}
            labels = ds["label"]
            if split.startswith("test"):
                assert set(labels) == {-1}
            elif task.is_regression:
                assert ds.features["label"].dtype == "float32"
                assert np.allclose(labels, [float(r[-1]) for r in rows], atol=1e-6)
            else:
                assert ds.features["label"].names == list(task.label_names)
                column = {"cola": 1, "mrpc": 0}.get(config, -1)
                assert labels == [task.file_labels.index(r[column]) for r in rows]


def test_synthesis_is_deterministic(tmp_path: Path) -> None:
    a = synthesize_glue(tmp_path / "a", n=24, seed=7)
    b = synthesize_glue(tmp_path / "b", n=24, seed=7)
    c = synthesize_glue(tmp_path / "c", n=24, seed=8)
    assert sha256_path(a) == sha256_path(b)
    assert sha256_path(a) != sha256_path(c)
    assert len(read_task_file(a / "SST-2" / "dev.tsv", "sst2", "validation")) == 8


def _features(vectorizer, rows: list[dict], fields: tuple[str, ...]):  # noqa: ANN001, ANN202
    import scipy.sparse as sp

    if len(fields) == 1:
        return vectorizer.transform([r[fields[0]] for r in rows])
    a = vectorizer.transform([r[fields[0]] for r in rows])
    b = vectorizer.transform([r[fields[1]] for r in rows])
    return sp.hstack([a, b, a.multiply(b), abs(a - b)]).tocsr()


@pytest.fixture(scope="module")
def learn_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_glue(tmp_path_factory.mktemp("learn") / "root", n=400, seed=0)


@pytest.mark.parametrize("config", ["sst2", "mrpc", "cola", "mnli", "stsb"])
def test_labels_are_learnable_from_text(learn_root: Path, config: str) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    task = TASKS[config]
    data = read_config(learn_root, config)
    train, dev = data["train"], data["validation_matched" if config == "mnli" else "validation"]
    single = len(task.text_fields) == 1
    vec = CountVectorizer(binary=True, token_pattern=r"[^ ]+", ngram_range=(1, 2 if single else 1))
    vec.fit([r[f] for r in train for f in task.text_fields])
    x_train, x_dev = _features(vec, train, task.text_fields), _features(vec, dev, task.text_fields)
    y_train, y_dev = np.array([r["label"] for r in train]), np.array([r["label"] for r in dev])
    if task.is_regression:
        pred = Ridge(alpha=1.0).fit(x_train, y_train).predict(x_dev)
        assert np.corrcoef(pred, y_dev)[0, 1] > 0.6
        return
    accuracy = (LogisticRegression(max_iter=2000).fit(x_train, y_train).predict(x_dev)
                == y_dev).mean()
    majority = np.bincount(y_dev).max() / len(y_dev)
    assert accuracy > majority + 0.15, (accuracy, majority)


# -- bad input ----------------------------------------------------------------------------
@pytest.fixture
def broken_root(tmp_path: Path) -> Path:
    return synthesize_glue(tmp_path / "root", n=16, seed=1)


def _expect_failure(root: Path, config: str, cache: Path, needle: str,
                    line: int | None = None) -> RefbenchError:
    builder = GlueBuilder()
    with pytest.raises(RefbenchError) as info:
        builder.prepare(root, cache, configs=[config])
    err = info.value
    assert needle in str(err)
    assert err.line == line
    if line is not None:
        assert f"{needle}:{line}:" in str(err)
    assert not builder.cache_path(cache).exists()
    assert not (cache / "glue").exists(), "prepare left a temporary or empty folder"
    problems = builder.check(root, [config]).problems
    assert problems and needle in problems[0].path and problems[0].line == line
    return err


def test_missing_folder(broken_root: Path, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(broken_root / "SST-2")
    err = _expect_failure(broken_root, "sst2", tmp_path / "c", "SST-2")
    assert "missing GLUE task folder" in str(err)


def test_missing_task_file(broken_root: Path, tmp_path: Path) -> None:
    (broken_root / "RTE" / "dev.tsv").unlink()
    (broken_root / "RTE" / "test.tsv").unlink()
    err = _expect_failure(broken_root, "rte", tmp_path / "c", "RTE/dev.tsv")
    assert "test.tsv" in str(err)
    assert len(GlueBuilder().check(broken_root, ["rte"]).problems) == 2


def _edit_line(path: Path, number: int, edit) -> None:  # noqa: ANN001
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = edit(lines[number - 1])
    path.write_bytes(b"\n".join(lines))


def test_truncated_file(broken_root: Path, tmp_path: Path) -> None:
    path = broken_root / "SST-2" / "train.tsv"
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_start + 12])  # the last row cut inside its sentence
    total = data.count(b"\n")
    err = _expect_failure(broken_root, "sst2", tmp_path / "c", "SST-2/train.tsv", line=total)
    assert "expected 2 tab-separated columns, found 1" in str(err)


def test_wrong_column_count(broken_root: Path, tmp_path: Path) -> None:
    _edit_line(broken_root / "QNLI" / "dev.tsv", 5, lambda b: b + b"\textra")
    _expect_failure(broken_root, "qnli", tmp_path / "c", "QNLI/dev.tsv", line=5)


def test_unknown_label(broken_root: Path, tmp_path: Path) -> None:
    _edit_line(broken_root / "MNLI" / "dev_matched.tsv", 3,
               lambda b: b.rsplit(b"\t", 1)[0] + b"\tentailed")
    err = _expect_failure(broken_root, "mnli", tmp_path / "c", "MNLI/dev_matched.tsv", line=3)
    assert "'entailed'" in str(err)


def test_nan_score(broken_root: Path, tmp_path: Path) -> None:
    _edit_line(broken_root / "STS-B" / "train.tsv", 4, lambda b: b.rsplit(b"\t", 1)[0] + b"\tnan")
    _expect_failure(broken_root, "stsb", tmp_path / "c", "STS-B/train.tsv", line=4)


def test_header_problems_and_empty_file(broken_root: Path) -> None:
    dev = broken_root / "SST-2" / "dev.tsv"
    dev.write_bytes(dev.read_bytes().split(b"\n", 1)[1])  # header line removed
    with pytest.raises(RefbenchError, match=r"dev.tsv:1: unexpected header"):
        read_task_file(dev, "sst2", "validation")
    cola = broken_root / "CoLA" / "train.tsv"
    cola.write_bytes(b"index\tsentence\n" + cola.read_bytes())
    with pytest.raises(RefbenchError, match=r"train.tsv:1: unexpected header"):
        read_task_file(cola, "cola", "train")
    empty = broken_root / "RTE" / "test.tsv"
    empty.write_bytes(b"")
    with pytest.raises(RefbenchError, match=r"test.tsv:1: empty file"):
        read_task_file(empty, "rte", "test")


def test_crlf_bom_and_trailing_blank_lines_are_tolerated(broken_root: Path) -> None:
    path = broken_root / "QQP" / "dev.tsv"
    expected = read_task_file(path, "qqp", "validation")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n\n")
    assert read_task_file(path, "qqp", "validation") == expected
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n\n", 1))  # blank line mid-file
    with pytest.raises(RefbenchError, match=r"dev.tsv:2: expected 6"):
        read_task_file(path, "qqp", "validation")


def test_diagnostic_lookup_order_and_label_column(broken_root: Path) -> None:
    official = broken_root / "diagnostic" / "diagnostic.tsv"
    assert locate_files(broken_root, "ax")[0] == {"test": official}
    moved = broken_root / "MNLI" / "diagnostic.tsv"
    moved.write_bytes(b"index\tsentence1\tsentence2\tlabel\n"
                      b"0\tA dog ran.\tA dog moved.\tentailment\n")
    official.unlink()
    assert locate_files(broken_root, "ax")[0] == {"test": moved}
    assert read_config(broken_root, "ax")["test"] == [
        {"idx": 0, "premise": "A dog ran.", "hypothesis": "A dog moved.", "label": 0}]


# -- STS-B from the raw STS Benchmark release --------------------------------------------------
def _to_sts_benchmark(tsv: Path, out: Path, labeled: bool) -> None:
    """Write a GLUE STS-B TSV back as the raw STS Benchmark file it re-packages: no header,
    genre, filename, year, id, score, sentence1, sentence2; every third row with the two
    trailing source columns that some official rows carry."""
    rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()[1:]]
    lines = []
    for i, f in enumerate(rows):
        score = f[9] if labeled else "2.500"
        extra = ["Europe Media Monitor", "Europe Media Monitor"] if i % 3 == 0 else []
        lines.append("\t".join([f[1], f[2], f[3], f[4], score, f[7], f[8], *extra]))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture()
def raw_stsb_root(broken_root: Path) -> Path:
    """The synthetic GLUE root with STS-B given as stsbenchmark/sts-{train,dev,test}.csv."""
    raw = broken_root / "stsbenchmark"
    raw.mkdir()
    for split, name in (("train", "sts-train.csv"), ("dev", "sts-dev.csv"),
                        ("test", "sts-test.csv")):
        _to_sts_benchmark(broken_root / "STS-B" / f"{split}.tsv", raw / name, split != "test")
    return broken_root


def test_raw_sts_benchmark_release_equals_the_glue_files(raw_stsb_root: Path,
                                                         tmp_path: Path) -> None:
    expected = read_config(raw_stsb_root, "stsb")
    shutil.rmtree(raw_stsb_root / "STS-B")
    files, missing = locate_files(raw_stsb_root, "stsb")
    assert missing == [] and sorted(files) == ["sts-dev.csv", "sts-test.csv", "sts-train.csv"]
    assert read_config(raw_stsb_root, "stsb") == expected
    assert {row["label"] for row in expected["test"]} == {-1}
    builder = GlueBuilder()
    report = builder.check(raw_stsb_root, ["stsb"])
    assert report.ok, [p.format() for p in report.problems]
    assert sorted(report.found) == ["stsbenchmark/sts-dev.csv", "stsbenchmark/sts-test.csv",
                                    "stsbenchmark/sts-train.csv"]
    manifest = builder.prepare(raw_stsb_root, tmp_path / "cache", configs=["stsb"])
    assert "stsbenchmark/sts-dev.csv" in manifest["sources"]
    dev = refbench.load_dataset("glue", "validation", config="stsb",
                                cache_dir=str(tmp_path / "cache"))
    assert dev["sentence1"] == [r["sentence1"] for r in expected["validation"]]
    assert dev["label"] == pytest.approx([r["label"] for r in expected["validation"]])
    # the same files in STS-B/ (where GLUE's TSVs would be) are accepted too
    shutil.move(str(raw_stsb_root / "stsbenchmark"), str(raw_stsb_root / "STS-B"))
    assert read_config(raw_stsb_root, "stsb") == expected


def test_raw_sts_benchmark_problems(raw_stsb_root: Path) -> None:
    shutil.rmtree(raw_stsb_root / "STS-B")
    _edit_line(raw_stsb_root / "stsbenchmark" / "sts-dev.csv", 3,
               lambda b: b.replace(b"\t", b"\t\t", 1) + b"\tx\ty")
    report = GlueBuilder().check(raw_stsb_root, ["stsb"])
    assert [(p.kind, Path(p.path).name, p.line) for p in report.problems] == [
        (MALFORMED_LINE, "sts-dev.csv", 3)]
    assert "expected 7 or 8 or 9 tab-separated columns, found 10" in report.problems[0].message
    (raw_stsb_root / "stsbenchmark" / "sts-test.csv").unlink()
    report = GlueBuilder().check(raw_stsb_root, ["stsb"])
    assert [(p.kind, p.message) for p in report.problems] == [
        (MISSING_FILE, ("missing STS Benchmark file stsbenchmark/sts-test.csv (the raw release "
                        "needs all of sts-train.csv, sts-dev.csv, sts-test.csv; or give GLUE's "
                        "STS-B/ with train.tsv, dev.tsv, test.tsv)"))]
    with pytest.raises(RefbenchError, match="missing STS Benchmark file stsbenchmark/sts-test"):
        read_config(raw_stsb_root, "stsb")


# -- check: hints ---------------------------------------------------------------------------
def test_check_hints_for_a_task_folder_and_a_parent_folder(broken_root: Path,
                                                            tmp_path: Path) -> None:
    report = GlueBuilder().check(broken_root / "CoLA")
    assert report.hints == [(f"{broken_root / 'CoLA'} is one task's folder, not the GLUE root "
                             f"that holds the task folders (CoLA/, SST-2/, ...): use --root "
                             f"{broken_root} -c cola")]
    parent = tmp_path / "downloads"
    (parent / "glue_data").mkdir(parents=True)
    shutil.move(str(broken_root), str(parent / "glue_data" / "root"))
    report = GlueBuilder().check(parent)
    assert len(report.hints) == 1 and report.hints[0].startswith(
        f"{parent / 'glue_data' / 'root'} holds GLUE task folders (CoLA, SST-2, MRPC, STS-B")
    assert report.hints[0].endswith(f"use --root {parent / 'glue_data' / 'root'}")


def test_check_hint_for_some_tasks_only(broken_root: Path) -> None:
    for folder in ("SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI", "diagnostic"):
        shutil.rmtree(broken_root / folder)
    report = GlueBuilder().check(broken_root)
    assert report.hints == [("only 1 of 10 GLUE configs are complete here (cola): to check and "
                             "prepare just those, add -c cola")]
    assert GlueBuilder().check(broken_root, ["cola"]).ok
