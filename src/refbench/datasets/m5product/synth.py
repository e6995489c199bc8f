"""A learnable synthetic M5Product release in the layout the SCALE code reads.

Each *product* is (brand, category, colour, material); products come in groups that share
brand and category and differ in one attribute (the colour), so distractors are close in
every modality. The label (coarse class) is the category; the fine-grained info JSON
labels an item with its product. Every modality shows the product, each with noise:

* title: brand, colour, material and category words (each dropped now and then) plus
  filler words, shuffled; words are separated by spaces so any tokenizer can learn them;
* pv table: `品牌#:#brand#;#颜色#:#colour#;#材质#:#material#;#类目#:#category` with pairs
  dropped and shuffled; a few items carry the release's one-character placeholder `-`;
* regions (10 boxes x 2048, non-negative): some boxes hold the product's prototype;
* video (4-16 frames x 1024) and audio (80 x 751): the product's prototype through fixed
  random projections, plus noise per frame / row.

A controllable fraction of items lacks its region record, video or audio. Item ids are
random 12-digit strings in shuffled order, so nothing but the modalities tells classes
apart. Written: `subset_v2_id_label.json`, `product1m_product5m_test_id_label.json`,
`subset_v2_label_list.json`, `lmdb_features/subset_v2_feature.lmdb`,
`video_feature/<id>.npy`, `audio_feature/<id>.npy` and the id lists (`query_c_ids.json`,
`gallery_c_ids.json`, `query_fg_ids.json`, `gallery_fg_ids.json`, `subset_train_ids.json`,
`subset_test_ids.json`, JSON arrays as the scripts write them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from refbench.datasets.m5product.media import AUDIO_SHAPE, VIDEO_DIM
from refbench.datasets.m5product.readers import PV_KV_SEP, PV_PAIR_SEP
from refbench.datasets.product1m.features import FEATURE_DIM
from refbench.datasets.product1m.synth import record_bytes, write_feature_lmdb

BRANDS = ("李宁", "安踏", "优衣库", "海尔", "美的", "小米", "华为", "森马", "波司登", "格力")
CATEGORIES = ("连衣裙", "运动鞋", "羽绒服", "电饭煲", "洗衣机", "手机壳", "蓝牙耳机", "双肩包",
              "保温杯", "台灯", "毛衣", "牛仔裤")
COLOURS = ("红色", "黑色", "白色", "蓝色", "灰色", "粉色", "绿色", "黄色")
MATERIALS = ("棉", "涤纶", "不锈钢", "塑料", "真皮", "羊毛")
FILLERS = ("新款", "包邮", "正品", "热卖", "官方", "旗舰店", "特价", "爆款", "时尚", "百搭")
BOXES = 10
LATENT = 64


def _ids(rng: np.random.Generator, count: int) -> list[str]:
    out: dict[str, None] = {}
    while len(out) < count:
        for value in rng.integers(10**11, 10**12, size=count - len(out) + 4):
            out.setdefault(str(int(value)), None)
    return list(out)[:count]


class Catalogue:
    """Products, their words and latent vectors (category + attributes)."""

    def __init__(self, rng: np.random.Generator, categories: int, groups: int) -> None:
        self.categories = [CATEGORIES[i] for i in rng.permutation(len(CATEGORIES))[:categories]]
        vec = {w: rng.standard_normal(LATENT) for w in (*BRANDS, *CATEGORIES, *COLOURS,
                                                         *MATERIALS)}
        self.products: list[tuple[str, str, str, str]] = []
        latents = []
        for g in range(groups):
            category = self.categories[g % categories]
            brand = BRANDS[int(rng.integers(len(BRANDS)))]
            material = MATERIALS[int(rng.integers(len(MATERIALS)))]
            for colour in rng.choice(COLOURS, size=int(rng.integers(2, 4)), replace=False):
                self.products.append((brand, category, str(colour), material))
                z = 1.6 * vec[category] + vec[brand] + vec[str(colour)] + 0.7 * vec[material]
                latents.append(z / np.linalg.norm(z))
        self.latent = np.stack(latents).astype(np.float32)
        self.project = {name: (rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(
            np.float32) for name, dim in (("image", FEATURE_DIM), ("video", VIDEO_DIM),
                                          ("audio", AUDIO_SHAPE[1]))}

    def name(self, p: int) -> str:
        brand, category, colour, material = self.products[p]
        return f"{brand} {colour}{material}{category}"

    def title(self, rng: np.random.Generator, p: int) -> str:
        brand, category, colour, material = self.products[p]
        words = [w for w, keep in ((brand, 0.85), (colour, 0.7), (material, 0.6),
                                   (category, 0.85)) if rng.random() < keep]
        words += [str(w) for w in rng.choice(FILLERS, size=int(rng.integers(1, 4)),
                                             replace=False)]
        return " ".join(words[i] for i in rng.permutation(len(words)))

    def pv(self, rng: np.random.Generator, p: int) -> str:
        if rng.random() < 0.08:
            return "-"  # the release's placeholder: one character means "no table"
        brand, category, colour, material = self.products[p]
        pairs = [("品牌", brand), ("颜色", colour), ("材质", material), ("类目", category)]
        kept = [pairs[i] for i in rng.permutation(4) if rng.random() < 0.8] or pairs[:1]
        return PV_PAIR_SEP.join(f"{k}{PV_KV_SEP}{v}" for k, v in kept)

    def signal(self, rng: np.random.Generator, p: int, kind: str, rows: int) -> np.ndarray:
        """`rows` noisy views of product `p` in a modality's feature space."""
        base = self.latent[p] @ self.project[kind]
        gain = rng.uniform(0.6, 1.4, size=(rows, 1)).astype(np.float32)
        noise = rng.standard_normal((rows, base.size)).astype(np.float32)
        return (3.0 * gain * base + noise).astype(np.float32)

    def regions(self, rng: np.random.Generator, p: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        feats = rng.standard_normal((BOXES, FEATURE_DIM)).astype(np.float32)
        hold = rng.permutation(BOXES)[:int(rng.integers(2, 5))]
        feats[hold] = self.signal(rng, p, "image", len(hold))
        width, height = (int(v) for v in rng.integers(400, 1000, size=2))
        x1, y1 = rng.uniform(0, 0.6, BOXES) * width, rng.uniform(0, 0.6, BOXES) * height
        x2 = np.minimum(x1 + rng.uniform(0.1, 0.4, BOXES) * width, width - 1)
        y2 = np.minimum(y1 + rng.uniform(0.1, 0.4, BOXES) * height, height - 1)
        boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        return np.maximum(feats, 0.0), boxes, width, height


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def synthesize(out: Path, n: int = 200, seed: int = 0, missing_image: float = 0.1,
               missing_video: float = 0.3, missing_audio: float = 0.3) -> Path:
    """Write a learnable release of `n` items (at least 24) into `out`; returns `out`.
    `missing_*` are the fractions of items without a region record, video or audio."""
    if n < 24:
        raise ValueError(f"n must be at least 24 (every split needs items), got {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = int(np.clip(n // 25, 4, len(CATEGORIES)))
    cat = Catalogue(rng, categories, groups=int(np.clip(n // 12, categories, 200)))
    ids = _ids(rng, n)
    products = np.concatenate([np.arange(len(cat.products)),
                               rng.integers(len(cat.products), size=n)])[:n]
    products = products[rng.permutation(n)]
    info, fine = {}, {}
    for item_id, p in zip(ids, products):
        info[item_id] = {"title": cat.title(rng, int(p)), "pv": cat.pv(rng, int(p)),
                         "label": cat.products[int(p)][1]}
    order = rng.permutation(n)
    half = n // 2
    coarse, fine_items = order[:half], order[half:]
    lists = {
        "subset_train_ids.json": order[: int(0.7 * n)], "subset_test_ids.json": order[int(0.7 * n):],
        "query_c_ids.json": coarse[: max(4, half // 5)], "gallery_c_ids.json": coarse[max(4, half // 5):],
        "query_fg_ids.json": fine_items[: max(4, len(fine_items) // 5)],
        "gallery_fg_ids.json": fine_items[max(4, len(fine_items) // 5):]}
    for i in fine_items:
        fine[ids[i]] = {**info[ids[i]], "label": cat.name(int(products[i]))}
    _write_json(out / "subset_v2_id_label.json", info)
    _write_json(out / "product1m_product5m_test_id_label.json", fine)
    _write_json(out / "subset_v2_label_list.json", list(cat.categories) + ["其他"])
    for name, members in lists.items():
        _write_json(out / name, [ids[i] for i in members])
    lacks = {kind: rng.random(n) < rate for kind, rate in
             (("image", missing_image), ("video", missing_video), ("audio", missing_audio))}
    for k, kind in enumerate(lacks):
        if 0 < {"image": missing_image, "video": missing_video, "audio": missing_audio}[kind]:
            lacks[kind][order[k]] = True  # at least one item lacks each modality
    (out / "video_feature").mkdir(exist_ok=True)
    (out / "audio_feature").mkdir(exist_ok=True)
    for i, (item_id, p) in enumerate(zip(ids, products)):
        item_rng = np.random.default_rng([seed, i])
        if not lacks["video"][i]:
            frames = int(item_rng.integers(4, 17))
            np.save(out / "video_feature" / f"{item_id}.npy",
                    cat.signal(item_rng, int(p), "video", frames))
        if not lacks["audio"][i]:
            np.save(out / "audio_feature" / f"{item_id}.npy",
                    cat.signal(item_rng, int(p), "audio", AUDIO_SHAPE[0]))

    def values():  # records in shuffled order, as the extractor writes them
        for i in rng.permutation(n):
            if not lacks["image"][i]:
                feats, boxes, w, h = cat.regions(np.random.default_rng([seed, i, 1]),
                                                 int(products[i]))
                yield record_bytes(feats, boxes, w, h, ids[i], info[ids[i]]["title"])

    per_record = BOXES * (FEATURE_DIM + 4) * 4 + 4096
    write_feature_lmdb(out / "lmdb_features" / "subset_v2_feature.lmdb", values(),
                       map_size=max(1 << 24, 2 * per_record * (n + 1)))
    return out
