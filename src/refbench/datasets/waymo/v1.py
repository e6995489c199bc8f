"""The Waymo Open Dataset v1 container: TFRecord files read without TensorFlow.

A TFRecord file is a sequence of records, each
`uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)`
(little endian; masked = rotate right by 15 bits, plus 0xa282ead8). Both checksums are
verified, so a corrupt or truncated file fails with the file name and the byte offset of
the bad record. CRC32C (Castagnoli) comes from the maintained `google-crc32c` package (its
C implementation, in the `3d` extra) when it is installed, else from the pure-Python table
below (about 100x slower: a 100 MB record file takes tens of seconds). Records are read
one at a time, so memory stays at one record whatever the file size.

Each v1 record is one serialized `waymo.open_dataset.Frame` protobuf. Parsing it needs the
schema from the `waymo-open-dataset-tf-*` package, which pulls TensorFlow and is therefore
never a dependency of refbench: `parse_frame` uses it when it is importable (for example
in its own virtual environment) and otherwise raises a `RefbenchError` that says what to
install. The prepared dataset is the v2 Parquet release (`refbench.datasets.waymo.builder`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from refbench.errors import RefbenchError

_MASK_DELTA = 0xA282EAD8
_POLY = 0x82F63B78  # CRC32C (Castagnoli), reflected


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc32c_python(data: bytes) -> int:
    """CRC32C of `data` in pure Python (the fallback, and the reference in tests)."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _compiled_crc32c() -> Any:
    """`google_crc32c.value` when its C implementation is installed, else None."""
    try:
        import google_crc32c
    except ImportError:
        return None
    return google_crc32c.value if getattr(google_crc32c, "implementation", "") == "c" else None


_COMPILED = _compiled_crc32c()
#: which CRC32C implementation `crc32c` uses (reported by perf/lidar_io.py)
CRC32C_BACKEND = "google-crc32c (C)" if _COMPILED is not None else "pure Python"


def crc32c(data: bytes) -> int:
    """CRC32C of `data` (the checksum TFRecord uses)."""
    if _COMPILED is not None:
        return int(_COMPILED(data))
    return crc32c_python(data)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C: rotate right by 15 bits, then add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True)
class RecordInfo:
    """Where one record's data lies in its file."""

    offset: int  # byte offset of the record header
    length: int  # bytes of data


def iter_records(path: Path, verify: bool = True) -> Iterator[tuple[RecordInfo, bytes]]:
    """Yield (info, data) of every record, reading one record at a time; errors name the
    file and the byte offset."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise RefbenchError("TFRecord file not found", path=path) from None
    with handle:
        size = path.stat().st_size
        offset = 0
        while offset < size:
            head = handle.read(12)
            if len(head) < 12:
                raise RefbenchError(f"truncated record header at byte offset {offset} "
                                    f"({len(head)} of 12 bytes present)", path=path)
            header = head[:8]
            (length,) = struct.unpack("<Q", header)
            (length_crc,) = struct.unpack("<I", head[8:12])
            if verify and masked_crc32c(header) != length_crc:
                raise RefbenchError(f"record at byte offset {offset}: length checksum mismatch "
                                    f"(corrupt file or not a TFRecord)", path=path)
            end = offset + 12 + length + 4
            if end > size:
                raise RefbenchError(f"truncated record at byte offset {offset}: its length "
                                    f"says {length} data bytes + 4 checksum bytes, only "
                                    f"{size - offset - 12} remain", path=path)
            body = handle.read(length + 4)
            data = body[:length]
            (data_crc,) = struct.unpack("<I", body[length:])
            if verify and masked_crc32c(data) != data_crc:
                raise RefbenchError(f"record at byte offset {offset}: data checksum mismatch",
                                    path=path)
            yield RecordInfo(offset, length), data
            offset = end


def scan(path: Path, verify: bool = True) -> list[RecordInfo]:
    """The records of a TFRecord file (verified), without keeping their data."""
    return [info for info, _ in iter_records(path, verify)]


def write_records(path: Path, records: list[bytes]) -> None:
    """Write records as a TFRecord file (used by tests and synthetic data)."""
    from refbench.io import atomic_write_bytes

    parts = []
    for data in records:
        header = struct.pack("<Q", len(data))
        parts += [header, struct.pack("<I", masked_crc32c(header)), data,
                  struct.pack("<I", masked_crc32c(data))]
    atomic_write_bytes(path, b"".join(parts))


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def wire_fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a serialized protobuf message, top level only
    (length-delimited values are returned as bytes)."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
        yield number, wire, value


def frame_header(data: bytes) -> tuple[str, int]:
    """(context name, timestamp_micros) of a serialized v1 `Frame`, read from the protobuf
    wire format without its schema (`Frame.context` = 1 with `Context.name` = 1,
    `Frame.timestamp_micros` = 2)."""
    context, stamp = "", 0
    try:
        for number, wire, value in wire_fields(data):
            if number == 1 and wire == 2:
                for sub, sub_wire, sub_value in wire_fields(value):
                    if sub == 1 and sub_wire == 2:
                        context = sub_value.decode("utf-8")
            elif number == 2 and wire == 0:
                stamp = value
    except (ValueError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"not a serialized Waymo Frame: {exc}") from None
    return context, stamp


#: Label.Box field number -> position in (cx, cy, cz, length, width, height, heading)
_BOX_FIELDS = {1: 0, 2: 1, 3: 2, 5: 3, 4: 4, 6: 5, 7: 6}


def parse_label(data: bytes) -> dict[str, Any]:
    """`box` [7], `type`, `difficulty` (detection), `num_points`, `id` of a serialized
    `waymo.open_dataset.Label` (wire format; raises ValueError when malformed)."""
    label: dict[str, Any] = {"box": [0.0] * 7, "type": 0, "difficulty": 0, "num_points": 0,
                             "id": ""}
    for number, wire, value in wire_fields(data):
        if number == 1 and wire == 2:
            for field_no, field_wire, field_value in wire_fields(value):
                if field_no in _BOX_FIELDS and field_wire == 1:
                    label["box"][_BOX_FIELDS[field_no]] = struct.unpack("<d", field_value)[0]
        elif number == 3 and wire == 0:
            label["type"] = value
        elif number == 4 and wire == 2:
            label["id"] = value.decode("utf-8")
        elif number == 5 and wire == 0:
            label["difficulty"] = value
        elif number == 7 and wire == 0:
            label["num_points"] = value
    return label


def frame_laser_labels(data: bytes) -> list[dict[str, Any]]:
    """The 3D lidar labels (`Frame.laser_labels`, field 6) of a serialized v1 Frame."""
    try:
        return [parse_label(value) for number, wire, value in wire_fields(data)
                if number == 6 and wire == 2]
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise RefbenchError(f"not a serialized Waymo Frame: {exc}") from None


def read_objects_bin(path: Path) -> list[dict[str, Any]]:
    """The objects of a `waymo.open_dataset.Objects` file (the official metric tool's
    `gt.bin` / `pred.bin`), read from the wire format: one dict per object with
    `context_name`, `timestamp`, `box` [7] (cx, cy, cz, length, width, height, heading),
    `type`, `score` (1.0 when unset), `difficulty`, `num_points`."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError("file not found", path=path) from None
    out = []
    try:
        for number, wire, obj in wire_fields(blob):
            if number != 1 or wire != 2:
                continue
            item: dict[str, Any] = {"context_name": "", "timestamp": 0, "score": 1.0}
            for f, w, value in wire_fields(obj):
                if f == 1 and w == 2:
                    item.update(parse_label(value))
                elif f == 2 and w == 5:
                    item["score"] = struct.unpack("<f", value)[0]
                elif f == 4 and w == 2:
                    item["context_name"] = value.decode("utf-8")
                elif f == 5 and w == 0:
                    item["timestamp"] = value
            out.append(item)
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise RefbenchError(f"not a serialized waymo.open_dataset.Objects: {exc}",
                            path=path) from None
    return [{"box": [0.0] * 7, "type": 0, "difficulty": 0, "num_points": 0, "id": "",
             **item} for item in out]


def parse_frame(data: bytes) -> Any:
    """A serialized v1 `Frame` as a protobuf message (needs the official package)."""
    try:
        from waymo_open_dataset import dataset_pb2  # type: ignore[import-not-found]
    except ImportError:
        raise RefbenchError(
            "parsing a Waymo v1 Frame needs its protobuf schema from the official "
            "waymo-open-dataset-tf-2-12-0 package (which requires TensorFlow, so refbench "
            "never depends on it): install it in its own virtual environment, or use the "
            "v2 Parquet release that refbench reads directly") from None
    frame = dataset_pb2.Frame()
    frame.ParseFromString(data)
    return frame


def read_frames(path: Path) -> Iterator[Any]:
    """Parsed `Frame` messages of a v1 TFRecord file (see `parse_frame`)."""
    for _, data in iter_records(path):
        yield parse_frame(data)
