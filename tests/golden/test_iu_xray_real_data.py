"""IU X-ray on the real files in ../shared/data/iu_xray (never copied into the repository):
the official Open-i `NLMCXR_reports.tgz`, two public copies of R2Gen's `annotation.json`
and the Kaggle tables.

Reference figures come from a second reading written here with the standard library
(`tarfile` + `ElementTree`, `json.load`, `csv.DictReader`), not from refbench's readers:
3,955 XML reports of which 530 have an empty FINDINGS section; R2Gen 2,069 / 296 / 590
studies whose `report` is exactly the XML FINDINGS; Kaggle 3,851 rows (the 3,955 minus the
104 reports without images) of which 514 have empty findings.
"""

from __future__ import annotations

import csv
import json
import shutil
import tarfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from refbench.datasets.iu_xray import IUXrayBuilder
from refbench.datasets.iu_xray.readers import read_kaggle, read_openi, read_r2gen

COPIES = ("x-rgen", "serpent-vlm")
CXR1_FINDINGS = ("The cardiac silhouette and mediastinum size are within normal limits. There "
                 "is no pulmonary edema. There is no focal consolidation. There are no XXXX of "
                 "a pleural effusion. There is no evidence of pneumothorax.")


@pytest.fixture(scope="module")
def data(shared_data: Path) -> Path:
    folder = shared_data / "iu_xray"
    if not (folder / "openi" / "NLMCXR_reports.tgz").is_file():
        pytest.skip(f"IU X-ray files not found in {folder}")
    return folder


@pytest.fixture(scope="module")
def xml(data: Path) -> dict[str, dict]:
    """{uid: {sections, major, images}} read with tarfile + ElementTree."""
    out = {}
    with tarfile.open(data / "openi" / "NLMCXR_reports.tgz") as tar:
        for member in tar.getmembers():
            if not member.name.endswith(".xml"):
                continue
            root = ElementTree.fromstring(tar.extractfile(member).read())
            uid = root.find("uId").get("id")[3:]
            out[uid] = {"sections": {a.get("Label"): a.text or ""
                                     for a in root.iter("AbstractText")},
                        "major": [m.text for m in root.find("MeSH").findall("major")],
                        "images": [p.get("id") for p in root.findall("parentImage")]}
    return out


def test_openi_counts_and_exact_reports(data: Path, xml: dict[str, dict]) -> None:
    assert len(xml) == 3955
    empty = sum(1 for r in xml.values() if not r["sections"]["FINDINGS"].strip())
    assert empty == 530
    reading = read_openi(data / "openi")
    assert len(reading.studies) == 3955 - 530 == 3425
    assert len(reading.skipped["empty FINDINGS"]) == 530
    by_uid = {s.uid: s for s in reading.studies}
    cxr1 = by_uid["1"]
    assert (cxr1.study_id, cxr1.report, cxr1.impression) == ("CXR1", CXR1_FINDINGS,
                                                              "Normal chest x-XXXX.")
    assert (cxr1.indication, cxr1.comparison, cxr1.terms) == ("Positive TB test", "None.",
                                                              ("normal",))
    assert cxr1.image_paths == ("NLMCXR_png/CXR1_1_IM-0001-3001.png",
                                "NLMCXR_png/CXR1_1_IM-0001-4001.png")
    assert by_uid["2"].mesh == ("Cardiomegaly/borderline", "Pulmonary Artery/enlarged")
    assert by_uid["2"].terms == ("cardiomegaly", "pulmonary artery")
    for uid, study in by_uid.items():
        assert study.report == xml[uid]["sections"]["FINDINGS"]
    assert len({t for s in reading.studies for t in s.terms}) == 115
    splits = [s.split for s in reading.studies]
    assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (
        2406, 382, 637)


def test_the_two_r2gen_copies_agree(data: Path) -> None:
    raw = {c: json.loads((data / "r2gen_split" / c / "annotation.json").read_text()) for c in COPIES}
    assert sorted(raw["x-rgen"]) == ["test", "train", "val"]
    assert sorted(raw["serpent-vlm"]) == ["    ", "train", "val"]
    readings = {c: read_r2gen(data / "r2gen_split" / c) for c in COPIES}
    for reading in readings.values():
        splits = [s.split for s in reading.studies]
        assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (
            2069, 296, 590)
    keyed = [{s.study_id: (s.report, s.image_paths, s.split) for s in r.studies}
             for r in readings.values()]
    assert keyed[0] == keyed[1]
    first = readings["serpent-vlm"].studies[0]
    assert (first.study_id, first.split) == ("CXR2384_IM-0942", "train")
    assert first.report.startswith("The heart size and pulmonary vascularity appear within "
                                   "normal limits. A large hiatal hernia is noted.")
    test = next(s for s in readings["x-rgen"].studies if s.split == "test")
    assert test.study_id == "CXR3030_IM-1405" and test.report == (
        "Normal cardiomediastinal silhouette. There is no focal consolidation. There are no "
        "XXXX of a large pleural effusion. There is no pneumothorax. There is no acute bony "
        "abnormality seen.")


def test_r2gen_reports_are_the_xml_findings(data: Path, xml: dict[str, dict]) -> None:
    annotation = json.loads((data / "r2gen_split" / "x-rgen" / "annotation.json").read_text())
    items = [item for split in annotation.values() for item in split]
    assert len(items) == 2955
    for item in items:
        ref = xml[item["id"].split("_")[0][3:]]
        assert item["report"] == ref["sections"]["FINDINGS"]
        # R2Gen's id: the study's first image id without its last "-" part
        assert item["id"] == ref["images"][0].rsplit("-", 1)[0]


def test_kaggle_agrees_with_the_xml(data: Path, xml: dict[str, dict]) -> None:
    path = data / "kaggle_openi_csv" / "indiana_reports.csv"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3851
    assert {r["uid"] for r in rows} == {u for u, r in xml.items() if r["images"]}
    for row in rows:
        ref = xml[row["uid"]]
        for column, label in (("findings", "FINDINGS"), ("impression", "IMPRESSION"),
                              ("indication", "INDICATION"), ("comparison", "COMPARISON")):
            assert row[column] == ref["sections"][label], (row["uid"], column)
        assert row["MeSH"] == ";".join(ref["major"])
    reading = read_kaggle(data / "kaggle_openi_csv")
    assert len(reading.studies) == 3851 - 514 and len(reading.skipped["empty findings"]) == 514
    openi = {s.uid: s for s in read_openi(data / "openi").studies}
    for study in reading.studies:
        other = openi[study.uid]
        assert (study.study_id, study.report, study.terms, study.split) == (
            other.study_id, other.report, other.terms, other.split)
    with open(data / "kaggle_openi_csv" / "indiana_projections.csv", newline="") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 7466
    assert sum(len(s.image_paths) for s in reading.studies) == sum(
        len(openi[s.uid].image_paths) for s in reading.studies) - 4


def test_prepare_real_r2gen_with_openi_sections(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "iu_xray"
    root.mkdir()
    shutil.copyfile(data / "r2gen_split" / "serpent-vlm" / "annotation.json",
                    root / "annotation.json")
    shutil.copyfile(data / "openi" / "NLMCXR_reports.tgz", root / "NLMCXR_reports.tgz")
    builder = IUXrayBuilder()
    report = builder.check(root)
    assert report.ok and "r2gen: 2,955 studies" in report.found
    manifest = builder.prepare(root, tmp_path / "cache", ["r2gen"])
    assert manifest["splits"]["r2gen"] == {"train": 2069, "validation": 296, "test": 590}
    test = builder.load("    ", config="r2gen", cache=tmp_path / "cache")
    row = next(r for r in test if r["study_id"] == "CXR3030_IM-1405")
    assert row["impression"] and row["findings"] == row["report"] and not row["has_images"]
    assert row["image_paths"] == ["images/CXR3030_IM-1405/0.png", "images/CXR3030_IM-1405/1.png"]
