"""`refbench demo`: the main job end to end on embedded, synthetic data.

Each family declares its demo jobs (`@DEMOS.register("sst2", default=True)` on a function
returning a `DemoJob`): the benchmark, the baseline and recipe trained on it, how large a
synthetic copy of the dataset it needs, where the official-format dev references lie in
that copy, and a trivial rival. This module composes whatever is registered (plugins
included) and names no family: for each job it synthesizes the official layout (once per
dataset, at the largest size any job asks for), prepares it (once, every config needed),
trains the recipe through the common runner, predicts the dev split (and the hidden test
split where there is one), scores the dev predictions from the written file against the
official-format dev file (as `refbench evaluate --references` does), scores the trivial
rival and prints a table.

Everything is recorded on a hosted-style leaderboard (`leaderboard.sqlite` in the workdir)
whose "hidden" references are the synthetic dev files: each run's result.json as a
self-reported row, and both prediction files as submissions that the scoring worker
verifies, exactly as a server would. `--serve` then serves that board on localhost.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from refbench.errors import RefbenchError

DEMO_TEAM, TRIVIAL_TEAM = "refbench-demo", "trivial-baselines"


@dataclass(frozen=True)
class DemoJob:
    """One row of the demo: a benchmark, the recipe trained on it and its trivial rival.

    `size` is the `n` the dataset's synthesizer gets (training examples per config);
    `references(root)` is the official-format dev file or folder inside the synthetic
    copy at `root`; `trivial(spec, cache_dir)` returns `{id: prediction}` of the rival.
    """

    benchmark: str
    baseline: str
    recipe: str
    size: int
    references: Callable[[Path], Path]
    trivial: Callable[[Any, str], dict[Any, Any]]
    trivial_name: str
    overrides: tuple[str, ...] = field(default_factory=tuple)


def demo_names(default_only: bool = False) -> list[str]:
    """Registered demo jobs (those marked `default=True` with `default_only`)."""
    from refbench.registry import DEMOS

    names = DEMOS.names()
    return [n for n in names if DEMOS.meta(n).get("default")] if default_only else names


def resolve_tasks(tasks: list[str] | None) -> list[str]:
    """`None` or `[]` -> the default jobs; `all` -> every job; else the names, checked."""
    from refbench.registry import DEMOS

    if not tasks:
        return demo_names(default_only=True)
    if "all" in tasks:
        return demo_names()
    for task in tasks:
        DEMOS.entry(task)  # unknown names get the registry's did-you-mean error
    return list(dict.fromkeys(tasks))


def load_jobs(tasks: list[str]) -> list[tuple[str, DemoJob]]:
    from refbench.registry import DEMOS

    jobs = []
    for task in tasks:
        job = DEMOS.get(task)()
        if not isinstance(job, DemoJob):
            raise RefbenchError(f"demo job {task!r} must return a DemoJob, got "
                                f"{type(job).__name__}")
        jobs.append((task, job))
    return jobs


def _say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def run_demo(workdir: Path, tasks: list[str] | None = None, fresh: bool = True,
             size_factor: float = 1.0, max_steps: int | None = None) -> list[dict[str, Any]]:
    """Run the demo jobs `tasks` (default: the registered defaults) in `workdir`.

    `size_factor` scales every synthetic dataset and `max_steps` caps every training run
    (both for quick smoke runs); the table rows are returned."""
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.config import build_run_config
    from refbench.datasets.base import dataset_fingerprint, get_builder
    from refbench.leaderboard.worker import Worker
    from refbench.registry import get_spec
    from refbench.runner import companions, predict, train, write_predictions

    started = time.time()
    jobs = load_jobs(resolve_tasks(tasks))
    workdir = Path(workdir)
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    cache, runs, board = workdir / "cache", workdir / "runs", workdir / "leaderboard.sqlite"
    specs = {task: get_spec(job.benchmark) for task, job in jobs}
    roots: dict[str, Path] = {}
    for dataset in dict.fromkeys(spec.dataset.name for spec in specs.values()):
        mine = [(t, j) for t, j in jobs if specs[t].dataset.name == dataset]
        size = max(2, math.ceil(max(j.size for _, j in mine) * size_factor))
        builder = get_builder(dataset)
        root = roots[dataset] = workdir / dataset
        _say(f"synthesizing the official {dataset} layout ({size} training rows) -> {root}")
        builder.synthesize(root, n=size, seed=0)
        configs = sorted({specs[t].dataset.config for t, _ in mine})
        _say(f"preparing {dataset}: {', '.join(configs)} -> {cache}")
        builder.prepare(root, cache, configs=configs, progress=True)
    lb = open_demo_board(board, workdir)
    teams = {name: _team(lb, name) for name in (DEMO_TEAM, TRIVIAL_TEAM)}
    table: list[dict[str, Any]] = []
    for task, job in jobs:
        spec = specs[task]
        _say(f"training {job.recipe} on {job.benchmark}")
        overrides = [f"output_dir={runs}", f"data.cache_dir={cache}", *job.overrides]
        if max_steps is not None:
            overrides += [f"trainer.max_steps={max_steps}", "trainer.epochs=null",
                          f"trainer.save_every={max_steps}"]
        config = build_run_config(job.baseline, job.benchmark, job.recipe, overrides)
        summary = train(config)
        assert summary.result is not None
        run_dir = summary.run_dir
        dev_refs = job.references(roots[spec.dataset.name])
        dev_pred = run_dir / "predictions" / spec.submission.filename
        result = evaluate_file(spec, dev_pred, references=dev_refs, model=summary.result.model,
                               seed=config.trainer.seed, read_options=companions(spec, dev_pred))
        # scored against the official dev file, but the run trained on the prepared copy, and
        # its wall time is the run's (training included), not this re-scoring's
        result.provenance.dataset_fingerprint = dataset_fingerprint(spec.dataset.name, str(cache))
        result.provenance.wall_time_s = summary.result.provenance.wall_time_s
        result.write(run_dir / "result.json")
        _register(lb, spec.key, dev_refs.relative_to(workdir))
        lb.add_self_reported(teams[DEMO_TEAM], run_dir / "result.json")
        lb.submit(teams[DEMO_TEAM], spec.key, *_upload(dev_pred),
                  model=f"{result.model.name} ({job.recipe})" if result.model else job.recipe,
                  params=result.model.params if result.model else None)
        test_file = None
        if spec.hidden_split is not None:
            test_file = predict(run_dir, spec.hidden_split,
                                workdir / "submission" / spec.submission.filename, cache_dir=str(cache))
        trivial_file = write_predictions(spec, job.trivial(spec, str(cache)),
                                         workdir / "trivial" / spec.submission.filename)
        trivial = evaluate_file(spec, trivial_file, references=dev_refs)
        lb.submit(teams[TRIVIAL_TEAM], spec.key, *_upload(trivial_file), model=job.trivial_name)
        table.append({"task": task, "benchmark": spec.key, "primary": spec.primary,
                      "recipe": job.recipe, "model": result.primary_value,
                      "trivial": trivial.primary_value, "trivial_name": job.trivial_name,
                      "steps": summary.steps, "run": str(run_dir),
                      "test_submission": None if test_file is None else str(test_file)})
    _say("scoring the leaderboard submissions in limited worker processes")
    Worker(lb, time_limit=120).run(until_idle=True)
    failed = lb.submissions(status="failed")
    if failed:
        raise RefbenchError(f"demo submission {failed[0]['id']} was rejected: {failed[0]['error']}")
    _print_table(table, board, workdir, time.time() - started)
    return table


def _upload(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) of a prediction file, or of a prediction folder as a zip."""
    if path.is_dir():
        from refbench.leaderboard.archive import zip_folder

        return f"{path.name}.zip", zip_folder(path)
    return path.name, path.read_bytes()


def open_demo_board(path: Path, workdir: Path) -> Any:
    """The demo's leaderboard database; its references folder is the workdir, so the
    synthetic dev files play the hidden labels."""
    from refbench.leaderboard.db import LeaderboardDB

    board = LeaderboardDB.at(path)
    board.set_references_dir(workdir)
    return board


def _team(board: Any, name: str) -> int:
    try:
        return board.team_id(name)
    except RefbenchError:
        return board.add_team(name)


def _register(board: Any, key: str, references: Path) -> None:
    try:
        board.benchmark(key)
    except RefbenchError:
        board.add_benchmark(key, str(references), seed=0)


def serve_demo(workdir: Path, port: int = 8000) -> None:
    """Serve the demo's leaderboard on localhost until interrupted."""
    import uvicorn

    from refbench.leaderboard.app import ServerOptions, create_app

    board = open_demo_board(Path(workdir) / "leaderboard.sqlite", Path(workdir))
    _say(f"leaderboard at http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    uvicorn.run(create_app(board, ServerOptions()), host="127.0.0.1", port=port,
                log_level="warning")


def _print_table(table: list[dict[str, Any]], board: Path, workdir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"refbench demo: tiny recipes vs a trivial submission (dev, {seconds:.0f}s)")
    for col in ("job", "benchmark", "primary", "tiny recipe", "trivial", "steps"):
        out.add_column(col)
    for row in table:  # two jobs may share a benchmark (two NAS families on digits)
        out.add_row(row["task"], row["benchmark"], row["primary"], f"{row['model']:.2f}",
                    f"{row['trivial']:.2f} ({row['trivial_name']})", str(row["steps"]))
    console = Console()
    console.print(out)
    console.print(f"runs:        {workdir / 'runs'}")
    console.print(f"leaderboard: {board} (serve it: refbench leaderboard serve --db {board})")
    console.print(f"test-set server files: {workdir / 'submission'}")
