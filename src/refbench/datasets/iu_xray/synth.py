"""A learnable synthetic IU X-ray release in all three public layouts at once.

Each study draws a finding set (`chest_phantom.XRAY_FINDINGS`: cardiomegaly, left/right
pleural effusion, nodule, airspace opacity, or none), renders a frontal and a lateral
radiograph showing it, and writes FINDINGS, IMPRESSION and MeSH major terms from the same
set in fixed phrases (one sentence per organ: heart, pleura, lungs), so the report is a
function of what the images show. Written into one root:

* `NLMCXR_reports.tgz` (`ecgen-radiology/<uid>.xml` in the Open-i XML structure) and
  `NLMCXR_png/<image id>.png`;
* `annotation.json` in R2Gen's format (`train`/`val`/`test`) with `images/<id>/{0,1}.png`;
* `indiana_reports.csv` / `indiana_projections.csv` with `images/images_normalized/`.

The uids are chosen so that `hash_split` gives every split its 7:1:2 share (at least one
study each), and R2Gen's split is the same, so all configs agree. About one study in
twenty has an empty FINDINGS section, as in the real archive: it is in the XML and the
CSV (and counted as skipped there) but not in `annotation.json`.
"""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from refbench.datasets.chest_phantom import XRAY_FINDINGS, draw_findings, render_xray
from refbench.datasets.iu_xray.readers import (
    ANNOTATION,
    PROJECTION_COLUMNS,
    PROJECTIONS_CSV,
    REPORT_COLUMNS,
    REPORTS_CSV,
    XML_ARCHIVE,
    XML_FOLDER,
    hash_split,
)
from refbench.io import atomic_write_bytes, atomic_write_json, atomic_write_text

SIDES = ("left", "right")
MESH = {"cardiomegaly": "Cardiomegaly", "effusion": "Pleural Effusion/{side}",
        "nodule": "Nodule/lung/upper lobe/{side}", "opacity": "Opacity/lung/lower lobe/{side}"}
INDICATIONS = ("Chest pain.", "Cough.", "Shortness of breath.", "Preoperative evaluation.",
               "Fever.")
IMAGE_SIZE = 96


def _sides(findings: list[str], kind: str) -> list[str]:
    return [s for s in SIDES if f"{kind}_{s}" in findings]


def _where(sides: list[str]) -> str:
    return "bilateral" if len(sides) == 2 else sides[0]


def english_report(findings: list[str]) -> tuple[str, str, list[str]]:
    """(FINDINGS, IMPRESSION, MeSH major terms) of a finding set, in fixed phrases."""
    heart = ("The heart is enlarged." if "cardiomegaly" in findings
             else "The heart is normal in size.")
    eff = _sides(findings, "effusion")
    pleura = (f"There is a {_where(eff)} pleural effusion." if eff
              else "There is no pleural effusion or pneumothorax.")
    lungs = [f"There is a nodule in the {s} upper lobe." for s in _sides(findings, "nodule")]
    lungs += [f"There is airspace opacity in the {s} lower lobe."
              for s in _sides(findings, "opacity")]
    text = " ".join([heart, pleura] + (lungs or ["The lungs are clear."]))
    mesh: list[str] = []
    impression: list[str] = []
    if "cardiomegaly" in findings:
        mesh.append(MESH["cardiomegaly"])
        impression.append("Cardiomegaly.")
    for kind, words in (("effusion", "pleural effusion"), ("nodule", "pulmonary nodule"),
                        ("opacity", "airspace disease")):
        for side in _sides(findings, kind):
            mesh.append(MESH[kind].format(side=side))
            impression.append(f"{side.capitalize()} {words}.")
    return (text, " ".join(impression) or "No acute cardiopulmonary abnormality.",
            mesh or ["normal"])


def _uids(n: int) -> list[int]:
    """`n` uids whose `hash_split` fills train/validation/test 7:1:2 (each at least 1)."""
    want = {"validation": max(1, n // 10), "test": max(1, n // 5)}
    want["train"] = max(1, n - want["validation"] - want["test"])
    picked: list[int] = []
    uid = 0
    while any(want.values()):
        uid += 1
        split = hash_split(str(uid))
        if want[split]:
            want[split] -= 1
            picked.append(uid)
    return picked


def _put(path: Path, data: bytes) -> None:
    """Write one image file (plain write: the index files, written last and atomically,
    are what makes the copy complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _xml(uid: int, sections: dict[str, str], mesh: list[str], image_ids: list[str]) -> bytes:
    """One report in the Open-i XML structure (the elements refbench and users read)."""
    root = ET.Element("eCitation")
    ET.SubElement(root, "meta", type="rr")
    ET.SubElement(root, "uId", id=f"CXR{uid}")
    ET.SubElement(root, "pmcId", id=str(uid))
    ET.SubElement(root, "docSource").text = "CXR"
    ET.SubElement(root, "IUXRId", id=str(uid))
    ET.SubElement(root, "licenseType").text = "open-access"
    article = ET.SubElement(ET.SubElement(root, "MedlineCitation", Owner="Indiana University"),
                            "Article", PubModel="Electronic")
    ET.SubElement(article, "ArticleTitle").text = "Indiana University Chest X-ray Collection"
    abstract = ET.SubElement(article, "Abstract")
    for label in ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION"):
        ET.SubElement(abstract, "AbstractText", Label=label).text = sections[label] or None
    mesh_el = ET.SubElement(root, "MeSH")
    for term in mesh:
        ET.SubElement(mesh_el, "major").text = term
    for k, image_id in enumerate(image_ids, start=1):
        parent = ET.SubElement(root, "parentImage", id=image_id)
        ET.SubElement(parent, "figureId").text = f"F{k}"
        ET.SubElement(parent, "caption").text = "Xray Chest PA and Lateral"
        panel = ET.SubElement(parent, "panel", type="single")
        ET.SubElement(panel, "url").text = f"/hadoop/storage/radiology/extract/{image_id}.jpg"
    ET.indent(root, space="   ")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8",
                                                                     xml_declaration=False)


def synthesize_iu_xray(out: Path, n: int = 200, seed: int = 0) -> Path:
    """Write `n` scored studies (plus about n/20 with empty FINDINGS) into `out`."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    uids = _uids(n)
    extra = max(1, n // 20)
    uids += list(range(max(uids) + 1, max(uids) + 1 + extra))
    annotation: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    reports = io.StringIO(newline="")
    projections = io.StringIO(newline="")
    rep_writer, proj_writer = csv.writer(reports), csv.writer(projections)
    rep_writer.writerow(REPORT_COLUMNS)
    proj_writer.writerow(PROJECTION_COLUMNS)
    xml_files: list[tuple[str, bytes]] = []
    for k, uid in enumerate(uids):
        findings = draw_findings(rng, XRAY_FINDINGS)
        text, impression, mesh = english_report(findings)
        if k >= n:                                     # the empty-FINDINGS studies
            text = ""
        series = f"IM-{1000 + k:04d}"
        image_ids = [f"CXR{uid}_{series}-1001", f"CXR{uid}_{series}-2001"]
        views = [render_xray(findings, rng, IMAGE_SIZE), render_xray(findings, rng, IMAGE_SIZE,
                                                                     lateral=True)]
        study_id = f"CXR{uid}_{series}"
        for v, (image_id, image) in enumerate(zip(image_ids, views)):
            data = _png(image)
            _put(out / "NLMCXR_png" / f"{image_id}.png", data)
            kaggle_name = f"{image_id.removeprefix('CXR')}.dcm.png"
            _put(out / "images" / "images_normalized" / kaggle_name, data)
            proj_writer.writerow([uid, kaggle_name, ("Frontal", "Lateral")[v]])
            if text:
                _put(out / "images" / study_id / f"{v}.png", data)
        indication = INDICATIONS[int(rng.integers(len(INDICATIONS)))]
        sections = {"COMPARISON": "None.", "INDICATION": indication, "FINDINGS": text,
                    "IMPRESSION": impression}
        xml_files.append((f"{XML_FOLDER}/{uid}.xml", _xml(uid, sections, mesh, image_ids)))
        rep_writer.writerow([uid, ";".join(mesh), ";".join(m.split("/")[0] for m in mesh),
                             "Xray Chest PA and Lateral", indication, "None.", text,
                             impression])
        if text:
            split = hash_split(str(uid))
            key = {"train": "train", "validation": "val", "test": "test"}[split]
            annotation[key].append({"id": study_id, "report": text,
                                    "image_path": [f"{study_id}/0.png", f"{study_id}/1.png"],
                                    "split": key})
    atomic_write_json(out / ANNOTATION, annotation)
    atomic_write_text(out / REPORTS_CSV, reports.getvalue())
    atomic_write_text(out / PROJECTIONS_CSV, projections.getvalue())
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, data in xml_files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1375315200, 0o644
            tar.addfile(info, io.BytesIO(data))
    atomic_write_bytes(out / XML_ARCHIVE, archive.getvalue())
    return out
