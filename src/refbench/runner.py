"""Orchestration of a run: recipe -> dataset -> baseline -> engine -> predictions -> result.

This is the glue between the registries and the model-agnostic engine. `train` writes
`runs/<name>/{config.yaml, metrics.jsonl, checkpoints/, predictions/, result.json}`;
`predict` rebuilds a trained baseline from its run folder and writes a submission file.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from refbench.config import RunConfig, check_recipe_task, dump_yaml, from_dict, to_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.baselines.base import Baseline
    from refbench.benchmarks.spec import BenchmarkSpec
    from refbench.results import Result

CONFIG_FILE = "config.yaml"


@dataclass
class RunSummary:
    run_dir: Path
    result: "Result | None"
    steps: int
    wall_time_s: float


def config_hash(config: RunConfig) -> str:
    """Hash of everything that determines the trained model (not paths or names)."""
    data = to_dict(config)
    for volatile in ("name", "output_dir", "tasks"):
        data.pop(volatile, None)
    data["data"].pop("cache_dir", None)
    data["trainer"].pop("progress", None)
    return hashlib.sha256(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:16]


def default_run_name(config: RunConfig) -> str:
    recipe = config.recipe or config.baseline
    return f"{recipe}-{config.benchmark}-s{config.trainer.seed}"


def run_dir_of(config: RunConfig) -> Path:
    return Path(config.output_dir) / (config.name or default_run_name(config))


def load_rows(spec: "BenchmarkSpec", split: str, config: RunConfig) -> tuple["hf_datasets.Dataset", bool]:
    """The split's rows, cut to `data.limit`; the flag says whether rows were cut."""
    from refbench.datasets.base import load_prepared

    _require_prepared(spec, config)
    rows = load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                         cache_dir=config.data.cache_dir)
    if config.data.limit is not None and config.data.limit < len(rows):
        return rows.select(range(config.data.limit)), True
    return rows, False


def stream_rows(spec: "BenchmarkSpec", config: RunConfig, model: "Baseline",
                train_rows: "hf_datasets.Dataset") -> tuple[Any, Callable[[list], Any]]:
    """The training split as a stream (`data.streaming`) and the collate that turns a
    micro-batch of streamed rows into the model's batch (its own `encode`, then `collate`).

    The prepared table still gives the split's size and the rows `create` built the model
    from (a tokenizer's corpus); training reads the stream.
    """
    import datasets as hf_datasets

    from refbench.datasets.base import load_prepared
    from refbench.engine.streaming import StreamingRows

    if config.data.limit is not None:
        raise RefbenchError("data.limit cuts the random-access table; it does not apply to a "
                            "streamed split (drop --limit or data.streaming)", key="data.limit")
    stream = load_prepared(spec.dataset.name, split=config.data.train_split or spec.train_split,
                           config=spec.dataset.config, cache_dir=config.data.cache_dir,
                           streaming=True)
    rows = StreamingRows(stream, len(train_rows), seed=config.trainer.seed,
                         workers=config.data.workers, shuffle_buffer=config.data.shuffle_buffer)
    schema = train_rows.features

    def collate(batch: list[dict[str, Any]]) -> Any:
        table = hf_datasets.Dataset.from_list(batch, features=schema)
        return model.collate(model.encode(table))

    return rows, collate


def _require_prepared(spec: "BenchmarkSpec", config: RunConfig) -> None:
    """Say how to prepare the benchmark's dataset config into the cache the run reads when it
    is missing there (a missing dataset is reported by `read_manifest` the same way)."""
    from refbench.datasets.base import default_cache_dir, get_builder, read_manifest

    cache = Path(config.data.cache_dir) if config.data.cache_dir else default_cache_dir()
    name, wanted = spec.dataset.name, spec.dataset.config
    prepared = list(read_manifest(get_builder(name).cache_path(cache)).get("splits") or {})
    if wanted is not None and wanted not in prepared:
        raise RefbenchError(f"config {wanted!r} of dataset {name} is not prepared in the cache "
                            f"{cache} (prepared: {', '.join(prepared) or 'none'}); run `refbench "
                            f"datasets prepare {name} --root DIR -c {wanted}` with the same "
                            f"--cache-dir or REFBENCH_CACHE (they choose the cache folder)")


def predict_rows(model: "Baseline", rows: "hf_datasets.Dataset", batch_size: int) -> dict[Any, Any]:
    """Run `model.predict` over rows in order, each batch on the model's device; returns
    `{id: value}`."""
    import torch

    from refbench.engine.device import model_device, to_device

    features = model.encode(rows)
    device = model_device(model)
    preds = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            batch = model.collate(features[start:start + batch_size])
            preds.extend(model.predict(to_device(batch, device)))
    model.train(was_training)
    return model.finalize(rows, features, preds)


def write_predictions(spec: "BenchmarkSpec", predictions: dict[Any, Any], path: Path) -> Path:
    from refbench.benchmarks.formats import FORMATS

    FORMATS.get(spec.submission.format)().write(path, predictions, spec)
    return path


def companions(spec: "BenchmarkSpec", path: Path) -> dict[str, Any]:
    from refbench.benchmarks.formats import FORMATS

    return FORMATS.get(spec.submission.format)().companions(path, spec)


def _model_info(config: RunConfig, model: "Baseline") -> Any:
    from refbench.results import ModelInfo

    params = sum(p.numel() for p in model.parameters())
    return ModelInfo(name=config.baseline, params=params, recipe=config.recipe,
                     config_hash=config_hash(config))


def _steps_for(config: RunConfig, n_train: int) -> int:
    if config.trainer.epochs is not None:
        return max(1, math.ceil(config.trainer.epochs * n_train / config.trainer.batch_size))
    return config.trainer.max_steps


def train(config: RunConfig, resume: bool = False) -> RunSummary:
    """Train a baseline on a benchmark's training split and score its predictions."""
    from refbench.benchmarks.scoring import check_metric_options, evaluate_file
    from refbench.engine import DistContext, Trainer, load_model_weights
    from refbench.engine.trainer import check_resume
    from refbench.registry import BASELINES, get_spec

    started = time.time()
    spec = get_spec(config.benchmark)
    check_recipe_task(config, spec.task.type)  # before the model keys: it names the cause
    baseline_cls = BASELINES.get(config.baseline)
    baseline_cls.validate_config(config.model, spec)  # before anything is written
    if config.init_from is not None:
        baseline_cls.check_init_from(config.init_from, config.model, spec)
    decided = baseline_cls.configure_trainer(config.model, spec, config.trainer)
    options = check_metric_options(spec, config.evaluation, key="evaluation")
    run_dir = run_dir_of(config)
    ckpts = run_dir / "checkpoints"
    if not resume and ckpts.exists() and any(ckpts.iterdir()):
        raise RefbenchError("run folder already holds checkpoints; pass --resume to continue it "
                            "or --name for a new run", path=run_dir)
    if resume and not ckpts.exists():
        raise RefbenchError("nothing to resume: no checkpoints", path=run_dir)
    train_rows, _ = load_rows(spec, config.data.train_split or spec.train_split, config)
    eval_split = config.data.eval_split or spec.split
    eval_rows, cut = load_rows(spec, eval_split, config)
    # a `--limit` smoke run is scored on the rows it used, and its result says so
    subset = eval_rows if cut else None
    config.trainer.max_steps = _steps_for(config, len(train_rows))
    if resume:  # refused settings must not overwrite the run's config.yaml
        check_resume(run_dir, config.trainer)
    dist = DistContext.from_env()
    try:
        if dist.is_main:
            for line in decided:  # recorded in config.yaml too
                print(f"refbench: {line}", file=sys.stderr, flush=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(config))
        _seed_all(config.trainer.seed)
        if not dist.is_main:
            dist.barrier()  # rank 0 builds the tokenizer first
        model = baseline_cls.create(config.model, spec, train_rows, run_dir, config.init_from)
        model.bind_splits(lambda name: _rows_all(spec, name, config))
        if dist.is_main:
            dist.barrier()
        features, collate = model.encode(train_rows), model.collate
        if config.data.streaming:
            features, collate = stream_rows(spec, config, model, train_rows)
        pred_dir = run_dir / "predictions"

        def evaluate(module: Any) -> dict[str, float]:
            preds = predict_rows(module, eval_rows, config.trainer.eval_batch_size)
            path = write_predictions(spec, preds, pred_dir / f"{eval_split}.eval")
            return evaluate_file(spec, path, split=eval_split, cache_dir=config.data.cache_dir,
                                 rows=subset, read_options=companions(spec, path),
                                 metric_options=options).metrics

        trainer = Trainer(model, config.trainer, run_dir, features, collate,
                          evaluate=evaluate, primary=spec.primary,
                          higher_is_better=_primary_higher_is_better(spec), dist=dist)
        fit = trainer.fit(resume=resume)
        result = None
        if dist.is_main:
            chosen, is_best = _best_or_last(run_dir)
            load_model_weights(model, chosen)
            preds = predict_rows(model, eval_rows, config.trainer.eval_batch_size)
            path = write_predictions(spec, preds, pred_dir / spec.submission.filename)
            result = evaluate_file(spec, path, split=eval_split, cache_dir=config.data.cache_dir,
                                   rows=subset, model=_model_info(config, model),
                                   seed=config.trainer.seed, read_options=companions(spec, path),
                                   metric_options=options)
            # the run's time (training and evaluation), not only the final scoring's
            result.provenance.wall_time_s = round(time.time() - started, 3)
            result.selection = selection_of(chosen, eval_split, spec.primary,
                                            fit.best_step if is_best else None)
            result.write(run_dir / "result.json")
        dist.barrier()
    finally:
        dist.close()
    return RunSummary(run_dir, result, fit.step, time.time() - started)


def _primary_higher_is_better(spec: "BenchmarkSpec") -> bool:
    from refbench.registry import METRICS

    entry = METRICS.entry(spec.metric.name)
    metric = entry.obj(**spec.metric.kwargs())
    return metric.higher_is_better(spec.primary, entry.meta.get("higher_is_better", True)) is not False


def selection_of(chosen: Path, split: str, primary: str,
                 best_step: int | None) -> dict[str, Any]:
    """How the scored checkpoint was chosen, for result.json: the best `primary` on the
    evaluation split (never the test split unless the run evaluates on it), or the last
    checkpoint when no evaluation produced the key."""
    if best_step is not None:
        return {"split": split, "key": primary, "rule": f"best {primary} on {split}",
                "step": int(best_step), "checkpoint": chosen.name}
    return {"split": split, "key": primary, "rule": "last checkpoint (no evaluation chose one)",
            "step": None, "checkpoint": chosen.name}


def _best_or_last(run_dir: Path) -> tuple[Path, bool]:
    """The best checkpoint (True) or, when no evaluation produced the primary metric, the
    last one (False)."""
    from refbench.engine import find_checkpoint

    try:
        return find_checkpoint(run_dir, "best"), True
    except RefbenchError:  # no evaluation produced the primary metric
        return find_checkpoint(run_dir, "last"), False


def _seed_all(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise RefbenchError("not a run folder (no config.yaml)", path=run_dir)
    return from_dict(RunConfig, yaml.safe_load(path.read_text(encoding="utf-8")))


def predict(run_dir: Path, split: str, output: Path, which: str = "best",
            cache_dir: str | None = None) -> Path:
    """Rebuild a trained baseline from its run folder and write a submission file."""
    from refbench.engine import find_checkpoint, load_model_weights
    from refbench.registry import BASELINES, get_spec

    config = load_run_config(run_dir)
    if cache_dir is not None:
        config.data.cache_dir = cache_dir
    spec = get_spec(config.benchmark)
    model = BASELINES.get(config.baseline).restore(config.model, spec, Path(run_dir))
    model.bind_splits(lambda name: _rows_all(spec, name, config))
    load_model_weights(model, find_checkpoint(Path(run_dir), which))  # type: ignore[arg-type]
    rows = _rows_all(spec, split, config)
    preds = predict_rows(model, rows, config.trainer.eval_batch_size)
    return write_predictions(spec, preds, Path(output))


def _rows_all(spec: "BenchmarkSpec", split: str, config: RunConfig) -> "hf_datasets.Dataset":
    from refbench.datasets.base import load_prepared

    return load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                         cache_dir=config.data.cache_dir)

