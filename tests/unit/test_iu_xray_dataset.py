"""IU X-ray builder and readers on synthesized copies of the three layouts."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from refbench.datasets.iu_xray import IUXrayBuilder
from refbench.datasets.iu_xray.readers import (
    R2GEN_KEYS,
    hash_split,
    normalise_terms,
    read_kaggle,
    read_openi,
    read_r2gen,
)
from refbench.datasets.iu_xray.synth import english_report
from refbench.errors import RefbenchError
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return IUXrayBuilder().synthesize(tmp_path_factory.mktemp("iu") / "src", n=20, seed=3)


@pytest.fixture()
def root(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy each test may break."""
    return Path(shutil.copytree(synth_root, tmp_path / "root"))


def only(root: Path, keep: list[str]) -> Path:
    for path in root.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return root


def test_all_three_layouts_agree(synth_root: Path, tmp_path: Path) -> None:
    builder = IUXrayBuilder()
    report = builder.check(synth_root)
    assert report.ok, report.problems
    assert any("openi: skipped 1 of 21 (empty FINDINGS" in h for h in report.hints)
    manifest = builder.prepare(synth_root, tmp_path / "cache")
    assert set(manifest["splits"]) == {"r2gen", "openi", "kaggle"}
    counts = {c: manifest["splits"][c] for c in ("r2gen", "openi", "kaggle")}
    assert counts["r2gen"] == counts["openi"] == counts["kaggle"] == {"train": 14, "validation": 2, "test": 4}
    by_config = {}
    for config in ("r2gen", "openi", "kaggle"):
        ds = builder.load("test", config=config, cache=tmp_path / "cache")
        by_config[config] = {row["uid"]: row for row in ds}
    assert by_config["r2gen"].keys() == by_config["openi"].keys() == by_config["kaggle"].keys()
    for uid, row in by_config["openi"].items():
        r2gen, kaggle = by_config["r2gen"][uid], by_config["kaggle"][uid]
        assert row["study_id"] == kaggle["study_id"] == f"CXR{uid}"
        assert r2gen["study_id"].startswith(f"CXR{uid}_IM-")
        assert row["report"] == r2gen["report"] == kaggle["report"] == row["findings"]
        # the Open-i archive beside annotation.json fills the R2Gen rows' other sections
        assert r2gen["impression"] == row["impression"] and r2gen["terms"] == row["terms"]
        assert row["has_images"] and len(row["images"]) == 2
        assert row["images"][0]["bytes"].startswith(b"\x89PNG")


def test_reports_state_what_the_images_show() -> None:
    text, impression, mesh = english_report(["cardiomegaly", "effusion_left"])
    assert text == ("The heart is enlarged. There is a left pleural effusion. "
                    "The lungs are clear.")
    assert mesh == ["Cardiomegaly", "Pleural Effusion/left"]
    assert normalise_terms(mesh) == ("cardiomegaly", "pleural effusion")
    assert english_report([]) == ("The heart is normal in size. There is no pleural effusion or "
                                  "pneumothorax. The lungs are clear.",
                                  "No acute cardiopulmonary abnormality.", ["normal"])


def test_terms_and_split_rules() -> None:
    assert normalise_terms(["Thoracic Vertebrae/degenerative", "Thoracic vertebrae",
                            "No Indexing", "Subcutaneous  Emphysema", "normal"]) == (
        "thoracic vertebrae", "subcutaneous emphysema", "normal")
    # pinned: the split of a uid never changes (sha256("iu_xray:<uid>") mod 10: 7/1/2)
    assert [hash_split(u) for u in ("1", "2", "3", "4", "5")] == [
        "train", "train", "validation", "train", "train"]
    counts = {s: 0 for s in ("train", "validation", "test")}
    for uid in range(1, 10001):
        counts[hash_split(str(uid))] += 1
    assert abs(counts["train"] - 7000) < 200 and abs(counts["validation"] - 1000) < 100


def test_r2gen_keys_accepted_exactly(root: Path) -> None:
    assert set(R2GEN_KEYS) == {"train", "val", "validation", "test", "    "}
    data = json.loads((root / "annotation.json").read_text())
    data["    "] = data.pop("test")                      # the SERPENT-VLM copy's test key
    (root / "annotation.json").write_text(json.dumps(data))
    reading = read_r2gen(root)
    assert sum(s.split == "test" for s in reading.studies) == 4
    data["   "] = data.pop("    ")                       # three spaces: not accepted
    (root / "annotation.json").write_text(json.dumps(data))
    with pytest.raises(RefbenchError, match="unknown split key '   '"):
        read_r2gen(root)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["train"][0].update(report="  "), "'report' must be a non-empty string"),
    (lambda d: d["train"].append(dict(d["train"][0])), "also at train\\[0\\]"),
    (lambda d: d["train"][0].update(split="test"), "'split' is 'test'"),
    (lambda d: d["train"][0].update(id="1000_IM-0003"), "'id' must look like"),
    (lambda d: d["val"][0].update(image_path=[]), "'image_path' must be"),
])
def test_bad_annotations_are_one_line_errors(root: Path, change, message: str) -> None:
    data = json.loads((root / "annotation.json").read_text())
    change(data)
    (root / "annotation.json").write_text(json.dumps(data, indent=4))
    with pytest.raises(RefbenchError, match=message) as err:
        read_r2gen(root)
    assert "annotation.json" in str(err.value) and "\n" not in str(err.value)


def test_bad_bytes_name_file_and_line(root: Path) -> None:
    path = root / "annotation.json"
    path.write_bytes(b'{"train": [\n{"id": "CXR1_IM-0001", "report": "caf\xe9"}]}')
    with pytest.raises(RefbenchError, match="not valid UTF-8") as err:
        read_r2gen(root)
    assert "annotation.json:2" in str(err.value)
    path.write_text('{"train": [\n{"id": ]}')
    with pytest.raises(RefbenchError, match="invalid JSON") as err:
        read_r2gen(root)
    assert "annotation.json:2" in str(err.value)
    path.unlink()
    path.mkdir()
    with pytest.raises(RefbenchError, match="a folder"):
        read_r2gen(root)


def _rewrite_archive(root: Path, edit) -> None:
    with tarfile.open(root / "NLMCXR_reports.tgz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    edit(files)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / "NLMCXR_reports.tgz").write_bytes(buffer.getvalue())


def test_openi_xml_rules(root: Path) -> None:
    reading = read_openi(root)
    assert len(reading.studies) == 20 and len(reading.skipped["empty FINDINGS"]) == 1
    first = next(iter(sorted(reading.studies, key=lambda s: int(s.uid))))

    def drop_findings(files: dict[str, bytes]) -> None:
        name = f"ecgen-radiology/{first.uid}.xml"
        files[name] = files[name].replace(b'Label="FINDINGS"', b'Label="NOTES"')

    _rewrite_archive(root, drop_findings)
    with pytest.raises(RefbenchError, match="no FINDINGS section") as err:
        read_openi(root)
    assert f"ecgen-radiology/{first.uid}.xml" in str(err.value)

    def break_xml(files: dict[str, bytes]) -> None:
        files[f"ecgen-radiology/{first.uid}.xml"] = b"<?xml version='1.0'?>\n<eCitation>\n<uId"

    _rewrite_archive(root, break_xml)
    with pytest.raises(RefbenchError, match="malformed XML") as err:
        read_openi(root)
    assert f"{first.uid}.xml:3" in str(err.value)
    data = (root / "NLMCXR_reports.tgz").read_bytes()
    (root / "NLMCXR_reports.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(RefbenchError, match="truncated or corrupt archive"):
        read_openi(root)


def test_unmatched_and_broken_images(root: Path, tmp_path: Path) -> None:
    (root / "NLMCXR_png" / "CXR99999_IM-9999-1001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert read_openi(root).unmatched_images == ["NLMCXR_png/CXR99999_IM-9999-1001.png"]
    report = IUXrayBuilder().check(root, ["openi"])
    assert report.ok and any("1 image file(s) match no report" in h for h in report.hints)
    victim = sorted((root / "images").glob("CXR*/0.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(RefbenchError, match="truncated image") as err:
        IUXrayBuilder().prepare(root, tmp_path / "cache", ["r2gen"])
    assert victim.name in str(err.value)
    assert not (tmp_path / "cache" / "iu_xray" / "1.0").exists()   # nothing half-written


def test_kaggle_rules(root: Path) -> None:
    reading = read_kaggle(root)
    assert len(reading.studies) == 20 and len(reading.skipped["empty findings"]) == 1
    with open(root / "indiana_projections.csv", "a") as handle:
        handle.write("99999,99999_IM-9999-1001.dcm.png,Frontal\n")
    assert len(read_kaggle(root).skipped["image row whose uid has no report"]) == 1
    lines = (root / "indiana_reports.csv").read_text().splitlines(keepends=True)
    (root / "indiana_reports.csv").write_text("".join(lines + [lines[1]]))
    with pytest.raises(RefbenchError, match="duplicate uid") as err:
        read_kaggle(root)
    assert f"indiana_reports.csv:{len(lines) + 1}" in str(err.value)
    (root / "indiana_reports.csv").write_text("uid,findings\n1,x\n")
    with pytest.raises(RefbenchError, match="header must be"):
        read_kaggle(root)


def test_auto_detect_prepares_the_layouts_present(root: Path, tmp_path: Path) -> None:
    only(root, ["annotation.json", "images"])
    builder = IUXrayBuilder()
    manifest = builder.prepare(root, tmp_path / "cache")
    assert list(manifest["splits"]) == ["r2gen"]
    row = builder.load("val", config="r2gen", cache=tmp_path / "cache")[0]
    assert row["findings"] == row["report"] and row["impression"] == "" and row["terms"] == []
    assert builder.check(root).ok
    assert not builder.check(root, ["kaggle"]).ok
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RefbenchError, match="no IU X-ray layout found"):
        builder.prepare(empty, tmp_path / "cache2")
    assert not builder.check(empty).ok


def test_cli_errors_exit_2(root: Path, tmp_path: Path) -> None:
    (root / "annotation.json").write_text('{"train": [{"id": "x"}]}')
    code = run_cli(["datasets", "prepare", "iu_xray", "--root", str(root), "--config", "r2gen",
                    "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
