"""Does the tiny EfficientBERT search pick better architectures than chance?

For each seed: run `refbench search efficientbert` with the tiny defaults on synthesized
SST-2 (distilling from a `bert_tiny_glue` teacher), then train the searched architecture and
`--random` random architectures of the same parameter budget (the joint stage's sampler:
random expressions and linear types) stand-alone, all the same way (fresh weights of the
seed, the recipe's trainer settings, the same batches, the same distillation loss), each
`--truth-seeds` times (the metric averaged over the trainings), and score them on the
validation split, which the search never reads. Prints, per seed, the
held-out accuracies of the search's candidates (their spread: does the proxy
discriminate?), the searched architecture's validation accuracy, the median random one's,
and the margin; then the mean margin and the number of seeds the searched one won.

    python perf/efficientbert_search.py                      # 3 seeds, 8 random each
    python perf/efficientbert_search.py --seeds 0 --random 4 --n 400   # quicker look

Everything is written under a temporary folder (or `--work DIR`, reused when it holds a
prepared cache and a teacher). Runs on CPU; each seed takes a few minutes on one thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _prepare(work: Path, n: int, teacher_steps: int) -> tuple[Path, Path]:
    """Synthesized GLUE SST-2 (prepared) and a `bert_tiny_glue` teacher; reused if present."""
    from refbench.config import build_run_config
    from refbench.datasets.base import get_builder
    from refbench.runner import train

    cache, teacher = work / "cache", work / "runs" / "teacher"
    if not (cache.exists() and (teacher / "result.json").exists()):
        builder = get_builder("glue")
        root = builder.synthesize(work / "glue", n=n, seed=0)
        builder.prepare(root, cache, configs=["sst2"])
        config = build_run_config("bert", "glue-sst2", "bert_tiny_glue", [
            f"output_dir={work / 'runs'}", f"data.cache_dir={cache}", "name=teacher",
            f"trainer.max_steps={teacher_steps}", "trainer.progress=false"])
        summary = train(config)
        print(f"teacher: {summary.result.metrics if summary.result else 'no result'}")
    return cache, teacher


def _spread(values: list[float]) -> str:
    return (f"min {min(values):.1f} median {statistics.median(values):.1f} "
            f"max {max(values):.1f} distinct {len(set(values))}")


def _trained(trainer: Any, arch: Any, seed: int, truth_seeds: int) -> dict[str, Any]:
    """`arch` trained `truth_seeds` times (training seeds `seed`, `seed + 1000`, ...), the
    metric averaged: one training's seed noise is larger than architecture differences."""
    runs = [trainer.train(arch, seed + 1000 * k) for k in range(truth_seeds)]
    values = [r.metric if r.metric is not None else float("-inf") for r in runs]
    return {**runs[0].to_json(trainer.primary), "per_seed": values,
            "seeds": [r.seed for r in runs], "metric": statistics.fmean(values)}


def _searched(work: Path, seed: int, teacher: Path, cache: Path,
              extra: list[str]) -> tuple[Any, dict[str, list[float]]]:
    """The search of `seed` (its chosen architecture and each stage's held-out metrics): read
    from `work/search-<seed>` when a finished search there ran with the same settings
    (the search is deterministic for a seed), else run."""
    from dataclasses import asdict

    from refbench.baselines.nlp.efficientbert.search import _prepare as resolve
    from refbench.baselines.nlp.efficientbert.search import search
    from refbench.baselines.nlp.efficientbert.supernet import Architecture

    folder, items = work / f"search-{seed}", [*extra, f"search.seed={seed}"]
    setup = resolve("glue-sst2", teacher, "efficientbert_tiny_glue", items, str(cache))
    try:
        done = json.loads((folder / "search.json").read_text())
        ranking = [json.loads(line) for line in (folder / "ranking.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        done = None
    if (done is not None and done["settings"] == json.loads(json.dumps(asdict(setup.cfg)))
            and done["teacher_run"] == str(teacher)):
        spreads: dict[str, list[float]] = {}
        for row in ranking:
            value = row["metric"][setup.spec.primary]
            if value is not None:
                spreads.setdefault(row["stage"], []).append(float(value))
        print(f"seed {seed}: reusing the finished search in {folder}")
        return Architecture.parse(done["chosen"]["ffn_expressions"]), spreads
    result = search("glue-sst2", teacher, folder, overrides=items, cache_dir=str(cache),
                    progress=None)
    return result.chosen.arch, {s.name: [float(c.metric) for c in s.candidates
                                         if c.metric is not None] for s in result.stages}


def run(seeds: list[int], random_count: int, n: int, work: Path, steps: int | None,
        teacher_steps: int, extra: list[str], truth_seeds: int = 2) -> dict[str, Any]:
    from refbench.baselines.nlp.efficientbert.standalone import StandaloneTrainer

    cache, teacher = _prepare(work, n, teacher_steps)
    trainer = StandaloneTrainer("glue-sst2", teacher, cache_dir=str(cache), steps=steps,
                                overrides=extra)
    primary = trainer.primary
    print(f"stand-alone: {trainer.steps} steps, scored on {trainer.eval_rows} "
          f"{trainer.split} rows; budget [{trainer.setup.budget.min_params}, "
          f"{trainer.setup.budget.max_params}] parameters")
    rows = []
    for seed in seeds:
        started = time.time()
        chosen, spreads = _searched(work, seed, teacher, cache, extra)
        searched = _trained(trainer, chosen, seed, truth_seeds)
        randoms = [_trained(trainer, a, seed, truth_seeds)
                   for a in trainer.random_architectures(random_count, 10_000 + seed)]
        median = statistics.median(r["metric"] for r in randoms)
        row = {"seed": seed, "searched": searched, "random": randoms, "median_random": median,
               "margin": searched["metric"] - median, "candidates": spreads,
               "wall_s": round(time.time() - started, 1)}
        rows.append(row)
        for name, values in spreads.items():
            print(f"seed {seed} search stage {name}: held-out {primary} {_spread(values)}")
        print(f"seed {seed}: searched {searched['metric']:.2f} ({searched['params']} params) "
              f"vs median random {median:.2f} (random: "
              f"{', '.join(format(r['metric'], '.1f') for r in randoms)}); "
              f"margin {row['margin']:+.2f}  [{row['wall_s']} s]", flush=True)
    margins = [r["margin"] for r in rows]
    summary = {"seeds": seeds, "random_per_seed": random_count, "n": n,
               "truth_seeds": truth_seeds, "overrides": extra,
               "standalone_steps": trainer.steps, "eval_rows": trainer.eval_rows,
               "mean_margin": statistics.fmean(margins),
               "wins": sum(m > 0 for m in margins), "ties": sum(m == 0 for m in margins),
               "rows": rows}
    print(f"searched - median random {primary}: mean {summary['mean_margin']:+.2f} points; "
          f"searched wins {summary['wins']}/{len(seeds)} seeds "
          f"(ties {summary['ties']})")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--random", type=int, default=8, help="random architectures per seed")
    parser.add_argument("--n", type=int, default=800, help="synthesized SST-2 training rows")
    parser.add_argument("--steps", type=int, default=None,
                        help="stand-alone steps (default: the recipe's trainer.max_steps)")
    parser.add_argument("--teacher-steps", type=int, default=150)
    parser.add_argument("--truth-seeds", type=int, default=2,
                        help="stand-alone trainings averaged per architecture")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--set", dest="extra", action="append", default=[],
                        help="a search/recipe override (e.g. search.candidates=4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        summary = run(args.seeds, args.random, args.n, work, args.steps, args.teacher_steps,
                      args.extra, args.truth_seeds)
    if args.json is not None:
        from refbench.io import atomic_write_json

        atomic_write_json(args.json, summary)
        print(f"wrote {args.json}")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))


if __name__ == "__main__":
    main()
