"""An on-disk index of an M5Product release, so memory stays flat in the number of items.

The release has millions of items: the info JSON alone is gigabytes, and joining id
lists, info entries and region records by id through Python dicts would hold every id in
memory. `ReleaseIndex` streams the info JSON(s) and every region-feature record once and
stores `id -> (title, pv, label, line)` and `image_id -> (LMDB file, key)` in an SQLite
file (standard library, page cache of a few MB). Duplicate ids in the info JSON or the
LMDBs are caught by primary keys and reported with both places.

The index is rebuilt whenever a source's size or modification time changes (`stamp`),
and otherwise reused by a resumed `prepare`; `check` builds one in a temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from refbench.datasets.m5product.readers import (
    FINE_INFO_FILES,
    INFO_FILES,
    M5Info,
    find_file,
    iter_info,
)
from refbench.datasets.product1m.features import (
    FeatureLMDB,
    RegionRecord,
    _key_text,
    feature_files,
)
from refbench.errors import RefbenchError

#: rows inserted per transaction
_BATCH = 5000
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE info (src INTEGER NOT NULL, id TEXT NOT NULL, title TEXT NOT NULL,
                   pv TEXT NOT NULL, label TEXT NOT NULL, line INTEGER NOT NULL,
                   PRIMARY KEY (src, id));
CREATE TABLE regions (id TEXT PRIMARY KEY, file INTEGER NOT NULL, key BLOB NOT NULL);
"""
#: `src` of the main and the fine-grained info JSON
MAIN, FINE = 0, 1


def source_paths(root: Path) -> tuple[Path | None, Path | None, list[Path]]:
    """The main info JSON, the fine-grained one and the region LMDBs present in `root`."""
    return (find_file(root, INFO_FILES), find_file(root, FINE_INFO_FILES),
            feature_files(root))


def stamp(root: Path) -> list[list[object]]:
    """Size and mtime of every indexed source: a changed stamp means a stale index."""
    main, fine, lmdbs = source_paths(root)
    out: list[list[object]] = []
    for path in [p for p in (main, fine) if p is not None] + lmdbs:
        st = (path / "data.mdb" if path.is_dir() else path).stat()
        out.append([path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    return out


class ReleaseIndex:
    """Read access to a built index (see `build`)."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path, self.root = Path(path), Path(root)
        self.db = sqlite3.connect(str(self.path))
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        self.stamp = json.loads(meta["stamp"])
        self.digests: dict[str, str] = json.loads(meta["digests"])
        self.lmdb_files = [self.root / f for f in json.loads(meta["lmdb_files"])]
        self.has_fine = meta["has_fine"] == "1"
        self._open: dict[int, FeatureLMDB] = {}

    def close(self) -> None:
        for db in self._open.values():
            db.close()
        self._open.clear()
        self.db.close()

    def __enter__(self) -> ReleaseIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self, item_id: str, fine: bool = False) -> M5Info | None:
        """An item's info entry (for the `fine_*` splits the fine JSON's first)."""
        for src in ((FINE, MAIN) if fine and self.has_fine else (MAIN,)):
            row = self.db.execute("SELECT title, pv, label, line FROM info WHERE src=? AND "
                                  "id=?", (src, item_id)).fetchone()
            if row is not None:
                return M5Info(*row)
        return None

    def count(self, src: int = MAIN) -> int:
        return self.db.execute("SELECT COUNT(*) FROM info WHERE src=?", (src,)).fetchone()[0]

    def iter_ids(self, src: int = MAIN) -> Iterator[tuple[int, str]]:
        """`(line, id)` of every entry of an info JSON, in file order."""
        last = 0
        while rows := self.db.execute("SELECT rowid, line, id FROM info WHERE src=? AND "
                                      "rowid>? ORDER BY rowid LIMIT ?", (src, last, _BATCH)
                                      ).fetchall():
            last = rows[-1][0]
            for _, line, item_id in rows:
                yield int(line), item_id

    def labels(self, src: int = MAIN) -> Iterator[tuple[str, int]]:
        """`(label, items)` of an info JSON ('' counts the entries without a label); the
        fine-grained JSON's labels are products, not classes of the label list."""
        yield from self.db.execute("SELECT label, COUNT(*) FROM info WHERE src=? GROUP BY "
                                   "label", (src,))

    def region_key(self, item_id: str) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT file, key FROM regions WHERE id=?", (item_id,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def regions(self, item_id: str) -> RegionRecord | None:
        """The validated region record of an item (None: it has none)."""
        where = self.region_key(item_id)
        if where is None:
            return None
        number, key = where
        if number not in self._open:
            self._open[number] = FeatureLMDB(self.lmdb_files[number])
        return self._open[number].get(key)

    def count_regions(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM regions").fetchone()[0]


def _insert_info(db: sqlite3.Connection, src: int, path: Path) -> str:
    digest = hashlib.sha256()
    batch: list[tuple[object, ...]] = []

    def flush() -> None:
        try:
            db.executemany("INSERT INTO info VALUES (?, ?, ?, ?, ?, ?)", batch)
            db.commit()
        except sqlite3.IntegrityError:  # undo the batch, then find the duplicate row by row
            db.rollback()
            for row in batch:
                first = db.execute("SELECT line FROM info WHERE src=? AND id=?",
                                   row[:2]).fetchone()
                if first is not None:
                    raise RefbenchError(f"duplicate item id (first on line {first[0]})",
                                        path=path, line=int(row[5]),  # type: ignore[arg-type]
                                        key=f"item {row[1]}") from None
                db.execute("INSERT INTO info VALUES (?, ?, ?, ?, ?, ?)", row)
        batch.clear()

    for key, info in iter_info(path, digest):
        batch.append((src, key, info.title, info.pv, info.label, info.line))
        if len(batch) >= _BATCH:
            flush()
    flush()
    return digest.hexdigest()


def _insert_regions(db: sqlite3.Connection, number: int, path: Path) -> str:
    digest = hashlib.sha256()
    with FeatureLMDB(path) as lmdb_file:
        for key, record in lmdb_file.records(digest):
            try:
                db.execute("INSERT INTO regions VALUES (?, ?, ?)", (record.image_id, number,
                                                                      key))
            except sqlite3.IntegrityError:
                other, okey = db.execute("SELECT file, key FROM regions WHERE id=?",
                                         (record.image_id,)).fetchone()
                where = "" if other == number else f" of {other}"
                raise RefbenchError(f"image id {record.image_id} is stored twice (also in "
                                    f"record {_key_text(bytes(okey))}{where})", path=path,
                                    key=f"record {_key_text(key)}") from None
    return digest.hexdigest()


def build(root: Path, path: Path) -> ReleaseIndex:
    """Index the release in `root` into the SQLite file `path` (written aside, renamed)."""
    root, path = Path(root), Path(path)
    main, fine, lmdbs = source_paths(root)
    if main is None:
        raise RefbenchError(f"no info JSON (one of {', '.join(INFO_FILES)})", path=root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(str(tmp))
    try:
        db.executescript(_SCHEMA)
        digests = {main.relative_to(root).as_posix(): _insert_info(db, MAIN, main)}
        if fine is not None:
            digests[fine.relative_to(root).as_posix()] = _insert_info(db, FINE, fine)
        for number, lmdb_path in enumerate(lmdbs):
            digests[lmdb_path.relative_to(root).as_posix()] = _insert_regions(db, number,
                                                                              lmdb_path)
        meta = {"stamp": json.dumps(stamp(root)), "digests": json.dumps(digests),
                "lmdb_files": json.dumps([f.relative_to(root).as_posix() for f in lmdbs]),
                "has_fine": "1" if fine is not None else "0"}
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        db.commit()
        db.close()
        os.replace(tmp, path)
    except BaseException:
        db.close()
        tmp.unlink(missing_ok=True)
        raise
    return ReleaseIndex(path, root)


def open_or_build(root: Path, path: Path) -> ReleaseIndex:
    """The index at `path` when its stamp still matches the release, else a new one."""
    if Path(path).is_file():
        try:
            index = ReleaseIndex(path, root)
        except (sqlite3.Error, KeyError, json.JSONDecodeError):
            index = None
        if index is not None and index.stamp == json.loads(json.dumps(stamp(root))):
            return index
        if index is not None:
            index.close()
    return build(root, path)
