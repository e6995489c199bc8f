"""The on-disk layout refbench expects for Chinese radiology reports (COVID-19 CT, CX-CHR).

Neither dataset is public in a fixed format (COVID-19 CT is shared under a signed
agreement without a file schema; CX-CHR was never released), so refbench defines one
layout for both; a user who has the data arranges it so:

```
ROOT/reports.jsonl          one study a line, UTF-8 JSON:
                            {"study_id": "s0001", "patient_id": "p001",
                             "findings": "双肺下叶见磨玻璃密度影。...",      (Chinese, non-empty)
                             "impression": "...",                             (optional)
                             "terms": ["磨玻璃影", "右肺"]}                  (may be [])
ROOT/terms.txt              the terminology vocabulary, one term a line
ROOT/splits/train.txt       study ids, one a line (also val.txt or validation.txt, test.txt)
ROOT/images/<patient_id>/<study_id>/
                            COVID-19 CT: one DICOM series (*.dcm or DICOM files without an
                            extension) or PNG/JPG slices whose names sort in slice order
                            (digits compared as numbers: 2.png before 10.png);
                            CX-CHR: the study's X-ray views as PNG/JPG, in name order
```

Rules: a bad JSON line, bad UTF-8, an empty `findings`, a duplicate study id, a term that
is not in `terms.txt`, a split-list id without a report, a study in two split lists or a
study without images are one-line errors naming file and line. Counted skips (shown by
`check`, never errors): studies in no split list, image folders that match no study.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from refbench.errors import RefbenchError

REPORTS = "reports.jsonl"
TERMS = "terms.txt"
SPLIT_DIR = "splits"
IMAGE_DIR = "images"
#: split list file names -> refbench split (the first name found for a split is read)
SPLIT_FILES = {"train.txt": "train", "val.txt": "validation", "validation.txt": "validation",
               "test.txt": "test"}
SPLITS = ("train", "validation", "test")
RASTER = (".png", ".jpg", ".jpeg")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ReportStudy:
    """One study of `reports.jsonl` with its split and image files (root-relative)."""

    study_id: str
    patient_id: str
    findings: str
    impression: str
    terms: tuple[str, ...]
    split: str
    image_paths: tuple[str, ...]
    line: int


@dataclass
class LayoutReading:
    """The studies in file order, counted skips `{reason: [where]}` and the vocabulary."""

    studies: list[ReportStudy] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    vocabulary: tuple[str, ...] = ()


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file that must exist; a BOM is dropped."""
    if path.is_dir():
        raise RefbenchError(f"a folder, but {path.name} must be a file", path=path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError(f"missing file {path.name}", path=path) from None
    out = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1} of "
                                f"the line)", path=path, line=number) from None
        out.append((number, text.removeprefix("\ufeff") if number == 1 else text))
    return out


def read_vocabulary(root: Path) -> tuple[str, ...]:
    """The terms of `terms.txt` in file order (blank lines ignored, duplicates an error)."""
    path = Path(root) / TERMS
    seen: dict[str, int] = {}
    for number, text in _lines(path):
        term = text.strip()
        if term and seen.setdefault(term, number) != number:
            raise RefbenchError(f"duplicate term {term!r} (first on line {seen[term]})",
                                path=path, line=number)
    return tuple(seen)


def read_splits(root: Path) -> dict[str, tuple[str, int, str]]:
    """{study id: (split, line, file)} of the split lists; a study in two is an error."""
    folder = Path(root) / SPLIT_DIR
    if not folder.is_dir():
        raise RefbenchError(f"missing folder {SPLIT_DIR}/ (train.txt, val.txt, test.txt)",
                            path=folder)
    out: dict[str, tuple[str, int, str]] = {}
    done: set[str] = set()
    for name, split in SPLIT_FILES.items():
        path = folder / name
        if split in done or not path.exists():
            continue
        done.add(split)
        for number, text in _lines(path):
            sid = text.strip()
            if not sid:
                continue
            if sid in out:
                other = out[sid]
                raise RefbenchError(f"study {sid} is also listed in {other[2]}:{other[1]}",
                                    path=path, line=number)
            out[sid] = (split, number, f"{SPLIT_DIR}/{name}")
    missing = [s for s in SPLITS if s not in done]
    if missing:
        raise RefbenchError(f"no split list for {', '.join(missing)} (expected "
                            f"{', '.join(f'{SPLIT_DIR}/{n}' for n, s in SPLIT_FILES.items() if s in missing)})",
                            path=folder)
    return out


def natural_key(name: str) -> list[object]:
    """Sort key comparing digit runs as numbers (slice 2 before slice 10)."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def study_files(root: Path, patient_id: str, study_id: str) -> list[str]:
    """The root-relative files of a study folder in natural order (hidden files skipped)."""
    folder = Path(root) / IMAGE_DIR / patient_id / study_id
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: natural_key(p.name))
    return [p.relative_to(root).as_posix() for p in files]


def _field(obj: dict, key: str, path: Path, line: int, required: bool = True) -> str:
    value = obj.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        what = "a non-empty string" if required else "a string"
        raise RefbenchError(f"{key!r} must be {what}, got {json.dumps(value, ensure_ascii=False)[:60]}",
                            path=path, line=line, key=key)
    return value


def read_layout(root: Path) -> LayoutReading:
    """Every study of the layout (see the module docstring for the rules)."""
    root = Path(root)
    path = root / REPORTS
    vocabulary = read_vocabulary(root)
    known = set(vocabulary)
    splits = read_splits(root)
    out = LayoutReading(vocabulary=vocabulary)
    seen: dict[str, int] = {}
    folders: set[tuple[str, str]] = set()
    for number, text in _lines(path):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RefbenchError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path,
                                line=number) from None
        if not isinstance(obj, dict):
            raise RefbenchError("expected a JSON object", path=path, line=number)
        sid = _field(obj, "study_id", path, number)
        pid = _field(obj, "patient_id", path, number)
        for key, value in (("study_id", sid), ("patient_id", pid)):
            if not _ID.fullmatch(value):
                raise RefbenchError(f"{key} {value!r} must be letters, digits, '.', '_' or "
                                    f"'-' (it names a folder)", path=path, line=number, key=key)
        if seen.setdefault(sid, number) != number:
            raise RefbenchError(f"duplicate study_id {sid} (first on line {seen[sid]})",
                                path=path, line=number)
        folders.add((pid, sid))
        terms = obj.get("terms", [])
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise RefbenchError("'terms' must be a list of strings", path=path, line=number,
                                key="terms")
        unknown = [t for t in terms if t not in known]
        if unknown:
            raise RefbenchError(f"study {sid}: term {unknown[0]!r} is not in {TERMS}",
                                path=path, line=number, key="terms")
        if sid not in splits:
            out.skipped.setdefault("in no split list", []).append(f"{REPORTS}:{number}")
            continue
        files = study_files(root, pid, sid)
        if not files:
            raise RefbenchError(f"study {sid} has no images (expected files in "
                                f"{IMAGE_DIR}/{pid}/{sid}/)", path=path, line=number)
        out.studies.append(ReportStudy(
            study_id=sid, patient_id=pid, findings=_field(obj, "findings", path, number),
            impression=_field(obj, "impression", path, number, required=False),
            terms=tuple(dict.fromkeys(terms)), split=splits[sid][0], image_paths=tuple(files),
            line=number))
    for sid, (_, number, name) in splits.items():
        if sid not in seen:
            raise RefbenchError(f"study {sid} is listed but has no line in {REPORTS}",
                                path=root / name, line=number)
    images = root / IMAGE_DIR
    if images.is_dir():
        for patient in sorted(p for p in images.iterdir() if p.is_dir()):
            for study in sorted(p for p in patient.iterdir() if p.is_dir()):
                if (patient.name, study.name) not in folders:
                    out.skipped.setdefault("image folder that matches no study", []).append(
                        f"{IMAGE_DIR}/{patient.name}/{study.name}")
    return out
