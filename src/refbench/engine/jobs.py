"""One job pool for independent work: candidate trainings of a search, the stand-alone
trainings behind a ranking benchmark, the fine-tunings of a schedule search.

A job names an importable function (`"package.module:function"`) and JSON-like keyword
arguments, so it runs the same way in a fresh local process and on a Ray worker: nothing is
pickled but the arguments and the returned value. Two backends, one result:

- local (default): a `ProcessPoolExecutor` with the `spawn` start method (no fork of a
  process that holds torch threads or a CUDA context); `threads` torch threads per job, so
  `workers * threads` stays within the machine's cores;
- Ray, when the user gives an address (`"auto"`, `"ray://host:10001"`, or `"local"` to start
  a private single-node cluster): every job is a task asking for `threads` CPUs.

A job that raises does not stop the others: its result carries the error in one line and
`raise_failures` turns the failures into one `RefbenchError` naming each job. Results come
back in the order of the jobs, whatever order they finished in, so a seeded job list gives
the same results on either backend.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from refbench.errors import RefbenchError


@dataclass(frozen=True)
class Job:
    """One unit of independent work: `target(**kwargs)`, where `target` is
    `"package.module:function"`."""

    name: str
    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """What a job returned (or the one-line error it raised) and how long it ran."""

    name: str
    value: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve(target: str) -> Callable[..., Any]:
    """The function named by `"package.module:function"`; a one-line error otherwise."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise RefbenchError(f"a job target is 'package.module:function', got {target!r}",
                            key="target")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise RefbenchError(f"job target {target!r} cannot be imported: {exc}",
                            key="target") from None
    if not callable(function):
        raise RefbenchError(f"job target {target!r} is not callable", key="target")
    return function


def run_one(job: Job, threads: int = 1) -> JobResult:
    """Run one job in this process (what a pool worker or a Ray task executes)."""
    import torch

    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    try:
        value = resolve(job.target)(**dict(job.kwargs))
    except Exception as exc:  # a failed job is a result, not a crash of the pool
        message = str(exc).splitlines()[0] if str(exc) else ""
        return JobResult(job.name, error=f"{type(exc).__name__}: {message}",
                         seconds=time.perf_counter() - started)
    return JobResult(job.name, value=value, seconds=time.perf_counter() - started)


def check_jobs(jobs: Sequence[Job]) -> None:
    """Unique names and importable targets, checked before anything starts."""
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise RefbenchError(f"two jobs are named {job.name!r}", key="jobs")
        seen.add(job.name)
    for target in sorted({job.target for job in jobs}):
        resolve(target)


def default_workers(threads: int = 1) -> int:
    """As many jobs as the cores allow at `threads` threads each (at least one)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def run_jobs(jobs: Sequence[Job], *, workers: int | None = None, threads: int = 1,
             address: str | None = None,
             on_done: Callable[[JobResult, int, int], None] | None = None) -> list[JobResult]:
    """Run independent jobs on the local pool, or on Ray when `address` is given; results
    in job order. `on_done(result, finished, total)` reports progress as jobs end."""
    check_jobs(jobs)
    if threads < 1:
        raise RefbenchError(f"threads per job must be >= 1, got {threads}", key="threads")
    if not jobs:
        return []
    if address:
        return _run_ray(jobs, threads, address, on_done)
    workers = default_workers(threads) if workers is None else workers
    if workers < 1:
        raise RefbenchError(f"workers must be >= 1, got {workers}", key="workers")
    results: dict[str, JobResult] = {}
    if workers == 1:  # in this process: no start-up cost, and errors keep their context
        for job in jobs:
            results[job.name] = run_one(job, threads)
            if on_done is not None:
                on_done(results[job.name], len(results), len(jobs))
        return [results[job.name] for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        futures = {pool.submit(run_one, job, threads): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                results[job.name] = future.result()
            except Exception as exc:  # the worker process itself died
                results[job.name] = JobResult(job.name, error=f"worker died: {exc}")
            if on_done is not None:
                on_done(results[job.name], len(results), len(jobs))
    return [results[job.name] for job in jobs]


def _run_ray(jobs: Sequence[Job], threads: int, address: str,
             on_done: Callable[[JobResult, int, int], None] | None) -> list[JobResult]:
    try:
        import ray
    except ImportError:
        raise RefbenchError("a Ray address was given but Ray is not installed; install the "
                            "extra: pip install 'refbench[distributed]'", key="address") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:
            raise RefbenchError(f"cannot connect to the Ray cluster at {address!r}: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                key="address") from None
    try:
        task = ray.remote(num_cpus=threads)(run_one)
        pending = {task.remote(job, threads): job for job in jobs}
        results: dict[str, JobResult] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                results[job.name] = ray.get(done[0])
            except Exception as exc:  # the task's worker died
                results[job.name] = JobResult(job.name, error=f"worker died: {exc}")
            if on_done is not None:
                on_done(results[job.name], len(results), len(jobs))
        return [results[job.name] for job in jobs]
    finally:
        if started_here:
            ray.shutdown()


def raise_failures(results: Sequence[JobResult]) -> None:
    """One `RefbenchError` naming every failed job and its error, if any failed."""
    failed = [r for r in results if not r.ok]
    if failed:
        listed = "; ".join(f"{r.name}: {r.error}" for r in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise RefbenchError(f"{len(failed)} of {len(results)} jobs failed: {listed}{more}",
                            key="jobs")
