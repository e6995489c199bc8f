"""result.json, schema version 1: what was scored, the numbers, and where they came from.

Every evaluation (a local run, a user's file, a leaderboard submission) writes the same
document. `load_result` validates it, and upgrades older schema versions as they appear,
so old result files keep loading. A protocol's aggregate over seeds (`refbench train
--protocol`) is a result too: its metrics are the means, and the optional `aggregate` block
holds the seeds, the sample standard deviations and the per-seed values.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from refbench.errors import RefbenchError
from refbench.io import atomic_write_json

SCHEMA_VERSION = 1


@dataclass
class ModelInfo:
    name: str
    params: int | None = None
    recipe: str | None = None
    config_hash: str | None = None


@dataclass
class Provenance:
    refbench_version: str
    git_commit: str | None
    dataset_fingerprint: str | None
    label_set_sha256: str
    predictions_sha256: str
    seed: int | None
    hardware: str
    wall_time_s: float


@dataclass
class Result:
    benchmark: str
    benchmark_version: int
    split: str
    metrics: dict[str, float]
    directions: dict[str, str]
    primary: str
    provenance: Provenance
    model: ModelInfo | None = None
    counts: dict[str, int] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    #: over-seeds summary of a protocol run: {seeds, n, std, per_seed, runs}; None for one run
    aggregate: dict[str, Any] | None = None
    #: one-line warnings of the scoring (missing / extra ids, a score quantised by too few
    #: references); optional in the JSON, so older files load with none
    warnings: list[str] = field(default_factory=list)
    #: the metric's arguments in force (the spec's, then run-time options): conventions that
    #: change the numbers (an SSIM convention, a tokenizer, an overlap set) travel with them
    settings: dict[str, Any] = field(default_factory=dict)
    #: how a trained run chose the checkpoint it scored: {split, key, rule, step}; None for
    #: a scored file
    selection: dict[str, Any] | None = None

    @property
    def primary_value(self) -> float:
        return self.metrics[self.primary]

    def to_json(self) -> dict[str, Any]:
        doc = {
            "schema_version": self.schema_version,
            "benchmark": {"name": self.benchmark, "version": self.benchmark_version},
            "split": self.split,
            "metrics": self.metrics,
            "directions": self.directions,
            "primary": self.primary,
            "model": None if self.model is None else asdict(self.model),
            "counts": self.counts,
            "warnings": list(self.warnings),
            "provenance": asdict(self.provenance),
        }
        if self.aggregate is not None:  # only aggregates carry the key: single runs are unchanged
            doc["aggregate"] = self.aggregate
        if self.settings:
            doc["settings"] = self.settings
        if self.selection is not None:
            doc["selection"] = self.selection
        return doc

    def write(self, path: str | os.PathLike[str]) -> None:
        atomic_write_json(path, self.to_json())


def hardware_string() -> str:
    """CPU/GPU description for provenance (never imports torch just for this)."""
    import sys

    text = f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()}"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f", {torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return text


@functools.lru_cache(maxsize=8)
def git_commit(start: Path | None = None) -> str | None:
    """The refbench checkout's commit, or None outside a git checkout (asked once per
    process: a run scores its predictions at every evaluation)."""
    folder = start or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def _fail(path: Path, key: str, message: str) -> RefbenchError:
    return RefbenchError(message, path=path, key=key)


def _upgrade(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring an older schema up to the current one (none older than 1 exists yet)."""
    version = data.get("schema_version")
    if version == SCHEMA_VERSION:
        return data
    raise _fail(path, "schema_version", f"unsupported result schema version {version!r} "
                                        f"(this refbench reads 1..{SCHEMA_VERSION})")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_aggregate(data: Any, metrics: dict[str, Any], p: Path) -> dict[str, Any]:
    """Validate a result's `aggregate` block: int seeds, n = len(seeds), and std / per_seed
    keyed by metrics of the result (per_seed lists one value per seed)."""
    if not isinstance(data, dict):
        raise _fail(p, "aggregate", "expected a mapping {seeds, n, std, per_seed, runs}")
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds or \
            any(not isinstance(s, int) or isinstance(s, bool) for s in seeds):
        raise _fail(p, "aggregate.seeds", "expected a non-empty list of integer seeds")
    if data.get("n") != len(seeds):
        raise _fail(p, "aggregate.n", f"expected the number of seeds ({len(seeds)}), "
                                      f"got {data.get('n')!r}")
    for part in ("std", "per_seed"):
        block = data.get(part)
        if not isinstance(block, dict):
            raise _fail(p, f"aggregate.{part}", "expected a mapping keyed by metric")
        for key, value in block.items():
            if key not in metrics:
                raise _fail(p, f"aggregate.{part}.{key}", "not one of the result's metrics")
            ok = _number(value) if part == "std" else (
                isinstance(value, list) and len(value) == len(seeds) and all(map(_number, value)))
            if not ok:
                raise _fail(p, f"aggregate.{part}.{key}",
                            "expected a finite number" if part == "std" else
                            f"expected {len(seeds)} finite numbers, one per seed")
    runs = data.get("runs", [])
    if not isinstance(runs, list) or any(not isinstance(r, str) for r in runs):
        raise _fail(p, "aggregate.runs", "expected a list of run folder names")
    return {"seeds": list(seeds), "n": len(seeds),
            "std": {k: float(v) for k, v in data["std"].items()},
            "per_seed": {k: [float(x) for x in v] for k, v in data["per_seed"].items()},
            "runs": list(runs)}


def load_result(path: str | os.PathLike[str]) -> Result:
    """Read and validate a result.json; every problem names the file and the key."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefbenchError("result file not found", path=p) from None
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg}", path=p, line=exc.lineno) from None
    return parse_result(data, p)


def parse_result(data: Any, p: Path) -> Result:
    """Validate a result document already read from `p` (a file, or where it was stored)."""
    if not isinstance(data, dict):
        raise _fail(p, "<root>", "a result must be a JSON object")
    data = _upgrade(data, p)
    for key in ("benchmark", "split", "metrics", "directions", "primary", "provenance"):
        if key not in data:
            raise _fail(p, key, "missing required key")
    bench = data["benchmark"]
    if not isinstance(bench, dict) or not isinstance(bench.get("name"), str) \
            or not isinstance(bench.get("version"), int):
        raise _fail(p, "benchmark", "expected {name: str, version: int}")
    metrics = data["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        raise _fail(p, "metrics", "expected a non-empty mapping")
    for key, value in metrics.items():
        if not _number(value):
            raise _fail(p, f"metrics.{key}", f"expected a finite number, got {value!r}")
    directions = data["directions"]
    if not isinstance(directions, dict) or set(directions) != set(metrics) \
            or any(v not in ("higher", "lower", "none") for v in directions.values()):
        raise _fail(p, "directions", "expected 'higher', 'lower' or 'none' (not a score: a "
                                     "count, a threshold) for every metric key")
    if data["primary"] not in metrics:
        raise _fail(p, "primary", f"primary key {data['primary']!r} is not among the metrics")
    if directions[data["primary"]] == "none":
        raise _fail(p, "primary", "the primary key must be a score (direction higher/lower)")
    prov = data["provenance"]
    wanted = {f for f in Provenance.__dataclass_fields__}
    if not isinstance(prov, dict) or not wanted <= set(prov):
        missing = sorted(wanted - set(prov if isinstance(prov, dict) else {}))
        raise _fail(p, "provenance", f"missing fields: {', '.join(missing)}")
    model = data.get("model")
    if model is not None and (not isinstance(model, dict) or "name" not in model):
        raise _fail(p, "model", "expected null or {name, params, recipe, config_hash}")
    warnings = data.get("warnings")
    warnings = [] if warnings is None else warnings
    if not isinstance(warnings, list) or any(not isinstance(w, str) for w in warnings):
        raise _fail(p, "warnings", "expected a list of strings")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise _fail(p, "settings", "expected a mapping of the metric's arguments")
    selection = data.get("selection")
    if selection is not None and (not isinstance(selection, dict)
                                  or not isinstance(selection.get("split"), str)):
        raise _fail(p, "selection", "expected null or {split, key, rule, step}")
    return Result(
        benchmark=bench["name"], benchmark_version=bench["version"], split=str(data["split"]),
        metrics={k: float(v) for k, v in metrics.items()}, directions=dict(directions),
        primary=data["primary"],
        provenance=Provenance(**{k: prov[k] for k in wanted}),
        model=None if model is None else ModelInfo(**{k: model.get(k) for k in
                                                      ModelInfo.__dataclass_fields__}),
        counts={k: int(v) for k, v in (data.get("counts") or {}).items()},
        schema_version=SCHEMA_VERSION,
        aggregate=None if data.get("aggregate") is None else
        parse_aggregate(data["aggregate"], metrics, p),
        warnings=list(warnings), settings=dict(settings), selection=selection,
    )
