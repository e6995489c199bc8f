"""Webdataset shards of a prepared M5Product split, and streaming them back.

`prepare --option shards=webdataset` writes, beside the Arrow cache,
`<cache>/m5product/<version>/default/shards/<split>-000000.tar`, ... (`shard_size` items
each). One sample per item, key = item id, members in the webdataset convention
`<id>.<ext>`:

* `<id>.json`: `id, title, pv, pv_keys, pv_values, label, image_size` and the five
  `has_*` masks;
* `<id>.regions.npy` (n x 2048), `<id>.boxes.npy` (n x 4), `<id>.video.npy` (t x 1024),
  `<id>.audio.npy` (80 x 751 or 0 x 751), float32, 0 rows where the modality is missing.

`stream_shards` turns a shard list into a `datasets.IterableDataset` with the builder's
`Features` (`from_generator` with the list in `gen_kwargs`, so DataLoader workers and
`split_dataset_by_node` ranks each read whole shards). A member that cannot be decoded
(a corrupt tar header, undecodable JSON or npy, a wrong shape, a sample that lacks a
member) costs only its sample: a warning line names the shard and key, the sample is
skipped and counted in `SKIPPED` (this process's log), and the run goes on.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.errors import RefbenchError, require

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

log = logging.getLogger(__name__)

SHARD_FOLDER = "shards"
#: array members: name -> row width (None: any rows, fixed width)
ARRAYS = {"regions": 2048, "boxes": 4, "video": 1024, "audio": 751}
TEXT_FIELDS = ("id", "title", "pv", "pv_keys", "pv_values", "label", "image_size",
               "has_image", "has_text", "has_table", "has_video", "has_audio")
#: a fixed member mtime, so the same rows give byte-identical shards
MTIME = 0.0


@dataclass(frozen=True)
class SkippedSample:
    """A sample left out while streaming: the shard, its key and what was wrong."""

    shard: str
    key: str
    reason: str


#: samples skipped by this process (each DataLoader worker keeps its own)
SKIPPED: list[SkippedSample] = []


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:06d}.tar"


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array, dtype="<f4"),
                              allow_pickle=False)
    return buffer.getvalue()


def sample_of(row: dict[str, Any]) -> dict[str, Any]:
    """The webdataset sample (member extension -> bytes) of one prepared row."""
    require("webdataset", "retrieval")
    text = {name: row[name] for name in TEXT_FIELDS}
    text["image_size"] = [int(v) for v in text["image_size"]]
    sample: dict[str, Any] = {
        "__key__": row["id"],
        "json": json.dumps(text, ensure_ascii=False, sort_keys=True).encode("utf-8")}
    for name, width in ARRAYS.items():
        sample[f"{name}.npy"] = _npy_bytes(np.asarray(row[name], np.float32).reshape(-1, width))
    return sample


def write_shards(rows: Iterable[dict[str, Any]], folder: Path, split: str,
                 shard_size: int) -> list[str]:
    """Write `rows` (prepared rows with numpy arrays) into `folder` as tar shards of at
    most `shard_size` samples; returns the shard file names (at least one, maybe empty)."""
    require("webdataset", "retrieval")
    import webdataset as wds

    if shard_size < 1:
        raise RefbenchError(f"shard_size must be at least 1, got {shard_size}",
                            key="shard_size")
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    writer = None
    handle = None
    count = 0
    try:
        for row in rows:
            if writer is None or count == shard_size:
                if writer is not None:
                    writer.close()
                    handle.close()  # type: ignore[union-attr]
                names.append(shard_name(split, len(names)))
                handle = open(folder / names[-1], "wb")
                writer = wds.TarWriter(handle, encoder=False, mtime=MTIME)
                count = 0
            writer.write(sample_of(row))
            count += 1
        if writer is None:  # an empty split still has one (empty) shard
            names.append(shard_name(split, 0))
            handle = open(folder / names[-1], "wb")
            writer = wds.TarWriter(handle, encoder=False, mtime=MTIME)
    finally:
        if writer is not None:
            writer.close()
        if handle is not None:
            handle.close()
    return names


def _decode(members: dict[str, bytes]) -> dict[str, Any]:
    """One row from a sample's members; ValueError says what is wrong."""
    if "json" not in members:
        raise ValueError("no json member")
    text = json.loads(members["json"].decode("utf-8"))
    if not isinstance(text, dict) or any(name not in text for name in TEXT_FIELDS):
        raise ValueError("json member lacks fields")
    row = {name: text[name] for name in TEXT_FIELDS}
    for name, width in ARRAYS.items():
        member = f"{name}.npy"
        if member not in members:
            raise ValueError(f"no {member} member")
        array = np.load(io.BytesIO(members[member]), allow_pickle=False)
        if array.ndim != 2 or array.shape[1] != width or array.dtype != np.float32:
            raise ValueError(f"{member} is {array.dtype} {array.shape}, expected float32 "
                             f"(n, {width})")
        row[name] = array
    return row


def _skip(shard: Path, key: str, reason: str) -> None:
    SKIPPED.append(SkippedSample(str(shard), key, reason))
    log.warning("refbench: skipped sample %s of %s: %s (%d skipped so far)", key, shard,
                reason, len(SKIPPED))


def _members(shard: Path) -> Iterator[tuple[str, str, bytes | None, str]]:
    """`(key, extension, data, error)` of every member in order. `tarfile` ends quietly at
    a corrupt header; the block where it stopped is checked, and a tar that breaks off
    there (or anywhere) yields one error entry naming the key it could read, then ends."""
    key = ""
    try:
        with open(shard, "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                name = info.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                member = tar.extractfile(info)
                data = member.read() if member is not None else b""
                if len(data) != info.size:
                    yield key, ext, None, "member cut off"
                    return
                yield key, ext, data, ""
                tar.members.clear()  # keep memory flat over a long shard
            handle.seek(tar.offset)
            block = handle.read(tarfile.BLOCKSIZE)
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield key or "?", "", None, f"unreadable tar ({type(exc).__name__}: {exc})"
        return
    if block.strip(b"\0"):
        name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace").rsplit("/", 1)[-1]
        yield (name.partition(".")[0] or "?", "", None,
               f"corrupt tar header at byte {tar.offset}: the rest of the shard is lost")


def iter_shard(shard: Path) -> Iterator[dict[str, Any]]:
    """The rows of one shard in order; broken samples are skipped and logged."""
    current: str | None = None
    members: dict[str, bytes] = {}
    broken = ""

    def finish() -> Iterator[dict[str, Any]]:
        if current is None:
            return
        if broken:
            _skip(shard, current, broken)
            return
        try:
            row = _decode(members)
        except (ValueError, UnicodeDecodeError, EOFError, OSError) as exc:
            _skip(shard, current, f"undecodable ({str(exc).splitlines()[0][:100]})")
            return
        if row["id"] != current:
            _skip(shard, current, f"json id {row['id']!r} differs from the key")
            return
        yield row

    for key, ext, data, error in _members(shard):
        if key != current:
            yield from finish()
            current, members, broken = key, {}, ""
        if error:
            broken = error
        elif data is not None:
            members[ext] = data
    yield from finish()


def _generate(shards: list[str]) -> Iterator[dict[str, Any]]:
    for shard in shards:
        yield from iter_shard(Path(shard))


def stream_shards(shards: list[Path], features: hf_datasets.Features
                  ) -> hf_datasets.IterableDataset:
    """An `IterableDataset` over `shards` in order, typed by `features`."""
    import datasets as hf

    return hf.IterableDataset.from_generator(
        _generate, features=features, gen_kwargs={"shards": [str(s) for s in shards]})


def shard_paths(folder: Path, split: str, names: list[str]) -> list[Path]:
    """The listed shards of a split, each of which must still be there."""
    out = [Path(folder) / name for name in names]
    for path in out:
        if not path.is_file():
            raise RefbenchError(f"shard of split {split} is missing (re-run prepare with "
                                f"--option shards=webdataset)", path=path)
    return out
