"""The job pool (`engine/jobs.py`): results in job order on every backend, failures as
one-line results, bad job lists refused before anything runs, and a local Ray head giving
the same results as the local pool."""

from __future__ import annotations

import pytest

from refbench.engine.jobs import Job, raise_failures, resolve, run_jobs
from refbench.errors import RefbenchError

TARGET = "tests.unit.test_engine_jobs:seeded_job"


def seeded_job(seed: int, steps: int = 20) -> dict:
    """A small seeded torch computation: the same seed gives the same value anywhere."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(8, 8, generator=generator)
    x = torch.randn(8, generator=generator)
    for _ in range(steps):
        x = torch.tanh(weight @ x)
    return {"seed": seed, "value": float(x.sum()), "threads": torch.get_num_threads()}


def failing_job(message: str) -> None:
    raise ValueError(message + "\nsecond line")


def _jobs(n: int = 4) -> list[Job]:
    return [Job(f"job-{i}", TARGET, {"seed": 100 + i}) for i in range(n)]


def test_results_come_back_in_job_order_and_equal_a_direct_call() -> None:
    done = []
    results = run_jobs(_jobs(), workers=1, on_done=lambda r, k, n: done.append((r.name, k, n)))
    assert [r.name for r in results] == [f"job-{i}" for i in range(4)]
    assert [r.value["value"] for r in results] == [seeded_job(100 + i)["value"] for i in range(4)]
    assert done[-1][1:] == (4, 4) and all(r.ok and r.seconds >= 0 for r in results)


def test_the_process_pool_gives_the_in_process_results() -> None:
    local = run_jobs(_jobs(3), workers=1)
    pooled = run_jobs(_jobs(3), workers=2, threads=1)
    assert [r.value for r in pooled] == [r.value for r in local]
    assert all(r.value["threads"] == 1 for r in pooled)


def test_a_failed_job_is_a_one_line_result_and_the_others_finish() -> None:
    jobs = _jobs(2) + [Job("bad", "tests.unit.test_engine_jobs:failing_job", {"message": "boom"})]
    results = run_jobs(jobs, workers=1)
    assert [r.ok for r in results] == [True, True, False]
    assert results[2].error == "ValueError: boom"
    with pytest.raises(RefbenchError, match="1 of 3 jobs failed: bad: ValueError: boom"):
        raise_failures(results)
    raise_failures(results[:2])


def test_bad_job_lists_are_refused_before_anything_runs() -> None:
    with pytest.raises(RefbenchError, match="two jobs are named 'a'"):
        run_jobs([Job("a", TARGET, {"seed": 1}), Job("a", TARGET, {"seed": 2})])
    with pytest.raises(RefbenchError, match="cannot be imported"):
        run_jobs([Job("a", "tests.unit.test_engine_jobs:nothing_here")])
    with pytest.raises(RefbenchError, match="package.module:function"):
        resolve("no_colon")
    with pytest.raises(RefbenchError, match="workers must be >= 1"):
        run_jobs(_jobs(1), workers=0)
    with pytest.raises(RefbenchError, match="threads per job"):
        run_jobs(_jobs(1), threads=0)
    assert run_jobs([]) == []


@pytest.mark.slow  # starting a Ray head takes about 20 s
def test_a_local_ray_head_gives_the_local_results() -> None:
    pytest.importorskip("ray", reason="Ray is the `distributed` extra")
    local = run_jobs(_jobs(3), workers=1)
    on_ray = run_jobs(_jobs(3), address="local", threads=1)
    assert [r.value["value"] for r in on_ray] == [r.value["value"] for r in local]
