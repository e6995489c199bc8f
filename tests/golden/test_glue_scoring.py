"""GLUE scoring on real dev data, server-file round trips, strict reading, and the specs.

The expected numbers are computed in each test straight from the raw official files with
scikit-learn / scipy, independently of refbench's readers and metric code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import matthews_corrcoef

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.formats.glue import GlueDirFormat, GlueTsvFormat, server_file, spec_task
from refbench.benchmarks.spec import DatasetRef, load_spec
from refbench.registry import get_spec
from refbench.errors import RefbenchError
from refbench.evaluation import glue
from refbench.registry import BENCHMARKS, METRICS, PACKAGE_ROOT

SPECS = ["glue-cola", "glue-sst2", "glue-mrpc", "glue-stsb", "glue-qqp", "glue-mnli-m",
         "glue-mnli-mm", "glue-qnli", "glue-rte", "glue-wnli", "glue"]
COLA_MAX_WORDS = 9  # the rule below: "acceptable" iff a sentence has fewer words
STSB_HEADER = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
               "sentence2\tscore")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# -- real data: CoLA and STS-B dev ---------------------------------------------------------
@pytest.fixture()
def cola_dev(shared_data: Path, tmp_path: Path) -> tuple[Path, list[int], list[str]]:
    """GLUE CoLA/dev.tsv = in_domain_dev.tsv then out_of_domain_dev.tsv (1043 rows)."""
    raw = shared_data / "glue" / "cola_public" / "raw"
    lines = _lines(raw / "in_domain_dev.tsv") + _lines(raw / "out_of_domain_dev.tsv")
    dev = tmp_path / "glue" / "CoLA" / "dev.tsv"
    dev.parent.mkdir(parents=True)
    dev.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fields = [line.split("\t") for line in lines]
    return dev, [int(f[1]) for f in fields], [f[3] for f in fields]


def test_cola_dev_mcc_equals_sklearn(cola_dev: tuple[Path, list[int], list[str]],
                                     tmp_path: Path) -> None:
    dev, labels, sentences = cola_dev
    assert len(labels) == 1043
    preds = [int(len(s.split()) < COLA_MAX_WORDS) for s in sentences]
    expected = 100 * matthews_corrcoef(labels, preds)
    assert 0 < abs(expected) < 100  # a real, non-trivial value

    submission = tmp_path / "CoLA.tsv"
    submission.write_text("index\tprediction\n" + "".join(f"{i}\t{p}\n" for i, p in
                                                          enumerate(preds)), encoding="utf-8")
    spec = get_spec("glue-cola")
    fmt = FORMATS.get("glue_tsv")()
    references = fmt.read_references(dev, spec)
    predictions = fmt.read(submission, spec)
    assert len(references) == len(predictions) == 1043
    metric = METRICS.get("glue")(task="cola")
    ids = sorted(references)
    metric.update([predictions[i] for i in ids], [references[i] for i in ids])
    assert metric.compute()["mcc"] == pytest.approx(expected, abs=1e-10)

    # end to end through the scorer, with the GLUE root as references
    from refbench.benchmarks.scoring import evaluate_file

    result = evaluate_file("glue-cola", submission, dev.parent.parent)
    assert result.metrics["mcc"] == pytest.approx(expected, abs=1e-10)
    assert result.primary == "mcc"


@pytest.fixture()
def stsb_dev(shared_data: Path, tmp_path: Path) -> tuple[Path, list[float], list[tuple[str, str]]]:
    """GLUE STS-B/dev.tsv rebuilt from the official sts-dev.csv (1500 pairs)."""
    rows = [line.split("\t") for line in _lines(shared_data / "glue" / "stsbenchmark" /
                                                "sts-dev.csv")]
    out = [STSB_HEADER]
    for i, f in enumerate(rows):
        sources = f[7:9] if len(f) == 9 else ["none", "none"]
        out.append("\t".join([str(i), *f[0:4], *sources, f[5], f[6], f[4]]))
    dev = tmp_path / "glue" / "STS-B" / "dev.tsv"
    dev.parent.mkdir(parents=True)
    dev.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dev, [float(f[4]) for f in rows], [(f[5], f[6]) for f in rows]


def _jaccard5(a: str, b: str) -> float:
    x, y = set(a.lower().split()), set(b.lower().split())
    return 5.0 * len(x & y) / len(x | y)


def test_stsb_dev_correlations_equal_scipy(stsb_dev, tmp_path: Path) -> None:
    dev, scores, pairs = stsb_dev
    assert len(scores) == 1500
    preds = [_jaccard5(a, b) for a, b in pairs]
    pearson = 100 * stats.pearsonr(preds, scores).statistic
    spearman = 100 * stats.spearmanr(preds, scores).statistic
    submission = tmp_path / "STS-B.tsv"
    submission.write_text("index\tprediction\n" + "".join(f"{i}\t{p!r}\n" for i, p in
                                                          enumerate(preds)), encoding="utf-8")
    from refbench.benchmarks.scoring import evaluate_file

    result = evaluate_file("glue-stsb", submission, dev)
    assert result.metrics["pearson"] == pytest.approx(pearson, abs=1e-9)
    assert result.metrics["spearman"] == pytest.approx(spearman, abs=1e-9)
    assert result.metrics["score"] == pytest.approx((pearson + spearman) / 2, abs=1e-9)


def test_whole_glue_on_a_root_with_two_tasks(cola_dev, stsb_dev, tmp_path: Path) -> None:
    from refbench.benchmarks.scoring import evaluate_file

    dev, labels, sentences = cola_dev
    _, scores, pairs = stsb_dev
    root = dev.parent.parent
    cola_preds = [int(len(s.split()) < COLA_MAX_WORDS) for s in sentences]
    sts_preds = [round(_jaccard5(a, b), 3) for a, b in pairs]
    folder = tmp_path / "submission"
    spec = get_spec("glue")
    GlueDirFormat().write(folder, {**{("cola", i): p for i, p in enumerate(cola_preds)},
                                   **{("stsb", i): p for i, p in enumerate(sts_preds)}}, spec)
    assert sorted(p.name for p in folder.iterdir()) == ["CoLA.tsv", "STS-B.tsv"]
    result = evaluate_file("glue", folder, root)
    cola = 100 * matthews_corrcoef(labels, cola_preds)
    sts = 50 * (stats.pearsonr(sts_preds, scores).statistic
                + stats.spearmanr(sts_preds, scores).statistic)
    assert result.metrics["CoLA/mcc"] == pytest.approx(cola, abs=1e-9)
    assert result.metrics["STS-B/score"] == pytest.approx(sts, abs=1e-9)
    assert result.metrics["score"] == pytest.approx((cola + sts) / 2, abs=1e-9)
    assert glue.tasks_in(result.metrics) == ["cola", "stsb"]
    assert result.counts == {"references": len(labels) + len(scores),
                             "predictions": len(labels) + len(scores), "missing": 0,
                             "extra": 0, "scored": len(labels) + len(scores)}
    # a task file the references lack is ignored (and reported): the scores do not move
    GlueDirFormat().write(folder, {("rte", i): 0 for i in range(3)}, spec)
    with_extra = evaluate_file("glue", folder, root)
    assert with_extra.metrics == result.metrics and with_extra.counts["extra"] == 3
    (warning,) = with_extra.warnings
    assert "3 prediction id(s) not in the references (first: rte/0, rte/1, rte/2)" in warning
    (folder / "RTE.tsv").unlink()
    # a task of the references that the submission lacks is an error, not a silent zero:
    # the GLUE server refuses incomplete files
    (folder / "STS-B.tsv").unlink()
    with pytest.raises(RefbenchError, match="no prediction .*refuses an incomplete file"):
        evaluate_file("glue", folder, root)


# -- round trips -------------------------------------------------------------------------
def _spec_for(task: str):
    """The benchmark spec of a task; AX has none, so a copy of MNLI-m's pointing at ax."""
    if task == "ax":
        return dataclasses.replace(get_spec("glue-mnli-m"),
                                   dataset=DatasetRef("glue", "1.0", "ax"), split="test",
                                   hidden_split="test")
    return get_spec("glue-" + task.replace("_", "-").replace("sst-2", "sst2"))


@pytest.mark.parametrize("task", list(glue.TASKS))
def test_server_file_round_trip(task: str, tmp_path: Path) -> None:
    spec = _spec_for(task)
    assert spec_task(spec) == task
    rng = np.random.default_rng(len(task))
    n_classes = glue.TASKS[task][1]
    ids = rng.permutation(300)[:250].tolist()  # unsorted, with gaps
    if n_classes:
        values = rng.integers(0, n_classes, len(ids)).tolist()
    else:
        values = np.round(rng.uniform(0, 5, len(ids)), 3).tolist()
    predictions = dict(zip(ids, values))
    path = tmp_path / server_file(task)
    fmt = GlueTsvFormat()
    fmt.write(path, predictions, spec)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0] == "index\tprediction" and lines[-1] == ""
    assert [int(line.split("\t")[0]) for line in lines[1:-1]] == sorted(ids)
    back = fmt.read(path, spec)
    assert back == predictions
    assert all(isinstance(v, float if n_classes == 0 else int) for v in back.values())
    labels = {line.split("\t")[1] for line in lines[1:-1]}
    if task in ("mnli_m", "mnli_mm", "ax"):
        assert labels <= {"entailment", "neutral", "contradiction"}
    elif task in ("qnli", "rte"):
        assert labels == {"entailment", "not_entailment"}
    elif n_classes:
        assert labels == {"0", "1"}
    else:
        assert all(len(v.split(".")[1]) == 3 for v in labels)


def test_server_folder_round_trip(tmp_path: Path) -> None:
    predictions = {(task, i): (i % n if n else i / 7)
                   for task, (_, n) in glue.TASKS.items() for i in range(5)}
    fmt = GlueDirFormat()
    fmt.write(tmp_path / "sub", predictions, get_spec("glue"))
    names = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert names == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv",
                            "MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv",
                            "AX.tsv"])
    back = fmt.read(tmp_path / "sub", get_spec("glue"))
    assert set(back) == set(predictions)
    for key, (task, value) in back.items():
        assert task == key[0]
        assert value == pytest.approx(predictions[key], abs=5e-4)
    (tmp_path / "sub" / "SST2.tsv").write_text("index\tprediction\n0\t1\n", encoding="utf-8")
    with pytest.raises(RefbenchError, match="SST2.tsv: not a GLUE server file name"):
        fmt.read(tmp_path / "sub", get_spec("glue"))


def test_write_rejects_bad_predictions(tmp_path: Path) -> None:
    fmt = GlueTsvFormat()
    with pytest.raises(RefbenchError, match="out of range"):
        fmt.write(tmp_path / "CoLA.tsv", {0: 2}, get_spec("glue-cola"))
    with pytest.raises(RefbenchError, match="class id"):
        fmt.write(tmp_path / "MNLI-m.tsv", {0: "entailment"}, get_spec("glue-mnli-m"))
    with pytest.raises(RefbenchError, match="not finite"):
        fmt.write(tmp_path / "STS-B.tsv", {0: float("nan")}, get_spec("glue-stsb"))
    assert not list(tmp_path.iterdir())  # nothing half-written


# -- strict reading ------------------------------------------------------------------------
BAD_FILES = {
    "missing header": ("glue-cola", "0\t1\n1\t0\n", 1, "bad header"),
    "empty file": ("glue-cola", "", 1, "empty file"),
    "duplicate index": ("glue-cola", "index\tprediction\n0\t1\n1\t0\n0\t1\n", 4,
                        "duplicate index 0"),
    "NaN": ("glue-stsb", "index\tprediction\n0\t1.5\n1\tnan\n", 3, "not finite"),
    "inf": ("glue-stsb", "index\tprediction\n0\tinf\n", 2, "not finite"),
    "not a number": ("glue-stsb", "index\tprediction\n0\tfour\n", 2, "must be a number"),
    "unknown label": ("glue-mnli-m", "index\tprediction\n0\tentailment\n1\tneutrall\n", 3,
                      "unknown MNLI-m label 'neutrall'"),
    "class id instead of label": ("glue-rte", "index\tprediction\n0\t1\n", 2, "unknown RTE label"),
    "wrong column count": ("glue-sst2", "index\tprediction\n0\t1\t0.9\n", 2, "got 3"),
    "truncated last line": ("glue-qqp", "index\tprediction\n0\t1\n1\t0\n2", 4, "got 1"),
    "truncated label": ("glue-qnli", "index\tprediction\n0\tentailment\n1\tnot_ent", 3,
                        "unknown QNLI label"),
    "bad index": ("glue-wnli", "index\tprediction\n0\t1\nx1\t0\n", 3, "non-negative integer"),
    "negative index": ("glue-wnli", "index\tprediction\n-1\t0\n", 2, "non-negative integer"),
    "blank line inside": ("glue-cola", "index\tprediction\n0\t1\n\n1\t0\n", 3, "got 1"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_prediction_files_name_file_and_line(case: str, tmp_path: Path) -> None:
    spec_name, text, line, message = BAD_FILES[case]
    path = tmp_path / "submission.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RefbenchError, match=message) as info:
        GlueTsvFormat().read(path, get_spec(spec_name))
    assert info.value.path == str(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_reader_accepts_crlf_bom_and_any_finite_float(tmp_path: Path) -> None:
    path = tmp_path / "STS-B.tsv"
    path.write_bytes("\ufeffindex\tprediction\r\n0\t4\r\n1\t-0.5e1\r\n2\t5.25\r\n".encode())
    assert GlueTsvFormat().read(path, get_spec("glue-stsb")) == {0: 4.0, 1: -5.0, 2: 5.25}


# -- references ------------------------------------------------------------------------------
def test_references_refuse_unlabeled_files(tmp_path: Path) -> None:
    test_file = tmp_path / "CoLA" / "test.tsv"
    test_file.parent.mkdir()
    test_file.write_text("index\tsentence\n0\tBill whistled past the house.\n", encoding="utf-8")
    with pytest.raises(RefbenchError, match="has no label") as info:
        GlueTsvFormat().read_references(test_file, get_spec("glue-cola"))
    assert info.value.path == str(test_file)
    with pytest.raises(RefbenchError, match="no CoLA/dev.tsv"):
        GlueTsvFormat().read_references(tmp_path, get_spec("glue-cola"))


def test_references_from_real_excerpts_and_datasets(shared_data: Path) -> None:
    import datasets

    excerpts = shared_data / "glue" / "excerpts" / "hf_datasets_dummy"
    refs = GlueTsvFormat().read_references(excerpts / "MNLI" / "dev_mismatched.tsv",
                                           get_spec("glue-mnli-mm"))
    gold = [line.split("\t")[-1] for line in _lines(excerpts / "MNLI" / "dev_mismatched.tsv")[1:]]
    names = ["entailment", "neutral", "contradiction"]
    assert refs == {i: names.index(g) for i, g in enumerate(gold)}
    # a GLUE root: the RTE dev file is found in its task folder
    rte = GlueTsvFormat().read_references(excerpts, get_spec("glue-rte"))
    assert rte and set(rte.values()) <= {0, 1}

    ds = datasets.Dataset.from_dict({"idx": [0, 1, 2], "label": [1, 0, 1]})
    assert GlueTsvFormat().references_from_dataset(ds, get_spec("glue-cola")) == {0: 1, 1: 0, 2: 1}
    unlabeled = datasets.Dataset.from_dict({"idx": [0, 1], "label": [-1, -1]})
    with pytest.raises(RefbenchError, match="has no label"):
        GlueTsvFormat().references_from_dataset(unlabeled, get_spec("glue-cola"))
    whole = GlueDirFormat().references_from_dataset({"cola": ds}, get_spec("glue"))
    assert whole == {("cola", i): ("cola", v) for i, v in enumerate([1, 0, 1])}
    with pytest.raises(RefbenchError, match="GLUE root folder"):
        GlueDirFormat().references_from_dataset(ds, get_spec("glue"))


# -- specs ---------------------------------------------------------------------------------
def test_specs_load_and_reference_existing_metric_and_format() -> None:
    folder = PACKAGE_ROOT / "benchmarks" / "specs"
    assert set(SPECS) <= set(BENCHMARKS.list("glue*"))
    for name in SPECS:
        spec = load_spec(folder / f"{name}.yaml")
        assert spec.name == name and spec.version == 1 and spec.seeds == (0, 1, 2)
        assert spec.dataset.name == "glue" and spec.dataset.version == "1.0"
        assert spec.tags == ("glue", "nlu") and spec.hidden_split
        assert spec.submission.format in FORMATS
        entry = METRICS.entry(spec.metric.name)
        assert str(entry.meta["version"]) == spec.metric.version
        metric = entry.obj(**spec.metric.kwargs())
        assert spec.primary in metric.output_keys()
        if name == "glue":
            assert spec.submission.format == "glue_dir" and spec.primary == "score"
            continue
        task = spec.metric.kwargs()["task"]
        assert spec_task(spec) == task
        assert spec.submission.format == "glue_tsv"
        assert spec.submission.filename == server_file(task)
        assert len(spec.description) > 80 and spec.hidden_split.startswith("test")
