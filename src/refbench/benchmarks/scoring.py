"""Scoring of prediction files: the one code path behind `refbench evaluate`, the runner's
final evaluation and the leaderboard.

Predictions are always read from a file in the benchmark's submission format, so a local
run, a user's file and a leaderboard submission are scored identically.

Missing and extra ids follow one policy for every format (`check_ids`): a missing
prediction is scored as the official tool scores it and an extra id is ignored as the
official tools ignore it, unless the format declares otherwise (`SubmissionFormat.missing`,
`.extra`); both are always reported, as one warning line and as counts (`references`,
`predictions`, `missing`, `extra`, `scored`). Strict scoring (`--strict`, the leaderboard)
refuses them. A metric's own reference counts and warnings (`Metric.counts()`,
`.warnings()`) join the result's.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

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


#: how many ids a warning or an error line quotes
FIRST_IDS = 3
#: the id counts every result carries (metric counts are namespaced and never use these)
ID_COUNTS = ("references", "predictions", "missing", "extra", "scored")


def show_ids(ids: Sequence[Any], first: int = FIRST_IDS) -> str:
    """The first few ids for a one-line message: tuples as `a/b`, then `...` if cut."""
    shown = ["/".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in ids[:first]]
    return ", ".join(shown) + (", ..." if len(ids) > first else "")


@dataclass(frozen=True)
class IdCheck:
    """How a prediction file's ids meet the references': the ids without a prediction
    (`missing`) and the predicted ids outside the references (`extra`), in file order."""

    references: int
    predictions: int
    missing: list[Any]
    extra: list[Any]
    #: whether the extra ids are scored (their format's tool scores them) or ignored
    extra_scored: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """`references`, `predictions`, `missing`, `extra` and `scored`: the ids the metric
        scores (every reference, a missing prediction as the policy scores it, plus the
        extra ids when their format scores them)."""
        scored = self.references + (len(self.extra) if self.extra_scored else 0)
        return {"references": self.references, "predictions": self.predictions,
                "missing": len(self.missing), "extra": len(self.extra), "scored": scored}

    def missing_text(self) -> str:
        return (f"{len(self.missing)} id(s) of the references have no prediction (first: "
                f"{show_ids(self.missing)})")

    def extra_text(self) -> str:
        return (f"{len(self.extra)} prediction id(s) not in the references (first: "
                f"{show_ids(self.extra)})")

    def refusal(self, because: str = "the official tool refuses an incomplete file, so "
                                     "refbench does too") -> str:
        """The error line of a format that refuses an incomplete file (`because`: why, the
        format's `missing_refused_because`)."""
        return f"{self.missing_text()}; {because}"

    def warning(self, missing_scored_as: str, extra_scored_as: str) -> str | None:
        """The one warning line for a file with missing or extra ids (None when exact)."""
        parts = []
        if self.missing:
            parts.append(f"{self.missing_text()}, {missing_scored_as}")
        if self.extra:
            parts.append(f"{self.extra_text()}, {extra_scored_as}")
        return "; ".join(parts) or None


def check_ids(predictions: Mapping[Any, Any], references: Mapping[Any, Any], source: Path,
              fmt: SubmissionFormat | None = None, *, strict: bool = False) -> IdCheck:
    """Compare the ids of predictions and references under the missing/extra policy.

    By default a missing prediction is scored as the official tool scores it and an extra
    id is ignored (or scored, where the format's tool scores it); both are reported by the
    caller. A format whose official tool refuses an incomplete file (`missing = "refuse"`)
    makes missing ids an error; `strict` (`--strict`, the leaderboard) makes missing and
    extra ids one error line naming the file."""
    policy = fmt if fmt is not None else SubmissionFormat
    check = IdCheck(references=len(references), predictions=len(predictions),
                    missing=[k for k in references if k not in predictions],
                    extra=[k for k in predictions if k not in references],
                    extra_scored=policy.extra == "score")
    if strict and (check.missing or check.extra):
        parts = ([check.missing_text()] if check.missing else []) + \
            ([check.extra_text()] if check.extra else [])
        raise RefbenchError("; ".join(parts) + " (strict scoring accepts exactly the ids of "
                            "the references)", path=source)
    if check.missing and policy.missing == "refuse":
        raise RefbenchError(check.refusal(policy.missing_refused_because), path=source)
    return check


def pair(predictions: Mapping[Any, Any], references: Mapping[Any, Any], check: IdCheck,
         fmt: SubmissionFormat | None = None) -> tuple[list[Any], list[Any]]:
    """Aligned value lists: every reference id in order (None for a missing prediction),
    then the extra ids against `fmt.extra_reference` when the format scores them."""
    keys = list(references)
    preds = [predictions.get(k) for k in keys]
    refs = [references[k] for k in keys]
    if check.extra_scored and check.extra:
        if fmt is None:
            raise ValueError("scoring extra ids needs the format that defines their reference")
        preds += [predictions[k] for k in check.extra]
        refs += [fmt.extra_reference(k) for k in check.extra]
    return preds, refs


def align(predictions: Mapping[Any, Any], references: Mapping[Any, Any], source: Path,
          fmt: SubmissionFormat | None = None, *, strict: bool = False,
          allow_missing: bool | None = None) -> tuple[list[Any], list[Any], dict[str, int]]:
    """Pair predictions with references by id under the missing/extra policy
    (`check_ids`): (predictions, references, id counts). `allow_missing=False` is the
    older spelling of a format that refuses missing ids."""
    check = check_ids(predictions, references, source, fmt, strict=strict)
    if allow_missing is False and check.missing:
        raise RefbenchError(check.refusal(), path=source)
    preds, refs = pair(predictions, references, check, fmt)
    return preds, refs, check.counts


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


@dataclass
class MetricOutput:
    """What one metric run produced: values with their directions, plus the reference
    counts it used and its warnings (the metric's optional `counts()` / `warnings()`)."""

    values: dict[str, float]
    directions: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def metric_settings(spec: BenchmarkSpec, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metric's arguments in force (the spec's, then run-time options), as result.json
    records them: JSON scalars and lists of scalars; anything else by its text."""
    def plain(value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value)

    merged = {**spec.metric.kwargs(), **dict(options or {})}
    return {str(k): plain(v) for k, v in sorted(merged.items())}


def run_metric(spec: BenchmarkSpec, preds: list[Any], refs: list[Any],
               options: Mapping[str, Any] | None = None) -> MetricOutput:
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
    counts = {str(k): int(v) for k, v in metric.counts().items()}
    clash = sorted(set(counts) & set(ID_COUNTS))
    if clash:  # a metric bug, not the user's input
        raise ValueError(f"metric {spec.metric.name} reports counts named like the scorer's "
                         f"id counts: {clash}")
    return MetricOutput(values={k: float(v) for k, v in values.items()}, directions=directions,
                        counts=counts,
                        warnings=[f"{spec.metric.name}: {w}" for w in metric.warnings()])


def compute_metrics(spec: BenchmarkSpec, preds: list[Any], refs: list[Any],
                    options: Mapping[str, Any] | None = None
                    ) -> tuple[dict[str, float], dict[str, str]]:
    """The values and directions of `run_metric` (what the leaderboard stores)."""
    out = run_metric(spec, preds, refs, options)
    return out.values, out.directions


def _load_split(spec: BenchmarkSpec, split: str, cache_dir: str | None) -> "hf_datasets.Dataset":
    """One prepared split of the benchmark's dataset (what `bind_splits` hands a format)."""
    from refbench.datasets.base import load_prepared

    return load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                         cache_dir=cache_dir)


def evaluate_file(benchmark: str | BenchmarkSpec, predictions: str | Path,
                  references: str | Path | None = None, *, split: str | None = None,
                  cache_dir: str | None = None, model: ModelInfo | None = None,
                  seed: int | None = None, rows: "hf_datasets.Dataset | None" = None,
                  read_options: Mapping[str, Any] | None = None,
                  metric_options: Mapping[str, Any] | None = None,
                  strict: bool = False) -> Result:
    """Score a prediction file against an official label file/folder (`references`), the
    given prepared rows (`rows`, e.g. a `--limit` subset) or the whole prepared split.

    Missing and extra ids follow the format's policy (`check_ids`) and are reported in
    `Result.counts` and `Result.warnings`, with the metric's own counts and warnings;
    `strict` refuses them instead."""
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
    fmt.bind_splits(lambda name: _load_split(spec, name, cache_dir))
    if references is not None:
        ref_path = Path(references)
        if not ref_path.exists():
            raise RefbenchError("references not found", path=ref_path)
        refs_map = fmt.read_references(ref_path, spec)
    elif fmt.references_required:
        raise RefbenchError(f"benchmark {spec.name} is scored against references no prepared "
                            f"split holds: pass --references ({fmt.references_example})")
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
    check = check_ids(preds_map, refs_map, pred_path, fmt, strict=strict)
    preds, refs = pair(preds_map, refs_map, check, fmt)
    scored = run_metric(spec, preds, refs, metric_options)
    id_warning = check.warning(fmt.missing_scored_as, fmt.extra_scored_as)
    warnings = ([f"{pred_path}: {id_warning}"] if id_warning else []) + scored.warnings
    return Result(
        benchmark=spec.name, benchmark_version=spec.version, split=used_split,
        metrics=scored.values, directions=scored.directions, primary=spec.primary, model=model,
        counts={**check.counts, **scored.counts}, warnings=warnings,
        settings=metric_settings(spec, metric_options),
        provenance=Provenance(
            refbench_version=__version__, git_commit=git_commit(), dataset_fingerprint=fingerprint,
            label_set_sha256=label_set_sha256(refs_map), predictions_sha256=sha256_path(pred_path),
            seed=seed, hardware=hardware_string(), wall_time_s=round(time.time() - started, 3)),
    )
