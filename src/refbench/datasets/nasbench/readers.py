"""Strict readers of the NAS-Bench-Macro table and NASLib's zero-cost (NAS-Bench-Suite-Zero)
files, as their authors wrote them.

- `nas-bench-macro_cifar10.json`: `{arch: {"test_acc": [3 floats], "mean_acc", "std",
  "params", "flops"}}`, 6,561 architectures (`spaces.parse_macro`).
- `zc_nasbench201.json`: `{dataset: {arch: {"idx": "534", "arch": arch, "val_accuracy":
  float, proxy: {"score", "time"}, ...}}}` for `cifar10`, `cifar100`, `ImageNet16-120`.
- `zc_nasbench101.json`: `{"nasbench101": {"cifar10": {arch: {"val_accuracy": float,
  proxy: float, ...}}}}` (scores only, no timings, no `nwot`).

Everything a ranking reads is checked: the architecture code, the accuracies (finite,
within 0-100), integer counts. Proxy scores may be +-Infinity, because the official file
holds `-Infinity` for `nwot` on one NAS-Bench-201 cell per dataset (a degenerate kernel),
which orders as the worst score; NaN is refused everywhere. A problem raises a `RefbenchError`
naming the file and the JSON path (`[cifar10.(0, 2, 3, 2, 3, 1).val_accuracy]`); the
files are single-line JSON, so a line number would say nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from refbench.datasets.nasbench.spaces import SPACES, ArchitectureError
from refbench.errors import RefbenchError

MACRO_FILE = "nas-bench-macro_cifar10.json"
MACRO_SEEDS = 3
NB201_FILE = "zc_nasbench201.json"
NB101_FILE = "zc_nasbench101.json"
#: NASLib's proxies, in the files' order; NAS-Bench-101's file has no nwot
PROXIES_201 = ("flops", "params", "synflow", "grasp", "fisher", "grad_norm", "l2_norm", "plain",
               "nwot", "epe_nas", "jacov", "snip")
PROXIES_101 = tuple(p for p in PROXIES_201 if p != "nwot")
#: config -> (file, path of the dataset's table inside it, search space, proxies)
NASLIB_CONFIGS: dict[str, tuple[str, tuple[str, ...], str, tuple[str, ...]]] = {
    "nb201-cifar10": (NB201_FILE, ("cifar10",), "nas-bench-201", PROXIES_201),
    "nb201-cifar100": (NB201_FILE, ("cifar100",), "nas-bench-201", PROXIES_201),
    "nb201-imagenet16-120": (NB201_FILE, ("ImageNet16-120",), "nas-bench-201", PROXIES_201),
    "nb101-cifar10": (NB101_FILE, ("nasbench101", "cifar10"), "nas-bench-101", PROXIES_101),
}


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def load_json(path: Path) -> Any:
    """Parse a JSON file; a missing file, a folder, bad UTF-8, bad JSON or a key given twice
    in one object (json would keep the last silently) is one error line. NaN is kept as
    float NaN here and refused where a value is read (with its JSON path)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError("file not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError("expected a JSON file, found a folder", path=path) from None
    try:
        return json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise RefbenchError(f"key {exc.args[0]!r} appears twice in one object (a duplicate "
                            f"architecture?)", path=path, key=exc.args[0]) from None
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                            path=path) from None
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                            path=path, line=exc.lineno) from None


class _Fields:
    """Typed field access that names the file and the JSON path of a bad value."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str, where: str) -> RefbenchError:
        return RefbenchError(message, path=self.path, key=where)

    def object(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"expected a JSON object, got {type(value).__name__}", where)
        return value

    def get(self, obj: dict, key: str, where: str) -> Any:
        if key not in obj:
            raise self.fail(f"missing key {key!r}", where)
        return obj[key]

    def number(self, obj: dict, key: str, where: str, *, allow_inf: bool = False,
               bounds: tuple[float, float] | None = None) -> float:
        value = self.get(obj, key, where)
        at = f"{where}.{key}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"expected a number, got {json.dumps(value)[:40]}", at)
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise self.fail(f"{value} is not a finite number", at)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise self.fail(f"{value} is outside {bounds[0]:g}-{bounds[1]:g}", at)
        return value

    def integer(self, obj: dict, key: str, where: str) -> int:
        value = self.get(obj, key, where)
        if isinstance(value, str) and value.isdigit():  # NAS-Bench-201's "idx": "534"
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"expected a non-negative integer, got {json.dumps(value)[:40]}",
                            f"{where}.{key}")
        return value

    def architecture(self, key: str, space: str, where: str) -> str:
        try:
            canonical = SPACES[space].canonical(key)
        except ArchitectureError as exc:
            raise self.fail(str(exc), where) from None
        if canonical != key:
            raise self.fail(f"architecture {key!r} is not spelled canonically ({canonical!r})",
                            where)
        return canonical


def read_macro_file(path: Path) -> list[dict[str, Any]]:
    """Rows of `nas-bench-macro_cifar10.json` in file order: `arch`, `choices`,
    `test_acc` (the 3 seeds), `mean_acc`, `std`, `params`, `flops`."""
    path = Path(path)
    top = load_json(path)
    f = _Fields(path)
    rows = []
    for arch, entry in f.object(top, "").items():
        f.architecture(arch, "nas-bench-macro", arch)
        entry = f.object(entry, arch)
        seeds = f.get(entry, "test_acc", arch)
        if not isinstance(seeds, list) or len(seeds) != MACRO_SEEDS:
            raise f.fail(f"test_acc must list the {MACRO_SEEDS} seeds' accuracies, got "
                         f"{json.dumps(seeds)[:60]}", f"{arch}.test_acc")
        accs = [f.number({"seed": s}, "seed", f"{arch}.test_acc[{i}]", bounds=(0, 100))
                for i, s in enumerate(seeds)]
        rows.append({"arch": arch, "choices": [int(c) for c in arch], "test_acc": accs,
                     "mean_acc": f.number(entry, "mean_acc", arch, bounds=(0, 100)),
                     "std": f.number(entry, "std", arch, bounds=(0, 100)),
                     "params": f.integer(entry, "params", arch),
                     "flops": f.integer(entry, "flops", arch)})
    if not rows:
        raise RefbenchError("the file holds no architecture", path=path)
    return rows


def read_naslib_table(path: Path, config: str) -> list[dict[str, Any]]:
    """Rows of one config's table (`NASLIB_CONFIGS`) in file order: `arch`, `idx`
    (NAS-Bench-201's cell index; -1 for NAS-Bench-101, which has none), `val_accuracy`,
    then each proxy's score (and, for NAS-Bench-201, `<proxy>_seconds`)."""
    path = Path(path)
    _, inside, space, proxies = NASLIB_CONFIGS[config]
    f = _Fields(path)
    table: Any = load_json(path)
    where = ""
    for key in inside:
        table = f.get(f.object(table, where or "(top level)"), key, where or "(top level)")
        where = f"{where}.{key}" if where else key
    rows = []
    timed = space == "nas-bench-201"
    for arch, entry in f.object(table, where).items():
        at = f"{where}.{arch}"
        f.architecture(arch, space, at)
        entry = f.object(entry, at)
        row: dict[str, Any] = {"arch": arch, "idx": -1,
                               "val_accuracy": f.number(entry, "val_accuracy", at,
                                                        bounds=(0, 100))}
        if timed:
            if f.get(entry, "arch", at) != arch:
                raise f.fail(f"its 'arch' field {entry['arch']!r} differs from its key", at)
            row["idx"] = f.integer(entry, "idx", at)
        for proxy in proxies:
            value = f.get(entry, proxy, at)
            if timed:
                value = f.object(value, f"{at}.{proxy}")
                row[proxy] = f.number(value, "score", f"{at}.{proxy}", allow_inf=True)
                row[f"{proxy}_seconds"] = f.number(value, "time", f"{at}.{proxy}")
            else:
                row[proxy] = f.number(entry, proxy, at, allow_inf=True)
        rows.append(row)
    if not rows:
        raise f.fail("the table holds no architecture", where)
    return rows
