"""`refbench search was-vton`: the one-shot search over a trained `was-vton-supernet` run.

Works on every benchmark `was-vton-supernet` trains on (VITON, VITON-HD, MPV3D image
try-on). From the paper: the supernet is trained once, then the NAS-Warping architecture is chosen
per clothing category and the NAS-Fusion skips are chosen, without retraining candidates.

refbench's choices: an evolutionary search (SPOS-style: a population, the best `parents`
kept, children by mutation and crossover, duplicates skipped) in two stages. Stage 1, per
category: warping codes, scored with the fusion fixed to the supernet's largest code, on
the held-out pairs of that category. Stage 2: fusion codes, with each category's chosen
warping, on all held-out pairs. Fitness: the mean SSIM (the benchmark's convention,
`evaluation/tryon/ssim.py`) of the supernet's try-on images (uint8, as saved) to the person
images of a held-out part of the *training* split (`heldout_ratio`, seeded, recorded):
the test split is never looked at.

Writes (atomically; `search.json` last marks a finished search): `ranking.jsonl` (every
scored code, its stage, category and fitness), `was-vton_searched.yaml` (a `was-vton`
recipe with the chosen `model.arch`, the supernet run's model settings, the shipped tiny or
full recipe's trainer) and `search.json`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from refbench.baselines.tryon.wasvton import space
from refbench.config import apply_overrides, from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json, atomic_write_text
from refbench.options import Option
from refbench.registry import SEARCHES
from refbench.search import Search, SearchOutcome

RECIPE_FILE = "was-vton_searched.yaml"


@dataclass
class WasVtonSearchConfig:
    """`--set search.KEY=VALUE` items."""

    population: int = 16
    generations: int = 4
    parents: int = 4
    mutation_prob: float = 0.3
    heldout_ratio: float = 0.2
    batch_size: int = 16
    seed: int = 0


def _parse(overrides: Sequence[str]) -> WasVtonSearchConfig:
    data = apply_overrides({}, list(overrides))
    unknown = set(data) - {"search"}
    if unknown:
        raise RefbenchError(f"the was-vton search takes search.* keys only, got {sorted(unknown)}",
                            key=sorted(unknown)[0])
    cfg = from_dict(WasVtonSearchConfig, data.get("search") or {}, prefix="search")
    for key in ("population", "generations", "parents", "batch_size"):
        if getattr(cfg, key) < 1:
            raise RefbenchError(f"must be >= 1, got {getattr(cfg, key)}", key=f"search.{key}")
    if cfg.parents > cfg.population:
        raise RefbenchError(f"{cfg.parents} parents for a population of {cfg.population}",
                            key="search.parents")
    if not 0 <= cfg.mutation_prob <= 1:
        raise RefbenchError(f"must be in [0, 1], got {cfg.mutation_prob}", key="search.mutation_prob")
    if not 0 < cfg.heldout_ratio < 1:
        raise RefbenchError(f"must be in (0, 1), got {cfg.heldout_ratio}", key="search.heldout_ratio")
    return cfg


def evolve(score: Callable[[tuple[str, ...]], float], sample: Callable[[random.Random], tuple],
           mutate: Callable[[tuple, random.Random], tuple], cfg: WasVtonSearchConfig,
           rng: random.Random, limit: int) -> dict[tuple, float]:
    """Evolutionary search of one space; every scored code and its fitness. `limit` caps
    the distinct codes (a space smaller than the budget is enumerated at most once)."""
    scored: dict[tuple, float] = {}

    def add(code: tuple) -> None:
        if code not in scored and len(scored) < limit:
            scored[code] = score(code)

    tries = 0
    while len(scored) < min(cfg.population, limit) and tries < 50 * cfg.population:
        add(sample(rng))
        tries += 1
    for _ in range(cfg.generations - 1):
        parents = sorted(scored, key=lambda c: -scored[c])[:cfg.parents]
        before, tries = len(scored), 0
        while len(scored) < min(before + cfg.population, limit) and tries < 50 * cfg.population:
            tries += 1
            if rng.random() < 0.5 and len(parents) > 1:
                a, b = rng.sample(parents, 2)
                child = space.crossover(a, b, rng)
            else:
                child = rng.choice(parents)
            add(mutate(child, rng))
    return scored


class HeldOut:
    """The supernet of a run and the held-out training pairs, batched per category."""

    def __init__(self, supernet_run: Path, cfg: WasVtonSearchConfig, benchmark: str | None,
                 cache_dir: str | None) -> None:
        from refbench.baselines.tryon.wasvton.baseline import WasVtonSupernet
        from refbench.engine import find_checkpoint, load_model_weights
        from refbench.registry import get_spec
        from refbench.runner import load_rows, load_run_config

        if not Path(supernet_run).is_dir():
            raise RefbenchError("supernet run folder not found", path=supernet_run,
                                key="supernet")
        self.run = load_run_config(Path(supernet_run))
        if self.run.baseline != "was-vton-supernet":
            raise RefbenchError(f"--supernet must be a was-vton-supernet run, this one is "
                                f"{self.run.baseline!r}", path=supernet_run, key="supernet")
        self.spec = get_spec(benchmark or self.run.benchmark)
        self.model = WasVtonSupernet.restore(self.run.model, self.spec, Path(supernet_run))
        load_model_weights(self.model, find_checkpoint(Path(supernet_run), "last"))
        self.model.eval()
        if cache_dir is not None:
            self.run.data.cache_dir = cache_dir
        rows, _ = load_rows(self.spec, self.run.data.train_split or self.spec.train_split,
                            self.run)
        order = list(range(len(rows)))
        random.Random(cfg.seed).shuffle(order)
        held = sorted(order[:max(1, int(round(len(order) * cfg.heldout_ratio)))])
        features = self.model.encode(rows.select(held))
        self.ids = [features[i]["id"] for i in range(len(features))]
        self.by_category: dict[str, list[dict[str, Any]]] = {}
        for i in range(len(features)):
            self.by_category.setdefault(features[i]["category"], []).append(features[i])
        self.batch_size = cfg.batch_size
        from refbench.evaluation.tryon.ssim import SSIM_FUNCTIONS

        convention = self.spec.metric.kwargs().get("ssim_convention", "hrviton")
        self.convention, self.ssim = convention, SSIM_FUNCTIONS[convention]

    def ssims(self, arch: space.Arch, categories: Sequence[str]) -> list[float]:
        from refbench.baselines.tryon.wasvton.baseline import to_uint8

        values = []
        with torch.no_grad():
            for category in categories:
                items = self.by_category.get(category, [])
                for start in range(0, len(items), self.batch_size):
                    batch = self.model.collate(items[start:start + self.batch_size])
                    images = self.model.tryon(batch, arch)
                    people = to_uint8(batch["person"])
                    values += [self.ssim(people[i], images[i]) for i in range(len(images))]
        return values


def search(supernet_run: str | Path, out: str | Path, overrides: Sequence[str] = (), *,
           benchmark: str | None = None, cache_dir: str | None = None,
           progress: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Search the supernet of `supernet_run`; write the results under `out`; the summary."""
    started = time.time()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RefbenchError("output exists and is not a folder", path=out)
    cfg = _parse(overrides)
    say = progress or (lambda _line: None)
    data = HeldOut(Path(supernet_run), cfg, benchmark, cache_dir)
    max_cells = data.model.cfg.max_cells
    rng = random.Random(cfg.seed)
    largest = space.largest_arch(max_cells)
    ranking: list[dict[str, Any]] = []
    chosen_warp: dict[str, tuple[str, ...]] = {}
    counts = {c: len(data.by_category.get(c, [])) for c in space.CATEGORIES}
    for category in space.CATEGORIES:
        if not counts[category]:  # nothing to score on: the supernet's default path
            chosen_warp[category] = largest.warp[category]
            say(f"search: no held-out {category} pairs; keeping {','.join(chosen_warp[category])}")
            continue

        def score_warp(code: tuple[str, ...], category: str = category) -> float:
            arch = space.Arch({**largest.warp, category: code}, largest.fusion)
            value = float(np.mean(data.ssims(arch, [category])))
            say(f"search: warp[{category}] {','.join(code)}  SSIM {value:.4f}")
            return value

        scored = evolve(score_warp, lambda r: space.sample_warp(r, max_cells),
                        lambda c, r: space.mutate_warp(c, r, cfg.mutation_prob, max_cells),
                        cfg, rng, space.warp_space_size(max_cells))
        chosen_warp[category] = max(scored, key=lambda c: scored[c])
        ranking += [{"stage": "warp", "category": category, "code": ",".join(c), "fitness": f}
                    for c, f in scored.items()]

    def score_fusion(code: tuple[str, ...]) -> float:
        value = float(np.mean(data.ssims(space.Arch(chosen_warp, code), space.CATEGORIES)))
        say(f"search: fusion {','.join(code)}  SSIM {value:.4f}")
        return value

    fused = evolve(score_fusion, lambda r: space.sample_fusion(r),
                   lambda c, r: space.mutate_fusion(c, r, cfg.mutation_prob), cfg, rng,
                   space.fusion_space_size())
    chosen = space.Arch(chosen_warp, max(fused, key=lambda c: fused[c]))
    ranking += [{"stage": "fusion", "category": None, "code": ",".join(c), "fitness": f}
                for c, f in fused.items()]
    ranking.sort(key=lambda r: (r["stage"] != "warp", str(r["category"]), -r["fitness"]))
    summary = {
        "schema_version": 1, "search": "was-vton", "supernet_run": str(supernet_run),
        "benchmark": data.spec.name, "ssim_convention": data.convention, "seed": cfg.seed,
        "settings": asdict(cfg), "heldout_pairs": counts, "heldout_ids": data.ids,
        "evaluated": len(ranking), "space_size": {"warp_per_category":
                                                  space.warp_space_size(max_cells),
                                                  "fusion": space.fusion_space_size()},
        "chosen": {"arch": space.format_arch(chosen), "fitness": fused[chosen.fusion],
                   "per_category": {c: ",".join(chosen.warp[c]) for c in space.CATEGORIES}},
        "recipe_file": RECIPE_FILE, "wall_time_s": round(time.time() - started, 3),
    }
    recipe = _recipe(data.run, space.format_arch(chosen), summary)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ranking.jsonl", "".join(json.dumps(r) + "\n" for r in ranking))
    atomic_write_text(out / RECIPE_FILE, recipe)
    atomic_write_json(out / "search.json", summary)
    return summary


def _recipe(run: Any, arch: str, summary: Mapping[str, Any]) -> str:
    """A `was-vton` recipe: the supernet run's model settings, the searched arch, and the
    trainer of the benchmark's shipped `was-vton` recipe at the supernet's size (the tiny
    one when the supernet is smaller than the full recipe's; VITON's when the benchmark
    has no shipped recipe)."""
    import yaml

    from refbench.config import load_recipe
    from refbench.registry import RECIPES

    model = dict(run.model)
    bench = summary["benchmark"]
    if f"was-vton_full_{bench}" not in RECIPES:
        bench = "viton-tryon"
    full = load_recipe(f"was-vton_full_{bench}")
    tiny = int(model.get("height", 256)) < int(full["model"]["height"])
    base = f"was-vton_{'tiny' if tiny else 'full'}_{bench}"
    body = full if not tiny else load_recipe(base)
    body.pop("recipe", None)
    body.pop("base", None)
    body.update({"baseline": "was-vton", "tasks": ["try-on"]})
    body["model"] = {**body.get("model", {}), **model, "arch": arch}
    head = [f"# Searched by `refbench search was-vton` on {summary['benchmark']} from the "
            f"supernet {summary['supernet_run']}, seed {summary['seed']}:",
            f"# held-out SSIM ({summary['ssim_convention']}) {summary['chosen']['fitness']:.4f}; "
            f"trainer settings of {base}.",
            f"#   refbench train was-vton --benchmark {summary['benchmark']} --recipe THIS_FILE"]
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)


@SEARCHES.register("was-vton", family="WAS-VTON (Xie et al., ACM MM 2021), re-implementation")
class WasVtonSearch(Search):
    """WAS-VTON's one-shot search over a trained `was-vton-supernet` run: per clothing
    category the NAS-Warping code (cell count and operations), then the NAS-Fusion skips,
    each by evolution scored with held-out SSIM on the training split. Tune with
    --set search.KEY (population, generations, parents, mutation_prob, heldout_ratio)."""

    summary = "WAS-VTON: per-category warping + fusion search of a was-vton-supernet (SSIM)"
    options = (
        Option("supernet", "path", "Run folder of a `refbench train was-vton-supernet` run."),
        Option("population", "int", "Codes per generation (search.population)."),
        Option("generations", "int", "Generations (search.generations)."),
        Option("seed", "int", "Seed of the held-out split and of the evolution."),
    )
    required = ("supernet",)

    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        items = self.as_overrides(
            options, {k: k for k in ("population", "generations", "seed")}, overrides)
        summary = search(options["supernet"], out, items, benchmark=benchmark,
                         cache_dir=cache_dir, progress=progress)
        lines = [f"searched: {summary['chosen']['arch']}  held-out SSIM "
                 f"{summary['chosen']['fitness']:.4f} ({summary['evaluated']} codes scored)",
                 f"wrote {Path(out) / 'search.json'}, ranking.jsonl, {RECIPE_FILE}"]
        return SearchOutcome(Path(out), summary, lines)
