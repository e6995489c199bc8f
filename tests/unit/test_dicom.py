"""DICOM reading on real files from `pydicom-data` (extra `medical`): HU, windows, series
order, geometry problems, compressed transfer syntaxes and broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed (extra 'medical')")

from pydicom.data import get_testdata_file  # noqa: E402

from refbench.datasets.dicom import (  # noqa: E402
    GAP_FACTOR,
    LUNG_WINDOW,
    MEDIASTINAL_WINDOW,
    PADDING_HU,
    SPACING_TOLERANCE,
    Window,
    read_series,
    read_slice,
    sample_indices,
)
from refbench.errors import RefbenchError  # noqa: E402


def real(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in the installed pydicom-data")
    return Path(path)


def write_series(folder: Path, z_and_instance: list[tuple[float, int]], names: list[str] | None = None,
                 orientation: list[float] | None = None, series_uid: str | None = None) -> list[Path]:
    """Copies of the real CT_small.dcm at the given positions (along the slice normal)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(real("CT_small.dcm"))
    iop = orientation or [1, 0, 0, 0, 1, 0]
    normal = np.cross(iop[:3], iop[3:])
    out = []
    for k, (z, instance) in enumerate(z_and_instance):
        ds = base.copy()
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = [float(v) for v in np.array([-158.1, -179.0, 0.0]) + z * normal]
        ds.InstanceNumber = instance
        if series_uid and k == len(z_and_instance) - 1:
            ds.SeriesInstanceUID = series_uid
        path = folder / (names[k] if names else f"f{k:02d}.dcm")
        ds.save_as(path)
        out.append(path)
    return out


def test_named_windows_are_pinned() -> None:
    assert (LUNG_WINDOW.center, LUNG_WINDOW.width) == (-600.0, 1500.0)
    assert (MEDIASTINAL_WINDOW.center, MEDIASTINAL_WINDOW.width) == (40.0, 400.0)


def test_window_follows_the_dicom_linear_function() -> None:
    # PS3.3 C.11.2.1.2: x <= c - 0.5 - (w-1)/2 -> 0; x > c - 0.5 + (w-1)/2 -> 255
    lo, hi = -600 - 0.5 - 1499 / 2, -600 - 0.5 + 1499 / 2
    values = LUNG_WINDOW.apply(np.array([lo - 1, lo, lo + 1, -600.0, hi, hi + 0.01]))
    assert values.tolist() == [0, 0, 0, 128, 255, 255]
    assert MEDIASTINAL_WINDOW.apply(np.array([-161.0, 40.0, 240.0])).tolist() == [0, 128, 255]
    with pytest.raises(RefbenchError, match="width"):
        Window("bad", 0, 0.5).apply(np.zeros(2))


def test_ct_small_becomes_hounsfield_units() -> None:
    path = real("CT_small.dcm")
    ds = pydicom.dcmread(path)
    s = read_slice(path)
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert float(ds.RescaleIntercept) == -1024.0
    np.testing.assert_array_equal(s.pixels, expected)
    assert s.pixel_spacing == (0.661468, 0.661468) and s.slice_thickness == 5.0
    assert s.modality == "CT" and s.instance_number == 1


def test_padding_value_becomes_air(tmp_path: Path) -> None:
    ds = pydicom.dcmread(real("CT_small.dcm"))
    value = int(ds.pixel_array[0, 0])
    ds.PixelPaddingValue = value
    ds.save_as(tmp_path / "pad.dcm")
    s = read_slice(tmp_path / "pad.dcm")
    assert np.all(s.pixels[ds.pixel_array == value] == PADDING_HU)


def test_series_ordered_by_position_not_by_file_name(tmp_path: Path) -> None:
    zs = [(10.0, 3), (0.0, 1), (5.0, 2), (15.0, 4)]
    write_series(tmp_path, zs, names=["a.dcm", "z.dcm", "m.dcm", "b.dcm"])
    series = read_series(sorted(tmp_path.iterdir()))
    assert [s.instance_number for s in series.slices] == [1, 2, 3, 4]
    assert series.spacing == (5.0, 0.661468, 0.661468) and series.slice_thickness == 5.0
    assert series.volume.shape == (4, 128, 128) and series.problems == []


def test_oblique_series_uses_the_slice_normal(tmp_path: Path) -> None:
    c, s = float(np.cos(0.5)), float(np.sin(0.5))
    iop = [1.0, 0.0, 0.0, 0.0, c, s]          # tilted about x: normal is (0, -s, c)
    write_series(tmp_path, [(7.5, 2), (0.0, 3), (-7.5, 1)], orientation=iop)
    series = read_series(sorted(tmp_path.iterdir()))
    assert [x.instance_number for x in series.slices] == [1, 3, 2]
    assert series.spacing[0] == pytest.approx(7.5)


def test_instance_number_breaks_ties_and_orders_without_positions(tmp_path: Path) -> None:
    paths = write_series(tmp_path, [(0.0, 2), (0.0, 1)])
    series = read_series(paths)
    assert [x.instance_number for x in series.slices] == [1, 2]
    assert any("duplicate slice position" in p for p in series.problems)
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.save_as(path)
    assert [x.instance_number for x in read_series(paths).slices] == [1, 2]


def test_gap_and_uneven_spacing_are_reported(tmp_path: Path) -> None:
    gap = write_series(tmp_path / "gap", [(0.0, 1), (5.0, 2), (10.0, 3), (25.0, 6), (30.0, 7)])
    problems = read_series(gap).problems
    assert len(problems) == 1 and problems[0].startswith("missing slices") and "about 2 slice" in problems[0]
    uneven = write_series(tmp_path / "uneven", [(0.0, 1), (5.0, 2), (10.0, 3), (15.6, 4)])
    problems = read_series(uneven).problems
    assert len(problems) == 1 and problems[0].startswith("inconsistent spacing")
    with pytest.raises(RefbenchError, match="series geometry: inconsistent spacing"):
        read_series(uneven, strict=True)
    # the limits, at exactly their values: 5 % deviation is fine, a step of 1.5x is not a gap
    assert SPACING_TOLERANCE == 0.05 and GAP_FACTOR == 1.5
    edge = write_series(tmp_path / "edge", [(0.0, 1), (4.0, 2), (8.0, 3), (12.2, 4), (16.2, 5)])
    assert read_series(edge).problems == []
    jump = write_series(tmp_path / "jump", [(0.0, 1), (5.0, 2), (10.0, 5)])
    assert any("InstanceNumber not consecutive" in p for p in read_series(jump).problems)


def test_series_that_cannot_be_stacked_are_errors(tmp_path: Path) -> None:
    two = write_series(tmp_path / "two", [(0.0, 1), (5.0, 2)], series_uid="1.2.3.4")
    with pytest.raises(RefbenchError, match="more than one series"):
        read_series(two)
    mixed = write_series(tmp_path / "iop", [(0.0, 1), (5.0, 2)])
    ds = pydicom.dcmread(mixed[1])
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(mixed[1])
    with pytest.raises(RefbenchError, match="ImageOrientationPatient differs") as err:
        read_series(mixed)
    assert str(mixed[1]) in str(err.value)
    with pytest.raises(RefbenchError, match="no DICOM files"):
        read_series([])


def test_compressed_syntaxes_decode_or_are_refused_by_name() -> None:
    from pydicom.pixels import get_decoder

    rle = read_slice(real("MR_small_RLE.dcm"))
    np.testing.assert_array_equal(rle.pixels, read_slice(real("MR_small.dcm")).pixels)
    j2k = real("693_J2KR.dcm")
    if get_decoder(pydicom.dcmread(j2k).file_meta.TransferSyntaxUID).is_available:
        np.testing.assert_array_equal(read_slice(j2k).pixels,
                                      read_slice(real("693_UNCR.dcm")).pixels)
    jls = real("MR_small_jpeg_ls_lossless.dcm")
    syntax = pydicom.dcmread(jls).file_meta.TransferSyntaxUID
    if get_decoder(syntax).is_available:
        pytest.skip("a JPEG-LS decoder is installed: nothing is refused")
    with pytest.raises(RefbenchError, match="JPEG-LS Lossless Image Compression") as err:
        read_slice(jls)
    assert "1.2.840.10008.1.2.4.80" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RefbenchError, match="JPEG-LS"):   # header-only checks refuse it too
        read_series([jls], pixels=False)


def test_broken_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="less than expected") as err:
        read_slice(real("MR_truncated.dcm"))
    assert "MR_truncated.dcm" in str(err.value)
    data = real("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:len(data) // 2])
    with pytest.raises(RefbenchError, match="cut.dcm"):
        read_slice(tmp_path / "cut.dcm")
    (tmp_path / "text.dcm").write_text("not dicom")
    with pytest.raises(RefbenchError, match="text.dcm"):
        read_slice(tmp_path / "text.dcm")
    (tmp_path / "folder.dcm").mkdir()
    with pytest.raises(RefbenchError, match="a folder"):
        read_slice(tmp_path / "folder.dcm")
    with pytest.raises(RefbenchError, match="not found"):
        read_slice(tmp_path / "absent.dcm")
    shutil.copy(real("emri_small.dcm"), tmp_path / "multi.dcm")
    with pytest.raises(RefbenchError, match="multi-frame"):
        read_slice(tmp_path / "multi.dcm")


def test_sample_indices_spread_evenly() -> None:
    assert sample_indices(100, 16)[[0, -1]].tolist() == [0, 99]
    assert sample_indices(12, 16).tolist() == [0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 10, 11]
    with pytest.raises(RefbenchError):
        sample_indices(0, 4)
