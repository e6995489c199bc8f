"""KITTI submission format `kitti_label_dir`: a folder of `<id>.txt` files in label_2 form.

Each line is one object: `name truncated occluded alpha left top right bottom h w l x y z
rotation_y` (15 columns, the label_2 files) plus `score` for predictions (16 columns), as
the KITTI server and the devkit read them. Maps are `{id: KittiObjects}` (one frame's
objects). An id of the references without a prediction file is a frame with no
detections, as the devkit scores it, and a prediction file of a frame outside the
references is ignored, as the devkit ignores it; the scorer reports both.

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
        return {k: self[k] for k in self._keys()}

    def lines(self, default_score: float | None = None) -> list[str]:
        """The label-file lines; a score column when the frame has one or a default is given."""
        out = []
        for i, name in enumerate(self.name):
            cols = [name, _num(self.truncated[i]), str(int(self.occluded[i])),
                    _num(self.alpha[i]), *map(_num, self.bbox[i]), *map(_num, self.dimensions[i]),
                    *map(_num, self.location[i]), _num(self.rotation_y[i])]
            if self.score is not None:
                cols.append(_num(self.score[i]))
            elif default_score is not None:
                cols.append(_num(default_score))
            out.append(" ".join(cols))
        return out

    def __str__(self) -> str:
        return "".join(line + "\n" for line in self.lines())


def _num(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(value))


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
    if ids is None:
        files = sorted(p for p in folder.glob("*.txt") if not p.name.startswith("."))
    else:
        files = [folder / f"{i}.txt" for i in ids]
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise RefbenchError(f"{len(missing)} label file(s) of the split are missing, "
                                f"first {missing[0].name}", path=folder)
    return {p.stem: parse_label_file(p, with_score) for p in files}


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
