"""`refbench datasets export`: a prepared cache becomes a Hub dataset folder that
`datasets.load_dataset` reads back unchanged, with a valid card, written atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets as hf_datasets
import pytest
import yaml

from refbench.datasets import export as export_mod
from refbench.datasets.base import get_builder, load_prepared
from refbench.datasets.export import describe_export, export_dataset, is_export, license_id
from refbench.errors import RefbenchError
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding synthetic GLUE (sst2, stsb) and SQuAD v1.1."""
    base = tmp_path_factory.mktemp("export-src")
    glue = get_builder("glue")
    glue.prepare(glue.synthesize(base / "glue", n=40, seed=0), base / "cache", ["sst2", "stsb"])
    squad = get_builder("squad")
    squad.prepare(squad.synthesize(base / "squad", n=40, seed=0), base / "cache", ["v1.1"])
    return base / "cache"


@pytest.fixture(scope="module")
def glue_export(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_dataset("glue", tmp_path_factory.mktemp("export") / "glue-hub",
                          cache_dir=str(cache))


def front_matter(folder: Path) -> dict[str, Any]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def assert_same(ours: hf_datasets.Dataset, ref: hf_datasets.Dataset) -> None:
    assert ours.features == ref.features
    assert len(ours) == len(ref)
    assert ours.to_list() == ref.to_list()


def test_load_dataset_reads_the_export_back_unchanged(glue_export: Path, cache: Path) -> None:
    assert sorted(p.relative_to(glue_export).as_posix()
                  for p in (glue_export / "data").rglob("*.parquet")) == [
        f"data/{c}/{s}-00000-of-00001.parquet" for c in ("sst2", "stsb")
        for s in ("test", "train", "validation")]
    ours = hf_datasets.load_dataset(str(glue_export), "sst2", split="validation")
    ref = load_prepared("glue", "validation", "sst2", str(cache))
    assert_same(ours, ref)
    assert ours.features["label"].names == ["negative", "positive"]
    assert_same(hf_datasets.load_dataset(str(glue_export), "stsb", split="test"),
                load_prepared("glue", "test", "stsb", str(cache)))


def test_card_front_matter_declares_configs_licence_and_features(glue_export: Path,
                                                                 cache: Path) -> None:
    meta = front_matter(glue_export)
    assert meta["license"] == "other" and meta["license_link"] == "LICENSE.md"
    assert meta["license_name"] == "glue-license" and meta["pretty_name"] == "GLUE"
    assert (glue_export / "LICENSE.md").read_text().count("CoLA research use") == 1
    assert [c["config_name"] for c in meta["configs"]] == ["sst2", "stsb"]
    assert meta["configs"][0]["default"] is True and "default" not in meta["configs"][1]
    assert meta["configs"][0]["data_files"][1] == {"split": "validation",
                                                   "path": "data/sst2/validation-*"}
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    assert {s["name"]: s["num_examples"] for s in infos["sst2"]["splits"]} == \
        {"train": 40, "validation": 10, "test": 10}
    label = next(f for f in infos["sst2"]["features"] if f["name"] == "label")
    assert label["dtype"]["class_label"]["names"] == {"0": "negative", "1": "positive"}
    assert "extra_gated_prompt" not in meta and is_export(glue_export)
    body = (glue_export / "README.md").read_text(encoding="utf-8")
    manifest = json.loads((cache / "glue" / "1.0" / "manifest.json").read_text())
    for needle in (manifest["fingerprint"], "```bibtex", "wang2019glue",
                   "https://gluebenchmark.com", "`refbench datasets prepare glue`",
                   "ClassLabel(names=['negative', 'positive'])"):
        assert needle in body, needle
    assert describe_export(glue_export)["configs"]["stsb"]["train"]["rows"] == 40


def test_squad_gets_a_standard_licence_and_nested_features(cache: Path, tmp_path: Path) -> None:
    out = export_dataset("squad", tmp_path / "squad", cache_dir=str(cache), max_shard_rows=15)
    meta = front_matter(out)
    assert meta["license"] == "cc-by-sa-4.0" and "license_name" not in meta
    assert not (out / "LICENSE.md").exists()
    assert meta["configs"] == [{"config_name": "v1.1", "default": True, "data_files": [
        {"split": "train", "path": "data/v1.1/train-*"},
        {"split": "validation", "path": "data/v1.1/validation-*"}]}]
    assert len(list((out / "data" / "v1.1").glob("train-*-of-00003.parquet"))) == 3
    assert_same(hf_datasets.load_dataset(str(out), "v1.1", split="train"),
                load_prepared("squad", "train", "v1.1", str(cache)))


def test_licence_ids_are_mapped_only_when_clear() -> None:
    assert license_id("CC BY-NC-SA 3.0") == "cc-by-nc-sa-3.0"
    assert license_id("CC BY-SA 4.0 (questions and answers; contexts are from Wikipedia)") == \
        "cc-by-sa-4.0"
    assert license_id("MIT") == "mit"
    assert license_id("Waymo Dataset License Agreement for Non-Commercial Use") is None
    assert license_id(get_builder("glue").license) is None


def test_a_foreign_folder_or_file_is_never_replaced(cache: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(RefbenchError, match="non-empty folder"):
        export_dataset("glue", mine, cache_dir=str(cache))
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "keep me"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RefbenchError, match="not a folder"):
        export_dataset("glue", tmp_path / "afile", cache_dir=str(cache))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine"]


def test_an_earlier_export_is_replaced_and_a_failure_leaves_nothing(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "hub"
    export_dataset("glue", out, cache_dir=str(cache))
    export_dataset("glue", out, configs=["stsb"], cache_dir=str(cache))
    assert sorted(p.name for p in (out / "data").iterdir()) == ["stsb"]

    def boom(*args: Any, **kwargs: Any) -> list[Path]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "write_parquet_shards", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_dataset("glue", tmp_path / "new", cache_dir=str(cache))
    with pytest.raises(RuntimeError, match="disk full"):
        export_dataset("glue", out, cache_dir=str(cache))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["stsb"]


def test_unprepared_data_and_broken_caches_are_one_line_errors(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="not prepared"):
        export_dataset("squad", tmp_path / "a", cache_dir=str(tmp_path / "empty"))
    with pytest.raises(RefbenchError,
                       match=r"'cola' of 'glue' is not prepared \(prepared: sst2, stsb\)"):
        export_dataset("glue", tmp_path / "a", configs=["cola"], cache_dir=str(cache))
    with pytest.raises(RefbenchError, match="'nope' of 'glue' is unknown"):
        export_dataset("glue", tmp_path / "a", configs=["nope"], cache_dir=str(cache))
    broken = tmp_path / "broken"
    shutil.copytree(cache / "glue", broken / "glue")
    shutil.rmtree(broken / "glue" / "1.0" / "sst2" / "validation")
    (broken / "glue" / "1.0" / "sst2" / "validation").write_text("")
    with pytest.raises(RefbenchError, match="found a file") as info:
        export_dataset("glue", tmp_path / "a", cache_dir=str(broken))
    assert str(broken / "glue" / "1.0" / "sst2" / "validation") in str(info.value)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_cli_exports_and_reports_bad_input_in_one_line(
        cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert run_cli(["datasets", "export", "glue", "--out", str(out), "--cache-dir", str(cache),
                    "-c", "sst2", "--shard-rows", "25", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "glue" and list(report["configs"]) == ["sst2"]
    assert report["configs"]["sst2"]["train"] == {"rows": 40, "files": [
        "data/sst2/train-00000-of-00002.parquet", "data/sst2/train-00001-of-00002.parquet"]}

    assert run_cli(["datasets", "export", "glue", "--out", str(tmp_path / "x"), "--cache-dir",
                    str(cache), "-c", "cola"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refbench: error:") and "\n" not in err and "prepared: sst2, stsb" in err
    assert run_cli(["datasets", "export", "glue", "--out", str(tmp_path / "x"), "--cache-dir",
                    str(cache), "--shard-rows", "0"]) == 2
    assert not (tmp_path / "x").exists()
