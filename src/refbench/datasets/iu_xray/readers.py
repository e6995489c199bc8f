"""Readers of the three public IU X-ray (Open-i) layouts; each returns `Study` records.

* **Open-i** (config `openi`): `NLMCXR_reports.tgz`, or its extracted `ecgen-radiology/`
  folder (read when both exist), one `<n>.xml` per study: `uId id="CXR<n>"`, the four
  `AbstractText` sections labelled COMPARISON, INDICATION, FINDINGS, IMPRESSION, MeSH
  `major`/`minor` terms and one `parentImage id="CXR<n>_..."` per image. A file that lacks
  the FINDINGS element (every official file has all four) is an error; a study whose
  FINDINGS text is empty (530 of the 3,955 official reports) is a *counted skip*, because
  the scored report is FINDINGS, as in R2Gen.
* **R2Gen** (config `r2gen`): `annotation.json`, `{"train"|"val"|"test": [{"id", "report",
  "image_path": [..], "split"}]}`. Accepted split keys: `train`, `val` (or `validation`),
  `test`, and exactly four spaces `"    "` for the test split (one public copy, from
  SERPENT-VLM, names it so); any other key is an error. Extra item keys (X-RGen's `"tag"`)
  are ignored; an item's `split` must agree with its key. An empty report is an error:
  this file is the benchmark's reference set.
* **Kaggle** (config `kaggle`): `indiana_reports.csv` (uid, MeSH, Problems, image,
  indication, comparison, findings, impression) and `indiana_projections.csv` (uid,
  filename, projection). Empty findings are a counted skip (as for Open-i); a projection
  row whose uid has no report is a counted skip too ("images that match no report").

Ids: R2Gen rows keep R2Gen's `id` (`CXR1000_IM-0003`: the study's first image id without
its last `-` part); Open-i and Kaggle rows are `CXR<uid>` (the XML's `uId`, the CSV's
`uid` with the same prefix). Every row also carries `uid` (the digits), the key that
joins the three layouts.

MeSH terms: `mesh` keeps the major terms as written (`Opacity/lung/base/left`); `terms`
holds their descriptors, the part before the first `/`, whitespace-collapsed and
lower-cased, duplicates dropped in first-seen order, `no indexing` left out (it marks an
unindexed report). `normal` stays a term: it is how normal studies are labelled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from refbench.errors import RefbenchError

XML_ARCHIVE = "NLMCXR_reports.tgz"
XML_FOLDER = "ecgen-radiology"
ANNOTATION = "annotation.json"
REPORTS_CSV = "indiana_reports.csv"
PROJECTIONS_CSV = "indiana_projections.csv"
SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
REPORT_COLUMNS = ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings",
                  "impression"]
PROJECTION_COLUMNS = ["uid", "filename", "projection"]
PROJECTIONS = ("Frontal", "Lateral")
#: R2Gen split keys -> refbench splits; "    " is the test key of the SERPENT-VLM copy
R2GEN_KEYS = {"train": "train", "val": "validation", "validation": "validation",
              "test": "test", "    ": "test"}
#: where the images of each layout are looked for (relative to the root), in this order
OPENI_IMAGE_DIRS = ("NLMCXR_png", ".")
KAGGLE_IMAGE_DIRS = ("images/images_normalized", "images_normalized", "images")
R2GEN_IMAGE_DIR = "images"
_ID = re.compile(r"CXR(\d+)_\S+")


@dataclass(frozen=True)
class Study:
    """One report with its sections, MeSH terms and image paths (relative to the root)."""

    study_id: str
    uid: str
    report: str
    findings: str
    impression: str
    indication: str
    comparison: str
    mesh: tuple[str, ...]
    terms: tuple[str, ...]
    image_paths: tuple[str, ...]
    split: str
    where: str          # "file[:line]" it came from, for messages


@dataclass
class Reading:
    """What a layout reader found: studies in order, counted skips `{reason: [where]}` and
    image files that match no report."""

    studies: list[Study] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    unmatched_images: list[str] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        self.skipped.setdefault(reason, []).append(where)


def normalise_terms(mesh: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """MeSH major terms -> descriptors (see the module docstring)."""
    out: list[str] = []
    for term in mesh:
        head = " ".join(term.split("/")[0].split()).lower()
        if head and head != "no indexing" and head not in out:
            out.append(head)
    return tuple(out)


def hash_split(uid: str) -> str:
    """The deterministic split of a study of a layout without one (Open-i, Kaggle): the
    first 8 bytes of sha256("iu_xray:<uid>") mod 10 -> 0-6 train, 7 validation, 8-9 test
    (R2Gen's 7:1:2 proportions); it depends on the uid only, never on what else is there."""
    value = int.from_bytes(hashlib.sha256(f"iu_xray:{uid}".encode()).digest()[:8], "big")
    bucket = value % 10
    return "train" if bucket < 7 else "validation" if bucket == 7 else "test"


def decode_utf8(raw: bytes, path: str | Path) -> str:
    """UTF-8 text (a BOM dropped); a bad byte is an error naming its line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                            path=path, line=line) from None


def read_bytes(path: Path) -> bytes:
    """The bytes of a file that must exist (a folder in its place is its own error)."""
    if path.is_dir():
        raise RefbenchError(f"a folder, but {path.name} must be a file", path=path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError(f"missing file {path.name}", path=path) from None


def find_image(root: Path, dirs: tuple[str, ...], name: str) -> str | None:
    """The root-relative path of image `name` in the first of `dirs` holding it."""
    for folder in dirs:
        rel = name if folder == "." else f"{folder}/{name}"
        if (root / rel).is_file():
            return rel
    return None


# -- Open-i XML --------------------------------------------------------------------------
def iter_openi_files(root: Path) -> Iterator[tuple[str, bytes]]:
    """(`ecgen-radiology/<n>.xml`, bytes) in numeric order, from the folder or the tgz."""
    folder, archive = root / XML_FOLDER, root / XML_ARCHIVE
    if folder.is_dir():
        files = sorted(folder.glob("*.xml"), key=lambda p: (len(p.stem), p.stem))
        if not files:
            raise RefbenchError("no .xml report in the folder", path=folder)
        for path in files:
            yield f"{XML_FOLDER}/{path.name}", path.read_bytes()
        return
    if archive.is_dir():
        raise RefbenchError(f"a folder, but {XML_ARCHIVE} must be the archive", path=archive)
    if not archive.is_file():
        raise RefbenchError(f"neither {XML_FOLDER}/ nor {XML_ARCHIVE} is here", path=root)
    try:
        members: dict[str, bytes] = {}
        with tarfile.open(archive, "r|gz") as tar:      # one sequential pass, no seeking
            for member in tar:
                if member.isfile() and member.name.endswith(".xml"):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    members[member.name] = handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise RefbenchError(f"truncated or corrupt archive ({exc})", path=archive) from None
    if not members:
        raise RefbenchError("the archive holds no .xml report", path=archive)
    for name in sorted(members, key=lambda n: (len(n), n)):
        yield name, members[name]


def parse_openi_xml(raw: bytes, where: str) -> dict[str, Any]:
    """The fields of one Open-i XML report (errors name `where` and the line)."""
    decode_utf8(raw, where)
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        raise RefbenchError(f"malformed XML: {exc}", path=where,
                            line=exc.position[0]) from None
    uid_el = root.find("uId")
    match = re.fullmatch(r"CXR(\d+)", (uid_el.get("id") or "") if uid_el is not None else "")
    if match is None:
        raise RefbenchError('no <uId id="CXR<n>"/> element', path=where)
    sections: dict[str, str] = {}
    for el in root.iter("AbstractText"):
        label = el.get("Label", "")
        if label in SECTIONS:
            sections[label] = "".join(el.itertext())
    if "FINDINGS" not in sections:
        raise RefbenchError('no FINDINGS section (<AbstractText Label="FINDINGS">): every '
                            'official report has the four labelled sections', path=where)
    mesh_el = root.find("MeSH")
    major = tuple(" ".join((m.text or "").split()) for m in mesh_el.findall("major")) \
        if mesh_el is not None else ()
    images = tuple(el.get("id", "") for el in root.findall("parentImage"))
    if any(not i for i in images):
        raise RefbenchError("a <parentImage> without an id", path=where)
    return {"uid": match.group(1), "sections": sections, "mesh": major, "images": images}


def read_openi(root: Path) -> Reading:
    """Every Open-i report (see the module docstring); images from `NLMCXR_png/<id>.png`."""
    root = Path(root)
    out = Reading()
    seen: dict[str, str] = {}
    wanted: set[str] = set()
    for where, raw in iter_openi_files(root):
        rec = parse_openi_xml(raw, where)
        uid = rec["uid"]
        if uid in seen:
            raise RefbenchError(f"uId CXR{uid} also in {seen[uid]}", path=where)
        seen[uid] = where
        wanted.update(rec["images"])
        sec = rec["sections"]
        if not sec["FINDINGS"].strip():
            out.skip("empty FINDINGS", where)
            continue
        paths = tuple(find_image(root, OPENI_IMAGE_DIRS, f"{i}.png") or
                      f"{OPENI_IMAGE_DIRS[0]}/{i}.png" for i in rec["images"])
        out.studies.append(Study(
            study_id=f"CXR{uid}", uid=uid, report=sec["FINDINGS"], findings=sec["FINDINGS"],
            impression=sec.get("IMPRESSION", ""), indication=sec.get("INDICATION", ""),
            comparison=sec.get("COMPARISON", ""), mesh=rec["mesh"],
            terms=normalise_terms(rec["mesh"]), image_paths=paths, split=hash_split(uid),
            where=where))
    folder = root / OPENI_IMAGE_DIRS[0]
    if folder.is_dir():
        out.unmatched_images = sorted(f"{folder.name}/{p.name}" for p in folder.glob("*.png")
                                      if p.stem not in wanted)
    return out


# -- R2Gen annotation.json --------------------------------------------------------------
def _id_lines(text: str) -> dict[str, int]:
    """{id: line of its first `"id": "..."`} in one pass (messages of pretty-printed files
    name the line; in a one-line file every id is on line 1)."""
    out: dict[str, int] = {}
    line, last = 1, 0
    for match in re.finditer(r'"id"\s*:\s*"((?:[^"\\]|\\.)*)"', text):
        line += text.count("\n", last, match.start())
        last = match.start()
        out.setdefault(match.group(1), line)
    return out


def read_r2gen(root: Path, sections: dict[str, dict[str, Any]] | None = None) -> Reading:
    """The R2Gen annotation; `sections` ({uid: parsed XML}) fills the non-report columns
    when the Open-i reports sit in the same root, else findings = report, the rest empty."""
    path = Path(root) / ANNOTATION
    text = decode_utf8(read_bytes(path), path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path,
                            line=exc.lineno) from None
    if not isinstance(data, dict):
        raise RefbenchError("expected a JSON object {split: [studies]}", path=path)
    out = Reading()
    seen: dict[str, str] = {}
    lines = _id_lines(text)
    for key, items in data.items():
        if key not in R2GEN_KEYS:
            raise RefbenchError(f"unknown split key {key!r} (accepted: 'train', 'val', "
                                f"'validation', 'test', and '    ' as test)", path=path)
        split = R2GEN_KEYS[key]
        if not isinstance(items, list):
            raise RefbenchError("must be a list of studies", path=path, key=key)
        for k, item in enumerate(items):
            out.studies.append(_r2gen_item(item, f"{key.strip() or repr(key)}[{k}]", split,
                                           path, lines, seen, sections))
    return out


def _r2gen_item(item: Any, where: str, split: str, path: Path, lines: dict[str, int],
                seen: dict[str, str], sections: dict[str, dict[str, Any]] | None) -> Study:
    if not isinstance(item, dict):
        raise RefbenchError("a study must be a JSON object", path=path, key=where)
    study_id = item.get("id")
    line = lines.get(study_id) if isinstance(study_id, str) else None
    if not isinstance(study_id, str) or not (match := _ID.fullmatch(study_id)):
        raise RefbenchError(f"'id' must look like CXR<uid>_IM-...; got {study_id!r}",
                            path=path, line=line, key=where)
    report, images = item.get("report"), item.get("image_path")
    if not isinstance(report, str) or not report.strip():
        raise RefbenchError(f"study {study_id}: 'report' must be a non-empty string",
                            path=path, line=line, key=where)
    if (not isinstance(images, list) or not images
            or not all(isinstance(p, str) and p for p in images)):
        raise RefbenchError(f"study {study_id}: 'image_path' must be a non-empty list of "
                            f"paths", path=path, line=line, key=where)
    declared = item.get("split")
    if declared is not None and R2GEN_KEYS.get(str(declared)) != split:
        raise RefbenchError(f"study {study_id}: 'split' is {declared!r} but it is listed "
                            f"under another split", path=path, line=line, key=where)
    uid = match.group(1)
    for earlier in (seen.get(study_id), seen.get(f"uid:{uid}")):
        if earlier is not None:
            raise RefbenchError(f"study {study_id} (uid {uid}) also at {earlier}", path=path,
                                line=line, key=where)
    seen[study_id] = seen[f"uid:{uid}"] = where
    sec = (sections or {}).get(uid)
    parts = sec["sections"] if sec else {"FINDINGS": report}
    mesh = sec["mesh"] if sec else ()
    return Study(study_id=study_id, uid=uid, report=report,
                 findings=parts.get("FINDINGS", ""), impression=parts.get("IMPRESSION", ""),
                 indication=parts.get("INDICATION", ""),
                 comparison=parts.get("COMPARISON", ""), mesh=tuple(mesh),
                 terms=normalise_terms(mesh),
                 image_paths=tuple(f"{R2GEN_IMAGE_DIR}/{p}" for p in images), split=split,
                 where=f"{path.name}:{line}" if line else f"{path.name} [{where}]")


def openi_sections(root: Path) -> dict[str, dict[str, Any]]:
    """{uid: parsed XML} of the Open-i reports in `root` (empty when there are none)."""
    root = Path(root)
    if not ((root / XML_FOLDER).is_dir() or (root / XML_ARCHIVE).is_file()):
        return {}
    return {rec["uid"]: rec for rec in (parse_openi_xml(raw, where)
                                        for where, raw in iter_openi_files(root))}


# -- Kaggle CSV --------------------------------------------------------------------------
def iter_csv(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line, row) of a UTF-8 CSV whose header must be exactly `columns`."""
    text = decode_utf8(read_bytes(path), path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header != columns:
            raise RefbenchError(f"header must be {','.join(columns)}; found "
                                f"{','.join(header or [])!r}", path=path, line=1)
        start = reader.line_num + 1
        for row in reader:
            if row:
                if len(row) != len(columns):
                    raise RefbenchError(f"expected {len(columns)} fields, found {len(row)}",
                                        path=path, line=start)
                yield start, dict(zip(columns, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise RefbenchError(f"malformed CSV: {exc}", path=path, line=reader.line_num) from None


def read_kaggle(root: Path) -> Reading:
    """Both Kaggle tables (see the module docstring); images from the Kaggle folders."""
    root = Path(root)
    reports, projections = root / REPORTS_CSV, root / PROJECTIONS_CSV
    images: dict[str, list[str]] = {}
    files: dict[str, int] = {}
    rows: list[tuple[int, dict[str, str]]] = []
    seen: dict[str, int] = {}
    for line, row in iter_csv(reports, REPORT_COLUMNS):
        uid = row["uid"]
        if not uid.isdigit():
            raise RefbenchError(f"uid must be a number, got {uid!r}", path=reports, line=line)
        if uid in seen:
            raise RefbenchError(f"duplicate uid {uid} (first on line {seen[uid]})",
                                path=reports, line=line)
        seen[uid] = line
        rows.append((line, row))
    out = Reading()
    for line, row in iter_csv(projections, PROJECTION_COLUMNS):
        if row["projection"] not in PROJECTIONS:
            raise RefbenchError(f"projection must be Frontal or Lateral, got "
                                f"{row['projection']!r}", path=projections, line=line)
        name = row["filename"]
        if not name or "/" in name or name in files:
            why = f"also on line {files[name]}" if name in files else "must be a file name"
            raise RefbenchError(f"filename {name!r}: {why}", path=projections, line=line)
        files[name] = line
        if row["uid"] not in seen:
            out.skip("image row whose uid has no report", f"{projections.name}:{line}")
            continue
        images.setdefault(row["uid"], []).append(name)
    for line, row in rows:
        uid, where = row["uid"], f"{reports.name}:{line}"
        if not row["findings"].strip():
            out.skip("empty findings", where)
            continue
        mesh = tuple(" ".join(t.split()) for t in row["MeSH"].split(";") if t.strip())
        paths = tuple(find_image(root, KAGGLE_IMAGE_DIRS, name) or
                      f"{KAGGLE_IMAGE_DIRS[0]}/{name}" for name in images.get(uid, []))
        out.studies.append(Study(
            study_id=f"CXR{uid}", uid=uid, report=row["findings"], findings=row["findings"],
            impression=row["impression"], indication=row["indication"],
            comparison=row["comparison"], mesh=mesh, terms=normalise_terms(mesh),
            image_paths=paths, split=hash_split(uid), where=where))
    return out
