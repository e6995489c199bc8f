"""Chunked, resumable `prepare` of a try-on release (full VITON-HD: 11,647 + 2,032 pairs of
eight 1024 x 768 images a row, tens of GB as bytes).

A split is converted `chunk_size` rows at a time: each chunk is validated, written as a
`datasets` shard into the work folder beside the cache (`ChunkedDatasetBuilder.work_dir`)
and marked done by a `done.json` written last, so memory holds one chunk, never a split,
and an interrupted prepare reuses every finished shard on the next run. A shard's name
carries a key of what it was made from: the dataset and version, the config, split and
prepare options, and per pair its names, `paired` flag and the size and modification time
of every file the row reads; a changed file makes only its own chunk convert again. The
finished shards of a split are then concatenated (memory-mapped) into the cache.

A release has one image size: the first person image of the first listed pair sets it
(and, for MPV3D, the depth columns' shape), and every row is checked against it, so the
error names the offending file as the in-memory path did.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from refbench.datasets import base
from refbench.datasets.tryon import readers
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.datasets.tryon.builder import TryOnBuilder

DONE = "done.json"


def release_shape(builder: "TryOnBuilder", root: Path) -> tuple[int, int] | None:
    """(height, width) of the first listed person image; None when no split has pairs."""
    from refbench.datasets.tryon.builder import SPLITS, split_pairs

    for split in SPLITS:
        pairs, _, _ = split_pairs(builder.release, root, "unpaired", split)
        for pair, _paired in pairs:
            files = builder.release.files(root, split, pair.person, pair.cloth)
            if files.person.is_file():
                return readers.image_size(files.person, "person image")
    return None


def _stamp(path: Path | None) -> list[Any]:
    if path is None or not path.exists():
        return [None]
    stat = path.stat()
    return [path.name, stat.st_size, stat.st_mtime_ns]


def chunk_key(builder: "TryOnBuilder", root: Path, config: str, split: str,
              chunk: list[tuple[readers.Pair, bool]], options: Mapping[str, Any]) -> str:
    """What a shard was made from (module docstring), as 20 hex digits."""
    digest = hashlib.sha256(f"{builder.name}@{builder.version}:{config}:{split}".encode())
    digest.update(json.dumps(dict(options), sort_keys=True, default=str).encode())
    for pair, paired in chunk:
        files = builder.release.files(root, split, pair.person, pair.cloth)
        paths = [files.person, files.cloth, *files.optional.values()]
        digest.update(json.dumps([pair.person, pair.cloth, paired,
                                  [_stamp(p) for p in paths]]).encode())
    return digest.hexdigest()[:20]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _check_size(row: dict[str, Any], shape: tuple[int, int] | None, first: str) -> None:
    if shape is not None and (row["height"], row["width"]) != shape:
        raise RefbenchError(f"person image {row['person']['path']} is {row['width']}x"
                            f"{row['height']} (WxH) but {first} is {shape[1]}x{shape[0]}: a "
                            f"release has one size")


def convert_split(builder: "TryOnBuilder", root: Path, config: str, split: str, work: Path,
                  feats: "hf_datasets.Features", shape: tuple[int, int] | None,
                  stats: dict[str, int]) -> list[Path]:
    """The finished shards of one split, converted or reused; counts go into `stats`."""
    from refbench.datasets.tryon.builder import read_row, split_pairs

    pairs, path, _ = split_pairs(builder.release, root, config, split)
    derive = builder._derive()
    options = builder.options
    first = "the first person image"
    shards = []
    for number, chunk in enumerate(_chunks(pairs, builder.chunk_size)):
        key = chunk_key(builder, root, config, split, chunk, options)
        shard = work / config / split / f"{number:06d}-{key}"
        if (shard / DONE).is_file():
            stats["reused"] += len(chunk)
        else:
            shutil.rmtree(shard, ignore_errors=True)
            assert path is not None
            rows = []
            for pair, paired in chunk:
                row = read_row(builder.release, root, split, pair, paired, path, derive)
                _check_size(row, shape, first)
                rows.append(row)
            _save_rows(rows, feats, split, shard)
            atomic_write_json(shard / DONE, {"rows": len(rows)})  # last: marks it done
            stats["converted"] += len(chunk)
        shards.append(shard)
    return shards


def _save_rows(rows: list[dict[str, Any]], feats: "hf_datasets.Features", split: str,
               shard: Path) -> None:
    import datasets as hf

    if not rows:
        ds = hf.Dataset.from_dict({k: [] for k in feats}, features=feats, split=split)
    else:
        ds = hf.Dataset.from_list(rows, features=feats, split=split)
    base.save_quietly(ds, shard)


def prepare_release(builder: "TryOnBuilder", root: Path, tmp: Path, work: Path,
                    progress: bool) -> dict[str, Any]:
    """Write every config and split of `root` into `tmp` chunk by chunk; the manifest."""
    import datasets as hf

    from refbench import __version__
    from refbench.datasets.tryon.builder import SPLITS, features

    started = time.time()
    root = Path(root)
    shape = release_shape(builder, root)
    depth = (shape or (1, 1)) if builder.release.has_depth else None
    feats = features(builder.release.pose_points, depth)
    splits: dict[str, dict[str, int]] = {}
    sources: dict[str, str] = {}
    stats = {"converted": 0, "reused": 0}
    for config in builder.configs():
        splits[config] = {}
        for split in SPLITS:
            shards = convert_split(builder, root, config, split, work, feats, shape, stats)
            parts = [hf.load_from_disk(str(s)) for s in shards]
            if not parts:
                _save_rows([], feats, split, tmp / config / split)
                splits[config][split] = 0
            else:
                ds = parts[0] if len(parts) == 1 else hf.concatenate_datasets(parts)
                base.save_quietly(ds, tmp / config / split)
                splits[config][split] = len(ds)
                del ds, parts
            if progress:
                print(f"prepared {builder.name}/{config}/{split}: {splits[config][split]:,} "
                      f"pairs ({stats['reused']:,} rows reused so far)", flush=True)
        for path in builder.source_files(root, config):
            rel = path.relative_to(root).as_posix()
            if rel not in sources:
                sources[rel] = sha256_file(path)
    digest = hashlib.sha256(f"{builder.name}@{builder.version}".encode())
    for rel, sha in sorted(sources.items()):
        digest.update(f"{rel}\0{sha}\n".encode())
    seconds = time.time() - started
    manifest = {
        "name": builder.name, "version": builder.version, "refbench_version": __version__,
        "source_root": str(root.resolve()), "splits": splits, "sources": sources,
        "fingerprint": digest.hexdigest(), "options": {k: v for k, v in builder.options.items()},
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 3), "rows_converted": stats["converted"],
        "rows_reused": stats["reused"], "chunk_size": builder.chunk_size,
    }
    atomic_write_json(tmp / base.MANIFEST, manifest)
    return manifest
