"""`refbench search pinas`: the LaNAS-style search (`lanas.py`) over a trained
`pinas-supernet` run, each architecture scored by BN recalibration + linear probe
(`fitness.py`).

Data, all from the benchmark's *training* split (the official lists are not shipped, so
the held-out part is drawn here, seeded, and recorded): a `heldout_ratio` share is the
held-out list (`my_val_labeled`); of the rest, `bn_iters * batch_size` shuffled rows are
the BN-recalibration subset (`train_labeled_50000_random_shuffle`), all of it trains the
shared probe. Recalibration and probe training see the training augmentation (random
resized crop + flip), the held-out rows the evaluation transform, as officially.

Writes (atomically, once the search finished): `search.json`, `ranking.jsonl` (every
scored code, its fitness, how it was proposed) and `pinas_searched.yaml`, a recipe for
`refbench train pinas` with the chosen `model.arch`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from refbench.baselines.nas.pinas.augment import decode_image, eval_view, train_view
from refbench.baselines.nas.pinas.baseline import load_supernet
from refbench.baselines.nas.pinas.fitness import (FitnessConfig, check_fitness, fitness,
                                                  train_shared_probe)
from refbench.baselines.nas.pinas.lanas import LanasConfig, LanasSearch, Scored, check_lanas
from refbench.config import apply_overrides, from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json, atomic_write_text
from refbench.options import Option
from refbench.registry import SEARCHES
from refbench.search import Search, SearchOutcome

RECIPE_FILE = "pinas_searched.yaml"


@dataclass
class PinasSearchConfig:
    """`--set search.KEY=VALUE` items."""

    lanas: LanasConfig = field(default_factory=LanasConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    heldout_ratio: float = 0.1
    batch_size: int = 128  # official: 128 images per GPU
    seed: int = 0
    threads: int | None = None


def _parse(overrides: Sequence[str]) -> PinasSearchConfig:
    data = apply_overrides({}, list(overrides))
    unknown = set(data) - {"search"}
    if unknown:
        raise RefbenchError(f"the pinas search takes search.* keys only, got {sorted(unknown)}",
                            key=sorted(unknown)[0])
    cfg = from_dict(PinasSearchConfig, data.get("search") or {}, prefix="search")
    check_lanas(cfg.lanas, "search.lanas")
    check_fitness(cfg.fitness)
    if not 0 < cfg.heldout_ratio < 1:
        raise RefbenchError(f"must be in (0, 1), got {cfg.heldout_ratio}", key="search.heldout_ratio")
    if cfg.batch_size < 1:
        raise RefbenchError(f"must be >= 1, got {cfg.batch_size}", key="search.batch_size")
    return cfg


class _Data:
    """Decoded images of the training split, cut into held-out / calibration / probe rows."""

    def __init__(self, rows: Any, size: int, resize: int | None, cfg: PinasSearchConfig) -> None:
        items = [(decode_image(r["image"]), int(r["label"])) for r in
                 rows.cast_column("image", _undecoded()) if int(r["label"]) >= 0]
        order = list(range(len(items)))
        random.Random(cfg.seed).shuffle(order)
        held = max(1, int(round(len(order) * cfg.heldout_ratio)))
        need = max(1, cfg.fitness.bn_iters) * cfg.batch_size
        if len(order) - held < cfg.batch_size:
            raise RefbenchError(f"{len(order)} labelled training rows: too few to hold out {held} "
                                f"and fill a batch of {cfg.batch_size}", key="search.batch_size")
        self.heldout = [items[i] for i in order[:held]]
        self.train = [items[i] for i in order[held:]]
        self.calib = self.train[:need] if len(self.train) >= need else self.train
        self.size, self.resize, self.batch = size, resize, cfg.batch_size
        self.epoch = 0

    def batches(self, items: list[tuple[Tensor, int]], train: bool, cycle: bool = False
                ) -> Callable[[], Iterator[tuple[Tensor, Tensor]]]:
        def make() -> Iterator[tuple[Tensor, Tensor]]:
            self.epoch += 1
            import numpy as np

            rng = np.random.default_rng((len(items), self.epoch))
            while True:
                for start in range(0, len(items) - (self.batch - 1 if train else 0), self.batch):
                    chunk = items[start:start + self.batch]
                    views = [train_view(x, self.size, rng) if train else
                             eval_view(x, self.size, self.resize) for x, _ in chunk]
                    yield torch.stack(views), torch.tensor([y for _, y in chunk])
                if not cycle:
                    return
        return make


def _undecoded() -> Any:
    import datasets as hf

    return hf.Image(decode=False)


class SupernetScorer:
    """A trained supernet ready to score architectures: the data cut (`_Data`), the shared
    probe trained once (official) or none (`per_arch`), then `score(code)` = BN
    recalibration of the path + probe top-1 on the held-out rows. Used by the search and
    by the ranking benchmark (`ranking.py`), so both score an architecture the same way."""

    def __init__(self, supernet_run: str | Path, cfg: PinasSearchConfig, *,
                 benchmark: str | None = None, cache_dir: str | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        from refbench.registry import get_spec
        from refbench.runner import load_rows, load_run_config

        say = progress or (lambda _line: None)
        self.cfg = cfg
        self.model = load_supernet(Path(supernet_run))
        self.run = load_run_config(Path(supernet_run))
        if benchmark is not None and \
                get_spec(benchmark).dataset != get_spec(self.run.benchmark).dataset:
            raise RefbenchError(f"the supernet was trained on {self.run.benchmark}, not on the "
                                f"dataset of {benchmark}", path=supernet_run)
        self.spec = get_spec(benchmark or self.run.benchmark)
        if cache_dir is not None:
            self.run.data.cache_dir = cache_dir
        rows, _ = load_rows(self.spec, self.run.data.train_split or self.spec.train_split, self.run)
        self.net = self.model.learner.supernet
        self.data = data = _Data(rows, self.model.image.size, self.model.image.eval_resize, cfg)
        torch.manual_seed(cfg.seed)
        self.calib = data.batches(data.calib, train=True, cycle=True)
        self.heldout = data.batches(data.heldout, train=False)
        self.head = None
        if cfg.fitness.probe == "shared":
            say(f"training the shared linear probe ({cfg.fitness.probe_epochs} epochs on "
                f"{len(data.train)} rows, a random path per batch)")
            self.head = train_shared_probe(self.net, data.batches(data.train, train=True),
                                           self.model.learner.classifier.out_features,
                                           cfg.fitness, torch.Generator().manual_seed(cfg.seed))

    def score(self, code: Sequence[int]) -> float:
        """Held-out probe top-1 (percent) of `code` after BN recalibration."""
        with torch.no_grad():
            return fitness(self.net, tuple(code), self.calib, self.heldout, self.cfg.fitness,
                           self.head, probe_train=self.data.batches(self.data.train, train=False))


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
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        scorer = SupernetScorer(supernet_run, cfg, benchmark=benchmark, cache_dir=cache_dir,
                                progress=lambda line: say(f"search: {line}"))
        net, data, model, run, spec = (scorer.net, scorer.data, scorer.model, scorer.run,
                                       scorer.spec)
        lanas = LanasSearch(net.space, cfg.lanas, cfg.seed)

        def show(entry: Scored, count: int) -> None:
            say(f"[{count}/{cfg.lanas.max_samples}] {entry.source:6s} "
                f"{net.space.format(entry.code)}  fitness {entry.fitness:.2f}")

        scored = lanas.run(scorer.score, show)
    finally:
        torch.set_num_threads(threads)
    best = lanas.best()
    summary = {
        "schema_version": 1, "search": "pinas", "supernet_run": str(supernet_run),
        "benchmark": spec.name, "method": model.cfg.method, "seed": cfg.seed,
        "settings": asdict(cfg), "rows": {"heldout": len(data.heldout),
                                          "calibration": len(data.calib),
                                          "probe_train": len(data.train)},
        "evaluated": len(scored), "space_size": net.space.size,
        "chosen": {"arch": net.space.format(best.code), "fitness": best.fitness,
                   "source": best.source},
        "recipe_file": RECIPE_FILE, "wall_time_s": round(time.time() - started, 3),
    }
    lines = [json.dumps({"rank": rank, "arch": net.space.format(s.code), "fitness": s.fitness,
                         "source": s.source, "leaf": s.leaf})
             for rank, s in enumerate(sorted(scored, key=lambda s: -s.fitness), 1)]
    recipe = _recipe(run.recipe, model.cfg.net, net.space.format(best.code), summary)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ranking.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(out / RECIPE_FILE, recipe)
    atomic_write_json(out / "search.json", summary)  # last: marks a finished search
    return summary


def retrain_recipe(net: Any, benchmark: str) -> str | None:
    """The shipped `pinas` recipe whose network shape equals the supernet's (`model.net`),
    preferring one made for `benchmark` (`pinas_tiny_digits` for the tiny digits supernet,
    `pinas_cls_imagenet-val` for the ResNeSt-50 one): its trainer settings retrain the
    searched code. None when no shipped recipe has that shape."""
    from refbench.config import load_recipe
    from refbench.registry import RECIPES

    shape = asdict(net)
    fitting = []
    for name in RECIPES.list("pinas_*"):
        try:
            data = load_recipe(name)
        except RefbenchError:
            continue
        theirs = data.get("model", {}).get("net", {})
        if data.get("baseline") == "pinas" and "image-classification" in data.get("tasks", []) \
                and {k: theirs.get(k, v) for k, v in shape.items()} == shape:
            fitting.append(name)
    fitting.sort(key=lambda n: (not n.endswith(f"_{benchmark}"), n))
    return fitting[0] if fitting else None


def _recipe(supernet_recipe: str | None, net: Any, arch: str, summary: Mapping[str, Any]) -> str:
    import yaml

    from refbench.config import load_recipe

    base = retrain_recipe(net, summary["benchmark"])
    # the shipped recipe's settings written out in full (a recipe's base may not have a base)
    body = load_recipe(base) if base else {}
    body.pop("recipe", None)
    body.update({"baseline": "pinas", "tasks": ["image-classification"]})
    body["model"] = {**body.get("model", {}), "arch": arch, "net": asdict(net)}
    head = [f"# Searched by `refbench search pinas` on {summary['benchmark']} from the "
            f"supernet {summary['supernet_run']} (recipe {supernet_recipe}),",
            f"# method {summary['method']}, seed {summary['seed']}: held-out probe top-1 "
            f"{summary['chosen']['fitness']:.2f}.",
            f"# Settings of the shipped recipe {base}, model.arch the searched code:" if base else
            "# No shipped recipe has this shape: add trainer: settings to retrain it.",
            f"#   refbench train pinas --benchmark {summary['benchmark']} --recipe THIS_FILE"]
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)


@SEARCHES.register("pinas", family="Pi-NAS (Peng et al., ICCV 2021)")
class PinasSearch(Search):
    """Pi-NAS's LaNAS-style search over a trained supernet (official search_phase.py).

    The first `initial_sample` codes (seeds, then random) are scored; then a tree of
    learned linear partitions (good/bad at the median fitness) is built over everything
    scored, `selects` codes are sampled from the UCB-chosen leaf, and the tree is rebuilt,
    until `max_samples`. Fitness: BN statistics of the path recalibrated on a training
    subset (49 batches officially), then the top-1 of a linear probe on held-out training
    rows. Tune with --set search.lanas.KEY / search.fitness.KEY / search.KEY.
    """

    summary = "Pi-NAS: LaNAS-style search of a trained pinas-supernet run (probe fitness)"
    options = (
        Option("supernet", "path", "Run folder of a `refbench train pinas-supernet` run."),
        Option("samples", "int", "Architectures to score (search.lanas.max_samples)."),
        Option("initial", "int", "Random architectures before the tree (initial_sample)."),
        Option("probe", "str", "Fitness probe: shared (official) or per_arch."),
        Option("seed", "int", "Seed of the held-out split and of the sampling."),
    )
    required = ("supernet",)

    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        items = self.as_overrides(options, {
            "samples": "lanas.max_samples", "initial": "lanas.initial_sample",
            "probe": "fitness.probe", "seed": "seed"}, overrides)
        summary = search(options["supernet"], out, items, benchmark=benchmark,
                         cache_dir=cache_dir, progress=progress)
        chosen = summary["chosen"]
        lines = [f"searched: {chosen['arch']}  fitness {chosen['fitness']:.2f} "
                 f"({summary['evaluated']} architectures scored)",
                 f"wrote {Path(out) / 'search.json'}, ranking.jsonl, {RECIPE_FILE}"]
        return SearchOutcome(Path(out), summary, lines)
