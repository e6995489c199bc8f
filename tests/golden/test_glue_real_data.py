"""The GLUE parser on real files: head excerpts of every official TSV, the full CoLA dev
(rebuilt from the CoLA public release), the original STS Benchmark dev file and MRPC
derived from the raw Microsoft files. Expected values were read off the files by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import refbench
from refbench.datasets.glue.builder import (GlueBuilder, derive_mrpc, read_config, read_sts_benchmark_csv,
                                    read_task_file)

DUMMY = "glue/excerpts/hf_datasets_dummy"

# (config, split, file relative to the dummy folder, rows, first row: text fields..., label)
EXCERPTS = [
    ("cola", "train", "CoLA/train.tsv", 3,
     ("Our friends won't buy this analysis, let alone the next one we propose.",), 1),
    ("cola", "validation", "CoLA/dev.tsv", 2,
     ("The sailors rode the breeze clear of the rocks.",), 1),
    ("cola", "test", "CoLA/test.tsv", 1, ("Bill whistled past the house.",), -1),
    ("sst2", "train", "SST-2/train.tsv", 3, ("hide new secretions from the parental units ",), 0),
    ("sst2", "validation", "SST-2/dev.tsv", 2,
     ("it 's a charming and often affecting journey . ",), 1),
    ("sst2", "test", "SST-2/test.tsv", 1, ("uneasy mishmash of styles and genres .",), -1),
    ("stsb", "train", "STS-B/train.tsv", 3,
     ("A plane is taking off.", "An air plane is taking off."), 5.0),
    ("stsb", "validation", "STS-B/dev.tsv", 2,
     ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing."), 5.0),
    ("stsb", "test", "STS-B/test.tsv", 1,
     ("A girl is styling her hair.", "A girl is brushing her hair."), -1),
    ("qqp", "train", "QQP/train.tsv", 3,
     ("How is the life of a math student? Could you describe your own experiences?",
      "Which level of prepration is enough for the exam jlpt5?"), 0),
    ("qqp", "validation", "QQP/dev.tsv", 2,
     ("Why are African-Americans so beautiful?", "Why are hispanics so beautiful?"), 0),
    ("qqp", "test", "QQP/test.tsv", 1,
     ("Would the idea of Trump and Putin in bed together scare you, given the geopolitical "
      "implications?", None), -1),
    ("mnli", "train", "MNLI/train.tsv", 3,
     ("Conceptually cream skimming has two basic dimensions - product and geography.",
      "Product and geography are what make cream skimming work. "), 1),
    ("mnli", "validation_matched", "MNLI/dev_matched.tsv", 2,
     ("The new rights are nice enough", "Everyone really likes the newest benefits "), 1),
    ("mnli", "validation_mismatched", "MNLI/dev_mismatched.tsv", 2,
     ("Your contribution helped make it possible for us to provide our students with a quality "
      "education.", "Your contributions were of no help with our students' education."), 2),
    ("mnli", "test_matched", "MNLI/test_matched.tsv", 1,
     ("Hierbas, ans seco, ans dulce, and frigola are just a few names worth keeping a look-out "
      "for.", "Hierbas is a name worth looking out for."), -1),
    ("mnli", "test_mismatched", "MNLI/test_mismatched.tsv", 1,
     ("What have you decided, what are you going to do?", "So what's your decision?"), -1),
    ("qnli", "train", "QNLI/train.tsv", 3, ("When did the third Digimon series begin?", None), 1),
    ("qnli", "validation", "QNLI/dev.tsv", 2,
     ("What came into force after the new constitution was herald?",
      "As of that day, the new constitution heralding the Second Republic came into force."), 0),
    ("qnli", "test", "QNLI/test.tsv", 1,
     ("What organization is devoted to Jihad against Israel?", None), -1),
    ("rte", "train", "RTE/train.tsv", 3,
     ("No Weapons of Mass Destruction Found in Iraq Yet.",
      "Weapons of Mass Destruction Found in Iraq."), 1),
    ("rte", "validation", "RTE/dev.tsv", 2, (None, "Christopher Reeve had an accident."), 1),
    ("rte", "test", "RTE/test.tsv", 1, (None, "Shukla is related to Mangla."), -1),
    ("wnli", "train", "WNLI/train.tsv", 3,
     ("I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
      "The carrot had a hole."), 1),
    ("wnli", "validation", "WNLI/dev.tsv", 2,
     ("The drain is clogged with hair. It has to be cleaned.", "The hair has to be cleaned."), 0),
    ("wnli", "test", "WNLI/test.tsv", 1,
     (None, "Horses ran away when Maude and Dora came in sight."), -1),
    ("ax", "test", "ax.tsv", 3, ("The cat sat on the mat.", "The cat did not sit on the mat."), -1),
]


@pytest.mark.parametrize("config,split,rel,count,texts,label", EXCERPTS,
                         ids=[f"{e[0]}-{e[1]}" for e in EXCERPTS])
def test_excerpt_parses(shared_data: Path, config: str, split: str, rel: str, count: int,
                        texts: tuple, label: float) -> None:
    from refbench.datasets.glue.builder import TASKS

    rows = read_task_file(shared_data / DUMMY / rel, config, split)
    assert len(rows) == count
    assert [r["idx"] for r in rows] == list(range(count))
    first = rows[0]
    for name, expected in zip(TASKS[config].text_fields, texts):
        if expected is not None:
            assert first[name] == expected
    assert first["label"] == label


def test_transformers_mrpc_dev_with_bom(shared_data: Path) -> None:
    rows = read_task_file(shared_data / "glue/excerpts/transformers_tests_samples/MRPC/dev.tsv",
                          "mrpc", "validation")
    assert len(rows) == 6
    assert rows[0]["sentence1"] == ("He said the foodservice pie business doesn 't fit the "
                                    "company 's long-term growth strategy .")
    assert rows[0]["sentence2"] == ('" The foodservice pie business does not fit our '
                                    "long-term growth strategy .")
    assert [r["label"] for r in rows] == [1, 0, 0, 1, 0, 1]


def test_sts_benchmark_dev_matches_glue_stsb_dev(shared_data: Path) -> None:
    sts = read_sts_benchmark_csv(shared_data / "glue/stsbenchmark/sts-dev.csv")
    assert len(sts) == 1500
    assert sts[0] == {"idx": 0, "sentence1": "A man with a hard hat is dancing.",
                      "sentence2": "A man wearing a hard hat is dancing.", "label": 5.0}
    # GLUE's STS-B/dev.tsv repackages sts-dev.csv: the 9-row excerpt is its head
    glue = read_task_file(shared_data / "glue/excerpts/transformers_tests_samples/STS-B/dev.tsv",
                          "stsb", "validation")
    assert len(glue) == 9
    assert [r["label"] for r in glue] == [5.0, 4.75, 5.0, 2.4, 2.75, 2.615, 5.0, 2.333, 3.75]
    assert glue == sts[:9]
    # rows with the two extra source columns parse too
    lines = (shared_data / "glue/stsbenchmark/sts-dev.csv").read_text(encoding="utf-8").splitlines()
    wide = [i for i, line in enumerate(lines) if len(line.split("\t")) == 9]
    assert wide and all(sts[i]["sentence1"] == lines[i].split("\t")[5] for i in wide)


def test_cola_dev_rebuilt_from_public_release(shared_data: Path, tmp_path: Path) -> None:
    raw = shared_data / "glue/cola_public/raw"
    data = (raw / "in_domain_dev.tsv").read_bytes() + (raw / "out_of_domain_dev.tsv").read_bytes()
    (tmp_path / "CoLA").mkdir()
    (tmp_path / "CoLA" / "dev.tsv").write_bytes(data)
    rows = read_task_file(tmp_path / "CoLA" / "dev.tsv", "cola", "validation")
    assert len(rows) == 1043
    fields = [line.split("\t") for line in data.decode("utf-8").split("\n") if line]
    ones = sum(1 for f in fields if f[1] == "1")
    zeros = sum(1 for f in fields if f[1] == "0")
    assert ones + zeros == 1043
    assert sum(1 for r in rows if r["label"] == 1) == ones
    assert sum(1 for r in rows if r["label"] == 0) == zeros
    assert rows[527]["sentence"] == fields[527][3] == "Somebody just left - guess who."
    assert rows[-1]["sentence"] == fields[-1][3]


def test_mrpc_derived_from_raw_microsoft_files(shared_data: Path) -> None:
    splits = derive_mrpc(shared_data / DUMMY / "MRPC")
    assert {k: len(v) for k, v in splits.items()} == {"train": 10, "validation": 8, "test": 15}
    # dev_ids.tsv lists the first 8 pairs of msr_paraphrase_train.txt
    assert [r["label"] for r in splits["validation"]] == [1, 0, 1, 0, 1, 1, 0, 1]
    assert splits["validation"][0]["sentence1"].startswith("Amrozi accused his brother , whom")
    assert [r["label"] for r in splits["train"]] == [0, 1, 0, 0, 0, 1, 1, 0, 0, 0]
    assert splits["train"][0]["sentence1"] == ("That compared with $ 35.18 million , or 24 cents "
                                               "per share , in the year-ago period .")
    assert splits["test"][0]["sentence1"].startswith("PCCW 's chief operating officer")
    assert {r["label"] for r in splits["test"]} == {-1}
    assert [r["idx"] for r in splits["test"]] == list(range(15))


def test_excerpt_root_prepares_and_loads(shared_data: Path, tmp_path: Path) -> None:
    import refbench

    root = tmp_path / "glue"
    shutil.copytree(shared_data / DUMMY, root)
    builder = GlueBuilder()
    report = builder.check(root)
    assert report.ok, [p.format() for p in report.problems]
    cache = tmp_path / "cache"
    manifest = builder.prepare(root, cache, configs=["sst2", "mrpc", "stsb", "mnli", "ax"])
    assert manifest["splits"]["mrpc"] == {"train": 10, "validation": 8, "test": 15}
    assert manifest["splits"]["ax"] == {"test": 3}
    assert "MRPC/dev_ids.tsv" in manifest["sources"]

    ds = refbench.load_dataset("glue", "validation", config="sst2", cache_dir=str(cache))
    assert ds.features["label"].names == ["negative", "positive"]
    assert ds.features["idx"].dtype == "int32"
    assert ds[0] == {"idx": 0, "sentence": "it 's a charming and often affecting journey . ",
                     "label": 1}
    mnli = refbench.load_dataset("glue", "validation_mismatched", config="mnli",
                                 cache_dir=str(cache))
    assert mnli.features["label"].names == ["entailment", "neutral", "contradiction"]
    assert mnli["label"] == [2, 2]
    stsb = refbench.load_dataset("glue", "validation", config="stsb", cache_dir=str(cache))
    assert stsb.features["label"].dtype == "float32"
    assert stsb["label"] == pytest.approx([5.0, 4.75])
    assert read_config(root, "ax")["test"][1]["premise"] == "The cat did not sit on the mat."


def test_raw_sts_benchmark_root_prepares_like_glue_stsb(shared_data: Path, tmp_path: Path) -> None:
    """STS-B given as the raw STS Benchmark release (the real sts-dev.csv; standing in for
    sts-train.csv and sts-test.csv too, which are not in the samples): check passes, the
    dev split equals GLUE's STS-B/dev.tsv head, test scores are dropped as GLUE does."""
    real = shared_data / "glue/stsbenchmark/sts-dev.csv"
    root = tmp_path / "glue"
    (root / "stsbenchmark").mkdir(parents=True)
    for name in ("sts-train.csv", "sts-dev.csv", "sts-test.csv"):
        shutil.copyfile(real, root / "stsbenchmark" / name)
    builder = GlueBuilder()
    report = builder.check(root, ["stsb"])
    assert report.ok, [p.format() for p in report.problems]
    splits = read_config(root, "stsb")
    assert {k: len(v) for k, v in splits.items()} == {"train": 1500, "validation": 1500,
                                                      "test": 1500}
    assert {r["label"] for r in splits["test"]} == {-1}
    glue = read_task_file(shared_data / "glue/excerpts/transformers_tests_samples/STS-B/dev.tsv",
                          "stsb", "validation")
    assert splits["validation"][:9] == glue
    cache = tmp_path / "cache"
    manifest = builder.prepare(root, cache, configs=["stsb"])
    assert manifest["splits"]["stsb"] == {"train": 1500, "validation": 1500, "test": 1500}
    dev = refbench.load_dataset("glue", "validation", config="stsb", cache_dir=str(cache))
    assert dev[0] == {"idx": 0, "sentence1": "A man with a hard hat is dancing.",
                      "sentence2": "A man wearing a hard hat is dancing.", "label": 5.0}


def test_check_on_the_sample_folders_gives_hints(shared_data: Path) -> None:
    glue = shared_data / "glue"
    report = GlueBuilder().check(glue)
    assert not report.ok
    # only sts-dev.csv of the raw STS Benchmark release is there: the others are named
    missing = {Path(p.path).name for p in report.problems if p.kind == "missing file"}
    assert {"sts-train.csv", "sts-test.csv"} <= missing
    assert report.hints == [f"{glue / DUMMY.split('/', 1)[1]} holds GLUE task folders (CoLA, "
                            f"SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI): use --root "
                            f"{glue / DUMMY.split('/', 1)[1]}"]
    task = GlueBuilder().check(shared_data / DUMMY / "CoLA")
    assert task.hints == [(f"{shared_data / DUMMY / 'CoLA'} is one task's folder, not the GLUE "
                           f"root that holds the task folders (CoLA/, SST-2/, ...): use --root "
                           f"{shared_data / DUMMY} -c cola")]
    raw = GlueBuilder().check(glue / "stsbenchmark")
    assert raw.hints[0].endswith(f"use --root {glue} -c stsb")
