"""A learnable synthetic Product1M release in the official layout.

Products are *instances* such as `AHC 黄金面霜` (brand, attribute, product kind). Instances
come in groups that share brand and kind and differ in one attribute (`AHC 黄金面霜`,
`AHC 玻尿酸面霜`): these distractors share most title words and have nearby prototype
vectors. An item shows a *suit* of 1-3 instances:

* its title names the brand and, per instance, the attribute and kind, each word dropped
  now and then, plus filler words (`正品`, `包邮`, ...), so the title alone sometimes cannot
  tell distractors apart;
* its 36 regions (2048-d, non-negative like bottom-up features) hold, for each instance,
  2-4 regions of the instance's prototype plus noise; the others are background noise;
* about one item in twenty has no region record at all (the `has_regions` mask).

Queries (dev, test) carry their suit's labels (now and then a label twice, as in the real
files); a gallery item's first label is its class, and every instance is the class of at
least two gallery items. Training items have titles and regions but no labels. So a
retriever beats chance only by reading title words and regions. Titles separate words by
spaces (the real titles do not) so that any tokenizer can learn from them.

Written: the three `#####` item files (CRLF line ends, as released), `train_id_info.json`
and `lmdb_features/{train,gallery,dev,test}.lmdb` in tensorpack's `LMDBSerializer` layout
(see `features.py`), records in shuffled order; no images.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from refbench.datasets.product1m.features import FEATURE_DIM, MAX_BOXES
from refbench.datasets.product1m.readers import (
    FIELD_SEP,
    GALLERY_FILE,
    LABEL_SEP,
    QUERY_FILES,
    TRAIN_INFO,
)
from refbench.errors import require

BRANDS = ("AHC", "雅诗兰黛", "兰蔻", "资生堂", "欧莱雅", "SK-II", "雪花秀", "薇诺娜", "珀莱雅",
          "碧欧泉", "倩碧", "科颜氏")
KINDS = ("面霜", "精华液", "爽肤水", "乳液", "眼霜", "面膜", "洁面乳", "防晒霜")
ATTRIBUTES = ("黄金", "玻尿酸", "小棕瓶", "红石榴", "小黑瓶", "神仙", "水动力", "臻白")
FILLERS = ("正品", "包邮", "补水", "保湿", "套装", "礼盒", "旗舰店", "韩国", "进口", "抗皱",
           "紧致", "提亮", "官方", "新款")
#: files of the feature LMDBs, by split
LMDB_NAMES = {"train": "train.lmdb", "gallery": "gallery.lmdb", "validation": "dev.lmdb",
              "test": "test.lmdb"}
MISSING_RATE = 0.05


class Catalogue:
    """The instances: label strings, (brand, attribute, kind) words and prototypes."""

    def __init__(self, count: int, rng: np.random.Generator, dim: int) -> None:
        groups = [(b, k) for b in range(len(BRANDS)) for k in range(len(KINDS))]
        order = rng.permutation(len(groups))
        self.words: list[tuple[str, str, str]] = []
        self.brand: list[int] = []
        protos = []
        for g in order:
            brand, kind = groups[g]
            base = rng.standard_normal(dim).astype(np.float32)
            for attr in rng.choice(len(ATTRIBUTES), size=int(rng.integers(2, 4)), replace=False):
                self.words.append((BRANDS[brand], ATTRIBUTES[attr], KINDS[kind]))
                self.brand.append(brand)
                near = base + 0.7 * rng.standard_normal(dim).astype(np.float32)
                protos.append(near / np.float32(np.sqrt(1.49)))
            if len(self.words) >= count:
                break
        self.labels = [f"{b} {a}{k}" for b, a, k in self.words]
        self.protos = np.stack(protos)

    def __len__(self) -> int:
        return len(self.labels)

    def suit(self, rng: np.random.Generator, main: int | None = None,
             sizes: tuple[float, float, float] = (0.4, 0.4, 0.2)) -> list[int]:
        """A main instance (given or drawn) and 0-2 companions: other kinds of its brand
        when there are enough (a suit like `AHC 黄金面霜` + `AHC 黄金水`), else any."""
        main = int(rng.integers(len(self))) if main is None else main
        size = int(rng.choice(3, p=sizes)) + 1
        brand, kind = self.brand[main], self.words[main][2]
        others = [i for i in range(len(self)) if i != main]
        pool = [i for i in others if self.brand[i] == brand and self.words[i][2] != kind]
        if len(pool) < size - 1:
            pool = others
        extra = rng.choice(pool, size=size - 1, replace=False).tolist() if size > 1 else []
        return [main] + [int(i) for i in extra]

    def title(self, rng: np.random.Generator, suit: list[int]) -> str:
        words = [self.words[suit[0]][0]]
        for i in suit:
            _, attr, kind = self.words[i]
            words += [w for w, keep in ((attr, 0.75), (kind, 0.85)) if rng.random() < keep]
        fillers = rng.choice(len(FILLERS), size=int(rng.integers(2, 5)), replace=False)
        words += [FILLERS[f] for f in fillers]
        head, rest = words[:1], [words[i] for i in rng.permutation(len(words) - 1) + 1]
        return " ".join(head + rest)

    def regions(self, rng: np.random.Generator, suit: list[int], count: int
                ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """`(features (count, dim), boxes (count, 4), width, height)` of one image."""
        dim = self.protos.shape[1]
        feats = rng.standard_normal((count, dim), dtype=np.float32)
        slots = rng.permutation(count)
        start = 0
        for i in suit:
            take = slots[start:start + int(rng.integers(2, 5))]
            start += len(take)
            strength = rng.uniform(0.8, 1.5, size=(len(take), 1)).astype(np.float32)
            feats[take] += strength * self.protos[i]
        width, height = (int(v) for v in rng.integers(400, 1000, size=2))
        x1 = rng.uniform(0, 0.7, count) * width
        y1 = rng.uniform(0, 0.7, count) * height
        x2 = np.minimum(x1 + rng.uniform(0.1, 0.6, count) * width, width - 1)
        y2 = np.minimum(y1 + rng.uniform(0.1, 0.6, count) * height, height - 1)
        boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        return np.maximum(feats, 0.0), boxes, width, height


def record_bytes(features: np.ndarray, boxes: np.ndarray, width: int, height: int,
                 image_id: str, title: str) -> bytes:
    """One LMDB value as tensorpack writes it: the pickled official datapoint list (with
    `num_boxes` as the TSV's string)."""
    datapoint = [features, boxes, str(len(features)), height, width, image_id, title]
    return pickle.dumps(datapoint, protocol=pickle.HIGHEST_PROTOCOL)


def write_feature_lmdb(path: Path, values: Iterable[bytes], map_size: int = 1 << 30) -> int:
    """Write `values` under tensorpack's keys (`00000000`, ...) plus `__keys__` into a
    single-file LMDB at `path` (no lock file is left); returns the number written."""
    require("lmdb", "retrieval")
    import lmdb

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), subdir=False, map_size=map_size, meminit=False)
    keys: list[bytes] = []
    try:
        txn = env.begin(write=True)
        for value in values:
            key = f"{len(keys):08}".encode("ascii")
            txn.put(key, value)
            keys.append(key)
            if len(keys) % 64 == 0:  # a write transaction holds its pages in memory
                txn.commit()
                txn = env.begin(write=True)
        txn.put(b"__keys__", pickle.dumps(keys, protocol=pickle.HIGHEST_PROTOCOL))
        txn.commit()
        env.sync()
    finally:
        env.close()
    Path(f"{path}-lock").unlink(missing_ok=True)
    return len(keys)


def _unique_ids(rng: np.random.Generator, count: int) -> list[str]:
    ids: dict[str, None] = {}
    while len(ids) < count:
        for value in rng.integers(5 * 10**11, 7 * 10**11, size=count - len(ids) + 8):
            ids.setdefault(str(int(value)), None)
    return list(ids)[:count]


def synthesize_product1m(out: Path, n: int = 200, seed: int = 0, regions: int = MAX_BOXES
                         ) -> Path:
    """Write a learnable release of `n` training items, about `n` gallery items and
    `max(3, n // 10)` dev and test queries into `out`; returns `out`. `regions` boxes per
    image (the official extractor keeps exactly 36; fewer make a smaller copy)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    catalogue = Catalogue(int(np.clip(n // 8, 6, 250)), rng, FEATURE_DIM)
    k = len(catalogue)
    n_query = max(3, n // 10)
    gallery_mains = list(range(k)) * 2 + rng.integers(k, size=max(n - 2 * k, 0)).tolist()
    plan = {
        "gallery": [catalogue.suit(rng, main=m, sizes=(0.6, 0.3, 0.1)) for m in gallery_mains],
        "validation": [catalogue.suit(rng, sizes=(0.2, 0.5, 0.3)) for _ in range(n_query)],
        "test": [catalogue.suit(rng, sizes=(0.2, 0.5, 0.3)) for _ in range(n_query)],
        "train": [catalogue.suit(rng) for _ in range(n)],
    }
    ids = iter(_unique_ids(rng, sum(len(s) for s in plan.values())))
    for number, (split, suits) in enumerate(plan.items()):
        items = [(next(ids), suit, catalogue.title(rng, suit)) for suit in suits]
        if split == "train":
            info = {item_id: {"title": title} for item_id, _, title in items}
            (out / TRAIN_INFO).write_text(json.dumps(info, ensure_ascii=False, indent=2),
                                          encoding="utf-8")
        else:
            lines = []
            for item_id, suit, title in items:
                labels = [catalogue.labels[i] for i in suit]
                if split != "gallery" and rng.random() < 0.05:
                    labels.append(labels[-1])  # the real query files repeat labels too
                lines.append(FIELD_SEP.join([
                    item_id, title, f"https://img.example.invalid/{item_id}.jpg",
                    f"http://oss.example.invalid/product1m/images/{item_id}.jpg",
                    LABEL_SEP.join(labels)]))
            name = GALLERY_FILE if split == "gallery" else QUERY_FILES[split]
            (out / name).write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
        missing = rng.random(len(items)) < MISSING_RATE
        if split in ("train", "gallery"):
            missing[-1] = True  # at least one item without regions where there are many
        order = [i for i in rng.permutation(len(items)) if not missing[i]]

        def values(order: list[int] = order, items: list = items, number: int = number
                   ) -> Iterable[bytes]:
            for i in order:
                item_id, suit, title = items[i]
                item_rng = np.random.default_rng([seed, number, i])
                feats, boxes, width, height = catalogue.regions(item_rng, suit, regions)
                yield record_bytes(feats, boxes, width, height, item_id, title)

        per_record = regions * (FEATURE_DIM + 4) * 4 + 4096
        write_feature_lmdb(out / "lmdb_features" / LMDB_NAMES[split], values(),
                           map_size=max(1 << 24, 2 * per_record * (len(order) + 1)))
    return out
