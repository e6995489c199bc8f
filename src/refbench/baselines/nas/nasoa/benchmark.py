"""The fine-tune-under-budget benchmark (`nasoa-finetune-budget`, version 1): a sequence of
tasks, each fine-tuned under every budget with the schedule each generator chooses.

For every seed, generator, task (in order) and budget: the generator chooses a schedule
(timed: the "schedule generation time"), the chosen zoo member is fine-tuned with it on
the task's whole training split under the budget, scored on the task's test split
(top-1, percent), and the generator observes the result (the online one learns from it
for the next tasks). Final fine-tunings run one at a time in this process so that a
seconds budget is not shared with other jobs; the search-based generators' trials are
jobs of the job pool.

Written to the output folder (atomically, once everything ran):

    runs.jsonl                one line per (seed, generator, task, budget): choice, trials,
                              choose seconds, accuracy, steps, training seconds
    <generator>/result.json   result.json schema 1: `accuracy` (mean over tasks and budgets,
                              primary), `accuracy@<budget>`, `choose_seconds` (mean per
                              choice, lower is better), `warmup_seconds` (online only),
                              means over seeds with their spread in `aggregate`; the chosen
                              models and schedules and the declared machine in provenance
    <generator>/choices/<task>.json          the generator's choice per seed and budget
                              for that task (`choices.py`; `refbench train nasoa --set
                              model.schedule=PATH` applies one)
    <generator>/choices/<task>@<budget>.yaml a recipe applying the first seed's choice
                              (member, lr, batch size, steps) through `refbench train`
    result.json               the first generator's result (the online one by default)
    summary.json              every generator's means and sample standard deviations
    accuracy_vs_budget.svg    mean accuracy per budget, one line per generator, +-1 std
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from refbench.baselines.nas.nasoa.choices import CHOICES_DIR
from refbench.baselines.nas.nasoa.finetune import Budget
from refbench.baselines.nas.nasoa.generators import GENERATORS
from refbench.errors import RefbenchError

BENCHMARK = "nasoa-finetune-budget"
VERSION = 1


@dataclass
class BenchmarkConfig:
    """`finetune:` settings of a recipe (`--set finetune.KEY=VALUE`)."""

    tasks: list[str] = field(default_factory=lambda: ["synthetic:easy:1", "synthetic:medium:1",
                                                      "synthetic:hard:1", "digits"])
    budgets: list[str] = field(default_factory=lambda: ["2s", "6s"])
    generators: list[str] = field(default_factory=lambda: list(GENERATORS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    trials: int = 6
    explore: float = -1.0  # the online score: mean + explore x std (-1: pessimistic)
    warmup_tasks: list[str] = field(default_factory=lambda: [
        "synthetic:easy:100", "synthetic:medium:101", "synthetic:hard:102"])
    warmup: int = 24
    workers: int = 1
    threads: int = 1


def check_config(cfg: BenchmarkConfig) -> list[Budget]:
    """Every setting checked before anything runs; the parsed budgets."""
    from refbench.baselines.nas.nasoa.generators import make_generator

    if not cfg.tasks:
        raise RefbenchError("no task to fine-tune on", key="finetune.tasks")
    if len(set(cfg.tasks)) != len(cfg.tasks):
        raise RefbenchError("a task is listed twice", key="finetune.tasks")
    if not cfg.generators or len(set(cfg.generators)) != len(cfg.generators):
        raise RefbenchError("give each generator once", key="finetune.generators")
    for name in cfg.generators:
        make_generator(name, cfg.trials)
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise RefbenchError("give at least one seed, each once", key="finetune.seeds")
    if not cfg.budgets:
        raise RefbenchError("give at least one budget", key="finetune.budgets")
    budgets = [Budget.parse(b) for b in cfg.budgets]
    if len({b.label for b in budgets}) != len(budgets):
        raise RefbenchError("a budget is listed twice", key="finetune.budgets")
    if "online" in cfg.generators and (cfg.warmup < 2 or not cfg.warmup_tasks):
        raise RefbenchError("the online generator needs warmup >= 2 fine-tunings on warm-up "
                            "tasks", key="finetune.warmup")
    overlap = set(cfg.warmup_tasks) & set(cfg.tasks)
    if overlap:
        raise RefbenchError(f"warm-up tasks must not be benchmark tasks: {sorted(overlap)}",
                            key="finetune.warmup_tasks")
    if cfg.workers < 1 or cfg.threads < 1:
        raise RefbenchError("workers and threads must be >= 1", key="finetune.workers")
    return budgets


def warm_up(generator: Any, zoo: Any, cfg: BenchmarkConfig, budgets: list[Budget], seed: int,
            address: str | None) -> float:
    """The online generator's past tasks: random schedules fine-tuned on the warm-up tasks
    (jobs of the pool); returns the seconds it took."""
    from refbench.baselines.nas.nasoa.generators import Context, warmup_schedules
    from refbench.baselines.nas.nasoa.tasks import load_task
    from refbench.engine.jobs import Job, raise_failures, run_jobs

    started = time.perf_counter()
    rng = random.Random(seed)
    schedules = warmup_schedules(rng, zoo, cfg.warmup)
    plan = [(cfg.warmup_tasks[k % len(cfg.warmup_tasks)], budgets[k % len(budgets)], s)
            for k, s in enumerate(schedules)]
    jobs = [Job(f"warmup-{k}", "refbench.baselines.nas.nasoa.finetune:finetune_job",
                dict(zoo_dir=str(zoo.folder), task=task, schedule=s.to_json(), budget=b.label,
                     seed=seed, eval_on="test"))
            for k, (task, b, s) in enumerate(plan)]
    results = run_jobs(jobs, workers=cfg.workers, threads=cfg.threads, address=address)
    raise_failures(results)
    for (task, budget, schedule), result in zip(plan, results):
        data = load_task(task, zoo.image_size)
        ctx = Context(zoo, task, data.features(), len(data.train_y), budget, seed)
        generator.observe(ctx, schedule, 100.0 * result.value["accuracy"])
    generator.fit()
    return time.perf_counter() - started


def run_benchmark(zoo_dir: str | Path, out: Path, cfg: BenchmarkConfig, *,
                  address: str | None = None, recipe: str | None = None,
                  progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark and write its folder (module doc); returns the summary."""
    import shutil
    import tempfile

    import torch

    from refbench.baselines.nas.nasoa.finetune import finetune
    from refbench.baselines.nas.nasoa.generators import Context, make_generator
    from refbench.baselines.nas.nasoa.tasks import load_task
    from refbench.baselines.nas.nasoa.zoo import load_zoo

    budgets = check_config(cfg)
    zoo = load_zoo(zoo_dir)
    tasks = {t: load_task(t, zoo.image_size) for t in cfg.tasks}  # bad tasks fail here
    features = {t: d.features() for t, d in tasks.items()}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RefbenchError("the output exists and is not a folder", path=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work.", dir=out.parent))
    torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    warmups: dict[int, float] = {}
    try:
        for seed in cfg.seeds:
            for name in cfg.generators:
                generator = make_generator(name, cfg.trials, cfg.explore)
                if name == "online":
                    progress(f"seed {seed}: online generator warm-up ({cfg.warmup} fine-tunings)")
                    warmups[seed] = warm_up(generator, zoo, cfg, budgets, seed, address)
                for task in cfg.tasks:
                    for budget in budgets:
                        ctx = Context(zoo, task, features[task], len(tasks[task].train_y),
                                      budget, seed, cfg.workers, cfg.threads, address, work)
                        t0 = time.perf_counter()
                        choice = generator.choose(ctx)
                        choose_s = time.perf_counter() - t0
                        torch.set_num_threads(cfg.threads)
                        result = finetune(zoo.folder, task, choice.schedule, budget, seed=seed)
                        acc = 100.0 * result.accuracy
                        generator.observe(ctx, choice.schedule, acc)
                        runs.append({"seed": seed, "generator": name, "task": task,
                                     "budget": budget.label, "schedule": choice.schedule.to_json(),
                                     "trials": choice.trials, "details": choice.details,
                                     "choose_seconds": round(choose_s, 4), "accuracy": acc,
                                     "steps": result.steps, "planned_steps": result.planned_steps,
                                     "train_seconds": result.train_seconds})
                        progress(f"seed {seed} {name:<15} {task} @{budget.label}: "
                                 f"{choice.schedule.model} lr {choice.schedule.lr:.4g} "
                                 f"bs {choice.schedule.batch_size} -> {acc:.1f}% "
                                 f"(chose in {choose_s:.2f}s)")
        summary = _write(out, zoo, cfg, budgets, tasks, runs, warmups,
                         time.perf_counter() - started, recipe)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _write(out: Path, zoo: Any, cfg: BenchmarkConfig, budgets: list[Budget],
           tasks: dict[str, Any], runs: list[dict[str, Any]], warmups: dict[int, float],
           wall: float, recipe: str | None) -> dict[str, Any]:
    from refbench import __version__
    from refbench.baselines.nas.nasoa.plot import accuracy_svg
    from refbench.baselines.nas.nasoa.zoo import INDEX, machine
    from refbench.io import atomic_write_json, atomic_write_text, sha256_file
    from refbench.results import ModelInfo, Provenance, Result, git_commit, hardware_string

    labels = hashlib.sha256()
    for name, data in tasks.items():
        labels.update(name.encode() + b"\0" + data.test_y.numpy().tobytes())
    fingerprint = hashlib.sha256(json.dumps([cfg.tasks, sha256_file(zoo.folder / INDEX)])
                                 .encode()).hexdigest()
    config_hash = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:16]
    summary: dict[str, Any] = {"benchmark": BENCHMARK, "version": VERSION, "zoo": str(zoo.folder),
                               "machine": machine(cfg.threads), "seeds": cfg.seeds,
                               "budgets": [b.label for b in budgets], "tasks": cfg.tasks,
                               "generators": {}}
    out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in runs]
    for name in cfg.generators:
        mine = [r for r in runs if r["generator"] == name]
        per_seed: dict[str, list[float]] = {}
        for seed in cfg.seeds:
            rows = [r for r in mine if r["seed"] == seed]
            values = {"accuracy": statistics.fmean(r["accuracy"] for r in rows),
                      "choose_seconds": statistics.fmean(r["choose_seconds"] for r in rows)}
            for b in budgets:
                values[f"accuracy@{b.label}"] = statistics.fmean(
                    r["accuracy"] for r in rows if r["budget"] == b.label)
            if name == "online":
                values["warmup_seconds"] = warmups[seed]
            for key, value in values.items():
                per_seed.setdefault(key, []).append(round(value, 4))
        metrics = {k: round(_mean_std(v)[0], 4) for k, v in per_seed.items()}
        std = {k: round(_mean_std(v)[1], 4) for k, v in per_seed.items()}
        directions = {k: "lower" if k.endswith("seconds") else "higher" for k in metrics}
        text = "\n".join(json.dumps(r) for r in mine) + "\n"
        result = Result(
            BENCHMARK, VERSION, "test", metrics, directions, "accuracy",
            Provenance(__version__, git_commit(), fingerprint, labels.hexdigest(),
                       hashlib.sha256(text.encode()).hexdigest(), cfg.seeds[0],
                       f"{hardware_string()}, {cfg.threads} torch thread(s)", round(wall, 3)),
            ModelInfo(name, None, recipe, config_hash),
            counts={"tasks": len(cfg.tasks), "budgets": len(budgets), "runs": len(mine)},
            aggregate={"seeds": list(cfg.seeds), "n": len(cfg.seeds), "std": std,
                       "per_seed": per_seed, "runs": []})
        choices = [{k: r[k] for k in ("seed", "task", "budget", "schedule", "accuracy")}
                   for r in mine]
        # the setting that makes the numbers (machine, tasks, budgets, the chosen schedules)
        # also goes into `settings`, the block a parsed Result (and so the leaderboard's
        # self-reported row) keeps verbatim; extra provenance fields are dropped there
        result.settings = {"machine": machine(cfg.threads), "zoo": str(zoo.folder),
                           "tasks": list(cfg.tasks), "budgets": [b.label for b in budgets],
                           "choices": choices}
        doc = result.to_json()
        doc["provenance"].update(machine=machine(cfg.threads), zoo=str(zoo.folder),
                                 choices=choices)
        atomic_write_json(out / name / "result.json", doc)
        if name == cfg.generators[0]:
            atomic_write_json(out / "result.json", doc)
        _write_choices(out / name / CHOICES_DIR, name, zoo, mine, [b.label for b in budgets])
        summary["generators"][name] = {"mean": metrics, "std": std}
    atomic_write_text(out / "runs.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(out / "accuracy_vs_budget.svg", accuracy_svg(summary))
    atomic_write_json(out / "summary.json", summary)
    return summary


def _write_choices(folder: Path, generator: str, zoo: Any, runs: list[dict[str, Any]],
                   budgets: list[str]) -> None:
    """One choice file per task and, beside it, one recipe per budget (`choices.py`)."""
    from refbench.baselines.nas.nasoa.choices import choice_documents, choice_recipe
    from refbench.io import atomic_write_json, atomic_write_text, sha256_file

    for slug, doc in choice_documents(generator, zoo, runs, f"{BENCHMARK}@{VERSION}").items():
        path = folder / f"{slug}.json"
        atomic_write_json(path, doc)
        digest = sha256_file(path)
        for budget in budgets:
            atomic_write_text(folder / f"{slug}@{budget}.yaml",
                              choice_recipe(path, doc, budget, digest))
