"""TFRecord checksums: the compiled CRC32C (google-crc32c) and the pure-Python fallback agree,
and records stream one at a time with the same errors as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from refbench.datasets.waymo import v1 as V1
from refbench.errors import RefbenchError


def test_python_fallback_and_backend_agree() -> None:
    assert V1.crc32c_python(b"123456789") == 0xE3069283  # the CRC32C check value
    for size in (0, 1, 7, 64, 1000, 4099):
        data = os.urandom(size)
        assert V1.crc32c(data) == V1.crc32c_python(data)
    assert V1.CRC32C_BACKEND in ("google-crc32c (C)", "pure Python")


def test_the_3d_extra_brings_the_compiled_backend() -> None:
    pytest.importorskip("google_crc32c", reason="the 3d extra is not installed")
    assert V1.CRC32C_BACKEND == "google-crc32c (C)"


def test_streamed_records_round_trip_and_corruption_is_located(tmp_path: Path) -> None:
    records = [os.urandom(n) for n in (0, 10, 5000, 3)]
    path = tmp_path / "a.tfrecord"
    V1.write_records(path, records)
    assert [data for _, data in V1.iter_records(path)] == records
    infos = V1.scan(path)
    assert [i.length for i in infos] == [0, 10, 5000, 3]
    blob = bytearray(path.read_bytes())
    third = infos[2].offset
    blob[third + 12 + 100] ^= 0xFF  # a data byte of the third record
    (tmp_path / "bad.tfrecord").write_bytes(bytes(blob))
    with pytest.raises(RefbenchError, match=f"byte offset {third}: data checksum mismatch"):
        list(V1.iter_records(tmp_path / "bad.tfrecord"))
    (tmp_path / "cut.tfrecord").write_bytes(bytes(path.read_bytes()[:third + 40]))
    with pytest.raises(RefbenchError, match=f"truncated record at byte offset {third}"):
        list(V1.iter_records(tmp_path / "cut.tfrecord"))
    (tmp_path / "head.tfrecord").write_bytes(bytes(path.read_bytes()[:third + 5]))
    with pytest.raises(RefbenchError, match="truncated record header"):
        list(V1.iter_records(tmp_path / "head.tfrecord"))
