"""A benchmark's seed protocol: train one run per seed, then write their aggregate.

Papers report a mean over seeds (GLUE: several fine-tuning seeds), so one run's number is
not comparable to theirs. `train_protocol` trains `<base>-s<seed>` for every seed of the
spec's `protocol.seeds` through the common runner and writes
`<output_dir>/<base>-protocol/result.json`: a regular result whose metrics are the means,
with an `aggregate` block (seeds, sample std, per-seed values, run folders) that the
results table and the leaderboard show as `mean ± std (n)`.
"""

from __future__ import annotations

import copy
import hashlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from refbench.config import RunConfig
from refbench.errors import RefbenchError
from refbench.results import ModelInfo, Provenance, Result, load_result

RESULT_FILE = "result.json"
PROTOCOL_SUFFIX = "-protocol"


@dataclass
class ProtocolSummary:
    """What a protocol run did: per-seed results (in seed order), which seeds were already
    finished, and the aggregate (None on non-main ranks of a distributed run)."""

    seeds: list[int]
    run_dirs: list[Path]
    results: list[Result]
    aggregate: Result | None
    aggregate_path: Path | None
    skipped: list[int] = field(default_factory=list)


def base_name(config: RunConfig) -> str:
    """The protocol's name: `--name`, else `<recipe>-<benchmark>` (runs add `-s<seed>`)."""
    return config.name or f"{config.recipe or config.baseline}-{config.benchmark}"


def protocol_dir(config: RunConfig) -> Path:
    """Where the aggregate result.json goes, beside the per-seed run folders."""
    return Path(config.output_dir) / f"{base_name(config)}{PROTOCOL_SUFFIX}"


def seed_config(config: RunConfig, seed: int) -> RunConfig:
    """A copy of `config` for one seed (a deep copy: the runner resolves max_steps in place)."""
    out = copy.deepcopy(config)
    out.trainer.seed = seed
    out.name = f"{base_name(config)}-s{seed}"
    return out


def resolve_seeds(config: RunConfig, seeds: Sequence[int] | None) -> list[int]:
    """The seeds to train: the given ones, else the benchmark spec's `protocol.seeds`."""
    from refbench.registry import get_spec

    chosen = list(get_spec(config.benchmark).seeds if seeds is None else seeds)
    if not chosen:
        raise RefbenchError(f"benchmark {config.benchmark} declares no protocol seeds; "
                            f"pass --seeds 0,1,2", key="protocol.seeds")
    if len(set(chosen)) != len(chosen):
        raise RefbenchError(f"seeds repeat: {chosen}", key="seeds")
    return chosen


def _started(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return ckpts.is_dir() and any(ckpts.iterdir())


def train_protocol(config: RunConfig, seeds: Sequence[int] | None = None, resume: bool = False,
                   progress: Callable[[str], object] = print) -> ProtocolSummary:
    """Train one run per protocol seed and write the aggregate result.

    With `resume`, a seed whose run folder already has a result.json is reused and one
    with checkpoints but no result continues from them, so an interrupted protocol picks
    up where it stopped; without it, any existing seed run is an error (checked before
    anything trains)."""
    from refbench import runner

    chosen = resolve_seeds(config, seeds)
    configs = [seed_config(config, seed) for seed in chosen]
    dirs = [runner.run_dir_of(c) for c in configs]
    if not resume:
        for seed, run_dir in zip(chosen, dirs):
            if (run_dir / RESULT_FILE).exists() or _started(run_dir):
                raise RefbenchError(f"seed {seed} was already trained here; pass --resume to "
                                    f"skip finished seeds and continue unfinished ones, or "
                                    f"--name for a new protocol", path=run_dir)
    results: list[Result | None] = []
    skipped: list[int] = []
    for seed, seed_cfg, run_dir in zip(chosen, configs, dirs):
        if resume and (run_dir / RESULT_FILE).exists():
            result: Result | None = load_result(run_dir / RESULT_FILE)
            skipped.append(seed)
            progress(f"seed {seed}: already finished ({run_dir})")
        else:
            progress(f"seed {seed}: training {run_dir}")
            result = runner.train(seed_cfg, resume=resume and _started(run_dir)).result
        if result is not None:
            progress(f"seed {seed}: {result.primary}={result.primary_value:.4f}")
        results.append(result)
    if any(r is None for r in results):  # a non-main rank of a distributed run
        return ProtocolSummary(chosen, dirs, [], None, None, skipped)
    done = [r for r in results if r is not None]
    aggregate = aggregate_results(done, runs=[d.name for d in dirs])
    path = protocol_dir(config) / RESULT_FILE
    aggregate.write(path)
    return ProtocolSummary(chosen, dirs, done, aggregate, path, skipped)


def _sample_std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate_results(results: list[Result], runs: Sequence[str] | None = None) -> Result:
    """One result over seeds: metrics are the means; `aggregate` holds the seeds, the sample
    standard deviation (ddof=1; 0.0 for one seed) and the per-seed values in the order
    given. The runs must score the same benchmark version, split, reference set and
    recipe with the same metric keys, and each must name a distinct seed."""
    if not results:
        raise RefbenchError("no results to aggregate")
    first = results[0]
    recipe = None if first.model is None else first.model.recipe
    for r in results:
        if r.aggregate is not None:
            raise RefbenchError("cannot aggregate an aggregate result; pass the seed runs")
        mine = None if r.model is None else r.model.recipe
        for what, a, b in (("benchmark", first.benchmark, r.benchmark),
                           ("benchmark version", first.benchmark_version, r.benchmark_version),
                           ("split", first.split, r.split), ("recipe", recipe, mine),
                           ("reference set", first.provenance.label_set_sha256,
                            r.provenance.label_set_sha256),
                           ("metric keys", sorted(first.metrics), sorted(r.metrics))):
            if a != b:
                raise RefbenchError(f"results to aggregate disagree on {what}: {a!r} vs {b!r}")
    seeds = [r.provenance.seed for r in results]
    if any(s is None for s in seeds):
        raise RefbenchError("every result to aggregate must record its seed (provenance.seed)")
    if len(set(seeds)) != len(seeds):
        raise RefbenchError(f"results to aggregate repeat a seed: {seeds}")
    per_seed = {k: [r.metrics[k] for r in results] for k in first.metrics}
    prov = first.provenance
    joined = "\n".join(r.provenance.predictions_sha256 for r in results)
    provenance = Provenance(
        refbench_version=prov.refbench_version, git_commit=prov.git_commit,
        dataset_fingerprint=prov.dataset_fingerprint, label_set_sha256=prov.label_set_sha256,
        # one hash that changes when any seed's predictions do
        predictions_sha256=hashlib.sha256(joined.encode()).hexdigest(), seed=None,
        hardware=prov.hardware, wall_time_s=sum(r.provenance.wall_time_s for r in results))
    model = None if first.model is None else ModelInfo(**vars(first.model))
    return Result(
        benchmark=first.benchmark, benchmark_version=first.benchmark_version, split=first.split,
        metrics={k: statistics.fmean(v) for k, v in per_seed.items()},
        directions=dict(first.directions), primary=first.primary, provenance=provenance,
        model=model, counts=dict(first.counts), settings=dict(first.settings),
        selection=None if first.selection is None else
        {k: v for k, v in first.selection.items() if k in ("split", "key", "rule")},
        aggregate={"seeds": [int(s) for s in seeds if s is not None], "n": len(results),
                   "std": {k: _sample_std(v) for k, v in per_seed.items()},
                   "per_seed": per_seed, "runs": list(runs or [])})


def format_aggregate(result: Result, key: str | None = None, decimals: int = 2) -> str:
    """`mean ± std (n seeds)` of one metric (the primary by default) of an aggregate."""
    key = key or result.primary
    mean = result.metrics[key]
    if result.aggregate is None:
        return f"{mean:.{decimals}f}"
    std = result.aggregate["std"].get(key, 0.0)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f} ({result.aggregate['n']} seeds)"
