"""M5Product streaming: webdataset shards written by prepare, `load_dataset(...,
streaming=True)` over shards or the Arrow cache, corrupt members skipped and counted,
and DDP-rank / DataLoader-worker sharding that reads every item exactly once."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest

import refbench
from refbench.datasets.m5product import shards as shard_module
from refbench.datasets.m5product.builder import SPLITS, M5ProductBuilder, features
from refbench.errors import RefbenchError

pytest.importorskip("lmdb")
pytest.importorskip("webdataset")
SHARD_SIZE = 5


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return M5ProductBuilder().synthesize(tmp_path_factory.mktemp("m5s") / "rel", n=40, seed=5)


@pytest.fixture(scope="module")
def sharded(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("m5s_cache")
    M5ProductBuilder().prepare(release, cache, options={"shards": "webdataset",
                                                        "shard_size": str(SHARD_SIZE)})
    return cache


def shard_dir(cache: Path) -> Path:
    return cache / "m5product" / "1.0" / "default" / "shards"


def as_numpy(ds) -> list[dict]:  # type: ignore[no-untyped-def]
    return list(ds.with_format("numpy"))


def same_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert np.array_equal(np.asarray(x[key]), np.asarray(y[key])), key


def test_shards_layout(sharded: Path) -> None:
    manifest = refbench.datasets.base.read_manifest(sharded / "m5product" / "1.0")
    names = manifest["shards"]["default"]
    for split in SPLITS:
        count = manifest["splits"]["default"][split]
        assert names[split] == [f"{split}-{i:06d}.tar" for i in range(-(-count // SHARD_SIZE))]
    with tarfile.open(shard_dir(sharded) / "coarse_query-000000.tar") as tar:
        members = tar.getnames()
    key = members[0].split(".")[0]
    assert sorted(m for m in members if m.startswith(key + ".")) == [
        f"{key}.{ext}" for ext in ("audio.npy", "boxes.npy", "json", "regions.npy", "video.npy")]


def test_streaming_rows_equal_arrow_rows(sharded: Path) -> None:
    import datasets as hf

    for split in SPLITS:
        stream = refbench.load_dataset("m5product", split, cache_dir=str(sharded), streaming=True)
        assert isinstance(stream, hf.IterableDataset) and stream.features == features()
        table = refbench.load_dataset("m5product", split, cache_dir=str(sharded))
        same_rows(as_numpy(stream), as_numpy(table))
    alias = refbench.load_dataset("m5product", "query_fg", cache_dir=str(sharded), streaming=True)
    assert [r["id"] for r in alias] == refbench.load_dataset(
        "m5product", "fine_query", cache_dir=str(sharded))["id"]


def test_fallback_to_the_arrow_cache(release: Path, sharded: Path, tmp_path: Path) -> None:
    import datasets as hf

    cache = tmp_path / "plain"
    M5ProductBuilder().prepare(release, cache)
    assert not shard_dir(cache).exists()
    stream = refbench.load_dataset("m5product", "cls_test", cache_dir=str(cache), streaming=True)
    assert isinstance(stream, hf.IterableDataset) and stream.features == features()
    same_rows(as_numpy(stream), as_numpy(refbench.load_dataset(
        "m5product", "cls_test", cache_dir=str(sharded), streaming=True)))
    every = refbench.load_dataset("m5product", cache_dir=str(cache), streaming=True)
    assert isinstance(every, hf.IterableDatasetDict) and list(every) == list(SPLITS)


def test_prepare_options_are_checked(release: Path, tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="unknown prepare option 'shard'"):
        M5ProductBuilder().prepare(release, tmp_path, options={"shard": "webdataset"})
    with pytest.raises(RefbenchError, match="shards must be one of none, webdataset"):
        M5ProductBuilder().prepare(release, tmp_path, options={"shards": "tfrecord"})


def _rewrite(path: Path, damage: dict[str, bytes]) -> None:
    """Replace members' bytes (by member name) in a shard, keeping valid tar headers."""
    out = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            data = damage.get(info.name, data)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    path.write_bytes(out.getvalue())


def test_corrupt_member_is_skipped_and_counted(sharded: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    shard = tmp_path / "s.tar"
    shard.write_bytes((shard_dir(sharded) / "train-000000.tar").read_bytes())
    keys = [r["id"] for r in shard_module.iter_shard(shard)]
    assert len(keys) == SHARD_SIZE
    _rewrite(shard, {f"{keys[1]}.audio.npy": b"\x93NUMPY garbage",
                     f"{keys[3]}.json": b"{not json"})
    shard_module.SKIPPED.clear()
    with caplog.at_level(logging.WARNING):
        rows = list(shard_module.iter_shard(shard))
    assert [r["id"] for r in rows] == [keys[0], keys[2], keys[4]]
    assert [(s.key, s.shard) for s in shard_module.SKIPPED] == [(keys[1], str(shard)),
                                                                 (keys[3], str(shard))]
    assert f"skipped sample {keys[1]} of {shard}" in caplog.text


def test_wrong_shape_member_and_broken_tar(sharded: Path, tmp_path: Path) -> None:
    shard = tmp_path / "s.tar"
    shard.write_bytes((shard_dir(sharded) / "train-000000.tar").read_bytes())
    keys = [r["id"] for r in shard_module.iter_shard(shard)]
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((80, 750), np.float32))
    _rewrite(shard, {f"{keys[0]}.audio.npy": buffer.getvalue()})
    shard_module.SKIPPED.clear()
    assert [r["id"] for r in shard_module.iter_shard(shard)] == keys[1:]
    assert "float32 (n, 751)" in shard_module.SKIPPED[0].reason
    data = bytearray(shard.read_bytes())
    with tarfile.open(shard) as tar:  # corrupt the header of the third sample's first member
        offset = next(m.offset for m in tar.getmembers() if m.name.startswith(keys[2]))
    data[offset + 148:offset + 156] = b"garbage!"  # the header checksum
    shard.write_bytes(bytes(data))
    shard_module.SKIPPED.clear()
    rows = list(shard_module.iter_shard(shard))
    assert [r["id"] for r in rows] == [keys[1]]
    assert "corrupt tar header" in shard_module.SKIPPED[-1].reason
    shard.write_bytes(bytes(data[:700]))  # cut off inside the first member
    shard_module.SKIPPED.clear()
    assert list(shard_module.iter_shard(shard)) == [] and len(shard_module.SKIPPED) == 1


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_cover_every_item_once(sharded: Path, world: int) -> None:
    from datasets.distributed import split_dataset_by_node

    for use_shards in (True, False):
        stream = refbench.load_dataset("m5product", "train", cache_dir=str(sharded),
                                       streaming=True)
        if not use_shards:
            from refbench.datasets.base import stream_arrow

            stream = stream_arrow(sharded / "m5product/1.0/default/train")
        ids = [r["id"] for rank in range(world)
               for r in split_dataset_by_node(stream, rank=rank, world_size=world)]
        assert sorted(ids) == sorted(refbench.load_dataset(
            "m5product", "train", cache_dir=str(sharded))["id"])


def test_dataloader_workers_cover_every_item_once(sharded: Path) -> None:
    from torch.utils.data import DataLoader

    stream = refbench.load_dataset("m5product", "coarse_gallery", cache_dir=str(sharded),
                                   streaming=True)
    assert stream.num_shards > 1
    loader = DataLoader(stream.select_columns(["id"]), batch_size=None, num_workers=2)
    ids = [row["id"] for row in loader]
    assert sorted(ids) == sorted(refbench.load_dataset(
        "m5product", "coarse_gallery", cache_dir=str(sharded))["id"])
