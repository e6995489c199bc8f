"""A local leaderboard file: one JSON document of scored results, ranked per benchmark.

Entries are result.json documents (schema 1) plus a submitter label. Writes take an
exclusive lock and replace the file atomically, so concurrent submits never lose an
entry and a crash never truncates the board.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.results import Result, load_result, parse_result

FORMAT = "refbench-leaderboard"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Row:
    rank: int
    benchmark: str
    submitter: str
    model: str
    primary: str
    value: float
    submitted_at: str
    metrics: dict[str, float]


def init_board(path: Path, title: str = "refbench leaderboard") -> None:
    if path.exists():
        raise RefbenchError("leaderboard file already exists", path=path)
    atomic_write_json(path, {"format": FORMAT, "format_version": FORMAT_VERSION, "title": title,
                             "entries": []})


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefbenchError("leaderboard file not found; create it with `refbench leaderboard init`",
                            path=path) from None
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"corrupt leaderboard: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RefbenchError("not a refbench leaderboard file", path=path, key="format")
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def submit_result(path: Path, result: Result, submitter: str) -> int:
    """Add a scored result; returns the number of entries on the board."""
    with _locked(path):
        data = _read(path)
        entry = {"submitter": submitter,
                 "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "result": result.to_json()}
        data["entries"].append(entry)
        atomic_write_json(path, data)
        return len(data["entries"])


def submit_file(path: Path, result_file: Path, submitter: str) -> int:
    return submit_result(path, load_result(result_file), submitter)


def rows(path: Path, benchmark: str | None = None) -> list[Row]:
    """Entries ranked per benchmark@version by the primary metric and its direction."""
    data = _read(path)
    grouped: dict[str, list[tuple[dict[str, Any], Result]]] = {}
    for i, entry in enumerate(data["entries"]):
        try:
            result = parse_result(entry["result"], path)
        except (RefbenchError, KeyError, TypeError) as exc:
            raise RefbenchError(f"malformed entry {i}: {exc}", path=path) from None
        key = f"{result.benchmark}@{result.benchmark_version}"
        if benchmark is None or benchmark in (result.benchmark, key):
            grouped.setdefault(key, []).append((entry, result))
    out: list[Row] = []
    for key in sorted(grouped):
        items = grouped[key]
        higher = items[0][1].directions[items[0][1].primary] == "higher"
        items.sort(key=lambda it: it[1].primary_value, reverse=higher)
        for rank, (entry, result) in enumerate(items, start=1):
            out.append(Row(rank, key, entry["submitter"],
                           result.model.name if result.model else "-", result.primary,
                           result.primary_value, entry["submitted_at"], result.metrics))
    return out


def export_markdown(path: Path) -> str:
    lines = ["| benchmark | rank | submitter | model | primary | value |",
             "|---|---:|---|---|---|---:|"]
    for row in rows(path):
        lines.append(f"| {row.benchmark} | {row.rank} | {row.submitter} | {row.model} | "
                     f"{row.primary} | {row.value:.2f} |")
    return "\n".join(lines) + "\n"
