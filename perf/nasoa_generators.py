"""NASOA schedule generators on the tiny task sequence with *step* budgets: online vs
random vs BOHB vs largest-default, accuracy at budget and schedule-choosing time over seeds.

Step budgets make a fine-tuning's accuracy independent of how loaded the machine is (a
seconds budget on a shared machine moved one schedule by +-30 points); the choosing time
is still wall clock and is reported as measured.

What runs: `nasoa_tiny_finetune`'s task sequence (three graded synthetic tasks and
scikit-learn's real digits; nothing downloaded) with `--budgets` (default 30 and 100
optimizer steps), `--trials` optuna trials per choice for random / BOHB, the online
generator warmed up on the recipe's three warm-up tasks (never the evaluation tasks, and
no setting was tuned on their test splits). Each seed is one `run_benchmark` call writing
`<work>/seed<k>/` (the benchmark's own folder: runs.jsonl, per-generator result.json,
choices/); a finished seed folder is reused, so an interrupted measurement resumes at the
next seed. The zoo is `--zoo`, or `nasoa_tiny_zoo` (seed 0, synthetic:pretrain) built into
`<work>/zoo` once.

Printed: per generator, accuracy at each budget and overall as mean +- sample std over
seeds (each seed's value is the mean over tasks), the mean seconds per choice and the
online generator's one-off warm-up seconds, and per-seed overall accuracies.

`--warmup N` changes the online generator's warm-up (the recipe's 24 fine-tunings on its
three warm-up tasks) to N fine-tunings on the same tasks, the same balanced design.

`--reuse DIR` takes the generators *not* in `--generators` from an earlier measurement
folder `DIR` (its `seed<k>/runs.jsonl`), refused unless that run used the same tasks and
budgets: a change to one generator (e.g. the online one) is then measured against the
other generators' exact earlier runs (same seeds, same zoo, same code) without rerunning
their optuna searches. The table says which generators were reused.

Run (about 10-15 minutes per seed on 2 busy cores with the defaults):
    OMP_NUM_THREADS=1 .venv/bin/python perf/nasoa_generators.py [--work /tmp/nasoa-steps
        --seeds 0,1,2 --budgets 30steps,100steps --trials 4 --zoo ZOO]
    OMP_NUM_THREADS=1 .venv/bin/python perf/nasoa_generators.py --generators online \
        --reuse /tmp/nasoa-steps --work /tmp/nasoa-online --zoo ZOO
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):5.1f} +- {std:4.1f}"


def _zoo(args: argparse.Namespace) -> Path:
    from refbench.baselines.nas.nasoa.search import _recipe
    from refbench.baselines.nas.nasoa.zoo import ZooConfig, build_zoo
    from refbench.config import from_dict

    if args.zoo is not None:
        return Path(args.zoo)
    folder = args.work / "zoo"
    if not (folder / "zoo.json").exists():
        cfg = from_dict(ZooConfig, _recipe("nasoa_tiny_zoo", "zoo", []), prefix="zoo")
        build_zoo("synthetic:pretrain", folder, cfg, progress=print)
    return folder


def _seed_runs(args: argparse.Namespace, zoo: Path, seed: int) -> list[dict[str, Any]]:
    from refbench.baselines.nas.nasoa.benchmark import BenchmarkConfig, run_benchmark
    from refbench.baselines.nas.nasoa.search import _recipe
    from refbench.config import from_dict

    out = args.work / f"seed{seed}"
    if not (out / "summary.json").exists():
        data = _recipe("nasoa_tiny_finetune", "finetune", [])
        data.update(seeds=[seed], budgets=args.budgets.split(","), trials=args.trials,
                    generators=args.generators.split(","))
        if args.warmup is not None:
            data.update(warmup=args.warmup)
        cfg = from_dict(BenchmarkConfig, data, prefix="finetune")
        started = time.perf_counter()
        run_benchmark(zoo, out, cfg, recipe="nasoa_tiny_finetune", progress=print)
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line]


def _reused(args: argparse.Namespace, seed: int, fresh: list[dict[str, Any]]
            ) -> list[dict[str, Any]]:
    """The other generators' runs of seed `seed` from `--reuse` (module doc)."""
    from refbench.errors import RefbenchError

    path = args.reuse / f"seed{seed}" / "runs.jsonl"
    if not path.is_file():
        raise RefbenchError("no earlier runs to reuse for this seed", path=path)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    mine = set(args.generators.split(","))
    rows = [r for r in rows if r["generator"] not in mine]
    for key in ("task", "budget"):
        if {r[key] for r in rows} != {r[key] for r in fresh}:
            raise RefbenchError(f"the reused runs have other {key}s than this measurement",
                                path=path)
    return rows


def report(runs: list[dict[str, Any]], warmups: dict[int, float],
           args_warmup: int = 24) -> list[str]:
    """The table: per generator, per-seed means over tasks, then mean +- std over seeds."""
    seeds = sorted({r["seed"] for r in runs})
    budgets = list(dict.fromkeys(r["budget"] for r in runs))
    generators = list(dict.fromkeys(r["generator"] for r in runs))
    head = f"{'generator':<16}" + "".join(f"{'acc@' + b:>16}" for b in budgets)
    lines = [f"seeds {seeds}, {len({r['task'] for r in runs})} tasks, budgets {budgets}",
             head + f"{'acc (all)':>16}{'choose s':>16}   per-seed acc"]
    for name in generators:
        mine = [r for r in runs if r["generator"] == name]
        cells = []
        for budget in budgets:
            cells.append([statistics.fmean(r["accuracy"] for r in mine
                                           if r["seed"] == s and r["budget"] == budget)
                          for s in seeds])
        overall = [statistics.fmean(r["accuracy"] for r in mine if r["seed"] == s) for s in seeds]
        choose = [statistics.fmean(r["choose_seconds"] for r in mine if r["seed"] == s)
                  for s in seeds]
        lines.append(f"{name:<16}" + "".join(f"{_mean_std(c):>16}" for c in cells)
                     + f"{_mean_std(overall):>16}{_mean_std(choose):>16}   "
                     + " ".join(f"{v:.1f}" for v in overall))
    if warmups:
        lines.append(f"online warm-up (one-off, {args_warmup} fine-tunings) s: "
                     + _mean_std(list(warmups.values())))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp") / "nasoa-steps")
    parser.add_argument("--zoo", type=Path, default=None)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budgets", default="30steps,100steps")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--generators", default="online,random,bohb,largest-default")
    parser.add_argument("--warmup", type=int, default=None,
                        help="the online generator's warm-up fine-tunings (recipe: 24)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="take the other generators' runs from this earlier --work")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    zoo = _zoo(args)
    runs: list[dict[str, Any]] = []
    warmups: dict[int, float] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        fresh = _seed_runs(args, zoo, seed)
        runs += fresh + (_reused(args, seed, fresh) if args.reuse else [])
        result = args.work / f"seed{seed}" / "online" / "result.json"
        if result.exists():
            per_seed = json.loads(result.read_text())["aggregate"]["per_seed"]
            warmups[seed] = per_seed.get("warmup_seconds", [0.0])[0]
        print("\n".join(report(runs, warmups, args.warmup or 24)), flush=True)
        if args.reuse:
            print(f"(generators other than {args.generators} reused from {args.reuse})",
                  flush=True)


if __name__ == "__main__":
    main()
