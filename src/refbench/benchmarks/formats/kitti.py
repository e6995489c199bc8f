"""KITTI submission format `kitti_label_dir`: a folder of `<id>.txt` files in label_2 form.

Each line is one object: `name truncated occluded alpha left top right bottom h w l x y z
rotation_y` (15 columns, the label_2 files) plus `score` for predictions (16 columns), as
the KITTI server and the devkit read them. Maps are `{id: KittiObjects}` (one frame's
objects). An id of the references without a prediction file is a frame with no
detections, as the devkit scores it, and a prediction file of a frame outside the
references is ignored, as the devkit ignores it; the scorer reports both.

A folder is read in bulk: every file's bytes, then one parse of all lines (pyarrow's CSV
reader, which converts numbers exactly as `float()` does) and vectorised checks. Anything
the bulk parse does not vouch for (a malformed line, non-ASCII text, a value out of range)
sends the folder through the strict per-file parser, so an error still names the file
and the line.

References are a label_2 folder, or a KITTI root (`training/label_2` restricted to
`ImageSets/<split>.txt`), or the prepared dataset split (the agreed row features `id`,
`name`, `truncated`, `occluded`, `alpha`, `bbox`, `dimensions`, `location`,
`rotation_y`).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.kitti import FIELDS, frame_arrays
from refbench.io import atomic_dir_replace

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

_NUMERIC = ("truncated", "occluded", "alpha", "bbox", "dimensions", "location", "rotation_y")


@dataclass(frozen=True, eq=False)
class KittiObjects:
    """One frame's objects: label_2 fields as arrays (`obj["bbox"]`, `as_dict()`).

    Deliberately not a Collection (no `len`/`iter`), so that `{id: KittiObjects}` maps
    compare as flat maps of values.
    Equality compares names exactly and numbers as float64; the score is compared only
    when both sides carry one (a reference has none), so that ground truth written as
    predictions reads back equal. `str()` is the frame's label-file text.
    """

    name: tuple[str, ...]
    truncated: np.ndarray
    occluded: np.ndarray
    alpha: np.ndarray
    bbox: np.ndarray
    dimensions: np.ndarray
    location: np.ndarray
    rotation_y: np.ndarray
    score: np.ndarray | None = None

    @classmethod
    def from_mapping(cls, frame: Mapping[str, Any], with_score: bool,
                     where: str = "frame") -> "KittiObjects":
        """Validate a mapping of label_2 fields (see `frame_arrays`)."""
        arrays = frame_arrays(frame, with_score, where)
        return cls(name=tuple(arrays["name"]), score=arrays["score"] if with_score else None,
                   **{k: arrays[k] for k in _NUMERIC})

    def _keys(self) -> tuple[str, ...]:
        return FIELDS + (("score",) if self.score is not None else ())

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return np.array(self.name, dtype=object) if key == "name" else getattr(self, key)

    @property
    def count(self) -> int:
        """Number of objects."""
        return len(self.name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KittiObjects):
            return NotImplemented
        if self.name != other.name:
            return False
        if not all(np.array_equal(getattr(self, k), getattr(other, k)) for k in _NUMERIC):
            return False
        if self.score is not None and other.score is not None:
            return bool(np.array_equal(self.score, other.score))
        return True

    __hash__ = None  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what `kitti_ap` takes)."""
        out = {"name": np.array(self.name, dtype=object), "truncated": self.truncated,
               "occluded": self.occluded, "alpha": self.alpha, "bbox": self.bbox,
               "dimensions": self.dimensions, "location": self.location,
               "rotation_y": self.rotation_y}
        if self.score is not None:
            out["score"] = self.score
        return out

    def lines(self, default_score: float | None = None) -> list[str]:
        """The label-file lines; a score column when the frame has one or a default is given.
        Numbers are written by `repr` (the shortest text that reads back as the same
        float64), occluded as an integer."""
        n = len(self.name)
        if n == 0:
            return []
        score = self.score
        if score is None and default_score is not None:
            score = np.full(n, float(default_score))
        columns = [self.alpha[:, None], self.bbox, self.dimensions, self.location,
                   self.rotation_y[:, None]] + ([score[:, None]] if score is not None else [])
        # str() of a list of float lists writes each number with repr, in C
        tails = str(np.concatenate(columns, axis=1).tolist())[2:-2].replace(", ", " ")
        truncated = map(repr, self.truncated.tolist())
        occluded = map(str, map(int, self.occluded.tolist()))
        return [f"{name} {t} {o} {tail}" for name, t, o, tail
                in zip(self.name, truncated, occluded, tails.split("] ["))]

    def __str__(self) -> str:
        return "".join(line + "\n" for line in self.lines())


# -- reading -------------------------------------------------------------------------------
def parse_label_file(path: Path, with_score: bool) -> KittiObjects:
    """Strictly parse one label file (15 columns, or 16 with `with_score`)."""
    want = 16 if with_score else 15
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not UTF-8 text: {exc.reason}", path=path) from None
    rows: dict[str, list[Any]] = {k: [] for k in FIELDS + ("score",)}
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != want:
            what = "label_2 + score" if with_score else "label_2"
            raise RefbenchError(f"expected {want} columns ({what}), got {len(fields)}",
                                path=path, line=number)
        values = []
        for col, field in enumerate(fields[1:], start=2):
            try:
                value = float(field)
            except ValueError:
                raise RefbenchError(f"column {col} is not a number: {field!r}", path=path,
                                    line=number) from None
            if not math.isfinite(value):
                raise RefbenchError(f"column {col} is not finite: {field!r}", path=path,
                                    line=number)
            values.append(value)
        name = fields[0]
        if values[1] != int(values[1]):
            raise RefbenchError(f"occluded (column 3) must be an integer, got {fields[2]!r}",
                                path=path, line=number)
        if name != "DontCare" and min(values[7:10]) < 0:
            raise RefbenchError(f"negative size (h, w, l) {fields[8:11]}", path=path,
                                line=number)
        rows["name"].append(name)
        rows["truncated"].append(values[0])
        rows["occluded"].append(values[1])
        rows["alpha"].append(values[2])
        rows["bbox"].append(values[3:7])
        rows["dimensions"].append(values[7:10])
        rows["location"].append(values[10:13])
        rows["rotation_y"].append(values[13])
        if with_score:
            rows["score"].append(values[14])
    frame = {k: v for k, v in rows.items() if k != "score" or with_score}
    return KittiObjects.from_mapping(frame, with_score, str(path))


def read_label_dir(folder: Path, with_score: bool,
                   ids: list[str] | None = None) -> dict[str, KittiObjects]:
    """`{id: objects}` of the `<id>.txt` files of a folder (only `ids` when given)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RefbenchError("expected a folder of <id>.txt label files", path=folder)
    if ids is None:  # `glob("*.txt")` without the hidden files, sorted by name
        files = [folder / name for name in sorted(
            entry.name for entry in os.scandir(folder)
            if entry.name.endswith(".txt") and not entry.name.startswith("."))]
    else:
        files = [folder / f"{i}.txt" for i in ids]
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise RefbenchError(f"{len(missing)} label file(s) of the split are missing, "
                                f"first {missing[0].name}", path=folder)
    return dict(zip((p.stem for p in files), read_label_files(files, with_score)))


def read_label_files(files: list[Path], with_score: bool) -> list[KittiObjects]:
    """The objects of each label file, read in bulk (`bulk_parse`); when the bulk parse
    cannot vouch for every line, each file goes through `parse_label_file`, whose error
    names the first bad file and line, exactly as reading them one by one."""
    try:
        texts = [_read_bytes(path) for path in files]
    except OSError:
        texts = None  # the per-file reader raises it in file order
    frames = bulk_parse(texts, with_score) if texts is not None else None
    if frames is None:
        frames = [parse_label_file(p, with_score) for p in files]
    return frames


def _read_bytes(path: Path) -> bytes:
    """A file's bytes through the OS calls (cheaper than a buffered file object when
    reading thousands of small files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _canonical(texts: list[bytes]) -> list[bytes] | None:
    """The texts with universal newlines, one space between columns and no blank lines
    (what `str.splitlines` and `str.split` make of them), each ending in a newline; None
    when a text holds anything else than printable ASCII, spaces, tabs and newlines (the
    per-file parser then reads it)."""
    out = []
    for text in texts:
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if text and not text.endswith(b"\n"):
            text += b"\n"
        out.append(text)
    blob = b"".join(out)
    codes = np.frombuffer(blob, np.uint8)
    newlines, tabs = blob.count(b"\n"), blob.count(b"\t")
    if not blob.isascii() or b"\x7f" in blob \
            or np.count_nonzero(codes < 0x20) != newlines + tabs:
        return None
    gaps = (codes == 0x20) | (codes == 0x0a)  # two in a row: an extra space or a blank line
    if tabs or blob.startswith((b" ", b"\n")) or (gaps[1:] & gaps[:-1]).any():
        out = [b"".join(b" ".join(cols) + b"\n" for line in text.split(b"\n")
                        if (cols := line.split())) for text in out]
    return out


def bulk_parse(texts: list[bytes], with_score: bool) -> list[KittiObjects] | None:
    """The objects of many label-file texts, parsed at once: the canonical texts
    (`_canonical`) joined and read by pyarrow's CSV reader with one column per label_2
    field, then checked as `parse_label_file` checks each line (column count, numbers,
    finite, integer occlusion, non-negative sizes outside DontCare). None when any of it
    fails: the caller then parses file by file, which names the bad line."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    canonical = _canonical(texts)
    if canonical is None:
        return None
    if not any(canonical):  # only empty files
        return [KittiObjects.from_mapping({}, with_score) for _ in canonical]
    want = 16 if with_score else 15
    names = [f"c{i}" for i in range(want)]
    types = {n: pa.float64() for n in names[1:]}
    types[names[0]] = pa.dictionary(pa.int32(), pa.string())
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(b"".join(canonical)),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(delimiter=" ", quote_char=False,
                                              double_quote=False, escape_char=False,
                                              newlines_in_values=False,
                                              ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(column_types=types, null_values=[],
                                                  true_values=[], false_values=[],
                                                  strings_can_be_null=False,
                                                  quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        return None
    n = table.num_rows
    values = np.empty((n, want - 1))
    for col in range(1, want):
        values[:, col - 1] = _float_column(table.column(col))
    label = np.concatenate([np.array(chunk.dictionary.to_pylist() + [""], dtype=object)[
        _int_buffer(chunk.indices)] for chunk in table.column(0).chunks])
    sizes = np.fromiter(map(bytes.count, canonical, [b"\n"] * len(canonical)), np.int64,
                        count=len(canonical))
    occluded, dims = values[:, 1], values[:, 7:10]
    if (sizes.sum() != n or not np.isfinite(values).all()
            or (occluded != np.trunc(occluded)).any()
            or ((label != "DontCare") & (dims < 0).any(axis=1)).any()):
        return None
    fields = {"truncated": values[:, 0], "occluded": occluded, "alpha": values[:, 2],
              "bbox": values[:, 3:7], "dimensions": dims, "location": values[:, 10:13],
              "rotation_y": values[:, 13]}
    fields = {k: np.ascontiguousarray(v) for k, v in fields.items()}
    score = np.ascontiguousarray(values[:, 14]) if with_score else None
    names_list = label.tolist()
    ends = np.cumsum(sizes).tolist()
    out = []
    for start, end in zip([0] + ends[:-1], ends):
        out.append(KittiObjects(name=tuple(names_list[start:end]),
                                score=score[start:end] if score is not None else None,
                                **{k: v[start:end] for k, v in fields.items()}))
    return out


def _float_column(column: Any) -> np.ndarray:
    """A float64 pyarrow column without nulls as numpy (from its buffers: `to_numpy`
    would import pandas)."""
    parts = [np.frombuffer(chunk.buffers()[1], np.float64)[chunk.offset:chunk.offset + len(chunk)]
             for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0)


def _int_buffer(array: Any) -> np.ndarray:
    """The int32 values of a pyarrow array without nulls."""
    return np.frombuffer(array.buffers()[1], np.int32)[array.offset:array.offset + len(array)]


#: refbench split name -> the ImageSets file that lists its frames
IMAGESET_OF_SPLIT = {"validation": "val"}


def _split_ids(path: Path) -> list[str]:
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [i for i in ids if i]


def read_references(path: Path, split: str) -> dict[str, KittiObjects]:
    """Ground truth from a label_2 folder, a folder holding `label_2`, or a KITTI root
    (`training/label_2` restricted to `ImageSets/<split>.txt`)."""
    path = Path(path)
    if path.is_dir() and any(path.glob("*.txt")) and not (path / "ImageSets").is_dir():
        return read_label_dir(path, with_score=False)
    if (path / "label_2").is_dir():
        return read_label_dir(path / "label_2", with_score=False)
    labels, imagesets = path / "training" / "label_2", path / "ImageSets" / f"{split}.txt"
    if labels.is_dir() and imagesets.is_file():
        return read_label_dir(labels, with_score=False, ids=_split_ids(imagesets))
    raise RefbenchError(f"no label_2 files here (expected a label_2 folder or a KITTI root "
                        f"with training/label_2 and ImageSets/{split}.txt)", path=path)


# -- writing -------------------------------------------------------------------------------
def write_label_dir(folder: Path, frames: Mapping[Any, Any]) -> None:
    """Write `{id: objects}` as `<id>.txt` files with a score column (1.0 for frames that
    have none, e.g. ground truth); the folder is written aside and swapped in whole."""
    folder = Path(folder)
    texts = {}
    for key, frame in frames.items():
        fid = str(key)
        if not fid or any(c in fid for c in "/\\\0") or fid.startswith(".") or fid != fid.strip():
            raise RefbenchError(f"frame id {key!r} cannot be a file name", path=folder)
        if isinstance(frame, KittiObjects):
            objects = frame
        else:
            objects = KittiObjects.from_mapping(frame or {}, "score" in (frame or {}),
                                                f"prediction {fid}")
        texts[fid] = "".join(line + "\n" for line in objects.lines(default_score=1.0))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for fid, text in texts.items():
            with open(tmp / f"{fid}.txt", "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        atomic_dir_replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- the format ----------------------------------------------------------------------------
_ROW_COLUMNS = ("id",) + FIELDS


def dataset_references(dataset: "hf_datasets.Dataset") -> dict[str, KittiObjects]:
    """`{id: objects}` of a prepared KITTI split (all objects, DontCare included)."""
    missing = set(_ROW_COLUMNS) - set(dataset.column_names)
    if missing:
        raise RefbenchError(f"prepared split lacks column(s) {sorted(missing)}")
    out: dict[str, KittiObjects] = {}
    for row in dataset.select_columns(list(_ROW_COLUMNS)):
        fid = str(row["id"])
        if fid in out:
            raise RefbenchError(f"duplicate frame id {fid!r} in the prepared split")
        out[fid] = KittiObjects.from_mapping({k: row[k] for k in FIELDS}, False,
                                             f"prepared row {fid}")
    return out


@FORMATS.register("kitti_label_dir")
class KittiLabelDirFormat(SubmissionFormat):
    """A folder of `<id>.txt` files: label_2 columns plus a score (see module doc)."""

    missing = "score"
    missing_scored_as = "scored as frames without detections, as the devkit does"
    extra_scored_as = "ignored, as the devkit ignores them"
    is_folder = True

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_label_dir(Path(path), predictions)

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"kitti_label_dir takes no read options, got {sorted(options)}")
        return read_label_dir(Path(path), with_score=True)

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        return read_references(Path(path), IMAGESET_OF_SPLIT.get(spec.split, spec.split))

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        return dataset_references(dataset)
