"""M5Product (CVPR 2022, SCALE): five-modality e-commerce items, read from the layout the
official SCALE code consumes.

```
ROOT/subset_v2_id_label.json          {item_id: {"title", "pv", "label"}} (readers.INFO_FILES)
ROOT/product1m_product5m_test_id_label.json   optional fine-grained info (fine_* splits)
ROOT/subset_v2_label_list.json        JSON array of labels (index = class)
ROOT/[lmdb_features/]*.lmdb           bottom-up region features (tensorpack LMDBSerializer,
                                      records [features, boxes, num_boxes, h, w, id, title])
ROOT/video_feature/<item_id>.npy      T x 1024 S3D features (first 12 frames kept)
ROOT/audio_feature/<item_id>.npy      80 x 751 audio features
ROOT/<id lists>                       readers.LIST_FILES: query_c / gallery_c / query_fg /
                                      gallery_fg / subset_train / subset_test (+ optional
                                      pretrain list; without it every info item is `train`)
```

Splits: `train`, `coarse_query`, `coarse_gallery`, `fine_query`, `fine_gallery`,
`cls_train`, `cls_test` (the scripts' names are aliases). Every row has the same columns
(`features()`); a modality an item lacks is *explicit*: its mask is false and its array
has 0 rows (the official loader zero-fills instead, which a model cannot tell from data).

`prepare` streams with flat memory: the info JSON(s) and LMDB keys go to an on-disk
index (`index.py`), each split's id list is converted in chunks of `chunk_size` items
saved in a work folder keyed by their content (an interrupted prepare resumes), and with
`--option shards=webdataset` it also writes webdataset tars per split (`shards.py`) that
`refbench.load_dataset("m5product", split, streaming=True)` reads.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from refbench.datasets.base import MANIFEST, CheckReport, ChunkedDatasetBuilder, save_quietly
from refbench.datasets.m5product.index import ReleaseIndex, open_or_build
from refbench.datasets.m5product.media import (
    AUDIO_DIRS,
    AUDIO_SHAPE,
    VIDEO_DIM,
    VIDEO_DIRS,
    media_dir,
    read_audio,
    read_video,
)
from refbench.datasets.m5product.readers import (
    INFO_FILES,
    LABEL_LIST_FILES,
    LIST_FILES,
    SPLIT_ALIASES,
    M5Info,
    iter_id_list,
    list_file,
    parse_pv,
)
from refbench.datasets.m5product.shards import (
    SHARD_FOLDER,
    shard_paths,
    stream_shards,
    write_shards,
)
from refbench.datasets.product1m.builder import array2d_column
from refbench.datasets.product1m.features import FEATURE_DIM, RegionRecord
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.options import Option
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

SPLITS = ("train", "coarse_query", "coarse_gallery", "fine_query", "fine_gallery",
          "cls_train", "cls_test")
MODALITIES = ("image", "text", "table", "video", "audio")
INDEX_FILE = "release-index.sqlite"
SHARD_FORMATS = ("none", "webdataset")


def features() -> hf_datasets.Features:
    """The explicit features of every split."""
    import datasets as hf

    return hf.Features({
        "id": hf.Value("string"),
        "title": hf.Value("string"),
        "pv": hf.Value("string"),
        "pv_keys": hf.Sequence(hf.Value("string")),
        "pv_values": hf.Sequence(hf.Value("string")),
        "label": hf.Value("string"),
        "regions": hf.Array2D(shape=(None, FEATURE_DIM), dtype="float32"),
        "boxes": hf.Array2D(shape=(None, 4), dtype="float32"),
        "image_size": hf.Sequence(hf.Value("int32"), length=2),
        "video": hf.Array2D(shape=(None, VIDEO_DIM), dtype="float32"),
        "audio": hf.Array2D(shape=(None, AUDIO_SHAPE[1]), dtype="float32"),
        **{f"has_{m}": hf.Value("bool") for m in MODALITIES},
    })


_WIDTHS = {"regions": FEATURE_DIM, "boxes": 4, "video": VIDEO_DIM, "audio": AUDIO_SHAPE[1]}


def item_row(item_id: str, info: M5Info, record: RegionRecord | None,
             video: np.ndarray | None, audio: np.ndarray | None) -> dict[str, Any]:
    """One row; a missing modality has 0 rows and a false mask, never zeros."""
    pairs = parse_pv(info.pv)
    none = {name: np.zeros((0, width), np.float32) for name, width in _WIDTHS.items()}
    regions = none["regions"] if record is None else record.features
    return {
        "id": item_id, "title": info.title, "pv": info.pv,
        "pv_keys": [k for k, _ in pairs], "pv_values": [v for _, v in pairs],
        "label": info.label, "regions": regions,
        "boxes": none["boxes"] if record is None else record.boxes,
        "image_size": [0, 0] if record is None else [record.image_w, record.image_h],
        "video": none["video"] if video is None else video,
        "audio": none["audio"] if audio is None else audio,
        "has_image": len(regions) > 0, "has_text": bool(info.title.strip()),
        "has_table": bool(pairs), "has_video": video is not None and len(video) > 0,
        "has_audio": audio is not None}


def rows_to_dataset(rows: list[dict[str, Any]], split: str) -> hf_datasets.Dataset:
    """A `Dataset` with `features()` holding `rows` (arrays go to Arrow without lists)."""
    import datasets as hf
    import pyarrow as pa
    from datasets.table import InMemoryTable

    feats = features()
    schema = feats.arrow_schema
    columns = {}
    for name in feats:
        values = [row[name] for row in rows]
        if name in _WIDTHS:
            columns[name] = array2d_column(values, _WIDTHS[name], schema.field(name).type)
        else:
            columns[name] = pa.array(values, schema.field(name).type)
    return hf.Dataset(InMemoryTable(pa.table(columns, schema=schema)),
                      info=hf.DatasetInfo(features=feats), split=hf.NamedSplit(split))


def assemble_split(folders: list[Path], dest: Path, split: str) -> None:
    """Save the chunks of a split as one dataset by copying their Arrow files into `dest`
    and listing them in its `state.json` (as `save_to_disk` lays out a sharded dataset):
    nothing is decoded or memory-mapped, so memory stays flat in the split's size."""
    if not folders:
        save_quietly(rows_to_dataset([], split), dest)
        return
    files = [folder / entry["filename"] for folder in folders for entry in
             json.loads((folder / "state.json").read_text(encoding="utf-8"))["_data_files"]]
    dest.mkdir(parents=True)
    names = [f"data-{i:05d}-of-{len(files):05d}.arrow" for i in range(len(files))]
    for source, name in zip(files, names):
        shutil.copyfile(source, dest / name)
    shutil.copyfile(folders[0] / "dataset_info.json", dest / "dataset_info.json")
    state = json.loads((folders[0] / "state.json").read_text(encoding="utf-8"))
    state.update({"_data_files": [{"filename": n} for n in names], "_split": split,
                  "_fingerprint": hashlib.sha256("/".join(f.parent.name for f in files)
                                                 .encode()).hexdigest()[:16]})
    atomic_write_json(dest / "state.json", state)


def chunk_rows(folders: list[Path]) -> Iterator[dict[str, Any]]:
    """The rows of a split's chunks in order (arrays as numpy), one chunk mapped at a time."""
    import datasets as hf

    for folder in folders:
        part = hf.load_from_disk(str(folder)).with_format(
            "numpy", columns=list(_WIDTHS), output_all_columns=True)
        yield from part
        del part


class Release:
    """A release folder joined through its index: the items of a split, row by row."""

    def __init__(self, root: Path, index: ReleaseIndex) -> None:
        self.root, self.index = Path(root), index
        self.video_dir = media_dir(root, VIDEO_DIRS)
        self.audio_dir = media_dir(root, AUDIO_DIRS)

    def media(self, folder: Path | None, item_id: str) -> Path | None:
        path = None if folder is None else folder / f"{item_id}.npy"
        return path if path is not None and path.exists() else None

    def listed(self, split: str, digest: Any = None) -> Iterator[tuple[Path | None, int, str]]:
        """`(list file, line, id)` of a split, duplicates refused (an on-disk id set); the
        train split without a list is every entry of the info JSON."""
        path = list_file(self.root, split)
        if path is None:
            if split == "train":
                for line, item_id in self.index.iter_ids():
                    yield None, line, item_id
            return
        db = self.index.db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, line INTEGER)")
        db.execute("DELETE FROM seen")
        for line, item_id in iter_id_list(path, digest):
            try:
                db.execute("INSERT INTO seen VALUES (?, ?)", (item_id, line))
            except sqlite3.IntegrityError:
                first = db.execute("SELECT line FROM seen WHERE id=?", (item_id,)).fetchone()
                raise RefbenchError(f"duplicate item id {item_id} (first on line {first[0]})",
                                    path=path, line=line) from None
            yield path, line, item_id

    def lookup(self, split: str, path: Path | None, line: int, item_id: str) -> M5Info:
        info = self.index.info(item_id, fine=split.startswith("fine_"))
        if info is None:
            raise RefbenchError(f"item id {item_id} is not in the info JSON", path=path,
                                line=line)
        return info

    def row(self, split: str, path: Path | None, line: int, item_id: str) -> dict[str, Any]:
        info = self.lookup(split, path, line, item_id)
        video = self.media(self.video_dir, item_id)
        audio = self.media(self.audio_dir, item_id)
        return item_row(item_id, info, self.index.regions(item_id),
                        None if video is None else read_video(video),
                        None if audio is None else read_audio(audio))

    def chunk_key(self, split: str, chunk: list[tuple[Path | None, int, str]]) -> str:
        """What a chunk's rows depend on: ids, info entries, region places, media stamps."""
        digest = hashlib.sha256(f"m5product:{split}".encode())
        digest.update(json.dumps(self.index.digests, sort_keys=True).encode())
        for path, line, item_id in chunk:
            info = self.lookup(split, path, line, item_id)
            where = self.index.region_key(item_id)
            stamps = []
            for folder in (self.video_dir, self.audio_dir):
                media = self.media(folder, item_id)
                st = None if media is None else media.stat()
                stamps.append(None if st is None else [st.st_size, st.st_mtime_ns])
            digest.update(json.dumps([item_id, info.title, info.pv, info.label,
                                      None if where is None else [where[0], where[1].hex()],
                                      stamps], ensure_ascii=False).encode())
        return digest.hexdigest()[:20]


_CITATION = """@inproceedings{dong2022m5product,
  title     = {M5Product: Self-harmonized Contrastive Learning for E-commercial Multi-modal Pretraining},
  author    = {Dong, Xiao and Zhan, Xunlin and Wu, Yangxin and Wei, Yunchao and Kampffmeyer, Michael C. and Wei, Xiaoyong and Lu, Minlong and Wang, Yaowei and Liang, Xiaodan},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022},
  pages     = {21252-21262}
}"""


@DATASETS.register("m5product")
class M5ProductBuilder(ChunkedDatasetBuilder):
    """M5Product (config `default`; splits `train`, `coarse_query`, `coarse_gallery`,
    `fine_query`, `fine_gallery`, `cls_train`, `cls_test`)."""

    name = "m5product"
    version = "1.0"
    license = "research use only (the release's terms; items are Taobao listings)"
    citation = _CITATION
    homepage = "https://xiaodongsuper.github.io/M5Product_dataset/"
    split_aliases: ClassVar[dict[str, str]] = dict(SPLIT_ALIASES)
    prepare_options: ClassVar[tuple[Option, ...]] = (
        Option("shards", "str", "also write shards per split for streaming: 'webdataset' "
               "(tar files of shards/<split>-NNNNNN.tar) or 'none'", "none"),
        Option("shard_size", "int", "items per webdataset shard", 1000),
    )
    #: items per resumable chunk (regions, video and audio are ~0.6 MB an item)
    chunk_size: int = 256

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLITS)

    def layout(self) -> str:
        lists = "\n".join(f"    {split}: {' | '.join(names[::2])} (.json array or .txt)"
                          for split, names in LIST_FILES.items())
        return ("The M5Product release as the SCALE code reads it:\n"
                f"  {' | '.join(INFO_FILES)}   (id -> {{title, pv, label}})\n"
                f"  {' | '.join(LABEL_LIST_FILES)}   (JSON array of labels)\n"
                "  [lmdb_features/]*.lmdb   (bottom-up region features, tensorpack layout)\n"
                f"  {VIDEO_DIRS[0]}/<item_id>.npy (T x 1024), {AUDIO_DIRS[0]}/<item_id>.npy "
                "(80 x 751): optional per item\n  id lists, one per split:\n" + lists)

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        from refbench.datasets.m5product.check import check_release

        check_release(Path(root), report)

    def source_files(self, root: Path, config: str) -> list[Path]:
        from refbench.datasets.m5product.index import source_paths

        main, fine, lmdbs = source_paths(Path(root))
        lists = [p for s in SPLITS if (p := list_file(Path(root), s)) is not None]
        return ([p for p in (main, fine) if p is not None] + lists
                + [f / "data.mdb" if f.is_dir() else f for f in lmdbs])

    def generate(self, root: Path, config: str) -> dict[str, hf_datasets.Dataset]:
        """Every split in memory (small releases and tests); `prepare` streams instead."""
        import tempfile

        self.resolve_configs([config])
        with tempfile.TemporaryDirectory() as tmp:
            with open_or_build(Path(root), Path(tmp) / INDEX_FILE) as index:
                release = Release(Path(root), index)
                return {split: rows_to_dataset([release.row(split, *x)
                                                for x in release.listed(split)], split)
                        for split in SPLITS}

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.m5product.synth import synthesize

        return synthesize(Path(out), n=n, seed=seed)

    # -- resumable preparation -------------------------------------------------------------
    def check_prepare_inputs(self, root: Path) -> None:
        from refbench.datasets.m5product.readers import find_file

        if find_file(root, INFO_FILES) is None:
            raise RefbenchError(f"missing the info JSON (one of {', '.join(INFO_FILES)})",
                                path=root)
        shards = self.options["shards"]
        if shards not in SHARD_FORMATS:
            raise RefbenchError(f"shards must be one of {', '.join(SHARD_FORMATS)}, got "
                                f"{shards!r}", key="shards")

    def _convert_split(self, release: Release, split: str, work: Path, digest: Any,
                       stats: dict[str, int]) -> list[Path]:
        """The chunk folders of one split, converted or reused; counts go into `stats`."""
        out = []
        listed = release.listed(split, digest)
        for number in itertools.count():
            chunk = list(itertools.islice(listed, self.chunk_size))
            if not chunk:
                break
            folder = work / split / f"{number:06d}-{release.chunk_key(split, chunk)}"
            if (folder / "done.json").is_file():
                done = json.loads((folder / "done.json").read_text(encoding="utf-8"))
                stats["reused"] += len(chunk)
            else:
                shutil.rmtree(folder, ignore_errors=True)
                rows = [release.row(split, *x) for x in chunk]
                done = {f"has_{m}": sum(bool(r[f"has_{m}"]) for r in rows) for m in MODALITIES}
                done["without_label"] = sum(not r["label"] for r in rows)
                done["rows"] = len(rows)
                save_quietly(rows_to_dataset(rows, split), folder)
                atomic_write_json(folder / "done.json", done)  # written last: marks it done
                stats["converted"] += len(chunk)
            for name, value in done.items():
                stats[name] = stats.get(name, 0) + value
            out.append(folder)
        return out

    def prepare_chunks(self, root: Path, tmp: Path, work: Path, progress: bool
                       ) -> dict[str, Any]:
        from refbench import __version__

        started = time.time()
        counts: dict[str, int] = {}
        modalities: dict[str, dict[str, int]] = {}
        sources: dict[str, str] = {}
        shards: dict[str, list[str]] = {}
        converted = reused = 0
        work.mkdir(parents=True, exist_ok=True)
        with open_or_build(root, work / INDEX_FILE) as index:
            release = Release(root, index)
            for split in SPLITS:
                digest = hashlib.sha256()
                stats = {"converted": 0, "reused": 0, "rows": 0}
                folders = self._convert_split(release, split, work, digest, stats)
                assemble_split(folders, tmp / "default" / split, split)
                if self.options["shards"] == "webdataset":
                    shards[split] = write_shards(chunk_rows(folders),
                                                 tmp / "default" / SHARD_FOLDER, split,
                                                 int(self.options["shard_size"]))
                counts[split] = stats.pop("rows")
                converted += stats.pop("converted")
                reused += stats.pop("reused")
                modalities[split] = stats
                source = list_file(root, split)
                if source is not None:
                    sources[source.name] = digest.hexdigest()
                if progress:
                    print(f"m5product {split}: {counts[split]:,} items ({stats}, "
                          f"{len(folders)} chunk(s))", flush=True)
            sources.update(index.digests)
        seconds = time.time() - started
        fingerprint = hashlib.sha256(f"{self.name}@{self.version}".encode())
        for rel, sha in sorted(sources.items()):
            fingerprint.update(f"{rel}\0{sha}\n".encode())
        manifest = {
            "name": self.name, "version": self.version, "refbench_version": __version__,
            "source_root": str(root.resolve()), "splits": {"default": counts},
            "modalities": {"default": modalities}, "sources": sources,
            "missing_lists": [s for s in SPLITS if s != "train" and list_file(root, s) is None],
            "shards": {"default": shards} if shards else {},
            "fingerprint": fingerprint.hexdigest(),
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 3), "items_converted": converted,
            "items_reused": reused, "items_per_second": round(converted / max(seconds, 1e-9), 2),
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        return manifest

    def streaming_split(self, folder: Path, config: str, split: str
                        ) -> hf_datasets.IterableDataset | None:
        """The split's webdataset shards when prepare wrote them (else None: Arrow)."""
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        names = manifest.get("shards", {}).get(config, {}).get(split)
        if names is None:
            return None
        return stream_shards(shard_paths(Path(folder) / config / SHARD_FOLDER, split, names),
                             features())
