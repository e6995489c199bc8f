"""The leaderboard's scoring worker: claims queued submissions and scores each in a child
process with a time and a memory limit, using exactly the scorer of `refbench evaluate`.

A submission is read with its benchmark's submission format (never executed, never
unpickled), aligned to the hidden references with missing and extra ids as errors (a
file that omits hard examples is rejected, never scored on the rest), split into the
fixed public/private partition and scored on each part with `compute_metrics`.

Errors shown to the submitter are one line about their own file. Anything that went wrong
on the references' side is reported as a generic message, so the hidden labels' content
can never reach an error. A worker killed mid-scoring holds an expiring lease: the next
worker re-claims the submission once it expires, and the score row is written in the
same transaction as the status change, guarded by the lease, so it is scored exactly once.

A folder format's upload (`SubmissionFormat.is_folder`) is a zip of the folder: it is
checked and extracted by `refbench.leaderboard.archive.safe_extract` inside the limited
child, into a temporary folder that is removed once the predictions are read.

Run as `python -m refbench.leaderboard.worker --db DB --data DIR [--until-idle]`.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from refbench.errors import RefbenchError
from refbench.leaderboard.db import Claim, LeaderboardDB, resolve_spec

REFERENCES_ERROR = "the server could not read this benchmark's references; contact the owner"


class Rejected(Exception):
    """A submission problem whose message is safe to show to the submitter."""


def _scrub(text: str, secret_paths: list[Path], shown: str) -> str:
    """Replace server paths in a message by the submitted name; one line."""
    for path in sorted({str(p) for p in secret_paths}, key=len, reverse=True):
        text = text.replace(path, shown)
    return " ".join(text.split())[:300]


def score_file(benchmark: str, predictions: Path, references: Path, seed: int,
               public_fraction: float, shown_name: str = "submission",
               scratch: str | None = None,
               metric_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score one prediction file against hidden references: public and private metrics,
    directions, primary key and counts. Raises `Rejected` with a safe one-line message.

    A folder format's zip is extracted into a temporary folder made inside `scratch` (the
    system's temporary folder when None), which the caller removes even if this process
    is killed."""
    from refbench.benchmarks.formats import FORMATS
    from refbench.benchmarks.scoring import align, compute_metrics
    from refbench.leaderboard.split import split_pairs

    spec = resolve_spec(benchmark)
    fmt = FORMATS.get(spec.submission.format)()
    try:
        refs = fmt.read_references(references, spec)
        if not refs:
            raise ValueError("no references")
    except Exception:  # noqa: BLE001 - whatever it says may quote the hidden labels
        raise Rejected(REFERENCES_ERROR) from None
    # a folder upload stays extracted until it is scored: a format may hand the metric
    # paths (try-on images) that are decoded only while scoring
    with tempfile.TemporaryDirectory(prefix="refbench-upload-", dir=scratch) as upload:
        hidden = [predictions, predictions.parent, references]
        try:
            preds = _read_predictions(fmt, spec, predictions, shown_name, hidden, upload)
            pred_list, ref_list, counts = align(preds, refs, Path(shown_name), strict=True)
        except RefbenchError as exc:
            shown = exc.path if isinstance(exc, _ShownError) else shown_name
            message = RefbenchError(exc.message, path=shown, line=exc.line, key=exc.key)
            raise Rejected(_scrub(message.format(), hidden, shown_name)) from None
        except (UnicodeError, ValueError, TypeError, OSError) as exc:
            raise Rejected(f"{shown_name}: unreadable file ({type(exc).__name__})") from None
        try:
            parts = split_pairs(pred_list, ref_list, list(refs), seed, public_fraction)
            public, directions = compute_metrics(spec, *parts["public"], metric_options)
            private, _ = compute_metrics(spec, *parts["private"], metric_options)
        except RefbenchError as exc:
            raise Rejected(_scrub(f"{shown_name}: {exc.message}", hidden, shown_name)) from None
        except Exception as exc:  # noqa: BLE001 - a metric choking on odd values
            raise Rejected(f"{shown_name}: the metric could not score this file "
                           f"({type(exc).__name__})") from None
        return {"public": public, "private": private, "directions": directions,
                "primary": spec.primary, "counts": counts}


def _read_predictions(fmt: Any, spec: Any, predictions: Path, shown_name: str,
                      hidden: list[Path], upload: str) -> dict[Any, Any]:
    """The submission's `{id: prediction}`. A folder format's upload is a zip: it is
    extracted into the private temporary folder `upload` (appended to `hidden`, so messages
    never show it), which the caller removes once the file is scored; an error inside names
    the file as `<upload>/<member>`."""
    if not getattr(fmt, "is_folder", False):
        return fmt.read(predictions, spec)
    from refbench.leaderboard.archive import safe_extract

    root = Path(upload)
    hidden.extend([root, root.resolve()])
    try:
        return fmt.read(safe_extract(predictions, root, shown=shown_name), spec)
    except RefbenchError as exc:
        raise _inside(exc, root, shown_name) from None


class _ShownError(RefbenchError):
    """A reading error whose path was already made safe to show (`<upload>/<member>`)."""


def _inside(exc: RefbenchError, root: Path, shown_name: str) -> _ShownError:
    """`exc` with its path, when it lies in the extracted folder `root`, shown as
    `<upload>/<member>` (the name inside the zip), else as the upload's name."""
    path = shown_name
    if exc.path is not None:
        with contextlib.suppress(ValueError, OSError):
            relative = Path(exc.path).resolve().relative_to(root.resolve()).as_posix()
            path = shown_name if relative == "." else f"{shown_name}/{relative}"
    return _ShownError(exc.message, path=path, line=exc.line, key=exc.key)


def _send(conn: Any, message: tuple[str, Any]) -> None:
    """Send to the worker, which may have given up (time limit) or died meanwhile."""
    try:
        conn.send(message)
    except OSError:
        pass


def _address_space_bytes() -> int:
    """The process's current virtual size (Linux `/proc/self/statm`; 0 where unknown)."""
    import os

    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(conn: Any, job: dict[str, Any], memory_bytes: int, cpu_s: int) -> None:
    """Entry point of the scoring process: import first, then cap memory and CPU time.

    The memory cap is `memory_bytes` of headroom above what the process already maps after
    its imports (a forked child inherits its parent's address space, which can be larger
    than any fixed cap), so the limit bounds what scoring the file may allocate."""
    import resource

    try:
        from refbench.benchmarks.formats import FORMATS
        from refbench.registry import METRICS

        spec = resolve_spec(job["benchmark"])
        FORMATS.get(spec.submission.format)
        METRICS.entry(spec.metric.name).obj  # noqa: B018 - import the metric's module now
        cap = _address_space_bytes() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        _send(conn, ("ok", score_file(**job)))
    except Rejected as exc:
        _send(conn, ("rejected", str(exc)))
    except MemoryError:
        _send(conn, ("rejected", f"{job['shown_name']}: scoring exceeded the memory limit"))
    except BaseException as exc:  # noqa: BLE001 - never let a message through unchecked
        _send(conn, ("rejected", f"internal scoring error ({type(exc).__name__})"))
    finally:
        conn.close()


def score_in_child(claim: Claim, time_limit: float, memory_mb: int,
                   context: str = "spawn") -> tuple[str, Any]:
    """('ok', scores) or ('rejected', one-line error) from a child process that is killed
    when it exceeds `time_limit` seconds; the child's address space is capped."""
    # the child extracts zip uploads below `scratch`; removing it here also cleans up
    # after a child killed for its time limit
    with tempfile.TemporaryDirectory(prefix="refbench-scoring-") as scratch:
        return _run_child(claim, time_limit, memory_mb, context, scratch)


def _run_child(claim: Claim, time_limit: float, memory_mb: int, context: str,
               scratch: str) -> tuple[str, Any]:
    ctx = multiprocessing.get_context(context)
    receiver, sender = ctx.Pipe(duplex=False)
    job = {"benchmark": claim.benchmark, "predictions": claim.stored_path,
           "references": claim.references, "seed": claim.seed,
           "public_fraction": claim.public_fraction, "shown_name": claim.filename,
           "scratch": scratch, "metric_options": dict(claim.options)}
    proc = ctx.Process(target=_child, args=(sender, job, memory_mb * 1024 * 1024,
                                            int(time_limit) + 1), daemon=True)
    proc.start()
    sender.close()
    outcome: tuple[str, Any] | None = None
    timed_out = False
    try:
        if receiver.poll(time_limit):
            outcome = receiver.recv()
        else:
            timed_out = True
    except EOFError:  # the child died before it could answer
        outcome = None
    finally:
        receiver.close()
        if timed_out:
            proc.kill()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if outcome is not None:
        return outcome
    if not timed_out:
        return "rejected", (f"{claim.filename}: the scoring process ended without a result "
                            f"(exit code {proc.exitcode})")
    return "rejected", f"{claim.filename}: scoring exceeded the time limit of {time_limit:g} s"


class Worker:
    """Claims and scores submissions one at a time."""

    def __init__(self, db: LeaderboardDB, name: str | None = None, *, time_limit: float = 60.0,
                 memory_mb: int = 2048, lease_s: float | None = None, max_attempts: int = 3,
                 context: str = "spawn") -> None:
        self.db = db
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.time_limit = time_limit
        self.memory_mb = memory_mb
        # the lease outlives the longest possible scoring, so only a dead worker loses it
        self.lease_s = lease_s if lease_s is not None else time_limit + 30.0
        self.max_attempts = max_attempts
        self.context = context

    def run_once(self) -> int | None:
        """Score the next queued submission; its id, or None when the queue is empty."""
        claim = self.db.claim(self.name, self.lease_s, self.max_attempts)
        if claim is None:
            return None
        status, payload = score_in_child(claim, self.time_limit, self.memory_mb, self.context)
        if status == "ok":
            self.db.complete(claim, payload["public"], payload["private"],
                             payload["directions"], payload["primary"], payload["counts"])
        else:
            self.db.fail(claim, str(payload))
        return claim.submission_id

    def run(self, until_idle: bool = False, poll_s: float = 1.0,
            max_jobs: int | None = None) -> int:
        """Loop over the queue; returns how many submissions it handled."""
        done = 0
        while max_jobs is None or done < max_jobs:
            if self.run_once() is None:
                if until_idle:
                    break
                time.sleep(poll_s)
            else:
                done += 1
        return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refbench.leaderboard.worker",
                                     description="Score queued leaderboard submissions.")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="the server's data folder")
    parser.add_argument("--until-idle", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--lease-s", type=float, default=None)
    parser.add_argument("--context", default="spawn", choices=("spawn", "fork", "forkserver"))
    args = parser.parse_args(argv)
    try:
        worker = Worker(LeaderboardDB(args.db, args.data), time_limit=args.time_limit,
                        memory_mb=args.memory_mb, lease_s=args.lease_s, context=args.context)
        count = worker.run(until_idle=args.until_idle)
    except RefbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"scored {count} submission(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
