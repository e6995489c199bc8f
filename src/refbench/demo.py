"""`refbench demo`: the main job end to end on embedded, synthetic data.

Synthesizes the official GLUE layout, prepares it, trains the tiny BERT recipe on a few
tasks through the common runner, predicts the dev and the hidden test split, scores the
dev predictions from the written files (as `refbench evaluate` does, against the dev
TSV), scores a majority-class submission for comparison, records everything on a local
leaderboard file and prints a table and the paths it wrote.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from refbench.errors import RefbenchError

TASK_BENCHMARKS = {"cola": "glue-cola", "sst2": "glue-sst2", "mrpc": "glue-mrpc",
                   "stsb": "glue-stsb", "qqp": "glue-qqp", "mnli": "glue-mnli-m",
                   "qnli": "glue-qnli", "rte": "glue-rte", "wnli": "glue-wnli"}


def _say(text: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def majority_predictions(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The majority-class (mean, for regression) predictor fitted on the training split."""
    from refbench.datasets.base import load_prepared

    train = load_prepared(spec.dataset.name, split=spec.train_split, config=spec.dataset.config,
                          cache_dir=cache_dir)
    dev = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                        cache_dir=cache_dir)
    labels = train["label"]
    if isinstance(labels[0], float):
        value: Any = sum(labels) / len(labels)
    else:
        value = Counter(labels).most_common(1)[0][0]
    return {idx: value for idx in dev["idx"]}


def run_demo(workdir: Path, tasks: list[str], fresh: bool = True, n: int = 800,
             recipe: str = "bert_tiny_glue") -> list[dict[str, Any]]:
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.benchmarks.spec import get_spec
    from refbench.config import build_run_config
    from refbench.datasets.base import get_builder
    from refbench.datasets.glue import TASKS
    from refbench.leaderboard.store import init_board, submit_result
    from refbench.runner import predict, train, write_predictions

    unknown = [t for t in tasks if t not in TASK_BENCHMARKS]
    if unknown:
        raise RefbenchError(f"unknown demo task {unknown[0]!r} (choose from "
                            f"{', '.join(TASK_BENCHMARKS)})")
    started = time.time()
    workdir = Path(workdir)
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    data_root, cache, runs = workdir / "glue", workdir / "cache", workdir / "runs"
    board = workdir / "leaderboard.json"
    builder = get_builder("glue")
    _say(f"synthesizing the official GLUE layout ({n} training rows per task) -> {data_root}")
    builder.synthesize(data_root, n=n, seed=0)
    configs = sorted({("mnli" if t == "mnli" else t) for t in tasks})
    _say(f"preparing {', '.join(configs)} -> {cache}")
    builder.prepare(data_root, cache, configs=configs, progress=True)
    if not board.exists():
        init_board(board, "refbench demo")
    table: list[dict[str, Any]] = []
    for task in tasks:
        bench = TASK_BENCHMARKS[task]
        spec = get_spec(bench)
        _say(f"training {recipe} on {bench}")
        config = build_run_config("bert", bench, recipe, [f"output_dir={runs}",
                                                          f"data.cache_dir={cache}"])
        summary = train(config)
        assert summary.result is not None
        run_dir = summary.run_dir
        # score again from the written file against the official-format dev TSV
        dev_file = data_root / TASKS[spec.dataset.config].folder / \
            TASKS[spec.dataset.config].splits[spec.split]
        dev_pred = run_dir / "predictions" / spec.submission.filename
        result = evaluate_file(spec, dev_pred, references=dev_file, model=summary.result.model,
                               seed=config.trainer.seed)
        result.write(run_dir / "result.json")
        submit_result(board, result, "demo")
        hidden = spec.hidden_split
        test_file = None
        if hidden is not None:
            test_file = predict(run_dir, hidden, workdir / "submission" / spec.submission.filename,
                                cache_dir=str(cache))
        majority_file = write_predictions(spec, majority_predictions(spec, str(cache)),
                                          workdir / "majority" / spec.submission.filename)
        majority = evaluate_file(spec, majority_file, references=dev_file)
        table.append({"benchmark": spec.key, "primary": spec.primary,
                      "model": result.primary_value, "majority": majority.primary_value,
                      "steps": summary.steps, "run": str(run_dir),
                      "test_submission": None if test_file is None else str(test_file)})
    _print_table(table, board, workdir, time.time() - started)
    return table


def _print_table(table: list[dict[str, Any]], board: Path, workdir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"refbench demo: tiny BERT vs majority class (dev, {seconds:.0f}s)")
    for col in ("benchmark", "primary", "tiny BERT", "majority", "steps"):
        out.add_column(col)
    for row in table:
        out.add_row(row["benchmark"], row["primary"], f"{row['model']:.2f}",
                    f"{row['majority']:.2f}", str(row["steps"]))
    console = Console()
    console.print(out)
    console.print(f"runs:        {workdir / 'runs'}")
    console.print(f"leaderboard: {board}")
    console.print(f"test-set server files: {workdir / 'submission'}")
