"""Benchmark specs: YAML in a `specs/` folder validated into frozen dataclasses.

`name@version` is the leaderboard key. A spec names the dataset (and its version and
config), the split that is scored, the task (what kind of model answers it: its type and
inputs, so a baseline never has to guess from the dataset's name), the metric and its
arguments, the primary key, the protocol (seeds) and the submission format.

Like recipes, a spec may extend one `base:` (a path relative to the spec, one level only;
bases live in `specs/bases/`, which is not itself a benchmark): mappings merge key by key,
anything else is replaced. Unknown keys are errors in the spec and in its base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from refbench.errors import RefbenchError

#: the task types baselines know; a plugin may use its own (a string a baseline checks)
KNOWN_TASK_TYPES = ("classification", "regression", "extractive-qa", "3d-detection", "retrieval",
                    "clustering", "report-generation", "image-classification", "try-on",
                    "architecture-ranking", "detection-2d", "segmentation", "suite")


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
class TaskRef:
    """What the model has to do: `type` (classification, regression, extractive-qa,
    3d-detection, suite, or a plugin's own), the dataset columns it reads (`inputs`) and,
    for classification, how many labels there are."""

    type: str
    inputs: tuple[str, ...] = ()
    num_labels: int | None = None


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
    task: TaskRef
    hidden_split: str | None = None
    seeds: tuple[int, ...] = (0,)
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


_REQUIRED = ("name", "version", "description", "dataset", "task", "train_split", "split",
             "metric", "primary", "submission")
_ALLOWED = set(_REQUIRED) | {"hidden_split", "protocol", "tags", "base"}
_SECTIONS = {"dataset": {"name", "version", "config"}, "metric": {"name", "version", "args"},
             "submission": {"format", "filename", "description"}, "protocol": {"seeds"},
             "task": {"type", "inputs", "num_labels"}}


def _need(data: dict[str, Any], key: str, path: Path, kind: type | tuple[type, ...],
          prefix: str = "") -> Any:
    if key not in data:
        raise RefbenchError("missing required key", path=path, key=prefix + key)
    value = data[key]
    if not isinstance(value, kind):
        raise RefbenchError(f"expected {getattr(kind, '__name__', kind)}, got {value!r}", path=path,
                            key=prefix + key)
    return value


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefbenchError("benchmark spec not found", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RefbenchError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=path,
                            line=None if mark is None else mark.line + 1) from None
    if not isinstance(data, dict):
        raise RefbenchError("a benchmark spec must be a mapping", path=path)
    _check_keys(data, path)
    return data


def _check_keys(data: dict[str, Any], path: Path) -> None:
    unknown = sorted(set(data) - _ALLOWED)
    if unknown:
        raise RefbenchError(f"unknown key (allowed: {', '.join(sorted(_ALLOWED))})", path=path,
                            key=unknown[0])
    for section, allowed in _SECTIONS.items():
        value = data.get(section)
        if isinstance(value, dict):
            extra = sorted(set(value) - allowed)
            if extra:
                raise RefbenchError(f"unknown key (allowed: {', '.join(sorted(allowed))})",
                                    path=path, key=f"{section}.{extra[0]}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


def read_spec_data(path: Path) -> dict[str, Any]:
    """The spec's mapping with its `base:` merged in (one level)."""
    path = Path(path)
    data = _read(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RefbenchError("base must be a path to another spec", path=path, key="base")
    base_path = path.parent / base
    if not base_path.suffix:
        base_path = base_path.with_suffix(".yaml")
    if not base_path.is_file():
        raise RefbenchError("base spec not found", path=base_path, key="base")
    base_data = _read(base_path)
    if "base" in base_data:
        raise RefbenchError("a spec's base may not have a base of its own (one level only)",
                            path=base_path, key="base")
    return _merge(base_data, data)


def load_spec(path: Path) -> BenchmarkSpec:
    """Read and validate one spec file; every error names the file and the key."""
    data = read_spec_data(path)
    name = _need(data, "name", path, str)
    if name != Path(path).stem:
        raise RefbenchError(f"spec name {name!r} must equal the file name", path=path, key="name")
    ds = _need(data, "dataset", path, dict)
    metric = _need(data, "metric", path, dict)
    sub = _need(data, "submission", path, dict)
    task = _need(data, "task", path, dict)
    protocol = data.get("protocol") or {}
    seeds = protocol.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise RefbenchError("seeds must be a non-empty list of integers", path=path,
                            key="protocol.seeds")
    args = metric.get("args") or {}
    if not isinstance(args, dict):
        raise RefbenchError("metric args must be a mapping", path=path, key="metric.args")
    inputs = task.get("inputs") or []
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise RefbenchError("inputs must be a list of column names", path=path, key="task.inputs")
    num_labels = task.get("num_labels")
    if num_labels is not None and (not isinstance(num_labels, int) or num_labels < 2):
        raise RefbenchError("num_labels must be an integer >= 2", path=path, key="task.num_labels")
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
        task=TaskRef(type=_need(task, "type", path, str, "task."), inputs=tuple(inputs),
                     num_labels=num_labels),
        hidden_split=data.get("hidden_split"),
        seeds=tuple(seeds),
        tags=tuple(data.get("tags") or ()),
    )
