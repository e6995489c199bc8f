"""Static export of the leaderboard: HTML, CSV and JSON files to host anywhere.

The site holds exactly what the live server shows anyone who is not logged in: the index,
one page per benchmark (its verified and self-reported rankings in separate tables,
sortable in the browser by inline script), the public facts of
every scored submission and the provenance of every self-reported result, plus
`benchmarks.json`, `<key>.json` and `<key>.csv`. It is written to a temporary folder and
swapped into place, so a half-written site never replaces a good one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from refbench.io import atomic_dir_replace
from refbench.leaderboard import site
from refbench.leaderboard.app import (
    benchmark_summaries,
    board_csv,
    board_json,
    board_view,
    public_submission,
)
from refbench.leaderboard.db import LeaderboardDB


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def export_site(db: LeaderboardDB, out: str | os.PathLike[str]) -> dict[str, int]:
    """Write the static site to `out` (replacing it atomically); counts of what was written."""
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    top, nested = site.Links(static=True), site.Links(static=True, prefix="../")
    counts = {"benchmarks": 0, "submissions": 0, "results": 0}
    try:
        benchmarks = benchmark_summaries(db)
        decimals = int(db.setting("decimals", 2))
        _write(tmp / "index.html", site.index_page(benchmarks, top, decimals=decimals))
        listing: list[dict[str, Any]] = []
        for bench in benchmarks:
            view = board_view(db, bench["key"])
            key = bench["key"]
            _write(tmp / "b" / f"{key}.html",
                   site.board_page(view["bench"], view["rows"], view["primary"], view["higher"],
                                   view["part"], nested, self_reported=view["self_reported"],
                                   decimals=decimals))
            _write(tmp / f"{key}.json", json.dumps(board_json(view), indent=1))
            _write(tmp / f"{key}.csv", board_csv(view))
            listing.append({k: bench[k] for k in ("key", "closed", "primary",
                                                  "higher_is_better", "part", "best_verified",
                                                  "verified", "self_reported")}
                           | {"json": f"{key}.json", "csv": f"{key}.csv",
                              "page": f"b/{key}.html"})
            counts["benchmarks"] += 1
            for row in view["rows"] + view["self_reported"]:
                if row.submission_id is not None:
                    sub = db.submission_view(row.submission_id)
                    _write(tmp / "s" / f"{row.submission_id}.html",
                           site.submission_page(sub, db.scores(row.submission_id), nested,
                                                decimals=decimals))
                    _write(tmp / "s" / f"{row.submission_id}.json",
                           json.dumps(public_submission(sub) | {"error": None}, indent=1))
                    counts["submissions"] += 1
                elif row.self_reported_id is not None:
                    entry = db.self_reported(row.self_reported_id)
                    _write(tmp / "r" / f"{row.self_reported_id}.html",
                           site.result_page(entry, nested, decimals=decimals))
                    _write(tmp / "r" / f"{row.self_reported_id}.json",
                           json.dumps(entry, indent=1))
                    counts["results"] += 1
        _write(tmp / "benchmarks.json", json.dumps({"benchmarks": listing}, indent=1))
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
        tmp.chmod(0o755)
        atomic_dir_replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts
