"""The Waymo 3D detection submission format `waymo_boxes`.

Predictions are one row per box, as Parquet (`.parquet`) or JSON lines (any other suffix
but `.bin`, which is read as the official tool's `Objects` protobuf, e.g. OpenPCDet's
`pred.bin`),
with the columns `context_name`, `timestamp` (frame timestamp, int64 micros),
`center_x`, `center_y`, `center_z`, `length`, `width`, `height`, `heading` (vehicle frame,
metres / radians), `type` (1 vehicle, 2 pedestrian, 3 sign, 4 cyclist, or the names
`VEHICLE` / `TYPE_VEHICLE` ...) and `score` in [0, 1]. A frame without detections simply
has no row (it is scored with its ground truth as misses, as the official tool does). The
boxes of a frame outside the references are false positives, as in the official tool
(`compute_detection_metrics_main` scores the union of predicted and ground-truth frames);
the scorer reports both kinds of frame.

References are the prepared split's rows, or an official v2 folder: the `lidar_box`
component (`num_lidar_points_in_box` and `difficulty_level.detection` give the levels)
found as `<path>/lidar_box`, `<path>/<split>/lidar_box` or `<path>` itself; frames listed in
a sibling `stats` component but without any box are references with no box. A `gt.bin`
(`Objects` protobuf) file is read as references too.

Maps are keyed by `(context_name, timestamp)`; values are `refbench.evaluation.waymo.BoxFrame`.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.waymo import TYPE_NAMES, BoxFrame
from refbench.io import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

COLUMNS = ("context_name", "timestamp", "center_x", "center_y", "center_z", "length", "width",
           "height", "heading", "type", "score")
NUMERIC = COLUMNS[2:9]
_TYPE_IDS = {**{name: t for t, name in TYPE_NAMES.items()},
             **{f"TYPE_{name}": t for t, name in TYPE_NAMES.items()}}


def _type_id(value: Any, path: Path, row: int, line: int | None) -> int:
    if isinstance(value, str):
        if value.upper() in _TYPE_IDS:
            return _TYPE_IDS[value.upper()]
    elif not isinstance(value, bool) and isinstance(value, (int, np.integer)) \
            and int(value) in TYPE_NAMES:
        return int(value)
    raise RefbenchError(f"row {row}: unknown type {value!r} (known: 1-4 or "
                        f"{', '.join(TYPE_NAMES.values())})", path=path, line=line, key="type")


def _records(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """(rows, rows carry line numbers) of a Parquet or JSON-lines prediction file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise RefbenchError(f"not a readable Parquet file: {exc}", path=path) from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise RefbenchError(f"missing column(s) {', '.join(missing)} (needed: "
                                f"{', '.join(COLUMNS)})", path=path, key=missing[0])
        return table.select(list(COLUMNS)).to_pylist(), False
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RefbenchError(f"invalid JSON: {exc.msg}", path=path, line=number) from None
            if not isinstance(obj, dict):
                raise RefbenchError("each line must be a JSON object", path=path, line=number)
            missing = [c for c in COLUMNS if c not in obj]
            if missing:
                raise RefbenchError(f"missing column(s) {', '.join(missing)}", path=path,
                                    line=number, key=missing[0])
            obj["_line"] = number
            rows.append(obj)
    return rows, True


def _objects_records(path: Path) -> list[dict[str, Any]]:
    """Rows of an official `Objects` protobuf file (`pred.bin` / `gt.bin`)."""
    from refbench.datasets.waymo.v1 import read_objects_bin

    rows = []
    for obj in read_objects_bin(path):
        row = dict(zip(NUMERIC, obj["box"], strict=True))
        row.update(context_name=obj["context_name"], timestamp=obj["timestamp"],
                   type=obj["type"], score=obj["score"])
        rows.append(row)
    return rows


def read_box_file(path: Path) -> dict[tuple[str, int], BoxFrame]:
    """Parse and validate a prediction file into `{(context_name, timestamp): BoxFrame}`
    (Parquet, JSON lines, or the official tool's `Objects` protobuf `.bin`), frames in the
    order they first appear. Well-formed Parquet and JSON-lines files are read column-wise;
    a file with any bad row is read row by row, which names the first bad row."""
    path = Path(path)
    if not path.is_file():
        raise RefbenchError("prediction file not found", path=path)
    if path.suffix != ".bin":
        columns = _parquet_columns(path) if path.suffix == ".parquet" else _json_columns(path)
        if columns is not None and _columns_valid(columns):
            return _group_columns(columns)
    return _read_rows(path)


def _parquet_columns(path: Path) -> dict[str, Any] | None:
    """The columns of a Parquet prediction file as numpy arrays (contexts and string types
    dictionary-encoded), or None when a column's type or a null asks for the row path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refbench.datasets.waymo.reader import column_numpy

    try:  # one file: ParquetFile, which does not import pyarrow.dataset and pandas
        file = pq.ParquetFile(path)
        table = file.read(columns=[c for c in COLUMNS if c in file.schema_arrow.names])
    except (OSError, ValueError):
        return None  # the row path reports it
    if table.num_columns != len(COLUMNS) or any(table.column(c).null_count for c in COLUMNS):
        return None
    kinds = {c: table.schema.field(c).type for c in COLUMNS}
    number = (lambda t: (pa.types.is_integer(t) or pa.types.is_floating(t))
              and not pa.types.is_uint64(t))
    text = (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t))
    if not text(kinds["context_name"]) or not pa.types.is_integer(kinds["timestamp"]) \
            or pa.types.is_uint64(kinds["timestamp"]) \
            or not all(number(kinds[c]) for c in (*NUMERIC, "score")) \
            or not (number(kinds["type"]) or pa.types.is_string(kinds["type"])):
        return None
    contexts = table.column("context_name").combine_chunks().dictionary_encode()
    codes = pa.table({"code": contexts.indices})
    out: dict[str, Any] = {
        "context_code": column_numpy(codes, "code").astype(np.int64),
        "contexts": contexts.dictionary.to_pylist(),
        "timestamp": column_numpy(table, "timestamp").astype(np.int64),
        "values": np.stack([column_numpy(table, c).astype(np.float64)
                            for c in (*NUMERIC, "score")], axis=1)}
    if pa.types.is_string(kinds["type"]):
        kind = table.column("type").combine_chunks().dictionary_encode()
        ids = np.array([_TYPE_IDS.get(v.upper(), 0) for v in kind.dictionary.to_pylist()]
                       + [0], np.int64)
        out["type"] = ids[column_numpy(pa.table({"code": kind.indices}), "code")]
    elif pa.types.is_floating(kinds["type"]):
        return None  # a float type id is an error the row path names
    else:
        kind = column_numpy(table, "type").astype(np.int64)
        out["type"] = np.where(np.isin(kind, list(TYPE_NAMES)), kind, 0)
    return out


def _json_columns(path: Path) -> dict[str, Any] | None:
    """The columns of a JSON-lines prediction file whose lines are all objects with every
    column of a plain type, or None (the row path then reads it, naming any bad line)."""
    try:
        text = path.read_text(encoding="utf-8")
        rows = json.loads("[" + ",".join(line for line in text.splitlines() if line.strip())
                          + "]")
    except (ValueError, UnicodeDecodeError):
        return None
    if not rows or not all(type(r) is dict and len(r.keys() & COLUMNS) == len(COLUMNS)
                           for r in rows):
        return None
    cols = {c: [r[c] for r in rows] for c in COLUMNS}
    if set(map(type, cols["context_name"])) != {str} \
            or set(map(type, cols["timestamp"])) != {int} \
            or not all(set(map(type, cols[c])) <= {int, float} for c in (*NUMERIC, "score")) \
            or set(map(type, cols["type"])) not in ({int}, {str}):
        return None
    contexts = list(dict.fromkeys(cols["context_name"]))
    code = {name: i for i, name in enumerate(contexts)}
    kinds = cols["type"]
    try:
        return {"context_code": np.array([code[c] for c in cols["context_name"]], np.int64),
                "contexts": contexts, "timestamp": np.array(cols["timestamp"], np.int64),
                "values": np.array([cols[c] for c in (*NUMERIC, "score")], np.float64).T,
                "type": np.array([_TYPE_IDS.get(k.upper(), 0) for k in kinds]
                                 if type(kinds[0]) is str
                                 else [k if k in TYPE_NAMES else 0 for k in kinds], np.int64)}
    except OverflowError:  # beyond int64 / float64: the row path says which row
        return None


def _columns_valid(columns: Mapping[str, Any]) -> bool:
    """Whether every row passes the row path's checks (non-empty context, finite numbers,
    positive sizes, a score in [0, 1], a known type)."""
    values = columns["values"]
    empty = [i for i, name in enumerate(columns["contexts"]) if not name]
    return bool(np.isfinite(values).all() and (values[:, 3:6] > 0).all()
                and ((values[:, 7] >= 0) & (values[:, 7] <= 1)).all()
                and (columns["type"] > 0).all()
                and not np.isin(columns["context_code"], empty).any())


def _group_columns(columns: Mapping[str, Any]) -> dict[tuple[str, int], BoxFrame]:
    """One BoxFrame per (context, timestamp), in order of first appearance, rows in order."""
    code, stamp, values = columns["context_code"], columns["timestamp"], columns["values"]
    order = np.lexsort((np.arange(len(code)), stamp, code))
    groups = np.split(order, np.flatnonzero(np.diff(code[order]) | np.diff(stamp[order])) + 1)
    out: dict[tuple[str, int], BoxFrame] = {}
    for g in sorted((g for g in groups if len(g)), key=lambda g: g[0]):
        key = (columns["contexts"][code[g[0]]], int(stamp[g[0]]))
        out[key] = BoxFrame(key[0], key[1], boxes=values[g, :7],
                            types=columns["type"][g],
                            scores=values[g, 7].astype(np.float32))
    return out


def _read_rows(path: Path) -> dict[tuple[str, int], BoxFrame]:
    """`read_box_file` row by row: each row checked in order, the first bad one named."""
    if path.suffix == ".bin":
        records, has_lines = _objects_records(path), False
    else:
        records, has_lines = _records(path)
    grouped: dict[tuple[str, int], list[tuple[list[float], int, float]]] = {}
    for i, rec in enumerate(records):
        line = rec.get("_line") if has_lines else None
        row = i + 1
        context = rec["context_name"]
        if not isinstance(context, str) or not context:
            raise RefbenchError(f"row {row}: context_name must be a non-empty string",
                                path=path, line=line, key="context_name")
        stamp = rec["timestamp"]
        if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)):
            raise RefbenchError(f"row {row}: timestamp must be an integer (micros), got "
                                f"{stamp!r}", path=path, line=line, key="timestamp")
        values = []
        for col in (*NUMERIC, "score"):
            value = rec[col]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise RefbenchError(f"row {row}: {col} must be a finite number, got {value!r}",
                                    path=path, line=line, key=col)
            values.append(float(value))
        if min(values[3:6]) <= 0:
            bad = NUMERIC[3 + int(np.argmin(values[3:6]))]
            raise RefbenchError(f"row {row}: box sizes must be positive, {bad} is "
                                f"{min(values[3:6])}", path=path, line=line, key=bad)
        if not 0.0 <= values[7] <= 1.0:
            raise RefbenchError(f"row {row}: score must be in [0, 1], got {values[7]}",
                                path=path, line=line, key="score")
        kind = _type_id(rec["type"], path, row, line)
        grouped.setdefault((context, int(stamp)), []).append((values[:7], kind, values[7]))
    return {key: BoxFrame(key[0], key[1], boxes=np.array([b for b, _, _ in items]),
                          types=np.array([t for _, t, _ in items], np.int64),
                          scores=np.array([s for _, _, s in items], np.float32))
            for key, items in grouped.items()}


def write_box_file(path: Path, predictions: Mapping[Any, Any]) -> None:
    """Write `{key: BoxFrame}` (a reference frame without scores gets score 1.0)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for frame in predictions.values():
        boxes = np.asarray(frame.boxes, np.float64).reshape(-1, 7)
        scores = (np.ones(len(boxes)) if frame.scores is None
                  else np.asarray(frame.scores, np.float64))
        for box, kind, score in zip(boxes, np.asarray(frame.types).reshape(-1), scores):
            cols["context_name"].append(frame.context_name)
            cols["timestamp"].append(int(frame.timestamp))
            for name, value in zip(NUMERIC, box):
                cols[name].append(float(value))
            cols["type"].append(int(kind))
            cols["score"].append(float(score))
    if path.suffix == ".parquet":
        types = {c: pa.float64() for c in COLUMNS}
        types.update({"context_name": pa.string(), "timestamp": pa.int64(), "type": pa.int8()})
        table = pa.table({c: pa.array(v, type=types[c]) for c, v in cols.items()})
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    else:
        lines = [json.dumps({c: cols[c][i] for c in COLUMNS}, allow_nan=False)
                 for i in range(len(cols["type"]))]
        atomic_write_bytes(path, ("\n".join(lines) + ("\n" if lines else "")).encode())


def read_objects_references(path: Path) -> dict[tuple[str, int], BoxFrame]:
    """References from the official tool's `gt.bin` (`Objects` protobuf); only frames with
    at least one object are known to it."""
    from refbench.datasets.waymo.v1 import read_objects_bin

    grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for obj in read_objects_bin(path):
        grouped.setdefault((obj["context_name"], int(obj["timestamp"])), []).append(obj)
    return {key: BoxFrame(key[0], key[1], boxes=np.array([o["box"] for o in objs]),
                          types=np.array([o["type"] for o in objs], np.int64),
                          num_points=np.array([o["num_points"] for o in objs], np.int64),
                          difficulty=np.array([o["difficulty"] for o in objs], np.int64))
            for key, objs in grouped.items()}


def read_reference_folder(path: Path, split: str) -> dict[tuple[str, int], BoxFrame]:
    """References from an official v2 `lidar_box` folder (see the module doc), or from a
    `gt.bin` file."""
    from refbench.datasets.waymo.reader import (
        KEY_TIME,
        column_numpy,
        read_boxes,
        read_table,
    )

    path = Path(path)
    if path.is_file() and path.suffix == ".bin":
        return read_objects_references(path)
    candidates = [path / "lidar_box", path / split / "lidar_box", path]
    folder = next((c for c in candidates if c.is_dir() and any(c.glob("*.parquet"))), None)
    if folder is None:
        raise RefbenchError(f"no lidar_box/*.parquet here (looked in lidar_box/, {split}/"
                            f"lidar_box/ and the folder itself)", path=path)
    out: dict[tuple[str, int], BoxFrame] = {}
    for file in sorted(folder.glob("*.parquet")):
        seg = file.stem
        stats = folder.parent / "stats" / file.name
        if stats.is_file():
            for stamp in column_numpy(read_table(stats, [KEY_TIME]), KEY_TIME):
                out[(seg, int(stamp))] = BoxFrame(seg, int(stamp), num_points=np.zeros(0),
                                                  difficulty=np.zeros(0))
        for stamp, lab in read_boxes(file).items():
            out[(seg, stamp)] = BoxFrame(seg, stamp, boxes=lab["boxes"], types=lab["types"],
                                         num_points=lab["num_points"],
                                         difficulty=lab["difficulty"])
    return out


def dataset_references(dataset: "hf_datasets.Dataset") -> dict[tuple[str, int], BoxFrame]:
    """References of a prepared split (the point clouds are not read)."""
    cols = ["context_name", "timestamp", "boxes", "types", "num_points", "difficulty"]
    missing = set(cols) - set(dataset.column_names)
    if missing:
        raise RefbenchError(f"prepared split lacks column(s) {sorted(missing)}")
    out: dict[tuple[str, int], BoxFrame] = {}
    for row in dataset.select_columns(cols):
        key = (row["context_name"], int(row["timestamp"]))
        if key in out:
            raise RefbenchError(f"duplicate frame {key[0]}@{key[1]} in the prepared split")
        out[key] = BoxFrame(key[0], key[1],
                            boxes=np.asarray(row["boxes"], np.float64).reshape(-1, 7),
                            types=np.asarray(row["types"], np.int64),
                            num_points=np.asarray(row["num_points"], np.int64),
                            difficulty=np.asarray(row["difficulty"], np.int64))
    return out


@FORMATS.register("waymo_boxes")
class WaymoBoxesFormat(SubmissionFormat):
    """One row per predicted box (Parquet or JSON lines); see the module doc."""

    missing = "score"
    missing_scored_as = "scored as frames without detections, as the official tool does"
    extra = "score"
    extra_scored_as = ("scored as frames without ground truth (their boxes are false "
                       "positives), as the official tool does")

    def extra_reference(self, key: Any) -> BoxFrame:
        """A predicted frame outside the references: a frame without ground truth."""
        context, stamp = key
        return BoxFrame(context, int(stamp), num_points=np.zeros(0, np.int64),
                        difficulty=np.zeros(0, np.int64))

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_box_file(Path(path), predictions)

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"waymo_boxes takes no read options, got {sorted(options)}")
        return read_box_file(Path(path))

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        return read_reference_folder(Path(path), spec.split)

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        return dataset_references(dataset)
