"""One lazy registry class and the four registries: DATASETS, METRICS, BENCHMARKS, BASELINES.

Code registers itself with a decorator (`@DATASETS.register("glue")`). So that
`import refbench` and `refbench list` stay cheap, the registries also hold a lazy index
(`name -> "module:Attr"`) generated from the decorators in the source tree
(`python -m refbench.registry` rewrites `_index.py`; a contract test checks the two
agree). Looking a name up imports only the module that defines it.

Benchmarks are data, not code: their index is the `benchmarks/specs/*.yaml` folder.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

from refbench.errors import RefbenchError

T = TypeVar("T")

PACKAGE_ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and the metadata given to `register`."""

    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object map with decorator registration and a lazy `"module:Attr"` index."""

    def __init__(self, kind: str, index: Callable[[], dict[str, str]]) -> None:
        self.kind = kind
        self._index_fn = index
        self._index: dict[str, str] | None = None
        self._entries: dict[str, Entry[T]] = {}

    # -- registration -------------------------------------------------------------
    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register `obj` under `name`; a second registration of a name is an error."""

        def decorator(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> None:
        existing = self._entries.get(name)
        if existing is not None and existing.obj is not obj:
            raise RefbenchError(f"duplicate {self.kind} name {name!r}: already registered by "
                                f"{_describe(existing.obj)}, registered again by {_describe(obj)}")
        self._entries[name] = Entry(name, obj, dict(meta))

    # -- lookup -------------------------------------------------------------------
    @property
    def index(self) -> dict[str, str]:
        if self._index is None:
            self._index = dict(self._index_fn())
        return self._index

    def names(self) -> list[str]:
        return sorted(set(self.index) | set(self._entries))

    def list(self, pattern: str = "*") -> list[str]:
        """Names matching a shell-style pattern (`glue-*`), sorted."""
        return [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            target = self.index.get(name)
            if target is None:
                raise RefbenchError(self._unknown(name))
            self._load(name, target)
            if name not in self._entries:
                raise RefbenchError(f"{self.kind} {name!r} is indexed at {target} but that module "
                                    f"does not register it (run `python -m refbench.registry`)")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def meta(self, name: str) -> dict[str, Any]:
        return self.entry(name).meta

    def _load(self, name: str, target: str) -> None:
        module, _, _attr = target.partition(":")
        importlib.import_module(module)

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names()) or 'none'})"


class SpecRegistry(Registry[T]):
    """A registry whose entries are YAML files parsed by `parse(path)`."""

    def __init__(self, kind: str, folder: Path, parse: Callable[[Path], T]) -> None:
        super().__init__(kind, index=lambda: {p.stem: str(p) for p in sorted(folder.glob("*.yaml"))})
        self._parse = parse

    def _load(self, name: str, target: str) -> None:
        self.add(name, self._parse(Path(target)))


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


# -- the lazy index, generated from decorators ---------------------------------------
_DECORATED = {"DATASETS": "dataset", "METRICS": "metric", "BASELINES": "baseline",
              "FORMATS": "format"}


def scan_decorators(root: Path = PACKAGE_ROOT) -> dict[str, dict[str, str]]:
    """Find every `@DATASETS/METRICS/BASELINES.register("name", ...)` in the package source."""
    found: dict[str, dict[str, str]] = {kind: {} for kind in _DECORATED.values()}
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("refbench",) + path.relative_to(root).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
                        and dec.func.attr == "register" and isinstance(dec.func.value, ast.Name)
                        and dec.func.value.id in _DECORATED and dec.args
                        and isinstance(dec.args[0], ast.Constant)):
                    kind = _DECORATED[dec.func.value.id]
                    name = dec.args[0].value
                    if name in found[kind]:
                        raise RefbenchError(f"duplicate {kind} name {name!r} in {module} and "
                                            f"{found[kind][name]}")
                    found[kind][name] = f"{module}:{node.name}"
    return found


def render_index(found: dict[str, dict[str, str]]) -> str:
    lines = ['"""Generated by `python -m refbench.registry`; do not edit by hand."""', "",
             "INDEX: dict[str, dict[str, str]] = {"]
    for kind in sorted(found):
        lines.append(f"    {kind!r}: {{")
        lines.extend(f"        {n!r}: {t!r}," for n, t in sorted(found[kind].items()))
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _static_index(kind: str) -> Callable[[], dict[str, str]]:
    def load() -> dict[str, str]:
        from refbench._index import INDEX

        return INDEX.get(kind, {})

    return load


def _parse_benchmark(path: Path) -> Any:
    from refbench.benchmarks.spec import load_spec

    return load_spec(path)


DATASETS: Registry[Any] = Registry("dataset", _static_index("dataset"))
METRICS: Registry[Any] = Registry("metric", _static_index("metric"))
BASELINES: Registry[Any] = Registry("baseline", _static_index("baseline"))
BENCHMARKS: SpecRegistry[Any] = SpecRegistry("benchmark", PACKAGE_ROOT / "benchmarks" / "specs",
                                             _parse_benchmark)
REGISTRIES: dict[str, Registry[Any]] = {"datasets": DATASETS, "metrics": METRICS,
                                        "benchmarks": BENCHMARKS, "baselines": BASELINES}


def import_all(names: Iterable[str] | None = None) -> None:
    """Import every indexed module (used by contract tests and `refbench list --verify`)."""
    for reg in (DATASETS, METRICS, BASELINES):
        for name in reg.names():
            if names is None or name in names:
                reg.entry(name)


def main() -> None:
    from refbench.io import atomic_write_text

    text = render_index(scan_decorators())
    atomic_write_text(PACKAGE_ROOT / "_index.py", text)
    print(text, end="")


if __name__ == "__main__":
    main()
