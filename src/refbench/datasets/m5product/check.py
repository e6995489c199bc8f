"""`refbench datasets check m5product`: what is missing or malformed in a release.

Reported as problems: a missing info JSON, label list or evaluation id list; the first
malformed line of a file; each id of a list that the info JSON does not know, each
duplicate in a list; each unreadable video/audio file (truncated, a pickle, wrong shape);
each label of the info JSON that is not in the label list; classification items without
a label. Reported as hints (missing modalities are normal in M5Product): per split, how
many items lack an image (region record), video or audio, and how many entries of the
info JSON have no label. `check_release` returns the counts for programs and tests.

Nothing is written beside the release: the id index lives in a temporary folder.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from refbench.datasets.base import (
    MALFORMED_FILE,
    MALFORMED_LINE,
    MISSING_FILE,
    CheckReport,
    Problem,
    subfolders,
)
from refbench.datasets.m5product.index import MAIN, ReleaseIndex, build, source_paths
from refbench.datasets.m5product.media import (
    AUDIO_DIRS,
    VIDEO_DIRS,
    check_shape,
    media_dir,
    npy_info,
)
from refbench.datasets.m5product.readers import (
    INFO_FILES,
    LABEL_LIST_FILES,
    LIST_FILES,
    find_file,
    iter_id_list,
    read_label_list,
)
from refbench.errors import RefbenchError

UNKNOWN_ID = "unknown item id"
DUPLICATE_ID = "duplicate item id"
UNKNOWN_LABEL = "label not in the label list"
MISSING_LABEL = "classification item without label"
BAD_MEDIA = "unreadable feature file"
SPLITS = tuple(LIST_FILES)


def _media_ok(path: Path, kind: str, report: CheckReport) -> bool:
    try:
        shape, dtype = npy_info(path)
        check_shape(shape, dtype, kind, path)
    except RefbenchError as exc:
        report.add(path, exc.message, BAD_MEDIA)
        return False
    return True


def _check_split(root: Path, split: str, index: ReleaseIndex, report: CheckReport
                 ) -> dict[str, int]:
    """Walk one split's ids; returns its counts (items, missing_image/video/audio, ...)."""
    path = find_file(root, LIST_FILES[split])
    video_dir, audio_dir = media_dir(root, VIDEO_DIRS), media_dir(root, AUDIO_DIRS)
    counts = {"items": 0, "unknown": 0, "missing_image": 0, "missing_video": 0,
              "missing_audio": 0, "without_label": 0}
    if path is None:
        if split != "train":
            report.add(root / LIST_FILES[split][0], f"no id list for split {split} (one of "
                       f"{', '.join(LIST_FILES[split][::2])}, .json or .txt)", MISSING_FILE)
            return counts
        ids = ((line, i) for line, i in index.iter_ids())
    else:
        report.found.append(path.name)
        ids = iter_id_list(path)
    db = index.db
    db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, line INTEGER)")
    db.execute("DELETE FROM seen")
    try:
        for line, item_id in ids:
            try:
                db.execute("INSERT INTO seen VALUES (?, ?)", (item_id, line))
            except sqlite3.IntegrityError:
                first = db.execute("SELECT line FROM seen WHERE id=?", (item_id,)).fetchone()
                report.add(path or root, f"item id {item_id} again (first on line {first[0]})",
                           DUPLICATE_ID, line)
                continue
            info = index.info(item_id, fine=split.startswith("fine_"))
            if info is None:
                counts["unknown"] += 1
                report.add(path or root, f"item id {item_id} is not in the info JSON",
                           UNKNOWN_ID, line)
                continue
            counts["items"] += 1
            if not info.label:
                counts["without_label"] += 1
                if split.startswith("cls_"):
                    report.add(path or root, f"item {item_id} has no label in the info JSON",
                               MISSING_LABEL, line)
            counts["missing_image"] += index.region_key(item_id) is None
            for kind, folder in (("video", video_dir), ("audio", audio_dir)):
                media = None if folder is None else folder / f"{item_id}.npy"
                if media is None or not media.exists() or not _media_ok(media, kind, report):
                    counts[f"missing_{kind}"] += 1
    except RefbenchError as exc:
        report.problems.append(Problem.from_error(exc, path or root))
    return counts


def _check_labels(root: Path, index: ReleaseIndex, report: CheckReport) -> None:
    path = find_file(root, LABEL_LIST_FILES)
    if path is None:
        report.add(root / LABEL_LIST_FILES[0], "no label list (classification maps labels to "
                   "classes by their index in it)", MISSING_FILE)
        return
    try:
        known = set(read_label_list(path))
    except RefbenchError as exc:
        report.problems.append(Problem.from_error(exc, path))
        return
    report.found.append(path.name)
    for label, items in index.labels():
        if label and label not in known:
            report.add(path, f"label {label!r} ({items:,} item(s) of the info JSON) is not in "
                       f"the list", UNKNOWN_LABEL)


def check_release(root: Path, report: CheckReport) -> dict[str, dict[str, int]]:
    """Fill `report` (see the module doc); per split counts, {} when no index was built."""
    root = Path(root)
    main, fine, lmdbs = source_paths(root)
    if main is None:
        report.add(root / INFO_FILES[0], f"no info JSON (one of {', '.join(INFO_FILES)})",
                   MISSING_FILE)
        below = next((f for f in subfolders(root) if find_file(f, INFO_FILES)), None)
        if below is not None:
            report.hint(f"{below} holds the M5Product info JSON: use --root {below}")
        return {}
    if main.is_dir():
        report.add(main, f"a folder, but {main.name} must be a file", MALFORMED_FILE)
        return {}
    report.found.extend(p.relative_to(root).as_posix() for p in [main, fine, *lmdbs] if p)
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            index = build(root, Path(tmp) / "index.sqlite")
        except RefbenchError as exc:
            problem = Problem.from_error(exc, main)
            problem.kind = MALFORMED_LINE if exc.line is not None else MALFORMED_FILE
            report.problems.append(problem)
            return {}
        with index:
            _check_labels(root, index, report)
            for split in SPLITS:
                out[split] = _check_split(root, split, index, report)
            unlabeled = sum(n for label, n in index.labels() if not label)
            entries = index.count(MAIN)
            regions = index.count_regions()
    if unlabeled:
        report.hint(f"{unlabeled:,} of {entries:,} info entries have no label (label \"\" "
                    f"in the dataset)")
    if not lmdbs:
        report.hint("no region-feature LMDB (*.lmdb in the root or lmdb_features/): every "
                    "item gets has_image=false")
    else:
        report.hint(f"{regions:,} region records in {len(lmdbs)} LMDB file(s)")
    for split, c in out.items():
        if c["items"]:
            report.hint(f"{split}: {c['items']:,} items; without image {c['missing_image']:,}, "
                        f"without video {c['missing_video']:,}, without audio "
                        f"{c['missing_audio']:,} (missing modalities get a false has_* mask "
                        f"and 0 rows)")
    return out
