"""Housekeeping of the leaderboard's data folder.

`LeaderboardDB.submit` writes an upload to `submissions/<random>.upload` before the
transaction that inserts its row; a process killed in between (or a transaction that
failed for a reason other than the ones `submit` cleans up after) leaves a file no row
references, and a killed atomic write leaves its temporary sibling. Neither is ever read
again, so `remove_orphan_uploads` deletes them, but only once they are older than a grace
period: an upload that another process is writing, or has written and not yet committed,
right now is indistinguishable from an orphan except by its age.
"""

from __future__ import annotations

import contextlib
import stat
import time
from pathlib import Path, PurePosixPath

from refbench.leaderboard.db import LeaderboardDB

UPLOADS = "submissions"
UPLOAD_SUFFIX = ".upload"


def _is_candidate(name: str) -> bool:
    """Uploads (`<name>.upload`) and the temporary files of their atomic writes
    (`.<name>.upload.<random>.tmp`, see `refbench.io.atomic_open`); nothing else is ours."""
    if name.startswith("."):
        return name.endswith(".tmp")
    return name.endswith(UPLOAD_SUFFIX)


def _referenced(db: LeaderboardDB) -> set[str]:
    """File names inside the uploads folder that some submission row points to."""
    rows = db._conn().execute("SELECT stored_path FROM submissions WHERE stored_path IS NOT NULL")
    names = set()
    for (stored,) in rows:
        parts = PurePosixPath(str(stored).replace("\\", "/")).parts
        if len(parts) == 2 and parts[0] == UPLOADS:
            names.add(parts[1])
    return names


def remove_orphan_uploads(db: LeaderboardDB, grace_s: float = 3600.0) -> list[str]:
    """Delete uploads no submission references and leftover atomic-write temporaries, each
    only when its mtime is more than `grace_s` seconds old; returns the removed names.

    The folder is scanned before the database is read, so a file whose row commits while
    this runs is either seen as referenced or still young enough to be kept."""
    folder = Path(db.data_dir) / UPLOADS
    if not folder.is_dir():
        return []
    cutoff = time.time() - grace_s
    old: list[Path] = []
    for entry in folder.iterdir():
        if not _is_candidate(entry.name):
            continue
        try:
            info = entry.lstat()
        except FileNotFoundError:  # removed meanwhile
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
            old.append(entry)
    if not old:
        return []
    referenced = _referenced(db)
    removed = []
    for entry in sorted(old):
        if entry.name in referenced:
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry.name)
    return removed
