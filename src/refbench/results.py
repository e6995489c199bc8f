"""result.json, schema version 1: what was scored, the numbers, and where they came from.

Every evaluation (a local run, a user's file, a leaderboard submission) writes the same
document. `load_result` validates it, and upgrades older schema versions as they appear,
so old result files keep loading.
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

    @property
    def primary_value(self) -> float:
        return self.metrics[self.primary]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "benchmark": {"name": self.benchmark, "version": self.benchmark_version},
            "split": self.split,
            "metrics": self.metrics,
            "directions": self.directions,
            "primary": self.primary,
            "model": None if self.model is None else asdict(self.model),
            "counts": self.counts,
            "provenance": asdict(self.provenance),
        }

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
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
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
    return Result(
        benchmark=bench["name"], benchmark_version=bench["version"], split=str(data["split"]),
        metrics={k: float(v) for k, v in metrics.items()}, directions=dict(directions),
        primary=data["primary"],
        provenance=Provenance(**{k: prov[k] for k in wanted}),
        model=None if model is None else ModelInfo(**{k: model.get(k) for k in
                                                      ModelInfo.__dataclass_fields__}),
        counts={k: int(v) for k, v in (data.get("counts") or {}).items()},
        schema_version=SCHEMA_VERSION,
    )
