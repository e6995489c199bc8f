"""Product1M bottom-up region features: the ViLBERT-style LMDBs the official code reads.

What the official code does (`CAPTURE/tools/bp_feature/`, `dataloaders/pretrain_dataset_IT.py`):
the extractor writes a TSV with the fields `image_id, image_w, image_h, num_boxes, boxes,
features, title` (boxes and features base64 float32, exactly 36 boxes x 2048), and
`convert_train_all.py` turns it into an LMDB with tensorpack's `LMDBSerializer.save`:

* keys `b"00000000"`, `b"00000001"`, ... (`'{:08}'.format(index)`) and one entry
  `b"__keys__"` holding the list of keys;
* each value is one datapoint serialized by tensorpack's `dumps`, which is
  `pickle.dumps(obj, protocol=-1)` by default: the list
  `[features (num_boxes, 2048) float32, boxes (num_boxes, 4) float32, num_boxes (the TSV
  string, e.g. "36"), image_h, image_w, image_id, title]`, in that order, which the
  dataloader unpacks as `image_feature_wp, image_location_wp, num_boxes, image_h, image_w,
  image_id, caption`;
* the LMDB is a single file (`subdir=False`) when the path did not exist, else a folder
  holding `data.mdb`.

The record order is not the order of any item list (the extractor works through a set of
missing ids), so items are joined to records by `image_id`. The ViLBERT reader's layout (a
dict record with the TSV field names, keyed by image id, with a `keys` entry) is read too.

Safety: the records are pickles, and unpickling runs whatever a pickle names. They are
read with `refbench.safe_pickle.SafeUnpickler`, which resolves only the globals that
numpy arrays, numpy scalars and dtypes need (plus `_codecs.encode`, which protocol-2
pickles use for bytes): a record that names anything else (`os.system`, `builtins.eval`,
...) is refused with a `RefbenchError` before anything it names is looked up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from refbench.errors import RefbenchError, require
from refbench.safe_pickle import RefusedPickle, SafeUnpickler, safe_loads  # noqa: F401 (kept importable here)

FEATURE_DIM = 2048
MAX_BOXES = 36
#: folders of the release root searched for `*.lmdb` (the run script's `lmdb_features/`)
FEATURE_FOLDERS = (".", "lmdb_features")
#: entries that hold the key list rather than a record (tensorpack, ViLBERT)
META_KEYS = (b"__keys__", b"keys")
LIST_FIELDS = ("features", "boxes", "num_boxes", "image_h", "image_w", "image_id")


@dataclass
class RegionRecord:
    """One image's regions: `features (n, 2048)` and pixel `boxes (n, 4)` (x1, y1, x2, y2)."""

    image_id: str
    image_w: int
    image_h: int
    boxes: np.ndarray
    features: np.ndarray


def _key_text(key: bytes) -> str:
    return key.decode("latin-1")


def _array(value: Any, rows: int, dim: int, what: str, path: Path, key: str) -> np.ndarray:
    """`value` (an array, or base64 float32 bytes as in the TSV) as float32 `(rows, dim)`."""
    if isinstance(value, (bytes, str)):
        try:
            value = np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4")
        except (binascii.Error, ValueError):
            raise RefbenchError(f"{what} is neither an array nor base64 float32 data",
                                path=path, key=key) from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise RefbenchError(f"{what} must be a numeric array, found {kind}", path=path, key=key)
    if value.size != rows * dim:
        raise RefbenchError(f"{what} hold {value.size} values but num_boxes {rows} x {dim} "
                            f"needs {rows * dim}: truncated record?", path=path, key=key)
    out = value.reshape(rows, dim).astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        bad = int(np.argwhere(~np.isfinite(out))[0][0])
        raise RefbenchError(f"{what} hold NaN or infinite values (box {bad})", path=path,
                            key=key)
    return out


def _integer(value: Any, what: str, path: Path, key: str) -> int:
    try:
        number = int(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise RefbenchError(f"{what} is not an integer: {value!r:.40}", path=path,
                            key=key) from None
    if number < 0:
        raise RefbenchError(f"{what} is negative: {number}", path=path, key=key)
    return number


def record_from_object(obj: Any, path: Path, key: str) -> RegionRecord:
    """Validate one unpickled record: the official list (see the module doc) or a dict with
    the TSV field names; shapes must match `num_boxes`, values must be finite."""
    if isinstance(obj, dict):
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
        missing = [f for f in LIST_FIELDS if f not in fields]
        if missing:
            raise RefbenchError(f"record lacks the field(s) {', '.join(missing)}", path=path,
                                key=key)
    elif isinstance(obj, (list, tuple)) and len(obj) in (6, 7):
        fields = dict(zip(LIST_FIELDS, obj))
    else:
        shown = f"a {len(obj)}-item list" if isinstance(obj, (list, tuple)) else type(obj).__name__
        raise RefbenchError(f"expected the official record [features, boxes, num_boxes, "
                            f"image_h, image_w, image_id, title], found {shown}", path=path,
                            key=key)
    rows = _integer(fields["num_boxes"], "num_boxes", path, key)
    image_id = fields["image_id"]
    image_id = image_id.decode("utf-8", "replace") if isinstance(image_id, bytes) else image_id
    if not isinstance(image_id, (str, int)) or isinstance(image_id, bool) or str(image_id) == "":
        raise RefbenchError(f"image_id must be a non-empty string, found {image_id!r:.40}",
                            path=path, key=key)
    return RegionRecord(
        image_id=str(image_id),
        image_w=_integer(fields["image_w"], "image_w", path, key),
        image_h=_integer(fields["image_h"], "image_h", path, key),
        boxes=_array(fields["boxes"], rows, 4, "boxes", path, key),
        features=_array(fields["features"], rows, FEATURE_DIM, "features", path, key))


def decode_record(data: bytes, path: Path, key: bytes) -> RegionRecord:
    """Unpickle (safely) and validate the value stored under `key`."""
    where = f"record {_key_text(key)}"
    try:
        obj = safe_loads(data)
    except RefusedPickle as exc:
        raise RefbenchError(f"refused to unpickle ({exc.what}): a record may hold only numpy "
                            f"arrays and plain values", path=path, key=where) from None
    except Exception as exc:  # noqa: BLE001 - any failure of a cut-off or foreign pickle
        raise RefbenchError(f"truncated or not a pickle ({type(exc).__name__}: "
                            f"{str(exc)[:80]})", path=path, key=where) from None
    return record_from_object(obj, path, where)


def feature_files(root: Path) -> list[Path]:
    """Every `*.lmdb` (file or folder) in the root and in `lmdb_features/`, sorted."""
    out: list[Path] = []
    for folder in FEATURE_FOLDERS:
        base = Path(root) if folder == "." else Path(root) / folder
        if base.is_dir():
            out.extend(sorted(p for p in base.glob("*.lmdb") if not p.name.startswith(".")))
    return out


class FeatureLMDB:
    """One read-only region-feature LMDB (file or folder form); iterate or look up records."""

    def __init__(self, path: Path) -> None:
        require("lmdb", "retrieval")
        import lmdb

        self.path = Path(path)
        if self.path.is_dir() and not (self.path / "data.mdb").is_file():
            raise RefbenchError("a folder without data.mdb: not an LMDB database", path=path)
        try:
            self.env = lmdb.open(str(self.path), subdir=self.path.is_dir(), readonly=True,
                                 lock=False, readahead=False, max_readers=4)
        except lmdb.Error as exc:
            raise RefbenchError(f"not a readable LMDB database ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:80]})", path=path) from None
        self._txn: Any = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        self.env.close()

    def records(self, digest: Any = None) -> Iterator[tuple[bytes, RegionRecord]]:
        """(key, record) of every record in key order; `digest` is fed every key and value
        (a content hash that does not depend on the file's page layout)."""
        with self.env.begin(write=False) as txn:
            for key, value in txn.cursor():
                if digest is not None:
                    digest.update(len(key).to_bytes(4, "little") + key
                                  + len(value).to_bytes(8, "little") + value)
                if key in META_KEYS:
                    continue
                yield key, decode_record(value, self.path, key)

    def get(self, key: bytes) -> RegionRecord:
        if self._txn is None:
            self._txn = self.env.begin(write=False)
        value = self._txn.get(key)
        if value is None:
            raise RefbenchError(f"record {_key_text(key)} vanished (was the LMDB rewritten "
                                f"during prepare?)", path=self.path)
        return decode_record(value, self.path, key)


@dataclass
class FeatureIndex:
    """Where each image id's record is: `ids[image_id] = (file number, key)`, with the
    sha256 of every file's records (keys and values, in key order)."""

    files: list[Path]
    ids: dict[str, tuple[int, bytes]]
    digests: list[str]

    def to_json(self, root: Path) -> dict[str, Any]:
        return {"files": [f.relative_to(root).as_posix() for f in self.files],
                "digests": self.digests,
                "ids": {i: [n, _key_text(k)] for i, (n, k) in self.ids.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> FeatureIndex:
        return cls([Path(root) / f for f in data["files"]],
                   {i: (n, k.encode("latin-1")) for i, (n, k) in data["ids"].items()},
                   list(data["digests"]))


def build_feature_index(files: list[Path]) -> FeatureIndex:
    """Read every record of `files` once (validating it) and index it by image id; an id
    stored twice, in one file or two, is an error naming both places."""
    ids: dict[str, tuple[int, bytes]] = {}
    digests = []
    for number, path in enumerate(files):
        digest = hashlib.sha256()
        with FeatureLMDB(path) as db:
            for key, record in db.records(digest):
                seen = ids.setdefault(record.image_id, (number, key))
                if seen != (number, key):
                    other = "" if seen[0] == number else f" of {files[seen[0]]}"
                    raise RefbenchError(f"image id {record.image_id} is stored twice (also in "
                                        f"record {_key_text(seen[1])}{other})", path=path,
                                        key=f"record {_key_text(key)}")
        digests.append(digest.hexdigest())
    return FeatureIndex(list(files), ids, digests)


class FeatureReader:
    """Look up the region record of an item id through a `FeatureIndex` (files opened on
    first use, kept open until `close`)."""

    def __init__(self, index: FeatureIndex) -> None:
        self.index = index
        self._open: dict[int, FeatureLMDB] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for db in self._open.values():
            db.close()
        self._open.clear()

    def lookup(self, item_id: str) -> RegionRecord | None:
        where = self.index.ids.get(item_id)
        if where is None:
            return None
        number, key = where
        if number not in self._open:
            self._open[number] = FeatureLMDB(self.index.files[number])
        return self._open[number].get(key)
