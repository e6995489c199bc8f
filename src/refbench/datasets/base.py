"""The dataset-builder contract and the prepared cache.

A builder knows one official on-disk release. `check(root)` reports what is missing or
malformed without writing anything; `prepare(root, cache)` parses everything, then writes
Arrow files plus `manifest.json` into a temporary folder that is renamed into place, so a
failed prepare leaves no half-written cache. `load_prepared` reads only the cache.
"""

from __future__ import annotations

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

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """`$REFBENCH_CACHE`, else `~/.cache/refbench`."""
    env = os.environ.get("REFBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "refbench"


@dataclass
class Problem:
    """One thing wrong with a dataset folder: where, and what."""

    path: str
    message: str
    line: int | None = None

    def format(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


@dataclass
class CheckReport:
    """What `check` found: files present, and the problems (missing files, first bad line)."""

    root: str
    found: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "ok": self.ok, "found": self.found,
                "problems": [p.__dict__ for p in self.problems]}


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
            report.problems.append(Problem(str(root), "dataset folder not found"))
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
                progress: bool = False) -> dict[str, Any]:
        """Parse and validate `root`, then write the cache atomically; returns the manifest."""
        root = Path(root)
        if not root.is_dir():
            raise RefbenchError("dataset folder not found", path=root)
        cache = Path(cache) if cache is not None else default_cache_dir()
        wanted = self.resolve_configs(configs)
        final = self.cache_path(cache)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.version}.", dir=final.parent))
        try:
            manifest = self._prepare_into(root, tmp, wanted, final, progress)
            atomic_dir_replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
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
                _save_quietly(ds, tmp / config / split)
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


def _save_quietly(ds: "hf_datasets.Dataset", path: Path) -> None:
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
        raise RefbenchError("dataset is not prepared (no manifest.json); run "
                            "`refbench datasets prepare NAME --root DIR` first", path=path) from None
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"corrupt manifest: {exc.msg}", path=path, line=exc.lineno) from None


def get_builder(name: str) -> DatasetBuilder:
    from refbench.registry import DATASETS

    return DATASETS.get(name)()


def load_prepared(name: str, split: str | None = None, config: str | None = None,
                  cache_dir: str | None = None) -> "hf_datasets.Dataset | hf_datasets.DatasetDict":
    """Read a prepared dataset: one split as `Dataset`, or all splits as `DatasetDict`."""
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
