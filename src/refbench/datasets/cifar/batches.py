"""The two official CIFAR formats, read and validated; and a writer of the python one.

Python version (`cifar-10-batches-py/`, `cifar-100-python/`): each file is a Python 2
cPickle (protocol 2) of a dict. A batch holds `data`, a uint8 array `(rows, 3072)` (the
1024 red, then green, then blue values of a 32x32 image, row-major), the labels
(`labels`; CIFAR-100 `fine_labels` and `coarse_labels`), `filenames` and `batch_label`;
the meta file holds the class names (`label_names`, and `num_cases_per_batch` = 10,000;
CIFAR-100 `fine_label_names`, `coarse_label_names`).

Unpickling runs whatever a pickle names, so these files are read with the restricted
unpickler of `refbench.safe_pickle` (builtins and numpy arrays only, any
other global refused before it is looked up), with `encoding="latin1"` so Python 2 byte
strings (the pixel buffer included) load as numpy expects.

Binary version (`cifar-10-batches-bin/`, `cifar-100-binary/`): records of 1 label byte
(CIFAR-100: coarse, then fine) + 3,072 pixel bytes; class names one per line in
`batches.meta.txt` (CIFAR-100 `fine_label_names.txt`, `coarse_label_names.txt`).
"""

from __future__ import annotations

import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refbench.errors import RefbenchError
from refbench.safe_pickle import RefusedPickle, SafeUnpickler

SIDE = 32
PIXELS = 3 * SIDE * SIDE  # 3,072 values per image
#: the official rows per file: every CIFAR-10 batch and the CIFAR-100 test file hold
#: 10,000 images, the CIFAR-100 train file 50,000
ROWS_PER_BATCH = 10_000
CIFAR100_TRAIN_ROWS = 50_000


@dataclass
class Batch:
    """One batch file: pixels `(rows, 3072)` uint8, labels (and CIFAR-100 coarse labels),
    the official file names of the images."""

    path: Path
    data: np.ndarray
    labels: np.ndarray
    coarse: np.ndarray | None
    filenames: list[str]

    def images(self) -> np.ndarray:
        """`(rows, 32, 32, 3)` uint8 RGB images."""
        return self.data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)


def _text(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def load_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys; anything else is a one-line error."""
    if path.is_dir():
        raise RefbenchError("a folder, where a CIFAR pickle file belongs", path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RefbenchError(f"unreadable ({exc.strerror or exc})", path=path) from None
    try:
        obj = SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except RefusedPickle as exc:
        raise RefbenchError(f"refused to unpickle: it names {exc.what} (a CIFAR file holds "
                            f"only lists, strings and a uint8 array)", path=path) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            KeyError, AttributeError, UnicodeDecodeError, struct.error) as exc:
        raise RefbenchError(f"not a complete CIFAR pickle (truncated or corrupt: "
                            f"{type(exc).__name__}: {exc})", path=path) from None
    if not isinstance(obj, dict):
        raise RefbenchError(f"expected a pickled dict, found {type(obj).__name__}", path=path)
    return {_text(k): v for k, v in obj.items()}


def _field(obj: dict[str, Any], key: str, path: Path) -> Any:
    if key not in obj:
        raise RefbenchError(f"lacks the key {key!r} (has: {', '.join(sorted(obj))})",
                            path=path, key=key)
    return obj[key]


def class_names(obj: dict[str, Any], key: str, count: int, path: Path) -> list[str]:
    """The `count` class names under `key` of a meta dict."""
    names = _field(obj, key, path)
    if not isinstance(names, list) or not all(isinstance(_text(n), str) for n in names):
        raise RefbenchError("must be a list of strings", path=path, key=key)
    names = [_text(n) for n in names]
    if len(names) != count:
        raise RefbenchError(f"holds {len(names)} class names, expected {count}", path=path,
                            key=key)
    if len(set(names)) != count:
        raise RefbenchError("class names repeat", path=path, key=key)
    return names


def _labels(obj: dict[str, Any], key: str, rows: int, classes: int, path: Path) -> np.ndarray:
    values = _field(obj, key, path)
    try:
        labels = np.asarray(values)
    except (TypeError, ValueError):
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise RefbenchError("labels must be a flat list of integers", path=path, key=key)
    if len(labels) != rows:
        raise RefbenchError(f"{len(labels)} labels for {rows} images", path=path, key=key)
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise RefbenchError(f"label {int(labels[bad[0]])} of row {int(bad[0])} is not in "
                            f"0..{classes - 1}", path=path, key=key)
    return labels.astype(np.int64)


def read_python_batch(path: Path, classes: int, coarse_classes: int | None = None,
                      rows: int | None = None) -> Batch:
    """Read and validate one python-format batch (`coarse_classes` for CIFAR-100; `rows`:
    the exact number of images it must hold, when known)."""
    obj = load_pickle(path)
    data = _field(obj, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        shown = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) \
            else type(data).__name__
        raise RefbenchError(f"data must be a uint8 array (rows, {PIXELS}), found {shown}",
                            path=path, key="data")
    if rows is not None and data.shape[0] != rows:
        raise RefbenchError(f"data has shape {data.shape}, expected ({rows}, {PIXELS})",
                            path=path, key="data")
    n = data.shape[0]
    if coarse_classes is None:
        labels, coarse = _labels(obj, "labels", n, classes, path), None
    else:
        labels = _labels(obj, "fine_labels", n, classes, path)
        coarse = _labels(obj, "coarse_labels", n, coarse_classes, path)
    names = obj.get("filenames", [f"{i:05d}.png" for i in range(n)])
    if not isinstance(names, list) or len(names) != n:
        raise RefbenchError(f"filenames must list {n} names", path=path, key="filenames")
    return Batch(path, np.ascontiguousarray(data), labels, coarse, [str(_text(f)) for f in names])


def read_binary_batch(path: Path, classes: int, coarse_classes: int | None = None) -> Batch:
    """Read and validate one binary-format file (records of label byte(s) + 3,072 pixels)."""
    if path.is_dir():
        raise RefbenchError("a folder, where a CIFAR .bin file belongs", path=path)
    head = 1 if coarse_classes is None else 2
    record = head + PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise RefbenchError(f"{raw.size} bytes is not a whole number of {record}-byte records "
                            f"(truncated?)", path=path)
    table = raw.reshape(-1, record)
    labels = table[:, head - 1].astype(np.int64)
    coarse = table[:, 0].astype(np.int64) if head == 2 else None
    for what, values, limit in (("label", labels, classes), ("coarse label", coarse,
                                                              coarse_classes)):
        if values is None or limit is None:
            continue
        bad = np.flatnonzero(values >= limit)
        if bad.size:
            raise RefbenchError(f"{what} {int(values[bad[0]])} of record {int(bad[0])} is not "
                                f"in 0..{limit - 1}", path=path)
    return Batch(path, np.ascontiguousarray(table[:, head:]), labels, coarse,
                 [f"{i:05d}.png" for i in range(len(table))])


def read_name_lines(path: Path, count: int) -> list[str]:
    """Class names one per line (binary format), blank lines ignored."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"unreadable class-name file ({exc})", path=path) from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != count or len(set(names)) != count:
        raise RefbenchError(f"holds {len(names)} distinct class names, expected {count}",
                            path=path)
    return names


def check_coarse_consistent(batches: list[Batch]) -> None:
    """Each CIFAR-100 fine class lies in exactly one superclass; a fine label seen with two
    coarse labels is an error naming the batch and row."""
    owner: dict[int, int] = {}
    for batch in batches:
        assert batch.coarse is not None
        for row, (fine, coarse) in enumerate(zip(batch.labels.tolist(), batch.coarse.tolist())):
            if owner.setdefault(fine, coarse) != coarse:
                raise RefbenchError(f"fine label {fine} of row {row} has coarse label {coarse}, "
                                    f"elsewhere {owner[fine]}", path=batch.path,
                                    key="coarse_labels")


# -- writing (synthesizer, tests) -------------------------------------------------------
def py2_pickle(obj: Any) -> bytes:
    """`obj` (dicts, lists, str, int, uint8 2-D arrays) pickled as Python 2's cPickle
    wrote the official files: protocol 2, strings as byte strings, arrays through
    `numpy.core.multiarray._reconstruct`."""
    out = bytearray(b"\x80\x02")

    def string(text: str) -> None:
        data = text.encode("latin-1")
        out.extend(b"U" + bytes([len(data)]) if len(data) < 256
                   else b"T" + struct.pack("<i", len(data)))
        out.extend(data)

    def integer(value: int) -> None:
        if 0 <= value < 256:
            out.extend(b"K" + bytes([value]))
        elif 0 <= value < 65536:
            out.extend(b"M" + struct.pack("<H", value))
        else:
            out.extend(b"J" + struct.pack("<i", value))

    def put(value: Any) -> None:
        if isinstance(value, dict):
            out.extend(b"}(")
            for key, item in value.items():
                put(key)
                put(item)
            out.extend(b"u")
        elif isinstance(value, list):
            out.extend(b"](")
            for item in value:
                put(item)
            out.extend(b"e")
        elif isinstance(value, str):
            string(value)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            integer(int(value))
        elif isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 2:
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85")
            string("b")
            out.extend(b"\x87R(K\x01")
            integer(value.shape[0])
            integer(value.shape[1])
            out.extend(b"\x86cnumpy\ndtype\n")
            string("u1")
            out.extend(b"K\x00K\x01\x87R(K\x03")
            string("|")
            out.extend(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
            data = np.ascontiguousarray(value).tobytes()
            out.extend(b"T" + struct.pack("<i", len(data)) + data)
            out.extend(b"tb")
        else:
            raise TypeError(f"cannot write {type(value).__name__} as a CIFAR pickle")

    put(obj)
    out.extend(b".")
    return bytes(out)
