"""Typed run configuration: dataclass schemas, YAML recipes and `--set a.b=c` overrides.

A recipe is YAML with at most one `base:` (another recipe it extends; one level only,
so a recipe is readable on its own page). Values are checked against the dataclass
schema field by field, so `--set trainer.lr=fast` fails with the key named instead of
failing later inside the optimizer.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from refbench.errors import RefbenchError

T = TypeVar("T")

Schedule = Literal["constant", "linear", "cosine", "one_cycle"]


@dataclass
class TrainerConfig:
    """How the common runner trains: optimisation, schedule, evaluation and checkpoints."""

    seed: int = 0
    max_steps: int = 100
    epochs: float | None = None
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: Schedule = "linear"
    warmup_ratio: float = 0.1
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    amp: bool = True
    eval_every: int = 0
    save_every: int = 0
    log_every: int = 10
    keep_last: int = 2
    progress: bool = True


@dataclass
class DataConfig:
    """Where the prepared dataset comes from and how much of it to use."""

    cache_dir: str | None = None
    train_split: str | None = None
    eval_split: str | None = None
    limit: int | None = None
    max_length: int = 128
    #: train from `load_dataset(..., streaming=True)` (webdataset shards where the dataset
    #: wrote them) instead of random access to the prepared table
    streaming: bool = False
    #: DataLoader worker processes that read and decode the stream (per rank)
    workers: int = 0
    #: rows in the seeded shuffle buffer of a streamed split (0: the stream's order)
    shuffle_buffer: int = 1000


@dataclass
class RunConfig:
    """Everything a run needs; written resolved to `runs/<name>/config.yaml`."""

    baseline: str
    benchmark: str
    recipe: str | None = None
    #: task types (`task.type` of a benchmark spec) the recipe is made for; empty: any
    tasks: list[str] = field(default_factory=list)
    name: str | None = None
    output_dir: str = "runs"
    init_from: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    #: run-time options of the benchmark's metric used when the run scores itself
    evaluation: dict[str, Any] = field(default_factory=dict)


# -- type checking ------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently coerce: int -> float) `value` against the annotation `tp`."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except RefbenchError as exc:
                errors.append(exc)
        raise RefbenchError(f"expected {_type_name(tp)}, got {value!r}", key=key)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise RefbenchError(f"expected one of {_type_name(tp)}, got {value!r}", key=key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RefbenchError(f"expected a list, got {value!r}", key=key)
        (item_tp, *_rest) = get_args(tp) or (Any,)
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RefbenchError(f"expected a mapping, got {value!r}", key=key)
        key_tp, value_tp = get_args(tp) or (Any, Any)
        return {coerce(k, key_tp, key): coerce(v, value_tp, f"{key}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise RefbenchError(f"expected a mapping, got {value!r}", key=key)
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise RefbenchError(f"expected {_type_name(tp)}, got {value!r}", key=key)


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types name the key."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            import difflib

            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RefbenchError(f"unknown key{hint} (allowed: {', '.join(sorted(names))})", key=full)
        kwargs[key] = coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RefbenchError(f"incomplete config: {exc}", key=prefix or cls.__name__) from None


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# -- recipes ------------------------------------------------------------------------
def recipe_path(name_or_path: str) -> Path:
    """A recipe given by name (`bert_tiny_glue`, found in any `recipes/` folder of refbench
    or a plugin) or by path."""
    from refbench.registry import RECIPES

    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        return path
    return RECIPES.path(name_or_path.removesuffix(".yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefbenchError("file not found", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RefbenchError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=path,
                            line=None if mark is None else mark.line + 1) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RefbenchError("a recipe must be a YAML mapping", path=path)
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """Read a recipe and its single `base:`; returns the merged raw mapping."""
    path = recipe_path(name_or_path)
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is not None:
        base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
        if not base_path.suffix:
            base_path = base_path.with_suffix(".yaml")
        if not base_path.exists() and not Path(base).is_absolute():
            base_path = recipe_path(base)  # a shipped recipe, named from a recipe elsewhere
        base_data = _read_yaml(base_path)
        if "base" in base_data:
            raise RefbenchError("a recipe's base may not have a base of its own (one level only)",
                                path=base_path, key="base")
        data = deep_merge(base_data, data)
    data.setdefault("recipe", path.stem)
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=c` -> (["a", "b"], parsed c); values are YAML scalars (`3`, `1e-4`, `true`, `null`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise RefbenchError(f"malformed override {item!r}; expected key.path=value", key=item)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_float(value):
        value = float(value)
    return key.split("."), value


def _looks_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text.lower() for c in ".e") and text.strip() == text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = deep_merge({}, data)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RefbenchError(f"{part!r} is not a section", key=".".join(path))
            node = child
        node[path[-1]] = value
    return out


#: how many recipe names an error message lists before "..."
_LISTED = 6


def recipe_baseline(name: str, data: dict[str, Any]) -> str | None:
    """The baseline a recipe is for: its `baseline:` key (shipped recipes all have one), else
    the `{model}_` prefix of its name when that is a registered baseline, else None (a
    user's recipe that says nothing is not checked)."""
    from refbench.registry import BASELINES

    declared = data.get("baseline")
    if isinstance(declared, str) and declared:
        return declared
    prefix = name.split("_", 1)[0]
    return prefix if "_" in name and prefix in BASELINES else None


def recipe_tasks(data: dict[str, Any]) -> list[str]:
    """The task types a recipe declares with `tasks:` (empty: it does not say, so any)."""
    tasks = data.get("tasks")
    return [str(t) for t in tasks] if isinstance(tasks, list) else []


def recipes_for(baseline: str, task_type: str | None = None) -> list[str]:
    """Names of the recipes (refbench's and plugins') for `baseline`, and when `task_type` is
    given, declared for that task type; used to suggest the right recipe in errors."""
    from refbench.registry import RECIPES

    found = []
    for name in RECIPES.names():
        try:
            data = load_recipe(name)
        except RefbenchError:  # a broken recipe elsewhere must not hide the real error
            continue
        if recipe_baseline(name, data) == baseline and \
                (task_type is None or task_type in recipe_tasks(data)):
            found.append(name)
    return sorted(found)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (", ..." if len(names) > _LISTED else "") if names else "none"


def check_recipe_baseline(recipe: str, data: dict[str, Any], baseline: str) -> None:
    """Refuse a recipe written for another baseline in one line that names the recipes for
    `baseline` (instead of failing later on the first model key the baseline lacks)."""
    wanted = recipe_baseline(recipe, data)
    if wanted is not None and wanted != baseline:
        raise RefbenchError(f"recipe {recipe} is for baseline {wanted!r}, not {baseline!r} "
                            f"(recipes for {baseline}: {_listing(recipes_for(baseline))})")


def check_recipe_task(config: RunConfig, task_type: str) -> None:
    """Refuse a benchmark whose task type (`spec.task.type`) is not among the recipe's
    `tasks:`, in one line naming both and the baseline's recipes for that type. Recipes
    without `tasks:` fit any benchmark."""
    if not config.tasks or task_type in config.tasks:
        return
    article = "an" if task_type[:1].lower() in "aeiou" else "a"
    fitting = recipes_for(config.baseline, task_type)
    raise RefbenchError(f"recipe {config.recipe or '(unnamed)'} is for "
                        f"{' or '.join(config.tasks)} benchmarks; {config.benchmark} is "
                        f"{article} {task_type} benchmark (recipes for it: {_listing(fitting)})")


def build_run_config(baseline: str, benchmark: str, recipe: str | None,
                     overrides: list[str] | None = None) -> RunConfig:
    """Recipe (if any) + command-line choices + overrides -> a checked `RunConfig`.

    A recipe made for another baseline is refused here, before anything is written; the
    benchmark's task type is checked against the recipe's `tasks:` by `check_recipe_task`
    (the runner calls it once it has the benchmark spec)."""
    data: dict[str, Any] = load_recipe(recipe) if recipe else {}
    if recipe:
        check_recipe_baseline(str(data["recipe"]), data, baseline)
    data["baseline"] = baseline
    data["benchmark"] = benchmark
    data = apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


_ = typing  # keep the import for forward references in get_type_hints
