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

On the default synthesized SST-2 every random architecture of the budget reaches 94-95 %
after 150 steps: architectures differ by less than training-seed noise and no search can
win. The tiny setting in which they differ is the compositional SST-2 (the label is the
parity of (double) negations in the clause a connective points to; see
`refbench.datasets.glue.synth_variants`) with 2,000 training rows, a 1,000-row
validation split and a 1,200-step teacher; `--spread ARCHS SEEDS` measures criterion (1)
(random architectures' stand-alone accuracy across architectures vs across seeds, no
search), and without it the searched-vs-random comparison runs:

    python perf/efficientbert_search.py --sst2 compositional --n 2000 --dev-rows 1000 \
        --teacher-steps 1200 --spread 8 3                    # criterion (1)
    python perf/efficientbert_search.py --sst2 compositional --n 2000 --dev-rows 1000 \
        --teacher-steps 1200 --random 8 --truth-seeds 3      # searched vs median random

The compositional SST-2 caps every small model near 70 %, teacher included; its
single-negation sibling (`--sst2 negation`) lets a wider teacher reach 95.8 %:

    python perf/efficientbert_search.py --sst2 negation --n 4000 --dev-rows 1000 \
        --teacher-steps 3000 --teacher-set model.hidden_size=128 \
        --teacher-set model.intermediate_size=512 --random 8 --truth-seeds 6 --steps 330

There the searched architecture beat the median random one on seeds 0, 1 and 2 by +2.52,
+1.73 and +4.15 points (ranks 4, 3, 1 of 9); with 3 trainings per student it had not
(-0.72, +0.93, +4.60): one 330-step training's seed sd is 4.3-4.5 points.

`--steps N` trains every student N steps instead of the recipe's; `--init supernet` starts
every student (searched and random alike) from the search's final shared weights
(`supernet.safetensors`), as the official pipeline starts its searched student from the
stage-3 supernet. Each seed also prints whether its random architectures differ beyond
seed noise (one-way ANOVA over their trainings). The README's table lists what each
protocol measured.

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


def _prepare(work: Path, n: int, teacher_steps: int, sst2: str = "standard",
             dev_rows: int | None = None, teacher_set: tuple[str, ...] = ()
             ) -> tuple[Path, Path]:
    """Synthesized GLUE SST-2 (prepared) and a `bert_tiny_glue` teacher (`teacher_set`:
    overrides of its recipe, e.g. a wider teacher); reused if present."""
    from refbench.config import build_run_config
    from refbench.datasets.base import get_builder
    from refbench.runner import train

    cache, teacher = work / "cache", work / "runs" / "teacher"
    if not (cache.exists() and (teacher / "result.json").exists()):
        builder = get_builder("glue")
        root = builder.synthesize(work / "glue", n=n, seed=0, sst2=sst2, dev_rows=dev_rows)
        builder.prepare(root, cache, configs=["sst2"])
        config = build_run_config("bert", "glue-sst2", "bert_tiny_glue", [
            f"output_dir={work / 'runs'}", f"data.cache_dir={cache}", "name=teacher",
            f"trainer.max_steps={teacher_steps}", "trainer.progress=false", *teacher_set])
        summary = train(config)
        print(f"teacher: {summary.result.metrics if summary.result else 'no result'}")
    return cache, teacher


def _spread(values: list[float]) -> str:
    return (f"min {min(values):.1f} median {statistics.median(values):.1f} "
            f"max {max(values):.1f} distinct {len(set(values))}")


def _trained(trainer: Any, arch: Any, seed: int, truth_seeds: int,
             init: Any = None, first: int = 0) -> dict[str, Any]:
    """`arch` trained `truth_seeds` times (training seeds `seed + 1000 * k` for k = `first`,
    `first + 1`, ...), the metric averaged: one training's seed noise is larger than
    architecture differences. `init`: the search's supernet weights to start from (else
    fresh weights). Trainings are deterministic, so `first=3` adds seeds 3.. to an earlier
    run of `truth_seeds=3` without repeating it."""
    runs = [trainer.train(arch, seed + 1000 * k, init) for k in range(first, first + truth_seeds)]
    values = [r.metric if r.metric is not None else float("-inf") for r in runs]
    return {**runs[0].to_json(trainer.primary), "per_seed": values,
            "seeds": [r.seed for r in runs], "metric": statistics.fmean(values)}


def _searched(work: Path, seed: int, teacher: Path, cache: Path, extra: list[str],
              need_supernet: bool = False, benchmark: str = "glue-sst2"
              ) -> tuple[Any, dict[str, list[float]]]:
    """The search of `seed` (its chosen architecture and each stage's held-out metrics): read
    from `work/search-<seed>` when a finished search there ran with the same settings
    (the search is deterministic for a seed), else run."""
    from dataclasses import asdict

    from refbench.baselines.nlp.efficientbert.outputs import SUPERNET_FILE
    from refbench.baselines.nlp.efficientbert.search import _prepare as resolve
    from refbench.baselines.nlp.efficientbert.search import search
    from refbench.baselines.nlp.efficientbert.supernet import Architecture

    folder, items = work / f"search-{seed}", [*extra, f"search.seed={seed}"]
    setup = resolve(benchmark, teacher, "efficientbert_tiny_glue", items, str(cache))
    try:
        done = json.loads((folder / "search.json").read_text())
        ranking = [json.loads(line) for line in (folder / "ranking.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        done = None
    if (done is not None and done["settings"] == json.loads(json.dumps(asdict(setup.cfg)))
            and done["teacher_run"] == str(teacher)
            and (not need_supernet or (folder / SUPERNET_FILE).is_file())):
        spreads: dict[str, list[float]] = {}
        for row in ranking:
            value = row["metric"][setup.spec.primary]
            if value is not None:
                spreads.setdefault(row["stage"], []).append(float(value))
        print(f"seed {seed}: reusing the finished search in {folder}")
        return Architecture.parse(done["chosen"]["ffn_expressions"]), spreads
    result = search(benchmark, teacher, folder, overrides=items, cache_dir=str(cache),
                    progress=None)
    return result.chosen.arch, {s.name: [float(c.metric) for c in s.candidates
                                         if c.metric is not None] for s in result.stages}


def spread(trainer: Any, count: int, seeds: int, arch_seed: int = 99) -> dict[str, Any]:
    """Criterion (1), which involves no search: `count` random architectures of the budget,
    each trained `seeds` times; do architectures differ by more than training-seed noise?

    Reports the pooled within-architecture standard deviation (seed noise of one training),
    the standard deviation of the architectures' means, what that would be from noise alone
    (within / sqrt(seeds)), and the one-way ANOVA F statistic with its p-value."""
    archs = trainer.random_architectures(count, arch_seed)
    table = []
    for i, arch in enumerate(archs):
        values = [trainer.train(arch, 1000 * k).metric for k in range(seeds)]
        values = [v if v is not None else 0.0 for v in values]
        table.append({"ffn_expressions": arch.strings, "params": trainer.params(arch),
                      "per_seed": values, "mean": statistics.fmean(values)})
        print(f"arch {i}: {' '.join(format(v, '.1f') for v in values)} mean "
              f"{table[-1]['mean']:.2f} ({table[-1]['params']} params)", flush=True)
    out = {"architectures": count, "seeds": seeds, "rows": table,
           **anova([r["per_seed"] for r in table])}
    print(f"spread: {anova_line(out)}", flush=True)
    return out


def anova(per_arch: list[list[float]]) -> dict[str, float]:
    """Do architectures differ beyond training-seed noise? One-way ANOVA over each
    architecture's per-seed values (equal seeds per architecture)."""
    from scipy.stats import f as f_dist

    count, seeds = len(per_arch), len(per_arch[0])
    means = [statistics.fmean(v) for v in per_arch]
    within = statistics.fmean(statistics.variance(v) for v in per_arch)
    between = statistics.variance(means)
    if within > 0:
        f_stat = seeds * between / within
    else:  # no seed noise: the architectures differ exactly when their means do
        f_stat = float("inf") if between > 0 else 0.0
    return {"within_sd": within ** 0.5, "between_sd_of_means": between ** 0.5,
            "noise_sd_of_means": (within / seeds) ** 0.5, "mean_min": min(means),
            "mean_max": max(means), "mean_range": max(means) - min(means), "anova_f": f_stat,
            "anova_p": float(f_dist.sf(f_stat, count - 1, count * (seeds - 1)))}


def anova_line(out: dict[str, Any]) -> str:
    return (f"means {out['mean_min']:.2f}..{out['mean_max']:.2f} (range "
            f"{out['mean_range']:.2f}); sd of means {out['between_sd_of_means']:.2f} vs "
            f"noise-only {out['noise_sd_of_means']:.2f}; one training's seed sd "
            f"{out['within_sd']:.2f}; ANOVA F={out['anova_f']:.2f} p={out['anova_p']:.4f}")


def run(seeds: list[int], random_count: int, n: int, work: Path, steps: int | None,
        teacher_steps: int, extra: list[str], truth_seeds: int = 2, sst2: str = "standard",
        dev_rows: int | None = None, spread_only: tuple[int, int] | None = None,
        teacher_set: tuple[str, ...] = (), init: str = "scratch",
        real: tuple[str, Path, Path] | None = None, first_truth_seed: int = 0
        ) -> dict[str, Any]:
    """`real`: (benchmark, prepared cache, teacher run) of a real release instead of the
    synthesized SST-2 and its `bert_tiny_glue` teacher."""
    from refbench.baselines.nlp.efficientbert.standalone import StandaloneTrainer

    if real is not None:
        benchmark, cache, teacher = real
    else:
        benchmark = "glue-sst2"
        cache, teacher = _prepare(work, n, teacher_steps, sst2, dev_rows, teacher_set)
    trainer = StandaloneTrainer(benchmark, teacher, cache_dir=str(cache), steps=steps,
                                overrides=extra)
    primary = trainer.primary
    print(f"stand-alone ({init}): {trainer.steps} steps, scored on {trainer.eval_rows} "
          f"{trainer.split} rows; budget [{trainer.setup.budget.min_params}, "
          f"{trainer.setup.budget.max_params}] parameters")
    if spread_only is not None:
        return {"sst2": sst2, "n": n, "dev_rows": dev_rows, "overrides": extra,
                "standalone_steps": trainer.steps, "eval_rows": trainer.eval_rows,
                "teacher_steps": teacher_steps, "spread": spread(trainer, *spread_only)}
    rows = []
    for seed in seeds:
        started = time.time()
        chosen, spreads = _searched(work, seed, teacher, cache, extra, init == "supernet",
                                    benchmark)
        weights = (trainer.load_supernet(work / f"search-{seed}" / "supernet.safetensors")
                   if init == "supernet" else None)
        searched = _trained(trainer, chosen, seed, truth_seeds, weights, first_truth_seed)
        randoms = [_trained(trainer, a, seed, truth_seeds, weights, first_truth_seed)
                   for a in trainer.random_architectures(random_count, 10_000 + seed)]
        median = statistics.median(r["metric"] for r in randoms)
        row = {"seed": seed, "searched": searched, "random": randoms, "median_random": median,
               "margin": searched["metric"] - median, "candidates": spreads,
               "random_spread": anova([r["per_seed"] for r in randoms])
               if truth_seeds > 1 else None, "wall_s": round(time.time() - started, 1)}
        rows.append(row)
        for name, values in spreads.items():
            print(f"seed {seed} search stage {name}: held-out {primary} {_spread(values)}")
        print(f"seed {seed}: searched {searched['metric']:.2f} ({searched['params']} params) "
              f"vs median random {median:.2f} (random: "
              f"{', '.join(format(r['metric'], '.1f') for r in randoms)}); "
              f"margin {row['margin']:+.2f}  [{row['wall_s']} s]", flush=True)
        if row["random_spread"] is not None:
            print(f"seed {seed} random architectures: {anova_line(row['random_spread'])}")
    margins = [r["margin"] for r in rows]
    summary = {"seeds": seeds, "random_per_seed": random_count, "n": n, "init": init,
               "truth_seeds": truth_seeds, "first_truth_seed": first_truth_seed,
               "overrides": extra,
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
    parser.add_argument("--first-truth-seed", type=int, default=0,
                        help="train truth seeds FIRST.. (e.g. 3 with --truth-seeds 3 adds "
                             "seeds 3-5 to an earlier 3-seed run; trainings are deterministic)")
    parser.add_argument("--sst2", default="standard",
                        help="synthesized SST-2 variant: standard, compositional or negation")
    parser.add_argument("--dev-rows", type=int, default=None,
                        help="validation rows (default: n // 4)")
    parser.add_argument("--spread", type=int, nargs=2, default=None, metavar=("ARCHS", "SEEDS"),
                        help="only measure criterion (1): ARCHS random architectures x SEEDS "
                             "trainings each, no search")
    parser.add_argument("--teacher-set", action="append", default=[],
                        help="an override of the teacher's bert_tiny_glue recipe "
                             "(e.g. model.hidden_size=128)")
    parser.add_argument("--init", choices=("scratch", "supernet"), default="scratch",
                        help="where every compared student starts: fresh weights, or the "
                             "search's final supernet weights (the official pipeline "
                             "initialises its searched student from the stage-3 supernet)")
    parser.add_argument("--real", nargs=3, metavar=("BENCHMARK", "CACHE", "TEACHER"),
                        default=None, help="a prepared real GLUE release instead of the "
                        "synthesized SST-2: benchmark (e.g. glue-sst2), its cache folder and "
                        "a `refbench train bert` teacher run of it (--n, --sst2, --dev-rows, "
                        "--teacher-* are then unused)")
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
                      args.extra, args.truth_seeds, args.sst2, args.dev_rows, args.spread,
                      tuple(args.teacher_set), args.init,
                      (args.real[0], Path(args.real[1]), Path(args.real[2]))
                      if args.real else None, args.first_truth_seed)
    if args.json is not None:
        from refbench.io import atomic_write_json

        atomic_write_json(args.json, summary)
        print(f"wrote {args.json}")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "spread")}))


if __name__ == "__main__":
    main()
