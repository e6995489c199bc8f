"""EfficientBERT as a client of the ranking-consistency benchmark
(`refbench.baselines.nas.ranking`), registered as `refbench search efficientbert-ranking`.

Does the EfficientBERT supernet rank FFN architectures like their stand-alone distilled
students? Here:

- architectures: N distinct architectures of the search's joint stage (random expressions
  and linear types, every layer its own) inside the search's parameter budget, drawn from a
  seed; filed under their integer codes (`encoding`: `5.26.3.26.0.1.2/...`);
- ground truth: each one distilled stand-alone from fresh weights, exactly as
  `standalone.StandaloneTrainer` trains the searched architecture in
  `perf/efficientbert_search.py` (the recipe's trainer, the same batches, the search's
  distillation loss from the same teacher), its primary metric (accuracy, %) on the
  benchmark's validation split, which neither the supernet nor the fitness reads;
- supernets: the search's warm-up distillation (`search.warmup_steps` steps on the training
  rows the search trains on), one per method and seed. Methods: `sampled` (a random
  joint-stage candidate per step: single-path uniform sampling, the search's default) and
  `largest` (the 4-stack full-width BERT FFN every step, the official stage-1/2 supernet
  pre-training);
- scores: the search's own fitness (`_Searcher.fitness`, the joint stage's seeds): from the
  trained supernet, `search.proxy_steps` steps of the candidate alone, then the
  `search.proxy` on the held-out part of the training split, as one larger-is-better
  number (losses negated).

Every training and scoring is a job (`train_standalone`, `train_supernet`, `score_archs`)
of the one job pool. Finished stand-alone trainings and supernets are kept in their folders
with the settings they were made with and reused when asked for again, so an interrupted
benchmark continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from refbench.baselines.nas.ranking import RankingSettings, Supernet, run_ranking, summary_lines
from refbench.baselines.nlp.efficientbert.encoding import code_of, code_space, expressions_of
from refbench.datasets.nasbench.spaces import SearchSpace
from refbench.engine.jobs import Job
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.options import Option
from refbench.registry import SEARCHES
from refbench.search import Search, SearchOutcome

TARGETS = "refbench.baselines.nlp.efficientbert.ranking"
#: supernet training methods (module docstring)
METHODS = ("sampled", "largest")
SUPERNET_FILE, SUPERNET_META = "supernet.safetensors", "supernet.json"


def _settings_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _reuse(path: Path, digest: str) -> dict[str, Any] | None:
    """The JSON record at `path` when it was written with the same settings."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("settings_hash") == digest else None


def _common(benchmark: str, teacher: str, recipe: str, overrides: Sequence[str],
            cache_dir: str | None) -> dict[str, Any]:
    return {"benchmark": benchmark, "teacher": teacher, "recipe": recipe,
            "overrides": list(overrides), "cache_dir": cache_dir}


# -- jobs -------------------------------------------------------------------------------------
def train_standalone(benchmark: str, teacher: str, recipe: str, overrides: Sequence[str],
                     cache_dir: str | None, arch: str, seed: int, out: str,
                     steps: int | None = None) -> float:
    """Job: `arch` (a code) distilled stand-alone with `seed`; its validation metric."""
    from refbench.baselines.nlp.efficientbert.standalone import StandaloneTrainer

    trainer = StandaloneTrainer(benchmark, teacher, recipe, overrides, cache_dir=cache_dir,
                                steps=steps)
    layers = trainer.setup.student.num_layers
    exprs = expressions_of(arch, layers)
    digest = _settings_hash({**_common(benchmark, str(teacher), recipe, overrides, None),
                             "arch": arch, "seed": seed, "steps": trainer.steps})
    record = Path(out) / f"{hashlib.sha256(arch.encode()).hexdigest()[:12]}-s{seed}.json"
    done = _reuse(record, digest)
    if done is not None:
        return float(done["metric"])
    result = trainer.train(exprs, seed)
    if result.metric is None:
        raise RefbenchError(f"stand-alone training of {arch} (seed {seed}) diverged (NaN loss)")
    atomic_write_json(record, {"settings_hash": digest, "arch": arch, "metric": result.metric,
                               "split": trainer.split, **result.to_json(trainer.primary)})
    return float(result.metric)


def _searcher(benchmark: str, teacher: str, recipe: str, overrides: Sequence[str],
              cache_dir: str | None, seed: int) -> Any:
    from refbench.baselines.nlp.efficientbert.search import _prepare, _Searcher

    setup = _prepare(benchmark, teacher, recipe, [*overrides, f"search.seed={seed}"], cache_dir)
    return _Searcher(setup, lambda _line: None)


def _heldout_digest(searcher: Any) -> str:
    """Which training rows the search holds out (a supernet must never have trained on the
    rows its fitness is scored on)."""
    rows = [f["input_ids"] for f in searcher.heldout]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def train_supernet(benchmark: str, teacher: str, recipe: str, overrides: Sequence[str],
                   cache_dir: str | None, method: str, seed: int, out: str) -> str:
    """Job: the search's joint-stage warm-up of `method` with `seed`; its folder."""
    from refbench.baselines.nlp.efficientbert.sampler import StageSampler
    from refbench.baselines.nlp.efficientbert.space import LinearType
    from refbench.baselines.nlp.efficientbert.supernet import (Architecture, plain_expression,
                                                               write_weights)

    if method not in METHODS:
        raise RefbenchError(f"unknown supernet method {method!r} (known: {', '.join(METHODS)})",
                            key="methods")
    folder = Path(out) / f"{method}-s{seed}"
    digest = _settings_hash({**_common(benchmark, str(teacher), recipe, overrides, None),
                             "method": method, "seed": seed})
    if _reuse(folder / SUPERNET_META, digest) is not None and (folder / SUPERNET_FILE).is_file():
        return str(folder)
    searcher = _searcher(benchmark, teacher, recipe, overrides, cache_dir, seed)
    s, cfg = searcher.s, searcher.cfg
    stage_seed = s.seed * 1000 + 1  # the joint stage's seed in `_Searcher.stage`
    current = Architecture.parse(s.student.ffn_expressions)
    sampler = StageSampler("joint", current, s.budget, random.Random(stage_seed),
                           cfg.mutation_steps, cfg.tries)
    largest = Architecture((plain_expression(LinearType(4, 1)),) * len(current))
    pick = (lambda: largest) if method == "largest" else sampler.random
    torch.manual_seed(stage_seed)
    loss = searcher.train_steps(cfg.warmup_steps, stage_seed, pick) if cfg.warmup_steps else None
    write_weights(folder / SUPERNET_FILE, searcher.net.state_dict())
    atomic_write_json(folder / SUPERNET_META, {
        "settings_hash": digest, "method": method, "seed": seed, "benchmark": benchmark,
        "teacher": str(teacher), "recipe": recipe, "overrides": list(overrides),
        "warmup_steps": cfg.warmup_steps, "warmup_loss": loss,
        "heldout_rows": len(searcher.heldout), "heldout_sha256": _heldout_digest(searcher)})
    return str(folder)


def score_archs(benchmark: str, teacher: str, recipe: str, overrides: Sequence[str],
                cache_dir: str | None, run: str, seed: int,
                archs: Sequence[str]) -> dict[str, float]:
    """Job: every code's search fitness (larger is better) from the supernet in `run`."""
    from refbench.baselines.nlp.efficientbert.sampler import Candidate
    from refbench.baselines.nlp.efficientbert.supernet import Architecture, load_weights

    path = Path(run) / SUPERNET_FILE
    if not path.is_file():
        raise RefbenchError("no trained supernet here", path=path)
    searcher = _searcher(benchmark, teacher, recipe, overrides, cache_dir, seed)
    try:
        meta = json.loads((Path(run) / SUPERNET_META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RefbenchError(f"cannot read the supernet record ({exc})", path=run) from None
    if meta.get("heldout_sha256") != _heldout_digest(searcher):
        raise RefbenchError("the supernet was trained with another held-out split than this "
                            "scoring uses (search.seed / search.val_ratio / data differ)",
                            path=Path(run) / SUPERNET_META)
    snapshot = load_weights(searcher.net, path)
    layers = searcher.s.student.num_layers
    stage_seed = searcher.s.seed * 1000 + 1
    out = {}
    for order, code in enumerate(archs):
        arch = Architecture.parse(expressions_of(code, layers))
        cand = Candidate("joint", 1, order, "ranking", arch, searcher.s.budget.params(arch.types),
                         "")
        cand.metric, cand.heldout_loss, cand.pred_loss = searcher.fitness(
            arch, snapshot, searcher.cfg.proxy_steps, stage_seed + 1)
        out[code] = cand.fitness(searcher.cfg.proxy)
    return out


# -- the client -------------------------------------------------------------------------------
@dataclass
class EfficientBertRankingClient:
    """The EfficientBERT side of the `RankingClient` protocol (module docstring)."""

    teacher: str
    benchmark: str = "glue-sst2"
    recipe: str = "efficientbert_tiny_glue"
    #: `--set` items of the search (`search.*`, `model.*`, `trainer.*`)
    overrides: tuple[str, ...] = ()
    standalone_steps: int | None = None
    cache_dir: str | None = None
    name: str = "efficientbert"

    def __post_init__(self) -> None:
        from refbench.baselines.nlp.efficientbert.search import _prepare

        self.setup = _prepare(self.benchmark, self.teacher, self.recipe, self.overrides,
                              self.cache_dir)
        self.layers = self.setup.student.num_layers

    def _common(self) -> dict[str, Any]:
        return _common(self.benchmark, str(self.teacher), self.recipe, self.overrides,
                       self.cache_dir)

    def space(self) -> SearchSpace:
        return code_space(self.layers)

    def sample(self, n: int, seed: int) -> list[str]:
        """`n` distinct joint-stage architectures inside the search's budget, from `seed`."""
        from refbench.baselines.nlp.efficientbert.sampler import StageSampler
        from refbench.baselines.nlp.efficientbert.supernet import Architecture

        s = self.setup
        current = Architecture.parse(s.student.ffn_expressions)
        sampler = StageSampler("joint", current, s.budget, random.Random(seed),
                               s.cfg.mutation_steps, s.cfg.tries)
        codes: dict[str, None] = {}
        for _ in range(max(s.cfg.tries, 20 * n)):
            if len(codes) == n:
                break
            codes.setdefault(code_of(sampler.random().expressions), None)
        if len(codes) < n:
            raise RefbenchError(f"found only {len(codes)} distinct architectures in the budget "
                                f"after {max(s.cfg.tries, 20 * n)} draws, fewer than {n}",
                                key="archs")
        return list(codes)

    def standalone_job(self, arch: str, seed: int, out: Path) -> Job:
        return Job(f"standalone {arch} s{seed}", f"{TARGETS}:train_standalone",
                   {**self._common(), "arch": arch, "seed": seed, "out": str(out),
                    "steps": self.standalone_steps})

    def supernet_job(self, method: str, seed: int, out: Path) -> Job:
        return Job(f"supernet {method} s{seed}", f"{TARGETS}:train_supernet",
                   {**self._common(), "method": method, "seed": seed, "out": str(out)})

    def describe_supernet(self, run: str) -> tuple[str, int]:
        path = Path(run) / SUPERNET_META
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            return str(meta["method"]), int(meta["seed"])
        except FileNotFoundError:
            raise RefbenchError("not an efficientbert-ranking supernet folder (no "
                                f"{SUPERNET_META})", path=run) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise RefbenchError(f"malformed supernet record ({exc})", path=path) from None

    def score_job(self, supernet: Supernet, archs: Sequence[str], out: Path) -> Job:
        return Job(f"score {supernet.method} s{supernet.seed}", f"{TARGETS}:score_archs",
                   {**self._common(), "run": supernet.run, "seed": supernet.seed,
                    "archs": list(archs)})

    def provenance(self) -> dict[str, Any]:
        from dataclasses import asdict

        from refbench.datasets.base import dataset_fingerprint

        s = self.setup
        try:
            fingerprint = dataset_fingerprint(s.spec.dataset.name, self.cache_dir)
        except RefbenchError:
            fingerprint = None
        return {"benchmark": self.benchmark, "truth_split": s.spec.split,
                "truth_metric": s.spec.primary, "teacher": str(self.teacher),
                "supernet_recipe": self.recipe, "standalone_recipe": self.recipe,
                "overrides": list(self.overrides),
                "standalone_steps": self.standalone_steps or s.run.trainer.max_steps,
                "search": asdict(s.cfg), "score_label": f"supernet fitness (held-out "
                f"{s.cfg.proxy}{', negated' if s.cfg.proxy != 'metric' else ''}, "
                f"{s.cfg.proxy_steps} proxy steps)",
                "budget": [s.budget.min_params, s.budget.max_params],
                "dataset_fingerprint": fingerprint}


# -- the registered benchmark ---------------------------------------------------------------------
def _ints(text: Any, key: str) -> list[int]:
    try:
        return [int(t) for t in str(text).replace(" ", "").split(",") if t]
    except ValueError:
        raise RefbenchError(f"expected comma-separated integers, got {text!r}", key=key) from None


@SEARCHES.register("efficientbert-ranking", family="EfficientBERT (Dong et al., 2021)")
class EfficientBertRankingSearch(Search):
    """The ranking-consistency benchmark of the EfficientBERT supernet
    (`baselines/nas/ranking.py`).

    Samples --archs architectures of the search's joint stage inside its parameter budget
    (--sample-seed), distils each stand-alone from the --teacher once per --truth-seeds (the
    ground truth: accuracy on the validation split), warms up one supernet per --methods
    (sampled, largest) x --supernet-seeds as the search does, or scores the given
    --supernets folders, scores every architecture with the search's fitness (proxy steps
    of the candidate alone, then the held-out proxy), and reports Kendall tau-b, Spearman
    rho, P@k and the top pick's stand-alone accuracy per supernet and per method. All
    trainings and scorings are jobs of the job pool (--workers local processes, or Ray with
    --address). Tune with --set search.KEY=V, model.KEY=V and trainer.KEY=V (as `search
    efficientbert`; trainer.* sets the stand-alone training).
    """

    summary = "EfficientBERT: ranking consistency of the supernet's fitness vs stand-alone students"
    options = (
        Option("teacher", "path", "Run folder of a `refbench train bert` teacher of the same task."),
        Option("recipe", "str", "Student recipe (sizes, budget, stand-alone trainer).",
               "efficientbert_tiny_glue"),
        Option("methods", "str", "Supernet methods to compare (sampled, largest), "
                                 "comma-separated.", "sampled,largest"),
        Option("supernets", "str", "Trained supernet folders to score instead (comma-separated; "
                                   "method and seed read from each)."),
        Option("archs", "int", "N: architectures sampled from the space.", 8),
        Option("sample_seed", "int", "Seed of the architecture sample.", 0),
        Option("truth_seeds", "str", "Stand-alone trainings per architecture: their seeds.",
               "0,1"),
        Option("supernet_seeds", "str", "Supernet seeds per method.", "0,1"),
        Option("standalone_steps", "int", "Steps of every stand-alone training (default: the "
                                          "recipe's trainer.max_steps)."),
        Option("ks", "str", "k of precision@k, comma-separated.", "3"),
        Option("workers", "int", "Parallel local jobs (default: one per core)."),
        Option("address", "str", "Ray address (auto, ray://host:10001, local); default: local "
                                 "processes."),
    )
    required = ("teacher",)

    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        client = EfficientBertRankingClient(
            teacher=str(options["teacher"]), benchmark=benchmark,
            recipe=str(options.get("recipe") or "efficientbert_tiny_glue"),
            overrides=tuple(overrides), standalone_steps=options.get("standalone_steps"),
            cache_dir=cache_dir)
        methods = [m.strip() for m in str(options.get("methods") or "").split(",") if m.strip()]
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise RefbenchError(f"unknown supernet method(s) {unknown} (known: "
                                f"{', '.join(METHODS)})", key="methods")
        supernets = [s.strip() for s in str(options.get("supernets") or "").split(",")
                     if s.strip()]
        settings = RankingSettings(
            archs=int(options.get("archs") or 8), sample_seed=int(options.get("sample_seed") or 0),
            truth_seeds=_ints(options.get("truth_seeds") or "0,1", "truth_seeds"),
            methods=methods,
            supernet_seeds=_ints(options.get("supernet_seeds") or "0,1", "supernet_seeds"),
            supernets=supernets, ks=_ints(options.get("ks") or "3", "ks"),
            workers=options.get("workers"), address=options.get("address"))
        summary = run_ranking(client, settings, Path(out), progress)
        return SearchOutcome(Path(out), summary, summary_lines(summary, Path(out)))
