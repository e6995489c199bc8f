"""Export a prepared dataset as a Hugging Face Hub dataset repository folder.

The cache that `refbench datasets prepare` writes is Arrow plus a refbench manifest, which
only refbench reads. An export turns it into the layout the Hub and `datasets` understand
without any refbench code: Parquet shards `data/<config>/<split>-00000-of-0000N.parquet`
(whose schema metadata carries the `datasets` features, so `ClassLabel` names and
`Array2D` shapes survive), a `README.md` dataset card whose YAML front matter declares the
configs, data files, features and split sizes, and a `LICENSE.md` when the licence is not
a standard one. `datasets.load_dataset(folder, config)` loads it offline and
`huggingface_hub.upload_folder` publishes it as is.

The folder is built beside its destination and renamed into place, so a failed export
leaves nothing half-written; a non-empty folder that is not an earlier export is never
replaced.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import datasets as hf_datasets
import yaml
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils import logging as hf_logging
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from refbench import __version__
from refbench.datasets.base import (MANIFEST, DatasetBuilder, default_cache_dir, get_builder,
                                    read_manifest)
from refbench.errors import RefbenchError
from refbench.io import atomic_dir_replace

#: written into every card, so a later export may replace the folder and nothing else
EXPORT_MARKER = "<!-- refbench export:"
#: the most uncompressed Arrow bytes per Parquet shard (what `push_to_hub` aims for)
MAX_SHARD_BYTES = 500_000_000

# Creative Commons licences written the usual way ("CC BY-NC-SA 3.0"), and a few others;
# anything else is exported as `license: other` with its text in LICENSE.md.
_CC = re.compile(r"^cc[ -]?(by(?:-nc)?(?:-nd|-sa)?)[ -]?v?(\d\.\d)$")
_KNOWN_LICENSES = {
    "mit": "mit", "apache 2.0": "apache-2.0", "apache-2.0": "apache-2.0",
    "apache license 2.0": "apache-2.0", "cc0 1.0": "cc0-1.0", "cc0": "cc0-1.0",
    "odc-by": "odc-by", "odbl": "odbl", "pddl": "pddl", "bsd 3-clause": "bsd-3-clause",
    "bsd-3-clause": "bsd-3-clause", "gpl-3.0": "gpl-3.0", "unlicense": "unlicense",
}


def license_id(text: str) -> str | None:
    """The Hub licence id of a builder's free-text licence, or None unless it clearly is one.

    A trailing parenthetical note ("CC BY-SA 4.0 (contexts are from Wikipedia)") is allowed;
    a licence that varies by part or names its own agreement is not mapped.
    """
    core = re.sub(r"\s*\([^()]*\)\s*$", "", text.strip()).strip().lower()
    match = _CC.match(core)
    if match:
        return f"cc-{match.group(1)}-{match.group(2)}"
    return _KNOWN_LICENSES.get(core)


def is_export(folder: Path) -> bool:
    """Whether `folder` holds a dataset card written by an earlier refbench export."""
    card = Path(folder) / "README.md"
    try:
        return card.is_file() and EXPORT_MARKER in card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def read_card_metadata(folder: Path) -> dict[str, Any]:
    """The YAML front matter of an exported folder's `README.md` (configs, dataset_info, ...)."""
    card = Path(folder) / "README.md"
    if not card.is_file():
        raise RefbenchError("no dataset card (README.md) in the export folder", path=card)
    text = card.read_text(encoding="utf-8")
    parts = text.split("---\n", 2)
    if not text.startswith("---\n") or len(parts) < 3:
        raise RefbenchError("dataset card has no YAML front matter", path=card)
    return yaml.safe_load(parts[1]) or {}


def _check_destination(out: Path) -> None:
    """Refuse a destination that is a file, or a non-empty folder that no export wrote."""
    if out.exists() and not out.is_dir():
        raise RefbenchError("export destination exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise RefbenchError("export destination is a non-empty folder that no refbench export "
                            "wrote; refusing to replace it (choose an empty or new folder)",
                            path=out)
    if out.parent.exists() and not out.parent.is_dir():
        raise RefbenchError("parent of the export destination is not a folder", path=out.parent)


def _prepared(builder: DatasetBuilder, cache: Path, configs: list[str] | None
              ) -> tuple[Path, dict[str, Any], list[str]]:
    """The cache folder, its manifest and the configs to export (all prepared ones by default)."""
    folder = builder.cache_path(cache).expanduser().absolute()
    for path in (*reversed(folder.parents), folder):
        if path.exists() and not path.is_dir():
            raise RefbenchError("expected a cache folder, found a file", path=path)
    if (folder / MANIFEST).is_dir():
        raise RefbenchError("expected a file, found a folder", path=folder / MANIFEST)
    manifest = read_manifest(folder)
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise RefbenchError("manifest lists no prepared configs; prepare the dataset again",
                            path=folder / MANIFEST)
    prepared = list(splits)
    if not configs:
        return folder, manifest, [c for c in builder.configs() if c in splits] + \
            [c for c in prepared if c not in builder.configs()]
    for config in configs:
        if config in splits:
            continue
        if config not in builder.configs():
            raise RefbenchError(f"config {config!r} of {builder.name!r} is unknown (prepared: "
                                f"{', '.join(prepared)}; known: {', '.join(builder.configs())})",
                                path=folder)
        raise RefbenchError(f"config {config!r} of {builder.name!r} is not prepared (prepared: "
                            f"{', '.join(prepared)}); prepare it with `refbench datasets "
                            f"prepare {builder.name} --root DIR -c {config}`", path=folder)
    return folder, manifest, list(dict.fromkeys(configs))


def _load_split(path: Path) -> hf_datasets.Dataset:
    """One prepared split, or a one-line error naming the folder that is not one."""
    if not path.exists():
        raise RefbenchError("prepared split folder is missing; prepare the dataset again",
                            path=path)
    if not path.is_dir():
        raise RefbenchError("expected a prepared split folder, found a file", path=path)
    try:
        ds = hf_datasets.load_from_disk(str(path))
    except (OSError, ValueError) as exc:
        raise RefbenchError(f"unreadable prepared split ({type(exc).__name__}); prepare the "
                            "dataset again", path=path) from None
    if not isinstance(ds, hf_datasets.Dataset):
        raise RefbenchError("expected one prepared split, found several", path=path)
    return ds


def shard_count(ds: hf_datasets.Dataset, max_shard_rows: int | None = None,
                max_shard_bytes: int = MAX_SHARD_BYTES) -> int:
    """How many Parquet shards a split needs so none exceeds the row or byte limit
    (point-cloud rows are megabytes each, text rows bytes)."""
    by_bytes = math.ceil(ds.data.nbytes / max_shard_bytes) if max_shard_bytes > 0 else 1
    by_rows = math.ceil(len(ds) / max_shard_rows) if max_shard_rows else 1
    return max(1, by_bytes, by_rows)


def write_parquet_shards(ds: hf_datasets.Dataset, folder: Path, split: str,
                         num_shards: int) -> list[Path]:
    """Write `ds` as `<split>-0000i-of-0000N.parquet` files in row order, without the
    per-file progress bars of `datasets` (the caller reports one line per split)."""
    folder.mkdir(parents=True, exist_ok=True)
    num_shards = max(1, min(num_shards, len(ds) or 1))
    paths = []
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        for index in range(num_shards):
            path = folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
            part = ds.shard(num_shards=num_shards, index=index, contiguous=True) \
                if num_shards > 1 else ds
            part.to_parquet(str(path))
            paths.append(path)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    return paths


def _pretty_name(builder: DatasetBuilder) -> str:
    """`GLUE`, `SQuAD`, `KITTI`: the spelling the builder's module docstring starts with."""
    explicit = getattr(builder, "pretty_name", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    doc = inspect.getdoc(sys.modules.get(type(builder).__module__)) or ""
    first = re.split(r"[\s:,]", doc.strip(), maxsplit=1)[0] if doc.strip() else ""
    return first if first.lower() == builder.name.lower() else builder.name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _license_metadata(builder: DatasetBuilder) -> tuple[dict[str, Any], bool]:
    """Card fields for the licence, and whether a LICENSE.md must carry its text."""
    known = license_id(builder.license)
    if known:
        return {"license": known}, False
    name = _slug(builder.license)
    if not name or len(name) > 64:
        name = f"{builder.name}-license"
    return {"license": "other", "license_name": name, "license_link": "LICENSE.md"}, True


def _features_table(features: hf_datasets.Features) -> list[str]:
    rows = ["| column | type |", "| --- | --- |"]
    for column, feature in features.items():
        shown = repr(feature).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{column}` | `{shown}` |")
    return rows


def _card_body(builder: DatasetBuilder, manifest: dict[str, Any], pretty: str,
               written: dict[str, dict[str, tuple[int, int]]],
               features: dict[str, hf_datasets.Features], license_file: bool) -> str:
    """The Markdown under the front matter: what the data is, its terms and provenance."""
    summary = inspect.getdoc(type(builder)) or ""
    about = inspect.getdoc(sys.modules.get(type(builder).__module__)) or ""
    first = next(iter(written))
    lines = [f"{EXPORT_MARKER} {builder.name}@{builder.version} -->", "", f"# {pretty}", "",
             summary, ""]
    if builder.gated:
        lines += [f"> **Licence warning.** {pretty} is gated: its terms ({builder.license}) "
                  "forbid redistribution unless you hold the right to share it. Publish this "
                  "folder only if you have that right, and then as a gated or private "
                  "repository.", ""]
    licence = builder.license + (" (see [LICENSE.md](LICENSE.md))" if license_file else "")
    lines += [f"- **Homepage:** {builder.homepage or 'n/a'}",
              f"- **Dataset version:** `{builder.name}@{builder.version}`",
              f"- **Licence:** {licence}", "",
              "## Usage", "", "```python", "from datasets import load_dataset", "",
              f'ds = load_dataset("PATH_OR_REPO_ID", "{first}")', "```", "",
              "## Configs and splits", "", "| config | split | rows | files |",
              "| --- | --- | --- | --- |"]
    for config, splits in written.items():
        for split, (rows, shards) in splits.items():
            lines.append(f"| `{config}` | `{split}` | {rows} | {shards} |")
    lines += ["", "## Features", ""]
    for config in written:
        lines += [f"### `{config}`", "", *_features_table(features[config]), ""]
    if about:
        lines += ["## About the source release", "", about, ""]
    lines += ["## Provenance", "",
              f"Prepared from the official release with `refbench datasets prepare "
              f"{builder.name}` (refbench {manifest.get('refbench_version', 'unknown')}, "
              f"{manifest.get('prepared_at', 'unknown time')}) and exported with "
              f"`refbench datasets export {builder.name}` (refbench {__version__}).", "",
              f"- **Manifest fingerprint:** `{manifest.get('fingerprint', 'unknown')}` (sha256 "
              "over the name, version and the sha256 of every official source file)",
              f"- **Source files hashed:** {len(manifest.get('sources', {}))}", ""]
    if builder.citation.strip():
        lines += ["## Citation", "", "```bibtex", builder.citation.strip(), "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _card(builder: DatasetBuilder, manifest: dict[str, Any],
          written: dict[str, dict[str, tuple[int, int]]], infos: dict[str, DatasetInfo],
          license_fields: dict[str, Any], license_file: bool) -> DatasetCard:
    """The dataset card: front matter built with the `datasets` helpers `push_to_hub` uses."""
    pretty = _pretty_name(builder)
    extra: dict[str, Any] = {}
    if builder.gated:
        extra["extra_gated_prompt"] = (
            f"{pretty} is distributed under {builder.license}. Its terms forbid redistribution "
            "unless you hold the right to share it; request access only if those terms allow "
            "you to use this copy.")
        extra["extra_gated_fields"] = {
            f"I have accepted the {pretty} licence and may use this copy": "checkbox"}
    data = DatasetCardData(pretty_name=pretty, tags=["refbench"], **license_fields, **extra)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    first = next(iter(written))
    MetadataConfigs({config: {"data_files": [{"split": split, "path": f"data/{config}/{split}-*"}
                                             for split in splits],
                              **({"default": True} if config == first else {})}
                     for config, splits in written.items()}).to_dataset_card_data(data)
    body = _card_body(builder, manifest, pretty,
                      written, {c: info.features for c, info in infos.items()}, license_file)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def export_dataset(name: str, out: Path, *, configs: list[str] | None = None,
                   cache_dir: str | None = None, max_shard_rows: int | None = None,
                   progress: bool = False) -> Path:
    """Write the prepared dataset `name` as a Hub dataset repository folder at `out`.

    Every prepared config (or those in `configs`) and split becomes Parquet shards under
    `data/<config>/`, described by a `README.md` dataset card, so that
    `datasets.load_dataset(out, config)` and `huggingface_hub.upload_folder` need no
    refbench. `out` is replaced atomically; a non-empty folder that no export wrote is
    refused. Returns `out`.
    """
    if max_shard_rows is not None and max_shard_rows < 1:
        raise RefbenchError(f"max_shard_rows must be at least 1, got {max_shard_rows}")
    builder = get_builder(name)
    out = Path(out).expanduser().absolute()
    _check_destination(out)
    folder, manifest, wanted = _prepared(
        builder, Path(cache_dir) if cache_dir else default_cache_dir(), configs)
    if folder.is_relative_to(out):
        raise RefbenchError("export destination would contain the prepared cache", path=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        written: dict[str, dict[str, tuple[int, int]]] = {}
        infos: dict[str, DatasetInfo] = {}
        for config in wanted:
            splits = SplitDict()
            written[config] = {}
            features: hf_datasets.Features | None = None
            download = 0
            for stored in manifest["splits"][config]:
                split = builder.canonical_split(stored)
                ds = _load_split(folder / config / stored)
                if features is not None and ds.features != features:
                    raise RefbenchError(f"split {stored!r} of config {config!r} has other "
                                        "features than the config's first split; the Hub needs "
                                        "one schema per config", path=folder / config / stored)
                features = features or ds.features
                paths = write_parquet_shards(ds, tmp / "data" / config, split,
                                             shard_count(ds, max_shard_rows))
                download += sum(p.stat().st_size for p in paths)
                splits.add(SplitInfo(name=split, num_bytes=ds.data.nbytes, num_examples=len(ds)))
                written[config][split] = (len(ds), len(paths))
                if progress:
                    print(f"exported {name}/{config}/{split}: {len(ds)} rows in {len(paths)} "
                          f"shard(s)", flush=True)
            infos[config] = DatasetInfo(features=features, splits=splits, download_size=download,
                                        dataset_size=sum(s.num_bytes for s in splits.values()))
        license_fields, license_file = _license_metadata(builder)
        if license_file:
            (tmp / "LICENSE.md").write_text(
                f"# Licence of {_pretty_name(builder)}\n\n{builder.license}\n\n"
                f"Full terms: {builder.homepage or 'see the publisher'}\n", encoding="utf-8")
        card = _card(builder, manifest, written, infos, license_fields, license_file)
        (tmp / "README.md").write_text(str(card), encoding="utf-8")
        atomic_dir_replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def describe_export(out: Path) -> dict[str, Any]:
    """What an export folder holds, from its card and files: for `--json` and checks."""
    out = Path(out)
    meta = read_card_metadata(out)
    infos = meta.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    configs: dict[str, dict[str, Any]] = {}
    for info in infos:
        config = info.get("config_name", "default")
        folder = out / "data" / config
        configs[config] = {
            split["name"]: {"rows": split["num_examples"],
                            "files": sorted(p.relative_to(out).as_posix()
                                            for p in folder.glob(f"{split['name']}-*.parquet"))}
            for split in info.get("splits", [])}
    return {"out": str(out), "license": meta.get("license"), "pretty_name": meta.get("pretty_name"),
            "gated": "extra_gated_prompt" in meta, "configs": configs}
