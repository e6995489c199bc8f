"""One lazy registry class and the registries every family plugs into.

Code registers itself with a decorator (`@DATASETS.register("glue")`). So that
`import refbench` and `refbench list` stay cheap, the registries also hold a lazy index
(`name -> "module:Attr"`) generated from the decorators in the source tree
(`python -m refbench.registry` rewrites `_index.py`; a contract test checks the two
agree). Looking a name up imports only the module that defines it.

Benchmarks and recipes are data, not code: their index is every `specs/*.yaml` and
`recipes/*.yaml` file of the package (a family keeps its recipes beside its baseline).

Families from outside the repository are *plugins*: an installed package that declares
an entry point in the group `refbench.plugins` whose value is its import name, e.g.

    [project.entry-points."refbench.plugins"]
    toy = "toy_refbench"

Its decorators are found the same way (by reading its source, not importing it), and its
`specs/` and `recipes/` folders join the built-in ones. A name defined twice, by refbench
and a plugin or by two plugins, is an error that names both places.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import importlib
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

from refbench.errors import RefbenchError

T = TypeVar("T")

PACKAGE_ROOT = Path(__file__).resolve().parent
PLUGIN_GROUP = "refbench.plugins"


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


class FileRegistry(Registry[T]):
    """A registry whose entries are YAML files (`name.yaml` in a `folder_name/` folder of
    refbench or of a plugin), turned into objects by `parse(path)`."""

    def __init__(self, kind: str, folder_name: str, parse: Callable[[Path], T]) -> None:
        super().__init__(kind, index=lambda: _yaml_files(folder_name, kind))
        self._parse = parse

    def path(self, name: str) -> Path:
        """The file behind a name (unknown names get the did-you-mean error)."""
        target = self.index.get(name)
        if target is None:
            raise RefbenchError(self._unknown(name))
        return Path(target)

    def _load(self, name: str, target: str) -> None:
        self.add(name, self._parse(Path(target)))


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


# -- plugins ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A package that contributes registered things: refbench itself or a plugin."""

    name: str
    module: str
    root: Path


@lru_cache(maxsize=1)
def sources() -> tuple[Source, ...]:
    """refbench, then every installed plugin (entry point group `refbench.plugins`)."""
    from importlib.metadata import entry_points

    found = [Source("refbench", "refbench", PACKAGE_ROOT)]
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        module = ep.value.split(":")[0].strip()
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not (spec.submodule_search_locations or spec.origin):
            raise RefbenchError(f"refbench plugin {ep.name!r} names module {module!r}, which is "
                                f"not importable (is its package installed?)")
        root = Path(next(iter(spec.submodule_search_locations))) if spec.submodule_search_locations \
            else Path(str(spec.origin))
        found.append(Source(ep.name, module, root))
    return tuple(found)


def _yaml_files(folder_name: str, kind: str) -> dict[str, str]:
    """`name -> path` of every `<folder_name>/*.yaml` in refbench and the plugins."""
    out: dict[str, str] = {}
    for src in sources():
        if not src.root.is_dir():
            continue
        for path in sorted(src.root.rglob(f"{folder_name}/*.yaml")):
            if path.stem in out:
                raise RefbenchError(f"duplicate {kind} name {path.stem!r}: {out[path.stem]} and "
                                    f"{path}")
            out[path.stem] = str(path)
    return out


# -- the lazy index, generated from decorators ---------------------------------------
#: registry variable name -> index kind
_DECORATED = {"DATASETS": "dataset", "METRICS": "metric", "BASELINES": "baseline",
              "FORMATS": "format", "SEARCHES": "search", "DEMOS": "demo"}


def _decorator_kind(dec: ast.expr) -> str | None:
    """`@DATASETS.register(...)` or `@refbench.registry.DATASETS.register(...)` -> kind."""
    if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
            and dec.func.attr == "register" and dec.args
            and isinstance(dec.args[0], ast.Constant) and isinstance(dec.args[0].value, str)):
        return None
    owner = dec.func.value
    name = owner.id if isinstance(owner, ast.Name) else \
        owner.attr if isinstance(owner, ast.Attribute) else None
    return _DECORATED.get(name or "")


def scan_decorators(root: Path = PACKAGE_ROOT, package: str = "refbench") -> dict[str, dict[str, str]]:
    """Find every `@DATASETS/METRICS/.../DEMOS.register("name", ...)` in a package's source."""
    found: dict[str, dict[str, str]] = {kind: {} for kind in _DECORATED.values()}
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    for path in files:
        rel = path.relative_to(root.parent if root.is_file() else root).with_suffix("").parts
        parts = rel if root.is_file() else (package, *rel)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as exc:
            raise RefbenchError(f"cannot read registrations: {exc.msg}", path=path,
                                line=exc.lineno) from None
        for node in ast.walk(tree):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for dec in node.decorator_list:
                kind = _decorator_kind(dec)
                if kind is None:
                    continue
                name = dec.args[0].value  # type: ignore[attr-defined]
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


@lru_cache(maxsize=1)
def _plugin_index() -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for src in sources()[1:]:
        for kind, names in scan_decorators(src.root, src.module).items():
            into = merged.setdefault(kind, {})
            for name, target in names.items():
                if name in into:
                    raise RefbenchError(f"duplicate {kind} name {name!r}: {into[name]} and {target}")
                into[name] = target
    return merged


def _static_index(kind: str) -> Callable[[], dict[str, str]]:
    def load() -> dict[str, str]:
        from refbench._index import INDEX

        own = dict(INDEX.get(kind, {}))
        for name, target in _plugin_index().get(kind, {}).items():
            if name in own:
                raise RefbenchError(f"duplicate {kind} name {name!r}: refbench's {own[name]} and "
                                    f"the plugin's {target}")
            own[name] = target
        return own

    return load


def _parse_benchmark(path: Path) -> Any:
    from refbench.benchmarks.spec import load_spec

    return load_spec(path)


DATASETS: Registry[Any] = Registry("dataset", _static_index("dataset"))
METRICS: Registry[Any] = Registry("metric", _static_index("metric"))
FORMATS: Registry[Any] = Registry("submission format", _static_index("format"))
BASELINES: Registry[Any] = Registry("baseline", _static_index("baseline"))
SEARCHES: Registry[Any] = Registry("search", _static_index("search"))
DEMOS: Registry[Any] = Registry("demo job", _static_index("demo"))
BENCHMARKS: FileRegistry[Any] = FileRegistry("benchmark", "specs", _parse_benchmark)
RECIPES: FileRegistry[Path] = FileRegistry("recipe", "recipes", lambda path: path)
REGISTRIES: dict[str, Registry[Any]] = {
    "datasets": DATASETS, "metrics": METRICS, "formats": FORMATS, "benchmarks": BENCHMARKS,
    "baselines": BASELINES, "searches": SEARCHES, "demos": DEMOS, "recipes": RECIPES}


def get_spec(name: str) -> Any:
    """The `BenchmarkSpec` registered under `name`."""
    return BENCHMARKS.get(name)


def import_all(names: Iterable[str] | None = None) -> None:
    """Import every indexed module (used by contract tests)."""
    for reg in (DATASETS, METRICS, FORMATS, BASELINES, SEARCHES, DEMOS):
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
