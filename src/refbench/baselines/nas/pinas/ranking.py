"""Pi-NAS as a client of the ranking-consistency benchmark (`refbench.baselines.nas.ranking`),
registered as `refbench search pinas-ranking`.

Pi-NAS's claim is supernet consistency; the official code ships no ranking code. Here:

- architectures: N codes drawn uniformly from the supernet's space (the tiny 4-block space
  of `pinas-supernet_tiny_digits` by default: 4^4 = 256 codes), distinct, from a seed;
- ground truth: each code trained stand-alone through the common runner with the
  `pinas` baseline (`standalone_recipe`, `model.arch` = the code, one run per truth seed),
  its top-1 (%) on the benchmark's scored split (digits: validation);
- supernets: the `pinas-supernet` recipe once per method (`pinas`, `spos-moco`,
  `spos-supervised`) and seed, at one budget (the same steps and images per step);
- scores: `search.SupernetScorer`, the search's own fitness (BN recalibration of the path
  on training rows, then the linear probe's top-1 on held-out training rows), so the
  supernet never sees the split the ground truth is measured on.

Every training and scoring is a job (`train_supernet`, `train_standalone`, `score_archs`
below) of the one job pool. A finished run folder is reused when its config is the one
asked for, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from refbench.baselines.nas.ranking import RankingSettings, Supernet, run_ranking, summary_lines
from refbench.datasets.nasbench.spaces import ArchitectureError, SearchSpace
from refbench.engine.jobs import Job
from refbench.errors import RefbenchError
from refbench.options import Option
from refbench.registry import SEARCHES
from refbench.search import Search, SearchOutcome

TARGETS = "refbench.baselines.nas.pinas.ranking"
#: the tiny setting's scoring (`search.*`): the official 49 recalibration batches and 100
#: probe epochs scaled to 1,079 digits rows on CPU
TINY_SCORING = ("search.fitness.bn_iters=8", "search.fitness.probe_epochs=10",
                "search.batch_size=64")


def _run(baseline: str, benchmark: str, recipe: str, overrides: Sequence[str], out: str,
         name: str, cache_dir: str | None) -> Any:
    """Train (or reuse) one run through the common runner; its result."""
    from refbench.config import build_run_config
    from refbench.results import load_result
    from refbench.runner import config_hash, train

    items = [*overrides, f"output_dir={out}", f"name={name}", "trainer.progress=false"]
    if cache_dir:
        items.append(f"data.cache_dir={cache_dir}")
    config = build_run_config(baseline, benchmark, recipe, items)
    done = Path(out) / name / "result.json"
    if done.is_file():
        previous = load_result(done)
        if previous.model is not None and previous.model.config_hash == config_hash(config):
            return previous, Path(out) / name
    summary = train(config)
    if summary.result is None:
        raise RefbenchError("the run wrote no result", path=summary.run_dir)
    return summary.result, summary.run_dir


def _budget(steps: int | None) -> list[str]:
    if steps is None:
        return []
    return [f"trainer.max_steps={steps}", "trainer.epochs=null", f"trainer.save_every={steps}"]


def train_supernet(benchmark: str, recipe: str, method: str, seed: int, out: str,
                   cache_dir: str | None = None, steps: int | None = None,
                   overrides: Sequence[str] = ()) -> str:
    """Job: one `pinas-supernet` run of `method` and `seed`; its run folder."""
    items = [*overrides, f"model.method={method}", f"trainer.seed={seed}", *_budget(steps)]
    _result, run_dir = _run("pinas-supernet", benchmark, recipe, items, out,
                            f"{method}-s{seed}", cache_dir)
    return str(run_dir)


def train_standalone(benchmark: str, recipe: str, arch: str, seed: int, out: str,
                     cache_dir: str | None = None, steps: int | None = None,
                     overrides: Sequence[str] = ()) -> float:
    """Job: `arch` trained stand-alone (`pinas` baseline) with `seed`; its top-1 (%) on
    the benchmark's scored split (the benchmark's primary key)."""
    items = [*overrides, f"model.arch={arch}", f"trainer.seed={seed}", *_budget(steps)]
    result, _run_dir = _run("pinas", benchmark, recipe, items, out,
                            f"{arch.replace(' ', '')}-s{seed}", cache_dir)
    return float(result.primary_value)


def score_archs(run: str, archs: Sequence[str], seed: int, benchmark: str | None = None,
                cache_dir: str | None = None, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Job: every code scored by the supernet of `run` (BN recalibration + probe)."""
    from refbench.baselines.nas.pinas.search import SupernetScorer, _parse

    cfg = _parse([*overrides, f"search.seed={seed}"])
    scorer = SupernetScorer(run, cfg, benchmark=benchmark, cache_dir=cache_dir)
    space = scorer.net.space
    return {a: scorer.score(space.parse(a, key="archs")) for a in archs}


@dataclass
class PinasRankingClient:
    """The Pi-NAS side of the `RankingClient` protocol (module docstring)."""

    benchmark: str = "digits"
    supernet_recipe: str = "pinas-supernet_tiny_digits"
    standalone_recipe: str = "pinas_tiny_digits"
    supernet_steps: int | None = None
    standalone_steps: int | None = None
    supernet_overrides: tuple[str, ...] = ()
    standalone_overrides: tuple[str, ...] = ()
    scoring: tuple[str, ...] = TINY_SCORING
    cache_dir: str | None = None
    name: str = "pinas"

    def __post_init__(self) -> None:
        from refbench.config import load_recipe
        from refbench.registry import get_spec

        self.spec = get_spec(self.benchmark)
        recipe = load_recipe(self.supernet_recipe)
        if recipe.get("baseline") != "pinas-supernet":
            raise RefbenchError(f"recipe {self.supernet_recipe} is not a pinas-supernet recipe",
                                key="supernet_recipe")
        from refbench.baselines.nas.pinas.model import SupernetConfig
        from refbench.config import from_dict

        net = from_dict(SupernetConfig, dict(recipe.get("model", {}).get("net", {})),
                        prefix="model.net")
        self._space = net.space()

    def space(self) -> SearchSpace:
        pinas = self._space

        def parse(text: str) -> tuple[int, ...]:
            try:
                return pinas.parse(text)
            except RefbenchError as exc:
                raise ArchitectureError(exc.message) from None

        return SearchSpace(f"pinas-{pinas.num_blocks}-blocks", parse, pinas.format,
                           pinas.format((0,) * pinas.num_blocks))

    def sample(self, n: int, seed: int) -> list[str]:
        """`n` distinct codes drawn uniformly (`SearchSpace.random`) with `seed`."""
        if n > self._space.size:
            raise RefbenchError(f"the space holds {self._space.size} architectures, fewer than "
                                f"{n}", key="archs")
        rng, seen = np.random.default_rng(seed), {}
        while len(seen) < n:
            seen.setdefault(self._space.random(rng), None)
        return [self._space.format(code) for code in seen]

    def _common(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "cache_dir": self.cache_dir}

    def standalone_job(self, arch: str, seed: int, out: Path) -> Job:
        return Job(f"standalone {arch} s{seed}", f"{TARGETS}:train_standalone",
                   {**self._common(), "recipe": self.standalone_recipe, "arch": arch,
                    "seed": seed, "out": str(out), "steps": self.standalone_steps,
                    "overrides": list(self.standalone_overrides)})

    def supernet_job(self, method: str, seed: int, out: Path) -> Job:
        return Job(f"supernet {method} s{seed}", f"{TARGETS}:train_supernet",
                   {**self._common(), "recipe": self.supernet_recipe, "method": method,
                    "seed": seed, "out": str(out), "steps": self.supernet_steps,
                    "overrides": list(self.supernet_overrides)})

    def describe_supernet(self, run: str) -> tuple[str, int]:
        from refbench.runner import load_run_config

        config = load_run_config(Path(run))
        if config.baseline != "pinas-supernet":
            raise RefbenchError(f"not a pinas-supernet run (baseline {config.baseline!r})",
                                path=run)
        return str(config.model.get("method", "pinas")), int(config.trainer.seed)

    def score_job(self, supernet: Supernet, archs: Sequence[str], out: Path) -> Job:
        return Job(f"score {supernet.method} s{supernet.seed}", f"{TARGETS}:score_archs",
                   {**self._common(), "run": supernet.run, "archs": list(archs),
                    "seed": supernet.seed, "overrides": list(self.scoring)})

    def provenance(self) -> dict[str, Any]:
        from refbench.datasets.base import dataset_fingerprint

        try:
            fingerprint = dataset_fingerprint(self.spec.dataset.name, self.cache_dir)
        except RefbenchError:
            fingerprint = None
        return {"benchmark": self.benchmark, "truth_split": self.spec.split,
                "truth_metric": self.spec.primary, "supernet_recipe": self.supernet_recipe,
                "standalone_recipe": self.standalone_recipe,
                "supernet_steps": self.supernet_steps, "standalone_steps": self.standalone_steps,
                "supernet_overrides": list(self.supernet_overrides),
                "standalone_overrides": list(self.standalone_overrides),
                "scoring": list(self.scoring), "dataset_fingerprint": fingerprint,
                "space_size": self._space.size}


def _ints(text: Any, key: str) -> list[int]:
    try:
        return [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise RefbenchError(f"expected comma-separated integers, got {text!r}", key=key) from None


def _split_overrides(items: Sequence[str]) -> dict[str, list[str]]:
    """`--set` items by their section: search.* (scoring), supernet.* and standalone.*
    (run overrides, the prefix dropped)."""
    out: dict[str, list[str]] = {"search": [], "supernet": [], "standalone": []}
    for item in items:
        head, _, rest = item.partition(".")
        if head not in out or not rest:
            raise RefbenchError(f"pinas-ranking takes search.*, supernet.* and standalone.* "
                                f"overrides, got {item!r}", key=item)
        out[head].append(item if head == "search" else rest)
    return out


@SEARCHES.register("pinas-ranking", family="Pi-NAS (Peng et al., ICCV 2021)")
class PinasRankingSearch(Search):
    """The ranking-consistency benchmark of Pi-NAS supernets (`baselines/nas/ranking.py`).

    Samples --archs codes of the supernet recipe's space (--sample-seed), trains each
    stand-alone with the `pinas` recipe once per --truth-seeds (the ground truth: top-1 %
    on the benchmark's scored split), trains one supernet per --methods x --supernet-seeds
    at one budget (--supernet-steps), or scores the given --supernets runs, scores every
    code with every supernet (BN recalibration + linear probe on training rows), and
    reports Kendall tau-b, Spearman rho, P@k and the top pick's stand-alone accuracy per
    supernet and per method (mean +- sample std over seeds). All trainings and scorings
    are jobs of the job pool (--workers local processes, or Ray with --address).
    Tune with --set search.KEY=V (scoring, as `search pinas`), --set supernet.KEY=V and
    --set standalone.KEY=V (run overrides, e.g. standalone.trainer.lr=0.1).
    """

    summary = "Pi-NAS: ranking consistency of supernets vs stand-alone training (tau, rho, P@k)"
    options = (
        Option("methods", "str", "Supernet methods to compare (pinas, spos-moco, "
                                 "spos-supervised), comma-separated.", "pinas,spos-moco"),
        Option("supernets", "str", "Trained pinas-supernet run folders to score instead "
                                   "(comma-separated; method and seed read from each)."),
        Option("archs", "int", "N: architectures sampled from the space.", 12),
        Option("sample_seed", "int", "Seed of the architecture sample.", 0),
        Option("truth_seeds", "str", "Stand-alone trainings per architecture: their seeds.", "0"),
        Option("supernet_seeds", "str", "Supernet seeds per method.", "0,1,2"),
        Option("supernet_steps", "int", "Training steps of every supernet (the shared budget)."),
        Option("standalone_steps", "int", "Training steps of every stand-alone run."),
        Option("supernet_recipe", "str", "pinas-supernet recipe.", "pinas-supernet_tiny_digits"),
        Option("standalone_recipe", "str", "pinas recipe of the stand-alone runs.",
               "pinas_tiny_digits"),
        Option("ks", "str", "k of precision@k, comma-separated.", "3"),
        Option("workers", "int", "Parallel local jobs (default: one per core)."),
        Option("address", "str", "Ray address (auto, ray://host:10001, local); default: local "
                                 "processes."),
    )

    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        sections = _split_overrides(overrides)
        client = PinasRankingClient(
            benchmark=benchmark,
            supernet_recipe=str(options.get("supernet_recipe") or "pinas-supernet_tiny_digits"),
            standalone_recipe=str(options.get("standalone_recipe") or "pinas_tiny_digits"),
            supernet_steps=options.get("supernet_steps"),
            standalone_steps=options.get("standalone_steps"),
            supernet_overrides=tuple(sections["supernet"]),
            standalone_overrides=tuple(sections["standalone"]),
            scoring=(*TINY_SCORING, *sections["search"]), cache_dir=cache_dir)
        supernets = [s for s in str(options.get("supernets") or "").split(",") if s.strip()]
        settings = RankingSettings(
            archs=int(options.get("archs") or 12), sample_seed=int(options.get("sample_seed") or 0),
            truth_seeds=_ints(options.get("truth_seeds") or "0", "truth_seeds"),
            methods=[m.strip() for m in str(options.get("methods") or "").split(",") if m.strip()],
            supernet_seeds=_ints(options.get("supernet_seeds") or "0,1,2", "supernet_seeds"),
            supernets=[s.strip() for s in supernets], ks=_ints(options.get("ks") or "3", "ks"),
            workers=options.get("workers"), address=options.get("address"))
        from refbench.baselines.nas.pinas.moco import METHODS

        unknown = [m for m in settings.methods if m not in METHODS]
        if unknown:
            raise RefbenchError(f"unknown supernet method(s) {unknown} (known: "
                                f"{', '.join(METHODS)})", key="methods")
        summary = run_ranking(client, settings, Path(out), progress)
        return SearchOutcome(Path(out), summary, summary_lines(summary, Path(out)))
