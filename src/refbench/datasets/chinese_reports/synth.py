"""Learnable synthetic COVID-19 CT and CX-CHR releases in refbench's Chinese-report layout.

Each study draws a finding set (`chest_phantom`), renders it (a CT volume in HU, or a
frontal PNG and a lateral JPG radiograph) and writes its Chinese findings, impression and
terms from the same set in fixed phrases, one sentence per structure, so the text is a
function of what the images show. Patients hold one or two studies and whole patients go
to one split (no leakage), the first three to train, validation and test so every split
is non-empty.

CT studies are DICOM series (CT Image Storage, 16-bit stored values with intercept
-1024, 5 mm slices along z, axial orientation) written under random file names, so only
ImagePositionPatient / InstanceNumber give the order; every fourth study is exported as
lung-window PNG slices named `1.png` ... `12.png` (name order needs numeric sorting).
One extra study is in no split list (a counted skip).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from refbench.datasets.chest_phantom import (
    CT_FINDINGS,
    XRAY_FINDINGS,
    draw_findings,
    render_ct,
    render_xray,
)
from refbench.datasets.chinese_reports.layout import IMAGE_DIR, REPORTS, SPLIT_DIR, TERMS
from refbench.errors import require
from refbench.io import atomic_write_text

SIDE = {"left": "左", "right": "右"}
CT_TERMS = ("磨玻璃影", "实变", "胸腔积液", "左肺", "右肺", "正常")
XRAY_TERMS = ("心影增大", "胸腔积液", "结节", "斑片影", "左肺", "右肺", "正常")
CT_SLICES, CT_SIZE, XRAY_SIZE = 12, 64, 96


def _sides(findings: list[str], kind: str) -> list[str]:
    return [s for s in ("right", "left") if f"{kind}_{s}" in findings]


def _side_terms(findings: list[str]) -> list[str]:
    return [f"{SIDE[s]}肺" for s in ("left", "right") if any(f.endswith(s) for f in findings)]


def ct_report(findings: list[str]) -> tuple[str, str, list[str]]:
    """(findings text, impression, terms) of a CT finding set."""
    parts = []
    for kind, phrase in (("ggo", "肺下叶见磨玻璃密度影"), ("consolidation", "肺下叶见斑片状实变影")):
        parts += [f"{SIDE[s]}{phrase}。" for s in _sides(findings, kind)]
    if not parts:
        parts.append("双肺纹理清晰，未见明显异常密度影。")
    eff = _sides(findings, "effusion")
    parts.append("".join(f"{SIDE[s]}侧胸腔见弧形液体密度影。" for s in eff) if eff
                 else "双侧胸腔未见积液。")
    parts.append("纵隔居中，心影大小正常。")
    terms = [t for kind, t in (("ggo", "磨玻璃影"), ("consolidation", "实变"),
                               ("effusion", "胸腔积液")) if _sides(findings, kind)]
    lesion = any(f.startswith(("ggo", "consolidation")) for f in findings)
    impression = ("考虑病毒性肺炎，请结合临床。" if lesion else "胸腔积液。" if eff
                  else "胸部CT平扫未见明显异常。")
    return "".join(parts), impression, (terms + _side_terms(findings)) or ["正常"]


def xray_report(findings: list[str]) -> tuple[str, str, list[str]]:
    """(findings text, impression, terms) of an X-ray finding set."""
    parts = ["心影增大。" if "cardiomegaly" in findings else "心影大小、形态未见异常。"]
    eff = _sides(findings, "effusion")
    parts.append("".join(f"{SIDE[s]}侧肋膈角变钝。" for s in eff) if eff else "双侧肋膈角锐利。")
    lungs = [f"{SIDE[s]}肺上野见结节影。" for s in _sides(findings, "nodule")]
    lungs += [f"{SIDE[s]}肺下野见斑片状模糊影。" for s in _sides(findings, "opacity")]
    parts += lungs or ["双肺纹理清晰，未见明显实质性病变。"]
    terms = [t for kind, t in (("cardiomegaly", "心影增大"), ("effusion", "胸腔积液"),
                               ("nodule", "结节"), ("opacity", "斑片影"))
             if kind == "cardiomegaly" and kind in findings or _sides(findings, kind)]
    impression = "心肺未见明显异常。" if not findings else "请结合临床。"
    return "".join(parts), impression, (terms + _side_terms(findings)) or ["正常"]


def _put(path: Path, data: bytes) -> None:
    """Write one image file (plain write: the index files, written last and atomically,
    are what makes the copy complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _image_bytes(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _dicom_slice(hu: np.ndarray, k: int, count: int, uids: dict[str, str]) -> bytes:
    """One axial CT slice (slice k of count, apex first) as DICOM bytes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop = generate_uid(entropy_srcs=[uids["series"], str(k)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, sop, "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
    ds.PatientID, ds.InstanceNumber = uids["patient"], k + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-160.0, -160.0, float(-20.0 - 5.0 * k)]
    ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [5.0, 5.0], 5.0, 5.0
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.PixelData = np.clip(np.rint(hu + 1024.0), 0, 4095).astype("<u2").tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _write_study_ct(folder: Path, findings: list[str], rng: np.random.Generator,
                    as_png: bool, uids: dict[str, str]) -> None:
    volume = render_ct(findings, rng, slices=CT_SLICES, size=CT_SIZE)
    if as_png:
        from refbench.datasets.dicom import LUNG_WINDOW

        for k in range(CT_SLICES):
            _put(folder / f"{k + 1}.png",
                               _image_bytes(LUNG_WINDOW.apply(volume[k]), "PNG"))
        return
    for k in rng.permutation(CT_SLICES):
        name = f"IM{int(rng.integers(16**8)):08x}.dcm"
        _put(folder / name, _dicom_slice(volume[k], int(k), CT_SLICES, uids))


def _write_study_xray(folder: Path, findings: list[str], rng: np.random.Generator) -> None:
    _put(folder / "frontal.png",
                       _image_bytes(render_xray(findings, rng, XRAY_SIZE), "PNG"))
    _put(folder / "lateral.jpg",
                       _image_bytes(render_xray(findings, rng, XRAY_SIZE, lateral=True), "JPEG"))


def _synthesize(out: Path, n: int, seed: int, codes: tuple[str, ...], vocabulary: tuple[str, ...],
                report: Callable[[list[str]], tuple[str, str, list[str]]],
                write: Callable[[Path, list[str], np.random.Generator, int, dict[str, str]], None]
                ) -> Path:
    rng = np.random.default_rng(seed)
    out = Path(out)
    lines: list[str] = []
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    patient, left = 0, 0
    for k in range(n + 1):
        if left == 0:
            patient, left = patient + 1, int(rng.integers(1, 3))
        left -= 1
        pid, sid = f"p{patient:04d}", f"s{k + 1:05d}"
        findings = draw_findings(rng, codes)
        text, impression, terms = report(findings)
        lines.append(json.dumps({"study_id": sid, "patient_id": pid, "findings": text,
                                 "impression": impression, "terms": terms},
                                ensure_ascii=False))
        uids = {"patient": pid, "study": f"1.2.826.0.1.3680043.10.1.{seed}.{k + 1}",
                "series": f"1.2.826.0.1.3680043.10.2.{seed}.{k + 1}"}
        write(out / IMAGE_DIR / pid / sid, findings, rng, k, uids)
        if k == n:                                   # the study in no split list
            continue
        bucket = patient - 1 if patient <= 3 else (patient - 1) % 10
        split = ("train", "val", "test")[bucket] if patient <= 3 else (
            "train" if bucket < 7 else "val" if bucket == 7 else "test")
        splits[split].append(sid)
    atomic_write_text(out / REPORTS, "\n".join(lines) + "\n")
    atomic_write_text(out / TERMS, "\n".join(vocabulary) + "\n")
    for name, ids in splits.items():
        atomic_write_text(out / SPLIT_DIR / f"{name}.txt", "".join(f"{i}\n" for i in ids))
    return out


def synthesize_covid_ct(out: Path, n: int = 200, seed: int = 0) -> Path:
    """`n` CT studies (DICOM series, every fourth as PNG slices) plus one unsplit study."""
    require("pydicom", "medical")

    def write(folder: Path, findings: list[str], rng: np.random.Generator, k: int,
              uids: dict[str, Any]) -> None:
        _write_study_ct(folder, findings, rng, as_png=k % 4 == 3, uids=uids)

    return _synthesize(out, n, seed, CT_FINDINGS, CT_TERMS, ct_report, write)


def synthesize_cx_chr(out: Path, n: int = 200, seed: int = 0) -> Path:
    """`n` X-ray studies (frontal PNG + lateral JPG) plus one unsplit study."""

    def write(folder: Path, findings: list[str], rng: np.random.Generator, k: int,
              uids: dict[str, Any]) -> None:
        _write_study_xray(folder, findings, rng)

    return _synthesize(out, n, seed, XRAY_FINDINGS, XRAY_TERMS, xray_report, write)
