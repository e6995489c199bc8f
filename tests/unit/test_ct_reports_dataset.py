"""COVID-19 CT and CX-CHR builders on synthesized copies of refbench's Chinese layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom", reason="pydicom is not installed (extra 'medical')")

from refbench.datasets.chest_phantom import LUNG_HU, render_ct  # noqa: E402
from refbench.datasets.chinese_reports import CXCHRBuilder, Covid19CTBuilder  # noqa: E402
from refbench.datasets.chinese_reports.builders import NUM_SLICES, SLICE_SIZE  # noqa: E402
from refbench.datasets.chinese_reports.layout import read_layout  # noqa: E402
from refbench.datasets.chinese_reports.synth import ct_report, xray_report  # noqa: E402
from refbench.errors import RefbenchError  # noqa: E402


@pytest.fixture(scope="module")
def ct_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Covid19CTBuilder().synthesize(tmp_path_factory.mktemp("ct") / "src", n=8, seed=2)


@pytest.fixture()
def ct_root(ct_source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ct_source, tmp_path / "root"))


def test_fixed_volume_size_is_pinned() -> None:
    assert (NUM_SLICES, SLICE_SIZE) == (16, 128)


def test_covid_ct_prepares_windowed_volumes(ct_source: Path, tmp_path: Path) -> None:
    builder = Covid19CTBuilder()
    report = builder.check(ct_source)
    assert report.ok, report.problems
    assert any("skipped 1 (in no split list" in h for h in report.hints)
    manifest = builder.prepare(ct_source, tmp_path / "cache")
    counts = manifest["splits"]["default"]
    assert sum(counts.values()) == 8 and all(counts.values())
    splits = [builder.load(s, cache=tmp_path / "cache") for s in ("train", "validation", "test")]
    assert splits[0].features["slices"].dtype == "uint8"      # stored as uint8
    rows = [r for ds in splits for r in ds.with_format("numpy")]
    kinds = {str(r["source_format"]) for r in rows}
    assert kinds == {"dicom", "png"}
    for row in rows:
        assert row["slices"].shape == (NUM_SLICES, 2, SLICE_SIZE, SLICE_SIZE)
        assert 0 <= row["slices"].min() and row["slices"].max() <= 255
        assert int(row["num_source_slices"]) == 12
        if row["source_format"] == "dicom":
            assert row["spacing"].tolist() == [5.0, 5.0, 5.0] and row["slice_thickness"] == 5.0
            # mediastinal window saturates lung tissue to black, the lung window does not
            assert row["slices"][:, 1].min() == 0 and row["slices"][:, 0].mean() > row["slices"][:, 1].mean() * 0.5
        else:
            assert row["spacing"].tolist() == [0.0, 0.0, 0.0]
            names = [Path(p).name for p in row["image_paths"]]
            assert names[:3] == ["1.png", "2.png", "3.png"] and names[-1] == "12.png"
        assert str(row["report"]) == str(row["findings"]) and len(row["terms"]) >= 1


def test_dicom_rows_follow_slice_position(ct_root: Path) -> None:
    import pydicom

    study = next(s for s in read_layout(ct_root).studies if s.image_paths[0].endswith(".dcm"))
    from refbench.datasets.chinese_reports.builders import ct_volume

    columns = ct_volume(ct_root, study)
    z = [float(pydicom.dcmread(ct_root / p).ImagePositionPatient[2]) for p in columns["image_paths"]]
    assert z == sorted(z) and columns["image_paths"] != sorted(columns["image_paths"])


def test_missing_slice_is_reported_and_kept(ct_root: Path, tmp_path: Path) -> None:
    import pydicom

    study = next(s for s in read_layout(ct_root).studies if s.image_paths[0].endswith(".dcm"))
    middle = next(p for p in study.image_paths
                  if int(pydicom.dcmread(ct_root / p).InstanceNumber) == 6)
    (ct_root / middle).unlink()
    builder = Covid19CTBuilder()
    report = builder.check(ct_root)
    assert report.ok and any("1 series with uneven spacing or missing slices" in h
                             for h in report.hints)
    builder.prepare(ct_root, tmp_path / "cache")
    rows = [r for s in ("train", "validation", "test")
            for r in builder.load(s, cache=tmp_path / "cache") if r["study_id"] == study.study_id]
    assert rows[0]["series_problems"][0].startswith("missing slices: 10.000 mm")


def test_lesions_are_visible() -> None:
    rng = np.random.default_rng(0)
    normal, ggo = render_ct([], rng, 12, 64), render_ct(["ggo_left"], rng, 12, 64)
    left_lung = (slice(6, 9), slice(26, 34), slice(40, 50))
    assert normal[left_lung].mean() < LUNG_HU + 50 < ggo[left_lung].mean()
    text, _, terms = ct_report(["ggo_left"])
    assert text.startswith("左肺下叶见磨玻璃密度影。") and terms == ["磨玻璃影", "左肺"]
    assert ct_report([])[2] == ["正常"]
    assert xray_report(["cardiomegaly"])[0].startswith("心影增大。")


def _edit_reports(root: Path, edit) -> None:
    lines = (root / "reports.jsonl").read_text(encoding="utf-8").splitlines()
    objs = [json.loads(line) for line in lines]
    edit(objs)
    (root / "reports.jsonl").write_text("".join(json.dumps(o, ensure_ascii=False) + "\n"
                                                for o in objs), encoding="utf-8")


@pytest.mark.parametrize("edit, message", [
    (lambda o: o[0].update(findings=" "), "'findings' must be a non-empty string"),
    (lambda o: o[1].update(study_id=o[0]["study_id"]), "duplicate study_id"),
    (lambda o: o[0].update(terms=["肺炎X"]), "not in terms.txt"),
    (lambda o: o[0].update(patient_id="../x"), "names a folder"),
    (lambda o: o.pop(0), "is listed but has no line"),
])
def test_layout_errors_name_file_and_line(ct_root: Path, edit, message: str) -> None:
    _edit_reports(ct_root, edit)
    with pytest.raises(RefbenchError, match=message) as err:
        read_layout(ct_root)
    assert ":" in str(err.value) and "\n" not in str(err.value)


def test_bad_bytes_splits_and_images(ct_root: Path) -> None:
    data = (ct_root / "reports.jsonl").read_bytes().split(b"\n")
    data[2] = data[2][:-3] + b"\xff\"}"
    (ct_root / "reports.jsonl").write_bytes(b"\n".join(data))
    with pytest.raises(RefbenchError, match="not valid UTF-8") as err:
        read_layout(ct_root)
    assert "reports.jsonl:3" in str(err.value)


def test_split_and_image_rules(ct_root: Path) -> None:
    first = read_layout(ct_root).studies[0]
    (ct_root / "images" / "p9999" / "s99999").mkdir(parents=True)
    reading = read_layout(ct_root)
    assert reading.skipped["image folder that matches no study"] == ["images/p9999/s99999"]
    with open(ct_root / "splits" / "test.txt", "a") as handle:
        handle.write(f"{first.study_id}\n")
    with pytest.raises(RefbenchError, match="also listed in splits/train.txt"):
        read_layout(ct_root)
    shutil.rmtree(ct_root / "splits")
    with pytest.raises(RefbenchError, match="missing folder splits/"):
        read_layout(ct_root)


def test_study_without_images_and_mixed_series(ct_root: Path, tmp_path: Path) -> None:
    study = read_layout(ct_root).studies[0]
    folder = ct_root / Path(study.image_paths[0]).parent
    (folder / "notes.txt").write_text("x")
    with pytest.raises(RefbenchError, match="not a DICOM file, PNG or JPG"):
        Covid19CTBuilder().prepare(ct_root, tmp_path / "cache")
    shutil.rmtree(folder)
    with pytest.raises(RefbenchError, match="has no images") as err:
        read_layout(ct_root)
    assert f"reports.jsonl:{study.line}" in str(err.value)


def test_gated_check_explains_access(tmp_path: Path) -> None:
    report = Covid19CTBuilder().check(tmp_path)
    assert not report.ok and any("covid19ct.github.io" in h and "agreement" in h
                                 for h in report.hints)
    assert Covid19CTBuilder.gated and CXCHRBuilder.gated
    assert any("private" in h for h in CXCHRBuilder().check(tmp_path / "absent").hints)
    assert "reports.jsonl" in Covid19CTBuilder().layout()


def test_cx_chr_keeps_view_bytes(tmp_path: Path) -> None:
    builder = CXCHRBuilder()
    root = builder.synthesize(tmp_path / "src", n=6, seed=1)
    assert builder.check(root).ok
    builder.prepare(root, tmp_path / "cache")
    row = builder.load("train", cache=tmp_path / "cache")[0]
    assert [Path(p).name for p in row["image_paths"]] == ["frontal.png", "lateral.jpg"]
    assert row["images"][0]["bytes"].startswith(b"\x89PNG")
    assert row["images"][1]["bytes"].startswith(b"\xff\xd8")
    victim = root / row["image_paths"][0]
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(RefbenchError, match="truncated image"):
        builder.prepare(root, tmp_path / "cache2")
