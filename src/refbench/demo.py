"""`refbench demo`: the main job end to end on embedded, synthetic data.

For each family it synthesizes the official layout, prepares it, trains a tiny recipe
through the common runner, predicts the dev split (and the hidden test split where there
is one), scores the dev predictions from the written file against the official-format
dev file (as `refbench evaluate --references` does), scores a trivial submission for
comparison (majority class / mean score for GLUE, the context's first words for SQuAD)
and prints a table and the paths it wrote.

Everything is recorded on a hosted-style leaderboard (`leaderboard.sqlite` in the workdir)
whose "hidden" references are the synthetic dev files: each run's result.json as a
self-reported row, and both prediction files as submissions that the scoring worker
verifies, exactly as a server would. `--serve` then serves that board on localhost.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from refbench.errors import RefbenchError

GLUE_BENCHMARKS = {"cola": "glue-cola", "sst2": "glue-sst2", "mrpc": "glue-mrpc",
                   "stsb": "glue-stsb", "qqp": "glue-qqp", "mnli": "glue-mnli-m",
                   "qnli": "glue-qnli", "rte": "glue-rte", "wnli": "glue-wnli"}
DEMO_TASKS = [*GLUE_BENCHMARKS, "squad", "kitti"]
#: synthetic KITTI frames (ray-cast, so fewer than text rows) and SECOND's step budget
KITTI_FRAMES = 160
KITTI_STEPS = 300


@dataclass
class Job:
    """One row of the demo: a benchmark, the recipe trained on it and its trivial rival."""

    task: str
    benchmark: str
    dataset: str
    config: str
    recipe: str
    references: Callable[[Path], Path]
    trivial: Callable[[Any, str], dict[Any, Any]]
    trivial_name: str
    overrides: list[str] = field(default_factory=list)
    baseline: str = "bert"


def _say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def majority_predictions(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The majority-class (mean, for regression) predictor fitted on the training split."""
    from refbench.datasets.base import load_prepared

    train = load_prepared(spec.dataset.name, split=spec.train_split, config=spec.dataset.config,
                          cache_dir=cache_dir)
    dev = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                        cache_dir=cache_dir)
    labels = list(train["label"])
    if isinstance(labels[0], float):
        value: Any = sum(labels) / len(labels)
    else:
        value = Counter(labels).most_common(1)[0][0]
    return {idx: value for idx in dev["idx"]}


def first_words_predictions(spec: Any, cache_dir: str, words: int = 3) -> dict[Any, Any]:
    """SQuAD's trivial rival: the first words of the context as every answer."""
    from refbench.datasets.base import load_prepared

    dev = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                        cache_dir=cache_dir)
    return {qid: " ".join(context.split()[:words])
            for qid, context in zip(dev["id"], dev["context"])}


def no_detections(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """KITTI's trivial rival: every validation frame without a detection."""
    from refbench.datasets.base import load_prepared

    dev = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                        cache_dir=cache_dir)
    return {fid: {} for fid in dev["id"]}


def _jobs(tasks: list[str], kitti_steps: int = KITTI_STEPS) -> list[Job]:
    from refbench.datasets.glue import TASKS

    jobs = []
    for task in tasks:
        if task == "kitti":
            # the tiny SECOND with a bounded step budget (300 steps: ~1.5 min on 2 cores)
            jobs.append(Job(task, "kitti-car-3d", "kitti", "default", "second_tiny_kitti",
                            lambda root: root, no_detections, "no detections",
                            [f"trainer.max_steps={kitti_steps}", "trainer.eval_every=0",
                             f"trainer.save_every={kitti_steps}"], baseline="second"))
            continue
        if task == "squad":
            jobs.append(Job(task, "squad-v1.1", "squad", "v1.1", "bert_tiny_squad",
                            lambda root: root / "dev-v1.1.json", first_words_predictions,
                            "first words", ["trainer.max_steps=200", "trainer.eval_every=100"]))
            continue
        glue = TASKS["mnli" if task == "mnli" else task]
        dev_name = glue.splits["validation_matched" if task == "mnli" else "validation"]
        jobs.append(Job(task, GLUE_BENCHMARKS[task], "glue", glue.config, "bert_tiny_glue",
                        lambda root, g=glue, d=dev_name: root / g.folder / d,
                        majority_predictions, "majority"))
    return jobs


def run_demo(workdir: Path, tasks: list[str], fresh: bool = True, n: int = 800,
             kitti_frames: int = KITTI_FRAMES,
             kitti_steps: int = KITTI_STEPS) -> list[dict[str, Any]]:
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.benchmarks.spec import get_spec
    from refbench.config import build_run_config
    from refbench.datasets.base import get_builder
    from refbench.leaderboard.worker import Worker
    from refbench.runner import companions, predict, train, write_predictions

    unknown = [t for t in tasks if t not in DEMO_TASKS]
    if unknown:
        raise RefbenchError(f"unknown demo task {unknown[0]!r} (choose from "
                            f"{', '.join(DEMO_TASKS)})")
    started = time.time()
    workdir = Path(workdir)
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    cache, runs, board = workdir / "cache", workdir / "runs", workdir / "leaderboard.sqlite"
    jobs = _jobs(tasks, kitti_steps)
    roots: dict[str, Path] = {}
    for dataset in dict.fromkeys(job.dataset for job in jobs):
        builder = get_builder(dataset)
        root = roots[dataset] = workdir / dataset
        size = kitti_frames if dataset == "kitti" else n
        _say(f"synthesizing the official {dataset} layout ({size} training rows) -> {root}")
        builder.synthesize(root, n=size, seed=0)
        configs = sorted({job.config for job in jobs if job.dataset == dataset})
        _say(f"preparing {dataset}: {', '.join(configs)} -> {cache}")
        builder.prepare(root, cache, configs=configs, progress=True)
    lb = open_demo_board(board, workdir)
    teams = {name: _team(lb, name) for name in (DEMO_TEAM, TRIVIAL_TEAM)}
    table: list[dict[str, Any]] = []
    for job in jobs:
        spec = get_spec(job.benchmark)
        _say(f"training {job.recipe} on {job.benchmark}")
        config = build_run_config(job.baseline, job.benchmark, job.recipe,
                                  [f"output_dir={runs}", f"data.cache_dir={cache}", *job.overrides])
        summary = train(config)
        assert summary.result is not None
        run_dir = summary.run_dir
        dev_refs = job.references(roots[job.dataset])
        dev_pred = run_dir / "predictions" / spec.submission.filename
        result = evaluate_file(spec, dev_pred, references=dev_refs, model=summary.result.model,
                               seed=config.trainer.seed, read_options=companions(spec, dev_pred))
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
        lb.submit(teams[TRIVIAL_TEAM], spec.key, *_upload(trivial_file),
                  model=job.trivial_name)
        table.append({"benchmark": spec.key, "primary": spec.primary, "recipe": job.recipe,
                      "model": result.primary_value, "trivial": trivial.primary_value,
                      "trivial_name": job.trivial_name, "steps": summary.steps,
                      "run": str(run_dir),
                      "test_submission": None if test_file is None else str(test_file)})
    _say("scoring the leaderboard submissions in limited worker processes")
    Worker(lb, time_limit=120).run(until_idle=True)
    failed = lb.submissions(status="failed")
    if failed:
        raise RefbenchError(f"demo submission {failed[0]['id']} was rejected: {failed[0]['error']}")
    _print_table(table, board, workdir, time.time() - started)
    return table


DEMO_TEAM, TRIVIAL_TEAM = "refbench-demo", "trivial-baselines"


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
    for col in ("benchmark", "primary", "tiny recipe", "trivial", "steps"):
        out.add_column(col)
    for row in table:
        out.add_row(row["benchmark"], row["primary"], f"{row['model']:.2f}",
                    f"{row['trivial']:.2f} ({row['trivial_name']})", str(row["steps"]))
    console = Console()
    console.print(out)
    console.print(f"runs:        {workdir / 'runs'}")
    console.print(f"leaderboard: {board} (serve it: refbench leaderboard serve --db {board})")
    console.print(f"test-set server files: {workdir / 'submission'}")
