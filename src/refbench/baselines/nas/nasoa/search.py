"""`refbench search nasoa-zoo` (build a training-efficient zoo) and `refbench search
nasoa-finetune` (the fine-tune-under-budget benchmark over a task sequence).

NASOA has no official code; this is a re-implementation (see the package doc). Both read a
recipe (`recipes/nasoa_*_{zoo,finetune}.yaml`, `zoo:` / `finetune:` sections, overridable
with `--set zoo.KEY=VALUE` / `--set finetune.KEY=VALUE`) and write only into `--out`:

    refbench search nasoa-zoo --benchmark synthetic:pretrain --out ZOO
    refbench search nasoa-finetune --benchmark nasoa-finetune-budget --zoo ZOO --out RESULTS

`--benchmark` of nasoa-zoo names the pretraining task (a task spec of `tasks.py`:
`synthetic:pretrain`, `digits`, `imagefolder:ROOT`, `cifar10:ROOT`, ...); of
nasoa-finetune, `nasoa-finetune-budget` runs the recipe's task sequence and a
comma-separated list of task specs replaces it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from refbench.config import apply_overrides, from_dict, load_recipe
from refbench.errors import RefbenchError
from refbench.options import Option
from refbench.registry import SEARCHES
from refbench.search import Search, SearchOutcome


def _recipe(name: str, section: str, overrides: Sequence[str]) -> dict[str, Any]:
    data = apply_overrides(load_recipe(name), list(overrides))
    if data.get("baseline", "nasoa") != "nasoa" or section not in data:
        raise RefbenchError(f"recipe {name!r} has no {section}: section (use a "
                            f"nasoa_*_{section} recipe)", key="recipe")
    unknown = set(data) - {section, "baseline", "tasks", "recipe"}
    if unknown:
        raise RefbenchError(f"recipe {name!r}: unknown section(s) {sorted(unknown)} for this "
                            f"search", key="recipe")
    return dict(data[section] or {})


@SEARCHES.register("nasoa-zoo", family="NASOA (Xu et al., 2021)")
class NasoaZooSearch(Search):
    """NASOA's training-efficient zoo: a two-objective search (held-out accuracy vs measured
    training seconds per step on this machine) over vega's DNet joint block + macro
    encoding, block stage then macro stage; the Pareto front (at most zoo.zoo_size members)
    is pretrained and written as a zoo folder: zoo.json (codes, parameters, seconds per
    step, accuracies, checksums, the machine), models/*.safetensors, candidates.jsonl.
    --benchmark is the pretraining task (synthetic:pretrain, digits, imagefolder:ROOT,
    cifar10:ROOT, cifar100:ROOT). Tune with --set zoo.KEY=VALUE (block_candidates,
    macro_candidates, proxy_steps, pretrain_steps, zoo_size, base_channel, ...).
    """

    summary = "NASOA training-efficient zoo (accuracy vs training time Pareto search)"
    options = (
        Option("recipe", "str", "Zoo recipe (zoo: section).", "nasoa_tiny_zoo"),
        Option("seed", "int", "Search seed (zoo.seed)."),
        Option("workers", "int", "Parallel candidate trainings (zoo.workers)."),
        Option("address", "str", "Ray address (auto, ray://host:10001, local); default: "
                                 "local processes."),
    )

    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        from refbench.baselines.nas.nasoa.zoo import ZooConfig, build_zoo

        data = _recipe(options.get("recipe") or "nasoa_tiny_zoo", "zoo", overrides)
        for key in ("seed", "workers"):
            if options.get(key) is not None:
                data[key] = options[key]
        cfg = from_dict(ZooConfig, data, prefix="zoo")
        zoo = build_zoo(benchmark, Path(out), cfg, address=options.get("address"),
                        progress=progress)
        summary = {"zoo": str(zoo.folder), "pretrain_task": zoo.pretrain_task,
                   "members": [{"name": m.name, "code": m.code, "params": m.params,
                                "seconds_per_step": m.seconds_per_step,
                                "pretrain_accuracy": m.pretrain_accuracy} for m in zoo.members]}
        lines = [f"{m.name} {m.code}: {m.params} params, {1000 * m.seconds_per_step:.1f} ms/step, "
                 f"test acc {100 * m.pretrain_accuracy:.1f}%" for m in zoo.members]
        return SearchOutcome(zoo.folder, summary, lines + [f"wrote {zoo.folder / 'zoo.json'}"])


@SEARCHES.register("nasoa-finetune", family="NASOA (Xu et al., 2021)")
class NasoaFinetuneSearch(Search):
    """The fine-tune-under-budget benchmark: for each seed, schedule generator, task and
    budget (seconds or optimizer steps on the declared machine), the generator chooses a
    zoo member, learning rate and batch size (timed), the member is fine-tuned under the
    budget and scored on the task's test split. Generators: online (NASOA's adaptive
    predictor, updated after every task), random, hyperband, bohb (optuna; trials are jobs
    of the job pool, Ray with --address) and largest-default. Writes runs.jsonl,
    <generator>/result.json, <generator>/choices/<task>.json (what it chose, per seed and
    budget; `refbench train nasoa --set model.schedule=PATH` applies one) with a train
    recipe per budget beside it (<task>@<budget>.yaml), result.json (mean accuracy at
    budget, choose seconds, with
    seeds and spread), summary.json and accuracy_vs_budget.svg. Tune with --set
    finetune.KEY=VALUE (tasks, budgets, generators, seeds, trials, warmup, ...).
    """

    summary = "NASOA fine-tune-under-budget benchmark of schedule generators"
    options = (
        Option("zoo", "path", "A zoo folder written by `refbench search nasoa-zoo`."),
        Option("recipe", "str", "Benchmark recipe (finetune: section).", "nasoa_tiny_finetune"),
        Option("seeds", "str", "Comma-separated seeds (finetune.seeds)."),
        Option("budgets", "str", "Comma-separated budgets, e.g. 2s,6s or 50steps "
                                 "(finetune.budgets)."),
        Option("generators", "str", "Comma-separated generators (finetune.generators)."),
        Option("workers", "int", "Parallel trial jobs (finetune.workers)."),
        Option("address", "str", "Ray address for the trial jobs; default: local processes."),
    )
    required = ("zoo",)

    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        from refbench.baselines.nas.nasoa.benchmark import (BENCHMARK, BenchmarkConfig,
                                                            run_benchmark)

        recipe = options.get("recipe") or "nasoa_tiny_finetune"
        data = _recipe(recipe, "finetune", overrides)
        if benchmark != BENCHMARK:
            data["tasks"] = [t.strip() for t in benchmark.split(",") if t.strip()]
        for key in ("seeds", "budgets", "generators"):
            if options.get(key):
                items = [t.strip() for t in str(options[key]).split(",") if t.strip()]
                try:
                    data[key] = [int(t) for t in items] if key == "seeds" else items
                except ValueError:
                    raise RefbenchError(f"seeds are integers, got {options[key]!r}",
                                        key="seeds") from None
        if options.get("workers") is not None:
            data["workers"] = options["workers"]
        cfg = from_dict(BenchmarkConfig, data, prefix="finetune")
        summary = run_benchmark(options["zoo"], Path(out), cfg, address=options.get("address"),
                                recipe=recipe, progress=progress)
        lines = []
        for name, block in summary["generators"].items():
            mean, std = block["mean"], block["std"]
            lines.append(f"{name:<16} accuracy {mean['accuracy']:.1f} +- {std['accuracy']:.1f} %"
                         f"   choose {mean['choose_seconds']:.3f} +- "
                         f"{std['choose_seconds']:.3f} s")
        lines.append(f"wrote {Path(out) / 'result.json'}, summary.json, runs.jsonl, "
                     f"accuracy_vs_budget.svg")
        return SearchOutcome(Path(out), summary, lines)
