"""The dataset-builder contract and the prepared cache.

A builder knows one official on-disk release. `check(root)` reports what is missing or
malformed without writing anything; `prepare(root, cache)` parses everything, then writes
Arrow files plus `manifest.json` into a temporary folder that is renamed into place, so a
failed prepare leaves no half-written cache. `load_prepared` reads only the cache.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from refbench.errors import RefbenchError
from refbench.io import atomic_dir_replace, atomic_write_json, sha256_file
from refbench.options import Option

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """`$REFBENCH_CACHE`, else `~/.cache/refbench`."""
    env = os.environ.get("REFBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "refbench"


#: Kinds of `Problem` that builders share; `check` groups and counts problems by kind.
MISSING_FILE = "missing file"
MISSING_FOLDER = "missing folder"
NOT_A_FOLDER = "not a folder"
MALFORMED_LINE = "malformed line"
MALFORMED_FILE = "malformed file"
OTHER_PROBLEM = "problem"


@dataclass
class Problem:
    """One thing wrong with a dataset folder: where, what, and its kind (`MISSING_FILE`,
    `MALFORMED_LINE`, ...), by which `CheckReport` groups, counts and summarizes problems.

    A problem made without a kind is a `MALFORMED_LINE` when it names a line, else
    `OTHER_PROBLEM`, so builders written before kinds existed keep working."""

    path: str
    message: str
    line: int | None = None
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = MALFORMED_LINE if self.line is not None else OTHER_PROBLEM

    @classmethod
    def from_error(cls, exc: RefbenchError, path: str | os.PathLike[str]) -> "Problem":
        """The problem a parser's `RefbenchError` describes (a malformed line when it names
        one, else a malformed file); `path` stands in when the error names no file."""
        message = f"[{exc.key}] {exc.message}" if exc.key else exc.message
        kind = MALFORMED_LINE if exc.line is not None else MALFORMED_FILE
        return cls(exc.path or str(path), message, exc.line, kind)

    def where(self, root: str | None = None) -> str:
        """`path` (relative to `root` when inside it), with `:line` when there is one."""
        path = self.path
        if root:
            path = path.removeprefix(root.rstrip("/\\") + os.sep)
        return path if self.line is None else f"{path}:{self.line}"

    def format(self, root: str | None = None) -> str:
        return f"{self.where(root)}: {self.message}"


@dataclass
class ProblemGroup:
    """The problems of one kind: how many, the first few places, and the builders' notes
    for the kind (e.g. how many frames of a list are present)."""

    kind: str
    count: int
    examples: list[str]
    first: str
    notes: list[str]

    def line(self) -> str:
        """One summary line: `kind: count (example, example, ...) — note; note`, or for a
        single problem `kind: where: message — note`."""
        if self.count == 1:
            text = f"{self.kind}: {self.first}"
        else:
            more = ", ..." if self.count > len(self.examples) else ""
            text = f"{self.kind}: {self.count:,} ({', '.join(self.examples)}{more})"
        return text + (" — " + "; ".join(self.notes) if self.notes else "")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "examples": self.examples,
                "first": self.first, "notes": self.notes}


@dataclass
class CheckReport:
    """What `check` found: files present, the problems (missing files, first bad line of
    each file), notes per problem kind and one-line hints for the situations the builder
    recognizes (a subset of the release, `--root` one level off, another release format).

    Builders append to `found`, `problems` and `hints` and call `note`; `summary` groups
    the problems by kind so that tens of thousands of missing files read as one line."""

    root: str
    found: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, path: str | os.PathLike[str], message: str, kind: str,
            line: int | None = None) -> Problem:
        """Append a problem of `kind` and return it."""
        problem = Problem(str(path), message, line, kind)
        self.problems.append(problem)
        return problem

    def note(self, kind: str, text: str) -> None:
        """Attach `text` to the summary line of the problems of `kind` (once)."""
        notes = self.notes.setdefault(kind, [])
        if text not in notes:
            notes.append(text)

    def hint(self, text: str) -> None:
        """Add a hint: one line (newlines are folded into spaces), each given once."""
        text = " ".join(text.split())
        if text and text not in self.hints:
            self.hints.append(text)

    def summary(self, examples: int = 3) -> list[ProblemGroup]:
        """The problems grouped by kind, in order of first appearance, each with its count,
        its first `examples` places (relative to the root) and its notes."""
        groups: dict[str, list[Problem]] = {}
        for problem in self.problems:
            groups.setdefault(problem.kind, []).append(problem)
        return [ProblemGroup(kind, len(items), [p.where(self.root) for p in items[:examples]],
                             items[0].format(self.root), list(self.notes.get(kind, [])))
                for kind, items in groups.items()]

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "ok": self.ok, "found": self.found,
                "problems": [dict(p.__dict__) for p in self.problems],
                "summary": [g.to_json() for g in self.summary()], "hints": self.hints}


def nearest_folder_hint(root: Path) -> str:
    """For a `--root` that does not exist: a folder with a close name where the path breaks
    off, else what the nearest existing folder above it holds ('' when nothing is)."""
    target = Path(os.path.abspath(root))
    parent = target.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    try:
        names = sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return ""
    first, *rest = target.relative_to(parent).parts
    lower = {name.lower(): name for name in names}
    close = ([lower[first.lower()]] if first.lower() in lower
             else difflib.get_close_matches(first, names, n=1, cutoff=0.75))
    if close:
        return f"{target} does not exist: did you mean --root {parent.joinpath(close[0], *rest)}?"
    shown = ", ".join(f"{n}/" for n in names[:8]) + (", ..." if len(names) > 8 else "")
    return (f"{target} does not exist; the nearest existing folder, {parent}, holds "
            f"{shown or 'no folders'}")


def subfolders(root: Path, depth: int = 2, limit: int = 2000) -> list[Path]:
    """Folders below `root` down to `depth` levels, breadth first and sorted (hidden ones
    skipped; at most `limit` looked at): where builders look for a release one level
    below the `--root` a user gave, to suggest the right one."""
    out: list[Path] = []
    level = [Path(root)]
    for _ in range(depth):
        below: list[Path] = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir()
                                  if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            below.extend(children)
            if len(out) + len(below) >= limit:
                return (out + below)[:limit]
        out.extend(below)
        level = below
    return out


class DatasetBuilder(ABC):
    """Base class of every registered dataset (`@DATASETS.register(name)`).

    Subclasses declare the release they read and implement `configs`, `check`,
    `generate` (parse every split of one config into `datasets.Dataset`s) and
    `synthesize`. `prepare` / `load` are shared.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    license: ClassVar[str]
    citation: ClassVar[str]
    homepage: ClassVar[str] = ""
    gated: ClassVar[bool] = False
    #: the release's own split names -> refbench's (`train`, `validation`, `test`), so
    #: users may name a split either way (KITTI `val`, Waymo `training`)
    split_aliases: ClassVar[dict[str, str]] = {}
    #: options `prepare` takes (`refbench datasets prepare NAME --option key=value`), e.g.
    #: whether to also write webdataset shards; `prepare` puts their values in `options`
    prepare_options: ClassVar[tuple[Option, ...]] = ()
    #: keyword options `synthesize` takes beyond `n` and `seed`
    #: (`refbench datasets synthesize NAME --option key=value`), e.g. a harder variant
    synthesize_options: ClassVar[tuple[Option, ...]] = ()

    @property
    def options(self) -> dict[str, Any]:
        """The prepare options in force: the declared defaults, then what was given."""
        given = getattr(self, "_options", {})
        return {o.name: given.get(o.name, o.default) for o in self.prepare_options}

    def set_options(self, options: dict[str, Any] | None) -> None:
        """Validate `options` against `prepare_options` (an unknown key is an error naming
        the declared ones; a string value is parsed by the option's type)."""
        declared = {o.name: o for o in self.prepare_options}
        values: dict[str, Any] = {}
        for key, value in (options or {}).items():
            if key not in declared:
                known = ", ".join(declared) or "none"
                raise RefbenchError(f"unknown prepare option {key!r} of dataset "
                                    f"{self.name!r} (its options: {known})")
            values[key] = declared[key].parse(value) if isinstance(value, str) else value
        self._options = values

    def streaming_split(self, folder: Path, config: str,
                        split: str) -> "hf_datasets.IterableDataset | None":
        """A builder that writes its own shards (webdataset, ...) returns an iterable
        dataset over the prepared `split` here; None (the default) streams the Arrow cache."""
        return None

    def canonical_split(self, split: str) -> str:
        """The refbench name of a split given by either name."""
        return self.split_aliases.get(split, split)

    @abstractmethod
    def configs(self) -> list[str]:
        """Sub-datasets (GLUE tasks, ...); a single-config dataset returns `["default"]`."""

    @abstractmethod
    def splits(self, config: str) -> list[str]:
        """The split names a config produces (`train`, `validation`, `test`, ...)."""

    @abstractmethod
    def layout(self) -> str:
        """A human description of the expected files, shown by `refbench datasets check`."""

    def check(self, root: Path, configs: list[str] | None = None) -> CheckReport:
        """Report missing files and the first malformed line of each file; write nothing."""
        root = Path(root)
        report = CheckReport(root=str(root))
        if not root.is_dir():
            if root.exists():
                report.add(root, f"a file, but --root takes the dataset's folder (this file "
                                 f"is in {root.parent})", NOT_A_FOLDER)
            else:
                report.add(root, "dataset folder not found", MISSING_FOLDER)
                report.hint(nearest_folder_hint(root))
            return report
        self.check_files(root, self.resolve_configs(configs), report)
        return report

    @abstractmethod
    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        """Add to `report` what the existing `root` holds and every problem found in it."""

    @abstractmethod
    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        """Parse the official files of one config; raise `RefbenchError` naming file:line."""

    @abstractmethod
    def source_files(self, root: Path, config: str) -> list[Path]:
        """The official files `generate` reads for a config (hashed into the manifest)."""

    @abstractmethod
    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        """Write a synthetic copy of the official layout into `out`; return the root."""

    # -- shared -----------------------------------------------------------------------
    def resolve_configs(self, configs: list[str] | None) -> list[str]:
        known = self.configs()
        if not configs:
            return known
        for config in configs:
            if config not in known:
                import difflib

                close = difflib.get_close_matches(config, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise RefbenchError(f"unknown config {config!r} of dataset {self.name!r}{hint} "
                                    f"(known: {', '.join(known)})")
        return list(configs)

    def cache_path(self, cache: Path) -> Path:
        return Path(cache) / self.name / self.version

    def prepare(self, root: Path, cache: Path | None = None, configs: list[str] | None = None,
                progress: bool = False, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Parse and validate `root`, then write the cache atomically; returns the manifest."""
        self.set_options(options)
        root = Path(root)
        if not root.is_dir():
            raise RefbenchError("dataset folder not found", path=root)
        cache = Path(cache) if cache is not None else default_cache_dir()
        wanted = self.resolve_configs(configs)
        final = self.cache_path(cache)
        created = _make_parent(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.version}.", dir=final.parent))
        try:
            manifest = self._prepare_into(root, tmp, wanted, final, progress)
            atomic_dir_replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            _remove_if_empty(created)
            raise
        return manifest

    def _prepare_into(self, root: Path, tmp: Path, wanted: list[str], final: Path,
                      progress: bool) -> dict[str, Any]:
        import hashlib

        from refbench import __version__

        started = time.time()
        previous = read_manifest(final) if (final / MANIFEST).exists() else None
        splits: dict[str, dict[str, int]] = {}
        sources: dict[str, str] = {}
        for config in wanted:
            data = {self.canonical_split(s): ds for s, ds in self.generate(root, config).items()}
            for split, ds in data.items():
                save_quietly(ds, tmp / config / split)
            splits[config] = {split: len(ds) for split, ds in data.items()}
            for path in self.source_files(root, config):
                sources[path.relative_to(root).as_posix()] = sha256_file(path)
            if progress:
                counts = ", ".join(f"{s}={n}" for s, n in splits[config].items())
                print(f"prepared {self.name}/{config}: {counts}", flush=True)
        # configs prepared earlier and not asked for now are kept
        if previous is not None:
            for config, counts in previous.get("splits", {}).items():
                if config not in splits and (final / config).exists():
                    shutil.copytree(final / config, tmp / config)
                    splits[config] = counts
                    sources.update({k: v for k, v in previous.get("sources", {}).items()
                                    if k.split("/")[0] not in wanted})
        digest = hashlib.sha256(f"{self.name}@{self.version}".encode())
        for rel, sha in sorted(sources.items()):
            digest.update(f"{rel}\0{sha}\n".encode())
        manifest = {
            "name": self.name, "version": self.version, "refbench_version": __version__,
            "source_root": str(root.resolve()), "splits": splits, "sources": sources,
            "fingerprint": digest.hexdigest(), "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                             time.gmtime()),
            "seconds": round(time.time() - started, 3),
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        return manifest

    def load(self, split: str | None = None, config: str | None = None,
             cache: Path | None = None) -> "hf_datasets.Dataset | hf_datasets.DatasetDict":
        return load_prepared(self.name, split=split, config=config,
                             cache_dir=None if cache is None else str(cache))



class ChunkedDatasetBuilder(DatasetBuilder):
    """A builder whose `prepare` converts a large release chunk by chunk: finished chunks
    are kept in a work folder beside the cache, so an interrupted prepare resumes where it
    stopped; the cache is still written aside and swapped in whole, and a bad input (a
    `RefbenchError`) removes the partial work too."""

    def work_dir(self, root: Path, cache: Path) -> Path:
        """Where finished shards of an interrupted prepare of `root` wait to be reused."""
        import hashlib

        key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
        return self.cache_path(cache).parent / f".{self.version}.partial-{key}"

    def check_prepare_inputs(self, root: Path) -> None:
        """Refuse, before any work, a release that cannot be prepared (default: accept)."""

    @abstractmethod
    def prepare_chunks(self, root: Path, tmp: Path, work: Path, progress: bool) -> dict[str, Any]:
        """Write every split into `tmp` (reusing finished shards of `work`); the manifest."""

    def prepare(self, root: Path, cache: Path | None = None, configs: list[str] | None = None,
                progress: bool = False, options: dict[str, Any] | None = None) -> dict[str, Any]:
        self.set_options(options)
        root = Path(root)
        if not root.is_dir():
            raise RefbenchError("dataset folder not found", path=root)
        self.resolve_configs(configs)
        self.check_prepare_inputs(root)
        cache = Path(cache) if cache is not None else default_cache_dir()
        final = self.cache_path(cache)
        created = _make_parent(final)
        work = self.work_dir(root, cache)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.version}.", dir=final.parent))
        try:
            manifest = self.prepare_chunks(root, tmp, work, progress)
            atomic_dir_replace(tmp, final)
        except RefbenchError:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
            _remove_if_empty(created)
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # `work` stays: the next run resumes
            _remove_if_empty(created)
            raise
        shutil.rmtree(work, ignore_errors=True)
        return manifest


def _make_parent(final: Path) -> Path | None:
    """Create the dataset's folder in the cache; returns it when this call created it, so a
    failed prepare can take it away again (an empty `<cache>/<name>/` looks prepared)."""
    created = None if final.parent.exists() else final.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    return created


def _remove_if_empty(folder: Path | None) -> None:
    """Remove `folder` if a failed prepare left it empty (kept when it holds anything)."""
    if folder is not None:
        try:
            folder.rmdir()
        except OSError:
            pass


def save_quietly(ds: "hf_datasets.Dataset", path: Path) -> None:
    """`save_to_disk` without its per-split progress bar (refbench reports per config)."""
    from datasets.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        ds.save_to_disk(str(path))
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        name, cache = Path(folder).parent.name, Path(folder).parent.parent
        raise RefbenchError(f"dataset {name} is not prepared in the cache {cache} (no "
                            f"manifest.json); run `refbench datasets prepare {name} --root DIR` "
                            f"first, with the same --cache-dir or REFBENCH_CACHE (they choose "
                            f"the cache folder)", path=path) from None
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"corrupt manifest: {exc.msg}", path=path, line=exc.lineno) from None


def get_builder(name: str) -> DatasetBuilder:
    from refbench.registry import DATASETS

    return DATASETS.get(name)()


#: most shards the Arrow fallback of `streaming=True` cuts a split into (DataLoader workers
#: and DDP ranks each take whole shards)
STREAM_SHARDS = 64


def stream_arrow(folder: Path) -> "hf_datasets.IterableDataset":
    """A prepared Arrow split as an `IterableDataset`, cut into contiguous shards so
    `split_dataset_by_node` and DataLoader workers divide it without reading it twice."""
    import datasets as hf_datasets

    ds = hf_datasets.load_from_disk(str(folder))
    return ds.to_iterable_dataset(num_shards=max(1, min(len(ds), STREAM_SHARDS)))


def load_streaming(builder: DatasetBuilder, folder: Path, config: str,
                   split: str) -> "hf_datasets.IterableDataset":
    """A stored split as an iterable dataset: the builder's shards when it wrote some,
    else the Arrow cache."""
    streamed = builder.streaming_split(folder, config, split)
    return streamed if streamed is not None else stream_arrow(folder / config / split)


def load_prepared(name: str, split: str | None = None, config: str | None = None,
                  cache_dir: str | None = None, streaming: bool = False
                  ) -> "hf_datasets.Dataset | hf_datasets.DatasetDict | hf_datasets.IterableDataset | hf_datasets.IterableDatasetDict":
    """Read a prepared dataset: one split as `Dataset`, or all splits as `DatasetDict`;
    with `streaming`, `IterableDataset` / `IterableDatasetDict` that read the cache (or
    the builder's shards) example by example, never the whole split at once."""
    import datasets as hf_datasets

    builder = get_builder(name)
    folder = builder.cache_path(Path(cache_dir) if cache_dir else default_cache_dir())
    manifest = read_manifest(folder)
    configs = list(manifest["splits"])
    if config is None:
        if len(configs) != 1:
            raise RefbenchError(f"dataset {name!r} has several configs; pass config= one of "
                                f"{', '.join(configs)}")
        config = configs[0]
    if config not in manifest["splits"]:
        raise RefbenchError(f"config {config!r} of {name!r} is not prepared (prepared: "
                            f"{', '.join(configs)})", path=folder)
    available = list(manifest["splits"][config])
    if streaming:
        if split is None:
            return hf_datasets.IterableDatasetDict({
                builder.canonical_split(s): load_streaming(builder, folder, config, s)
                for s in available})
        stored = resolve_split(builder, split, available, f"{name}/{config}")
        return load_streaming(builder, folder, config, stored)
    if split is None:
        return hf_datasets.DatasetDict({builder.canonical_split(s):
                                        hf_datasets.load_from_disk(str(folder / config / s))
                                        for s in available})
    stored = resolve_split(builder, split, available, f"{name}/{config}")
    return hf_datasets.load_from_disk(str(folder / config / stored))


def resolve_split(builder: DatasetBuilder, split: str, available: list[str], what: str) -> str:
    """The stored split folder for a split named by refbench's or the release's name (a
    cache prepared by an older refbench may hold the release's names)."""
    wanted = builder.canonical_split(split)
    for stored in available:
        if builder.canonical_split(stored) == wanted:
            return stored
    aliases = {canon: off for off, canon in builder.split_aliases.items()}
    shown = [f"{s} (or {aliases[s]})" if s in aliases else s for s in available]
    raise RefbenchError(f"unknown split {split!r} of {what} (available: {', '.join(shown)})")


def dataset_fingerprint(name: str, cache_dir: str | None = None) -> str | None:
    builder = get_builder(name)
    folder = builder.cache_path(Path(cache_dir) if cache_dir else default_cache_dir())
    try:
        return read_manifest(folder)["fingerprint"]
    except RefbenchError:
        return None
