"""Scoring of prediction files: the one code path behind `refbench evaluate`, the runner's
final evaluation and the leaderboard.

Predictions are always read from a file in the benchmark's submission format, so a local
run, a user's file and a leaderboard submission are scored identically.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from refbench import __version__
from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.benchmarks.spec import BenchmarkSpec
from refbench.registry import get_spec
from refbench.errors import RefbenchError
from refbench.io import sha256_path
from refbench.options import Option, parse_option_args
from refbench.results import ModelInfo, Provenance, Result, git_commit, hardware_string

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets


def label_set_sha256(references: Mapping[Any, Any]) -> str:
    """A hash of the reference labels actually used (ids and values, order-free)."""
    items = sorted((json.dumps(k, default=str), json.dumps(v, default=str))
                   for k, v in references.items())
    digest = hashlib.sha256()
    for key, value in items:
        digest.update(f"{key}\t{value}\n".encode())
    return digest.hexdigest()


def align(predictions: Mapping[Any, Any], references: Mapping[Any, Any], source: Path,
          allow_missing: bool) -> tuple[list[Any], list[Any], dict[str, int]]:
    """Pair predictions with references by id; missing / extra ids are errors unless the
    format scores missing ids the way its official script does."""
    extra = [k for k in predictions if k not in references]
    if extra:
        raise RefbenchError(f"{len(extra)} prediction id(s) not in the references, first "
                            f"{extra[0]!r}", path=source)
    missing = [k for k in references if k not in predictions]
    if missing and not allow_missing:
        raise RefbenchError(f"{len(missing)} id(s) of the references have no prediction, first "
                            f"{missing[0]!r}", path=source)
    keys = list(references)
    preds = [predictions.get(k) for k in keys]
    refs = [references[k] for k in keys]
    counts = {"references": len(references), "predictions": len(predictions),
              "missing": len(missing)}
    return preds, refs, counts


def declared_options(spec: BenchmarkSpec) -> tuple[tuple[Option, ...], tuple[Option, ...]]:
    """The run-time options of a benchmark: its format's read options and its metric's."""
    from refbench.registry import METRICS

    fmt = FORMATS.get(spec.submission.format)
    return tuple(fmt.read_options), tuple(METRICS.get(spec.metric.name).options)


def benchmark_options(spec: BenchmarkSpec, pairs: list[str] | tuple[str, ...] = (),
                      extra: list[str] | tuple[str, ...] = ()
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--option key=value` items and generated flags -> (read options, metric options)."""
    read, metric = declared_options(spec)
    values = parse_option_args((*read, *metric), pairs, extra, what=f"benchmark {spec.name}")
    names = {o.name for o in read}
    return ({k: v for k, v in values.items() if k in names},
            {k: v for k, v in values.items() if k not in names})


def check_metric_options(spec: BenchmarkSpec, values: Mapping[str, Any],
                         key: str = "option") -> dict[str, Any]:
    """Fixed metric options (a run's `evaluation:` section, a leaderboard's board settings)
    checked against what the benchmark's metric declares; strings are parsed by type."""
    from refbench.registry import METRICS

    declared = {o.name: o for o in METRICS.get(spec.metric.name).options}
    out = {}
    for name, value in values.items():
        if name not in declared:
            raise RefbenchError(f"metric {spec.metric.name} has no option {name!r} (its options: "
                                f"{', '.join(declared) or 'none'})", key=f"{key}.{name}")
        out[name] = declared[name].parse(value) if isinstance(value, str) else value
    return out


def compute_metrics(spec: BenchmarkSpec, preds: list[Any], refs: list[Any],
                    options: Mapping[str, Any] | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Run the spec's metric (with its arguments plus run-time `options`, e.g. SQuAD's
    `na_prob_thresh`) over aligned predictions and references."""
    from refbench.registry import METRICS

    entry = METRICS.entry(spec.metric.name)
    registered = str(entry.meta.get("version", "1"))
    if registered != spec.metric.version:
        raise RefbenchError(f"benchmark {spec.key} wants metric {spec.metric.name} version "
                            f"{spec.metric.version}, this refbench has version {registered}")
    metric = entry.obj(**{**spec.metric.kwargs(), **dict(options or {})})
    metric.update(preds, refs)
    values = metric.compute()
    default = bool(entry.meta.get("higher_is_better", True))
    for key, value in values.items():
        if not math.isfinite(value):
            raise RefbenchError(f"metric {spec.metric.name} produced a non-finite {key}")
    names = {True: "higher", False: "lower", None: "none"}
    directions = {k: names[metric.higher_is_better(k, default)] for k in values}
    if spec.primary in directions and directions[spec.primary] == "none":
        raise RefbenchError(f"benchmark {spec.key}: primary key {spec.primary!r} is not a score")
    if spec.primary not in values:
        raise RefbenchError(f"benchmark {spec.key}: primary key {spec.primary!r} not produced by "
                            f"metric {spec.metric.name} (keys: {', '.join(values)})")
    return {k: float(v) for k, v in values.items()}, directions


def evaluate_file(benchmark: str | BenchmarkSpec, predictions: str | Path,
                  references: str | Path | None = None, *, split: str | None = None,
                  cache_dir: str | None = None, model: ModelInfo | None = None,
                  seed: int | None = None, rows: "hf_datasets.Dataset | None" = None,
                  read_options: Mapping[str, Any] | None = None,
                  metric_options: Mapping[str, Any] | None = None) -> Result:
    """Score a prediction file against an official label file/folder (`references`), the
    given prepared rows (`rows`, e.g. a `--limit` subset) or the whole prepared split."""
    started = time.time()
    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else get_spec(benchmark)
    pred_path = Path(predictions)
    if not pred_path.exists():
        raise RefbenchError("prediction file not found", path=pred_path)
    fmt: SubmissionFormat = FORMATS.get(spec.submission.format)()
    if pred_path.is_dir() and not fmt.is_folder:
        raise RefbenchError(f"expected a prediction file ({spec.submission.filename}), got a "
                            f"folder", path=pred_path)
    if not pred_path.is_dir() and fmt.is_folder:
        raise RefbenchError(f"expected a prediction folder ({spec.submission.filename}/), got a "
                            f"file", path=pred_path)
    preds_map = fmt.read(pred_path, spec, read_options)
    fingerprint = None
    used_split = split or spec.split
    if split is not None:  # a release's own split name (KITTI `val`) is recorded as refbench's
        from refbench.datasets.base import get_builder

        used_split = get_builder(spec.dataset.name).canonical_split(split)
    if references is not None:
        ref_path = Path(references)
        if not ref_path.exists():
            raise RefbenchError("references not found", path=ref_path)
        refs_map = fmt.read_references(ref_path, spec)
    elif fmt.references_required:
        raise RefbenchError(f"benchmark {spec.name} is scored against an official label folder: "
                            f"pass --references (for example the dataset's root folder)")
    else:
        from refbench.datasets.base import dataset_fingerprint, load_prepared

        if rows is None:
            rows = load_prepared(spec.dataset.name, split=used_split, config=spec.dataset.config,
                                 cache_dir=cache_dir)
        else:
            used_split = f"{used_split}[:{len(rows)}]"
        refs_map = fmt.references_from_dataset(rows, spec)
        fingerprint = dataset_fingerprint(spec.dataset.name, cache_dir)
    if not refs_map:
        raise RefbenchError("the references hold no labelled example", path=references)
    preds, refs, counts = align(preds_map, refs_map, pred_path, fmt.allow_missing)
    metrics, directions = compute_metrics(spec, preds, refs, metric_options)
    return Result(
        benchmark=spec.name, benchmark_version=spec.version, split=used_split, metrics=metrics,
        directions=directions, primary=spec.primary, model=model, counts=counts,
        provenance=Provenance(
            refbench_version=__version__, git_commit=git_commit(), dataset_fingerprint=fingerprint,
            label_set_sha256=label_set_sha256(refs_map), predictions_sha256=sha256_path(pred_path),
            seed=seed, hardware=hardware_string(), wall_time_s=round(time.time() - started, 3)),
    )
