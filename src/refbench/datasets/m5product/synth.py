"""A learnable synthetic M5Product release in the layout the SCALE code reads.

Each *product* is (brand, category, colour, material); products come in groups that share
brand, category and material and differ in one attribute (the colour), so distractors are
close in every modality. The label (coarse class) is the category; the fine-grained info
JSON labels an item with its product. Every modality shows the product, each partly:

* title: brand, colour, material and category words (each dropped now and then) plus
  filler words, shuffled; words are separated by spaces so any tokenizer can learn them;
* pv table: `品牌#:#brand#;#颜色#:#colour#;#材质#:#material#;#类目#:#category` with pairs
  dropped and shuffled; a few items carry the release's one-character placeholder `-`;
* regions (10 boxes x 2048, non-negative): some boxes hold the product's prototype;
* video (4-16 frames x 1024) and audio (80 x 751): the product's prototype through fixed
  random projections, plus noise per frame / row.

Why learning matters: the media of an item are also marked by how they were captured,
independently per modality: one of `SETUPS` studios (every region of the image), cameras
(every frame) or microphones (every audio row), each a fixed offset `nuisance` times as
long as the product's signal. Items that share a setup look alike in that modality
whatever they sell, so summing raw features or random projections of them (an untrained
network) ranks mostly by capture setup; the setups of one item are unrelated across
modalities and absent from the text, so a model trained to make an item's modalities
agree (SCALE's contrastive loss) learns to ignore them. `nuisance=0` gives the plain
release (random projections then rank almost as well as a trained model).

`language="en"` writes the same catalogue with English words (brands romanised,
`brand#:#...` keys), so a pretrained English text tower (MiniLM) can read the titles.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refbench.datasets.m5product.media import AUDIO_SHAPE, VIDEO_DIM
from refbench.datasets.m5product.readers import PV_KV_SEP, PV_PAIR_SEP
from refbench.datasets.product1m.features import FEATURE_DIM
from refbench.datasets.product1m.synth import record_bytes, write_feature_lmdb


@dataclass(frozen=True)
class Words:
    """One language's vocabulary of the catalogue (same sizes in every language, so a
    seed draws the same catalogue in each)."""

    brands: tuple[str, ...]
    categories: tuple[str, ...]
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    fillers: tuple[str, ...]
    keys: tuple[str, str, str, str]  # pv keys: brand, colour, material, category
    other: str  # the label list's catch-all class
    joiner: str  # between colour, material and category in a product name


WORDS = {
    "zh": Words(
        brands=("李宁", "安踏", "优衣库", "海尔", "美的", "小米", "华为", "森马", "波司登", "格力"),
        categories=("连衣裙", "运动鞋", "羽绒服", "电饭煲", "洗衣机", "手机壳", "蓝牙耳机", "双肩包",
                    "保温杯", "台灯", "毛衣", "牛仔裤"),
        colours=("红色", "黑色", "白色", "蓝色", "灰色", "粉色", "绿色", "黄色"),
        materials=("棉", "涤纶", "不锈钢", "塑料", "真皮", "羊毛"),
        fillers=("新款", "包邮", "正品", "热卖", "官方", "旗舰店", "特价", "爆款", "时尚", "百搭"),
        keys=("品牌", "颜色", "材质", "类目"), other="其他", joiner=""),
    "en": Words(
        brands=("lining", "anta", "uniqlo", "haier", "midea", "xiaomi", "huawei", "semir",
                "bosideng", "gree"),
        categories=("dress", "sneakers", "down jacket", "rice cooker", "washing machine",
                    "phone case", "bluetooth earphones", "backpack", "vacuum flask", "desk lamp",
                    "sweater", "jeans"),
        colours=("red", "black", "white", "blue", "grey", "pink", "green", "yellow"),
        materials=("cotton", "polyester", "stainless steel", "plastic", "leather", "wool"),
        fillers=("new", "free shipping", "genuine", "hot sale", "official", "flagship store",
                 "discount", "bestseller", "fashion", "classic"),
        keys=("brand", "colour", "material", "category"), other="other", joiner=" "),
}
BOXES = 10
LATENT = 64
#: capture setups per modality (studios, cameras, microphones)
SETUPS = 6
#: the signal's scale in the features (per-row noise has unit variance)
SIGNAL = 3.0
#: default length of a setup's offset, in units of the product signal's length
NUISANCE = 2.0


def _ids(rng: np.random.Generator, count: int) -> list[str]:
    out: dict[str, None] = {}
    while len(out) < count:
        for value in rng.integers(10**11, 10**12, size=count - len(out) + 4):
            out.setdefault(str(int(value)), None)
    return list(out)[:count]


class Catalogue:
    """Products, their words, latent vectors (category + attributes) and the capture
    setups of each medium."""

    def __init__(self, rng: np.random.Generator, categories: int, groups: int,
                 words: Words = WORDS["zh"], nuisance: float = NUISANCE) -> None:
        self.words = words
        self.categories = [words.categories[i]
                           for i in rng.permutation(len(words.categories))[:categories]]
        vec = {w: rng.standard_normal(LATENT) for w in (*words.brands, *words.categories,
                                                         *words.colours, *words.materials)}
        self.products: list[tuple[str, str, str, str]] = []
        latents = []
        for g in range(groups):
            category = self.categories[g % categories]
            brand = words.brands[int(rng.integers(len(words.brands)))]
            material = words.materials[int(rng.integers(len(words.materials)))]
            for colour in rng.choice(words.colours, size=int(rng.integers(2, 4)), replace=False):
                self.products.append((brand, category, str(colour), material))
                z = 1.6 * vec[category] + vec[brand] + vec[str(colour)] + 0.7 * vec[material]
                latents.append(z / np.linalg.norm(z))
        self.latent = np.stack(latents).astype(np.float32)
        dims = {"image": FEATURE_DIM, "video": VIDEO_DIM, "audio": AUDIO_SHAPE[1]}
        self.project = {name: (rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(
            np.float32) for name, dim in dims.items()}
        # a setup's offset: `nuisance` times the expected signal length SIGNAL * sqrt(dim / LATENT)
        self.setups = {name: (nuisance * SIGNAL / np.sqrt(LATENT) * rng.standard_normal(
            (SETUPS, dim))).astype(np.float32) for name, dim in dims.items()}

    def name(self, p: int) -> str:
        brand, category, colour, material = self.products[p]
        return f"{brand} {self.words.joiner.join((colour, material, category))}"

    def title(self, rng: np.random.Generator, p: int) -> str:
        brand, category, colour, material = self.products[p]
        words = [w for w, keep in ((brand, 0.85), (colour, 0.7), (material, 0.6),
                                   (category, 0.85)) if rng.random() < keep]
        words += [str(w) for w in rng.choice(self.words.fillers, size=int(rng.integers(1, 4)),
                                             replace=False)]
        return " ".join(words[i] for i in rng.permutation(len(words)))

    def pv(self, rng: np.random.Generator, p: int) -> str:
        if rng.random() < 0.08:
            return "-"  # the release's placeholder: one character means "no table"
        brand, category, colour, material = self.products[p]
        pairs = list(zip(self.words.keys, (brand, colour, material, category)))
        kept = [pairs[i] for i in rng.permutation(4) if rng.random() < 0.8] or pairs[:1]
        return PV_PAIR_SEP.join(f"{k}{PV_KV_SEP}{v}" for k, v in kept)

    def signal(self, rng: np.random.Generator, p: int, kind: str, rows: int,
               setup: int) -> np.ndarray:
        """`rows` noisy views of product `p` in a modality's feature space, captured with
        `setup` (its offset is added to every row)."""
        base = self.latent[p] @ self.project[kind]
        gain = rng.uniform(0.6, 1.4, size=(rows, 1)).astype(np.float32)
        noise = rng.standard_normal((rows, base.size)).astype(np.float32)
        return (SIGNAL * gain * base + self.setups[kind][setup] + noise).astype(np.float32)

    def regions(self, rng: np.random.Generator, p: int,
                setup: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        feats = rng.standard_normal((BOXES, FEATURE_DIM)).astype(np.float32)
        feats += self.setups["image"][setup]  # the studio shows in the background boxes too
        hold = rng.permutation(BOXES)[:int(rng.integers(2, 5))]
        feats[hold] = self.signal(rng, p, "image", len(hold), setup)
        width, height = (int(v) for v in rng.integers(400, 1000, size=2))
        x1, y1 = rng.uniform(0, 0.6, BOXES) * width, rng.uniform(0, 0.6, BOXES) * height
        x2 = np.minimum(x1 + rng.uniform(0.1, 0.4, BOXES) * width, width - 1)
        y2 = np.minimum(y1 + rng.uniform(0.1, 0.4, BOXES) * height, height - 1)
        boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
        return np.maximum(feats, 0.0), boxes, width, height


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def synthesize(out: Path, n: int = 200, seed: int = 0, missing_image: float = 0.1,
               missing_video: float = 0.3, missing_audio: float = 0.3,
               nuisance: float = NUISANCE, language: str = "zh") -> Path:
    """Write a learnable release of `n` items (at least 24) into `out`; returns `out`.
    `missing_*` are the fractions of items without a region record, video or audio;
    `nuisance` the length of the capture setups' offsets relative to the product signal;
    `language` "zh" (as released) or "en" (see the module doc)."""
    if n < 24:
        raise ValueError(f"n must be at least 24 (every split needs items), got {n}")
    if language not in WORDS:
        raise ValueError(f"language must be one of {', '.join(WORDS)}, got {language!r}")
    if not nuisance >= 0:
        raise ValueError(f"nuisance must be >= 0, got {nuisance}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = WORDS[language]
    categories = int(np.clip(n // 25, 4, len(words.categories)))
    cat = Catalogue(rng, categories, groups=int(np.clip(n // 12, categories, 200)), words=words,
                    nuisance=nuisance)
    ids = _ids(rng, n)
    products = np.concatenate([np.arange(len(cat.products)),
                               rng.integers(len(cat.products), size=n)])[:n]
    products = products[rng.permutation(n)]
    setups = {kind: rng.integers(SETUPS, size=n) for kind in ("image", "video", "audio")}
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
    _write_json(out / "subset_v2_label_list.json", list(cat.categories) + [words.other])
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
                    cat.signal(item_rng, int(p), "video", frames, int(setups["video"][i])))
        if not lacks["audio"][i]:
            np.save(out / "audio_feature" / f"{item_id}.npy",
                    cat.signal(item_rng, int(p), "audio", AUDIO_SHAPE[0], int(setups["audio"][i])))

    def values():  # records in shuffled order, as the extractor writes them
        for i in rng.permutation(n):
            if not lacks["image"][i]:
                feats, boxes, w, h = cat.regions(np.random.default_rng([seed, i, 1]),
                                                 int(products[i]), int(setups["image"][i]))
                yield record_bytes(feats, boxes, w, h, ids[i], info[ids[i]]["title"])

    per_record = BOXES * (FEATURE_DIM + 4) * 4 + 4096
    write_feature_lmdb(out / "lmdb_features" / "subset_v2_feature.lmdb", values(),
                       map_size=max(1 << 24, 2 * per_record * (n + 1)))
    return out
