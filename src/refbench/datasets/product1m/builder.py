"""Product1M (instance-level product retrieval, ICCV 2021), read from the official layout.

```
ROOT/product1m_dev_ossurl_v2.txt       dev queries   (split `validation`, alias `dev`)
ROOT/product1m_test_ossurl_v2.txt      test queries  (split `test`)
ROOT/product1m_gallery_ossurl_v2.txt   the gallery the queries rank (split `gallery`)
ROOT/train_id_info.json                training items {id: {"title": ...}} (split `train`;
                                       or product1m_train_ossurl_v2.txt if present)
ROOT/[lmdb_features/]*.lmdb            optional bottom-up region features (features.py)
ROOT/images/<item_id>.jpg              optional images: counted by `check`, never read
```

Every split has the same columns; training items have no labels (`[]`), no URLs, and
items without a region record have zero-row `regions`/`boxes` and `has_regions` false.
The item files are described in `readers.py`.

`prepare` streams: items are converted in chunks of `chunk_size`, each saved as an Arrow
shard in a work folder beside the cache and keyed by the chunk's items and the feature
files' content, so an interrupted prepare resumes; the index of the feature LMDBs (image
id -> record, built in one validating pass over every record) is kept there too. Only the
index, one chunk and the id sets used to find duplicates are in memory at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from refbench.datasets.base import (
    MALFORMED_FILE,
    MANIFEST,
    MISSING_FILE,
    NOT_A_FOLDER,
    CheckReport,
    ChunkedDatasetBuilder,
    Problem,
    subfolders,
)
from refbench.datasets.product1m.features import (
    FEATURE_DIM,
    FeatureIndex,
    FeatureReader,
    RegionRecord,
    build_feature_index,
    feature_files,
)
from refbench.datasets.product1m.readers import (
    GALLERY_FILE,
    QUERY_FILES,
    TRAIN_FILE,
    TRAIN_INFO,
    Item,
    iter_split_items,
    train_source,
)
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

SPLITS = ("train", "validation", "test", "gallery")
INDEX_FILE = "feature-index.json"


def features() -> hf_datasets.Features:
    """The explicit features of every split."""
    import datasets as hf

    return hf.Features({
        "id": hf.Value("string"),
        "title": hf.Value("string"),
        "labels": hf.Sequence(hf.Value("string")),
        "image_url": hf.Value("string"),
        "mirror_url": hf.Value("string"),
        "regions": hf.Array2D(shape=(None, FEATURE_DIM), dtype="float32"),
        "boxes": hf.Array2D(shape=(None, 4), dtype="float32"),
        "image_size": hf.Sequence(hf.Value("int32"), length=2),
        "has_regions": hf.Value("bool"),
    })


def item_row(item: Item, record: RegionRecord | None) -> dict[str, Any]:
    """One row: the item's text fields and its regions (none without a record)."""
    if record is None:
        regions, boxes = np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, 4), np.float32)
        size = [0, 0]
    else:
        regions, boxes, size = record.features, record.boxes, [record.image_w, record.image_h]
    return {"id": item.id, "title": item.title, "labels": list(item.labels),
            "image_url": item.image_url, "mirror_url": item.mirror_url, "regions": regions,
            "boxes": boxes, "image_size": size, "has_regions": len(regions) > 0}


def array2d_column(arrays: list[np.ndarray], width: int, arrow_type: Any) -> Any:
    """An `Array2D((None, width))` Arrow column built from numpy without Python lists
    (`Dataset.from_dict` would turn every float into a Python object first)."""
    import pyarrow as pa

    rows = [len(a) for a in arrays]
    flat = (np.concatenate([a.reshape(-1) for a in arrays]) if arrays
            else np.zeros(0, np.float32)).astype(np.float32, copy=False)
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, sum(rows) * width + 1, width, dtype=np.int32)), pa.array(flat))
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int32)
    return pa.ExtensionArray.from_storage(arrow_type,
                                          pa.ListArray.from_arrays(pa.array(offsets), inner))


def rows_to_dataset(rows: list[dict[str, Any]], split: str) -> hf_datasets.Dataset:
    """A `Dataset` with `features()` holding `rows` (as made by `item_row`)."""
    import datasets as hf
    import pyarrow as pa
    from datasets.table import InMemoryTable

    feats = features()
    schema = feats.arrow_schema
    columns = {}
    for name in feats:
        values = [row[name] for row in rows]
        if name in ("regions", "boxes"):
            width = FEATURE_DIM if name == "regions" else 4
            columns[name] = array2d_column(values, width, schema.field(name).type)
        else:
            columns[name] = pa.array(values, schema.field(name).type)
    table = pa.table(columns, schema=schema)
    return hf.Dataset(InMemoryTable(table), info=hf.DatasetInfo(features=feats),
                      split=hf.NamedSplit(split))


def save_quietly(ds: hf_datasets.Dataset, path: Path) -> None:
    """`save_to_disk` without its progress bar (prepare reports per split)."""
    from datasets.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        ds.save_to_disk(str(path))
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def split_file(root: Path, split: str) -> Path | None:
    """The file a split is read from (None: a train split without training data)."""
    if split == "train":
        return train_source(root)
    return Path(root) / (GALLERY_FILE if split == "gallery" else QUERY_FILES[split])


def checked_items(root: Path, split: str, seen: dict[str, str],
                  digest: Any = None) -> Iterator[Item]:
    """The items of a split; an id that is both a dev and a test query is an error (the
    official evaluation merges the two files into one id -> labels map)."""
    path = split_file(root, split)
    for item in iter_split_items(root, split, digest):
        if split in QUERY_FILES:
            where = f"{path.name}:{item.line}" if path else ""
            other = seen.setdefault(item.id, where)
            if other != where:
                raise RefbenchError(f"item id {item.id} is also a query at {other} (the "
                                    f"official evaluation merges dev and test by id)",
                                    path=path, line=item.line)
        yield item


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# -- checking ----------------------------------------------------------------------------
def _item_ids(root: Path, split: str, seen: dict[str, str], report: CheckReport) -> set[str]:
    """The ids of a split's file read up to its first bad line (added to `report`)."""
    ids: set[str] = set()
    path = split_file(root, split)
    try:
        for item in checked_items(root, split, seen):
            ids.add(item.id)
    except RefbenchError as exc:
        report.problems.append(Problem.from_error(exc, path or root))
    return ids


def check_release(root: Path, report: CheckReport) -> None:
    """Check the item files, the training list, the feature LMDBs and images/; note how many
    items have regions and images, and hint at what to do in the situations users meet."""
    ids: dict[str, set[str]] = {}
    seen: dict[str, str] = {}
    for split in ("validation", "test", "gallery"):
        path = split_file(root, split)
        assert path is not None
        if path.is_dir():
            report.add(path, f"a folder, but {path.name} must be a file", MALFORMED_FILE)
        elif not path.is_file():
            report.add(path, "not found" + (" (the gallery the queries rank: prepare needs it)"
                                            if split == "gallery" else ""), MISSING_FILE)
        else:
            report.found.append(path.name)
            ids[split] = _item_ids(root, split, seen, report)
    source = split_file(root, "train")
    if source is not None and source.is_dir():
        report.add(source, f"a folder, but {source.name} must be a file", MALFORMED_FILE)
    elif source is not None:
        report.found.append(source.name)
        ids["train"] = _item_ids(root, "train", seen, report)
    files = feature_files(root)
    index = None
    if files:
        report.found.extend(f.relative_to(root).as_posix() for f in files)
        try:
            index = build_feature_index(files)
        except RefbenchError as exc:
            report.problems.append(Problem.from_error(exc, files[0]))
    images = Path(root) / "images"
    if images.exists() and not images.is_dir():
        report.add(images, "a file, but images/ must be a folder of <item_id>.jpg",
                   NOT_A_FOLDER)
    add_hints(root, report, ids, index, source)


def add_hints(root: Path, report: CheckReport, ids: dict[str, set[str]],
              index: FeatureIndex | None, train: Path | None) -> None:
    """The hints of `check_release`, one line each."""
    root = Path(root)
    if not ids:
        below = next((f for f in subfolders(root) if any(
            (f / name).is_file() for name in (*QUERY_FILES.values(), GALLERY_FILE))), None)
        if below is not None:
            report.hint(f"{below} holds the Product1M item files (the official repository "
                        f"keeps them in Poudct1M/): use --root {below}")
            return
    if not (root / GALLERY_FILE).exists():
        report.hint(f"{GALLERY_FILE} is missing: the queries rank this gallery, so prepare "
                    f"needs it. It is Poudct1M/{GALLERY_FILE} in github.com/zhanxlin/Product1M "
                    f"(a file over 4 MiB: clone the repository rather than copying it from the "
                    f"web page); the dev and test files alone can be checked, not prepared")
    if train is None:
        report.hint(f"no training data ({TRAIN_INFO} from the Google Drive folder of the "
                    f"official README): prepare writes an empty train split")
    elif train.name == TRAIN_FILE and (root / TRAIN_INFO).exists():
        report.hint(f"both {TRAIN_FILE} and {TRAIN_INFO} are present: the train split is "
                    f"read from {TRAIN_FILE}")
    if index is None and not feature_files(root):
        report.hint("no region-feature LMDB (*.lmdb in the root or lmdb_features/): every "
                    "item gets has_regions=false; region-based models need the official "
                    "train.lmdb (bottom-up features, see CAPTURE/tools/bp_feature)")
    elif index is not None:
        for split, have in ids.items():
            with_regions = sum(1 for i in have if i in index.ids)
            if with_regions < len(have):
                report.hint(f"{split}: {with_regions:,} of {len(have):,} items have region "
                            f"features; the others get has_regions=false")
    images = root / "images"
    if images.is_dir():
        every = set().union(*ids.values()) if ids else set()
        found = sum(1 for i in every if (images / f"{i}.jpg").is_file())
        report.found.append(f"images/ ({found:,} of {len(every):,} items)")
        if found < len(every):
            report.hint(f"images/ holds {found:,} of {len(every):,} item images (they are "
                        f"downloaded from the URLs of the item files; refbench does not read "
                        f"images, so this only matters to your own image models)")


_CITATION = """@InProceedings{Zhan_2021_ICCV,
  author    = {Zhan, Xunlin and Wu, Yangxin and Dong, Xiao and Wei, Yunchao and Lu, Minlong and Zhang, Yichi and Xu, Hang and Liang, Xiaodan},
  title     = {Product1M: Towards Weakly Supervised Instance-Level Product Retrieval via Cross-Modal Pretraining},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021},
  pages     = {11782-11791}
}"""


@DATASETS.register("product1m")
class Product1MBuilder(ChunkedDatasetBuilder):
    """Product1M (config `default`; splits `train`, `validation` (= `dev`), `test`, `gallery`)."""

    name = "product1m"
    version = "1.0"
    license = "research use only (the release states no licence; images are Taobao URLs)"
    citation = _CITATION
    homepage = "https://github.com/zhanxlin/Product1M"
    split_aliases: ClassVar[dict[str, str]] = {"dev": "validation"}
    #: items per resumable shard (36 x 2048 float32 regions are ~300 KB an item)
    chunk_size: int = 256

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLITS)

    def layout(self) -> str:
        return ("The official Product1M release (items: id#####title#####image URL#####mirror "
                "URL#####labels joined by #;#):\n"
                f"  {QUERY_FILES['validation']}, {QUERY_FILES['test']}   (dev / test queries)\n"
                f"  {GALLERY_FILE}   (the gallery; required by prepare)\n"
                f"  {TRAIN_INFO}   (optional: training titles {{id: {{\"title\": ...}}}}; or "
                f"{TRAIN_FILE})\n"
                "  [lmdb_features/]*.lmdb   (optional: bottom-up region features, tensorpack "
                "LMDBSerializer layout, 36 x 2048 per image, joined by image_id)\n"
                "  images/<item_id>.jpg   (optional; counted, never read)")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        check_release(Path(root), report)

    def source_files(self, root: Path, config: str) -> list[Path]:
        root = Path(root)
        out = [p for s in SPLITS if (p := split_file(root, s)) is not None and p.is_file()]
        return out + [f / "data.mdb" if f.is_dir() else f for f in feature_files(root)]

    def generate(self, root: Path, config: str) -> dict[str, hf_datasets.Dataset]:
        """All splits in memory (small releases); `prepare` uses the chunked path instead."""
        self.resolve_configs([config])
        root = Path(root)
        index = build_feature_index(feature_files(root))
        seen: dict[str, str] = {}
        out = {}
        with FeatureReader(index) as reader:
            for split in SPLITS:
                rows = [item_row(item, reader.lookup(item.id))
                        for item in checked_items(root, split, seen)]
                out[split] = rows_to_dataset(rows, split)
        return out

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.product1m.synth import synthesize_product1m

        return synthesize_product1m(Path(out), n=n, seed=seed)

    # -- resumable preparation -------------------------------------------------------------
    def check_prepare_inputs(self, root: Path) -> None:
        """The query and gallery files must be there: the benchmarks need all three."""
        for split in ("validation", "test", "gallery"):
            path = split_file(root, split)
            assert path is not None
            if not path.exists():
                why = (" (the queries rank this gallery; `refbench datasets check product1m` "
                       "says where to get it)" if split == "gallery" else "")
                raise RefbenchError(f"missing file {path.name}{why}", path=path)

    def feature_index(self, root: Path, work: Path) -> FeatureIndex:
        """The index of the feature LMDBs, reused from `work` while their files are unchanged."""
        files = feature_files(root)
        stamp = []
        for f in files:
            st = (f / "data.mdb" if f.is_dir() else f).stat()
            stamp.append([f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
        cached = work / INDEX_FILE
        if cached.is_file():
            data = json.loads(cached.read_text(encoding="utf-8"))
            if data.get("stamp") == stamp:
                return FeatureIndex.from_json(data["index"], root)
        index = build_feature_index(files)
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cached, {"stamp": stamp, "index": index.to_json(root)})
        return index

    def _chunk_key(self, split: str, chunk: list[Item], index: FeatureIndex) -> str:
        digest = hashlib.sha256(f"{self.name}@{self.version}:{split}".encode())
        digest.update("\0".join(index.digests).encode())
        for item in chunk:
            where = index.ids.get(item.id)
            digest.update(json.dumps([item.id, item.title, item.image_url, item.mirror_url,
                                      item.labels, None if where is None else
                                      [where[0], where[1].hex()]],
                                     ensure_ascii=False).encode())
        return digest.hexdigest()[:20]

    def _convert_split(self, root: Path, split: str, work: Path, index: FeatureIndex,
                       reader: FeatureReader, seen: dict[str, str], digest: Any,
                       stats: dict[str, int]) -> list[Path]:
        """The shards of one split, converted or reused; counts go into `stats`."""
        shards = []
        for number, chunk in enumerate(_chunks(checked_items(root, split, seen, digest),
                                               self.chunk_size)):
            shard = work / split / f"{number:06d}-{self._chunk_key(split, chunk, index)}"
            if (shard / "done.json").is_file():
                done = json.loads((shard / "done.json").read_text(encoding="utf-8"))
                stats["reused"] += len(chunk)
            else:
                shutil.rmtree(shard, ignore_errors=True)
                rows = [item_row(item, reader.lookup(item.id)) for item in chunk]
                done = {"rows": len(rows), "with_regions": sum(r["has_regions"] for r in rows)}
                save_quietly(rows_to_dataset(rows, split), shard)
                atomic_write_json(shard / "done.json", done)  # written last: marks it done
                stats["converted"] += len(chunk)
            stats["with_regions"] += done["with_regions"]
            shards.append(shard)
        return shards

    def prepare_chunks(self, root: Path, tmp: Path, work: Path, progress: bool
                         ) -> dict[str, Any]:
        import datasets as hf

        from refbench import __version__

        started = time.time()
        index = self.feature_index(root, work)
        sources: dict[str, str] = {}
        counts: dict[str, int] = {}
        with_regions: dict[str, int] = {}
        converted = reused = 0
        seen: dict[str, str] = {}
        with FeatureReader(index) as reader:
            for split in SPLITS:
                digest = hashlib.sha256()
                stats = {"converted": 0, "reused": 0, "with_regions": 0}
                shards = self._convert_split(root, split, work, index, reader, seen, digest,
                                             stats)
                parts = [hf.load_from_disk(str(s)) for s in shards]
                ds = (rows_to_dataset([], split) if not parts else parts[0] if len(parts) == 1
                      else hf.concatenate_datasets(parts))
                save_quietly(ds, tmp / "default" / split)
                counts[split], with_regions[split] = len(ds), stats["with_regions"]
                converted, reused = converted + stats["converted"], reused + stats["reused"]
                source = split_file(root, split)
                if source is not None:
                    sources[source.name] = digest.hexdigest()
                if progress:
                    print(f"product1m {split}: {len(ds):,} items, {stats['with_regions']:,} "
                          f"with regions ({stats['reused']:,} reused)", flush=True)
        for path, sha in zip(index.files, index.digests):
            sources[path.relative_to(root).as_posix()] = sha
        seconds = time.time() - started
        fingerprint = hashlib.sha256(f"{self.name}@{self.version}".encode())
        for rel, sha in sorted(sources.items()):
            fingerprint.update(f"{rel}\0{sha}\n".encode())
        manifest = {
            "name": self.name, "version": self.version, "refbench_version": __version__,
            "source_root": str(root.resolve()), "splits": {"default": counts},
            "with_regions": {"default": with_regions}, "sources": sources,
            "fingerprint": fingerprint.hexdigest(),
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 3), "items_converted": converted,
            "items_reused": reused, "items_per_second": round(converted / max(seconds, 1e-9), 2),
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        return manifest
