"""Benchmark specs: YAML in `specs/` validated into frozen dataclasses.

`name@version` is the leaderboard key. A spec names the dataset (and its version and
config), the split that is scored, the metric and its arguments, the primary key, the
protocol (seeds) and the submission format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from refbench.errors import RefbenchError


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: str
    config: str = "default"


@dataclass(frozen=True)
class MetricRef:
    name: str
    version: str
    args: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


@dataclass(frozen=True)
class Submission:
    """How predictions are written: a format handler name and the official file name."""

    format: str
    filename: str
    description: str = ""


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    version: int
    description: str
    dataset: DatasetRef
    train_split: str
    split: str
    metric: MetricRef
    primary: str
    submission: Submission
    hidden_split: str | None = None
    seeds: tuple[int, ...] = (0,)
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


_REQUIRED = ("name", "version", "description", "dataset", "train_split", "split", "metric",
             "primary", "submission")
_ALLOWED = set(_REQUIRED) | {"hidden_split", "protocol", "tags"}


def _need(data: dict[str, Any], key: str, path: Path, kind: type | tuple[type, ...],
          prefix: str = "") -> Any:
    if key not in data:
        raise RefbenchError("missing required key", path=path, key=prefix + key)
    value = data[key]
    if not isinstance(value, kind):
        raise RefbenchError(f"expected {getattr(kind, '__name__', kind)}, got {value!r}", path=path,
                            key=prefix + key)
    return value


def load_spec(path: Path) -> BenchmarkSpec:
    """Read and validate one spec file; every error names the file and the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefbenchError("benchmark spec not found", path=path) from None
    except yaml.YAMLError as exc:
        raise RefbenchError(f"invalid YAML: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise RefbenchError("a benchmark spec must be a mapping", path=path)
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise RefbenchError(f"unknown key (allowed: {', '.join(sorted(_ALLOWED))})", path=path,
                            key=unknown[0])
    name = _need(data, "name", path, str)
    if name != Path(path).stem:
        raise RefbenchError(f"spec name {name!r} must equal the file name", path=path, key="name")
    ds = _need(data, "dataset", path, dict)
    metric = _need(data, "metric", path, dict)
    sub = _need(data, "submission", path, dict)
    protocol = data.get("protocol") or {}
    seeds = protocol.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise RefbenchError("seeds must be a non-empty list of integers", path=path,
                            key="protocol.seeds")
    args = metric.get("args") or {}
    if not isinstance(args, dict):
        raise RefbenchError("metric args must be a mapping", path=path, key="metric.args")
    return BenchmarkSpec(
        name=name,
        version=_need(data, "version", path, int),
        description=_need(data, "description", path, str).strip(),
        dataset=DatasetRef(name=_need(ds, "name", path, str, "dataset."),
                           version=str(_need(ds, "version", path, (str, int, float), "dataset.")),
                           config=str(ds.get("config", "default"))),
        train_split=_need(data, "train_split", path, str),
        split=_need(data, "split", path, str),
        metric=MetricRef(name=_need(metric, "name", path, str, "metric."),
                         version=str(_need(metric, "version", path, (str, int), "metric.")),
                         args=tuple(sorted(args.items()))),
        primary=_need(data, "primary", path, str),
        submission=Submission(format=_need(sub, "format", path, str, "submission."),
                              filename=_need(sub, "filename", path, str, "submission."),
                              description=str(sub.get("description", "")).strip()),
        hidden_split=data.get("hidden_split"),
        seeds=tuple(seeds),
        tags=tuple(data.get("tags") or ()),
    )


def get_spec(name: str) -> BenchmarkSpec:
    from refbench.registry import BENCHMARKS

    return BENCHMARKS.get(name)
