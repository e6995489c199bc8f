"""The SCALE baseline: official architecture and size, missing-modality masking, the masked
tasks training, gallery ranking with the query's own id dropped, and bad input (the
pretext formulas are in test_scale_pretext.py).

The numbers of the official modules (`Xiaodongsuper/SCALE_code`, `model/SCALE.py`) were
checked once with the same weights (fused first tokens within 1e-6, every loss equal to
7 digits)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refbench.baselines.retrieval.scale import Scale, ScaleConfig, ScaleModel
from refbench.baselines.retrieval.scale.baseline import gallery_for
from refbench.baselines.retrieval.scale.model import MODALITIES, check_config, fusion_length
from refbench.baselines.retrieval.scale.pretext import harmonized_graph, pretext_losses
from refbench.benchmarks.spec import BenchmarkSpec, DatasetRef, MetricRef, Submission, TaskRef
from refbench.config import from_dict, load_recipe
from refbench.errors import RefbenchError
from refbench.runner import predict_rows

pytestmark = pytest.mark.usefixtures("one_thread")

#: the base recipe with bert-base-chinese's vocabulary, counted once (tied decoder); the
#: official module tree holds 250,313,593, of which its forward uses exactly these
BASE_PARAMETERS = 161_681_015
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            v_hidden_size=32, v_num_hidden_layers=1, v_num_attention_heads=2,
            v_intermediate_size=64, bi_hidden_size=16, co_num_layers=1, co_num_attention_heads=2,
            vocab_size=300, max_length=12, table_length=16, max_regions=4, video_frames=4,
            audio_rows=6, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
BRANDS = ["李宁", "安踏", "海尔", "小米"]
KINDS = ["运动鞋", "羽绒服", "洗衣机", "手机壳"]


def fake_spec(split: str = "coarse_query") -> BenchmarkSpec:
    """A retrieval benchmark as the M5Product specs declare it."""
    return BenchmarkSpec(
        name="m5product-fake", version=1, description="test",
        dataset=DatasetRef("m5product", "1", "default"), train_split="train", split=split,
        metric=MetricRef("m5product_retrieval", "1"), primary="mAP@10",
        submission=Submission("m5product_ranked", "retrieval_id_list.txt"),
        task=TaskRef("retrieval"))


def items(n: int, seed: int, prefix: str) -> Any:
    """`n` M5Product-shaped rows of 4 classes (the fixed dataset API): class words in the
    title and table, class prototypes among noise in regions, video and audio; every
    fourth item lacks its video, every fifth its audio, every seventh its image."""
    import datasets

    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(99)
    proto = {"regions": protos.standard_normal((4, 2048)), "video": protos.standard_normal((4, 1024)),
             "audio": protos.standard_normal((4, 751))}
    cols = ("id", "title", "pv", "pv_keys", "pv_values", "label", "regions", "boxes",
            "image_size", "video", "audio", "has_image", "has_text", "has_table", "has_video",
            "has_audio")
    rows: dict[str, list[Any]] = {k: [] for k in cols}
    for i in range(n):
        c = i % 4
        has = {"image": i % 7 != 6, "video": i % 4 != 3, "audio": i % 5 != 4}
        counts = {"regions": 4 if has["image"] else 0, "video": 3 if has["video"] else 0,
                  "audio": 80 if has["audio"] else 0}
        media = {}
        for name, count in counts.items():
            width = proto[name].shape[1]
            feats = rng.standard_normal((count, width)).astype(np.float32)
            feats[: min(count, 2)] += proto[name][c]
            media[name] = feats
        rows["id"].append(f"{prefix}{i}")
        rows["title"].append(f"{BRANDS[c]} {KINDS[c]} 新款 包邮")
        rows["pv"].append(f"品牌#:#{BRANDS[c]}#;#类目#:#{KINDS[c]}")
        rows["pv_keys"].append(["品牌", "类目"])
        rows["pv_values"].append([BRANDS[c], KINDS[c]])
        rows["label"].append(KINDS[c])
        rows["regions"].append(np.maximum(media["regions"], 0))
        rows["boxes"].append(np.tile([[10, 20, 110, 220]], (counts["regions"], 1)).astype(np.float32))
        rows["image_size"].append([400, 500])
        rows["video"].append(media["video"])
        rows["audio"].append(media["audio"])
        for m in ("image", "video", "audio"):
            rows[f"has_{m}"].append(has[m])
        rows["has_text"].append(True)
        rows["has_table"].append(True)
    features = datasets.Features({
        "id": datasets.Value("string"), "title": datasets.Value("string"),
        "pv": datasets.Value("string"), "pv_keys": datasets.Sequence(datasets.Value("string")),
        "pv_values": datasets.Sequence(datasets.Value("string")), "label": datasets.Value("string"),
        "regions": datasets.Array2D((None, 2048), "float32"),
        "boxes": datasets.Array2D((None, 4), "float32"),
        "image_size": datasets.Sequence(datasets.Value("int32"), length=2),
        "video": datasets.Array2D((None, 1024), "float32"),
        "audio": datasets.Array2D((None, 751), "float32"),
        **{f"has_{m}": datasets.Value("bool") for m in ("image", "text", "table", "video", "audio")}})
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def splits() -> dict[str, Any]:
    gallery = items(16, 2, "g")
    return {"train": items(12, 0, "t"), "coarse_query": gallery.select(range(6)),
            "coarse_gallery": gallery}


@pytest.fixture()
def model(splits: dict[str, Any], tmp_path: Path) -> Scale:
    torch.manual_seed(0)
    m = Scale.create(TINY, fake_spec(), splits["train"], tmp_path / "run")
    m.bind_splits(lambda name: splits[name])
    return m


def batch_of(model: Scale, rows: Any) -> dict[str, Any]:
    return model.collate(model.encode(rows)[:])


# -- architecture ---------------------------------------------------------------------------
def test_base_recipe_is_the_official_architecture_size_and_schedule() -> None:
    """bert_base_6layer_6conect_capture_itp3va.json + run_pretrain_task.sh: text 6 x 768 (12
    heads, FFN 3072), visual 6 x 768 (8 heads, FFN 1024), poolers to 1024, a 6-layer fusion
    transformer (8 heads) over 36 + 64 + 37 + 13 + 81 tokens; lr 1e-4, batch 64, 10 epochs."""
    recipe = load_recipe("scale_base_m5product")
    cfg = from_dict(ScaleConfig, recipe["model"])
    assert (cfg.num_hidden_layers, cfg.v_num_hidden_layers, cfg.co_num_layers) == (6, 6, 6)
    assert (cfg.hidden_size, cfg.v_hidden_size, cfg.bi_hidden_size) == (768, 768, 1024)
    assert (cfg.num_attention_heads, cfg.v_num_attention_heads, cfg.co_num_attention_heads) == (12, 8, 8)
    assert (cfg.intermediate_size, cfg.v_intermediate_size) == (3072, 1024)
    assert (cfg.max_length, cfg.table_length, cfg.max_regions, cfg.video_frames, cfg.audio_rows) == \
        (36, 64, 36, 12, 80)
    assert (cfg.v_feature_size, cfg.video_feature_size, cfg.audio_feature_size) == (2048, 1024, 751)
    assert (cfg.max_video_len, cfg.max_audio_len, cfg.vocab_size) == (50, 100, 21128)
    assert cfg.temperature == 0.07 and cfg.top_k == 10 and cfg.modalities == "tpiva"
    assert all(getattr(cfg, f"{t}_probability") == 0.15 for t in ("mlm", "mem", "mrm", "mfm", "mam"))
    assert fusion_length(cfg) == 231
    trainer = recipe["trainer"]
    assert (trainer["lr"], trainer["batch_size"], trainer["epochs"], trainer["warmup_ratio"]) == \
        (1e-4, 64, 10, 0.1)
    with torch.device("meta"):
        net = ScaleModel(cfg, vocab_size=21128)
    print(f"SCALE base parameters: {net.num_parameters():,}")
    assert net.num_parameters() == BASE_PARAMETERS
    assert net.mlm_head.decoder.weight is net.text_embeddings.word_embeddings.weight


def test_shared_encoders_follow_the_official_forward() -> None:
    """Official forward: the table reuses the title's embeddings and layers, the video the
    image's layers; `shared_encoders: false` gives each modality its own."""
    shared = ScaleModel(ScaleConfig(**TINY), vocab_size=60)
    own = ScaleModel(ScaleConfig(**{**TINY, "shared_encoders": False}), vocab_size=60)
    assert not hasattr(shared, "table_layers") and not hasattr(shared, "video_layers")
    extra = own.num_parameters() - shared.num_parameters()
    sizes = sum(p.numel() for m in (own.table_embeddings, own.table_layers, own.video_layers)
                for p in m.parameters())
    assert extra == sizes > 0


@pytest.mark.parametrize("bad, key", [({"v_hidden_size": 16}, "v_hidden_size"),
                                      ({"num_attention_heads": 3}, "hidden_size"),
                                      ({"co_num_attention_heads": 5}, "co_num_attention_heads"),
                                      ({"modalities": "tpx"}, "modalities"),
                                      ({"modalities": "tt"}, "modalities"),
                                      ({"video_frames": 50, "max_video_len": 50}, "max_video_len"),
                                      ({"table_length": 500}, "max_position_embeddings"),
                                      ({"temperature": 0.0}, "temperature")])
def test_config_errors_name_the_key(bad: dict[str, Any], key: str) -> None:
    with pytest.raises(RefbenchError) as err:
        check_config(ScaleConfig(**{**TINY, **bad}))
    assert err.value.key == f"model.{key}"


def test_shapes_masking_and_batch_independence(model: Scale, splits: dict[str, Any]) -> None:
    net = model.model.eval()
    batch = batch_of(model, splits["coarse_gallery"])
    assert batch["input_ids"].shape == (16, 12) and batch["table_ids"].shape == (16, 16)
    assert batch["regions"].shape == (16, 4, 2048) and batch["video"].shape == (16, 4, 1024)
    assert batch["audio"].shape == (16, 6, 751) and batch["present"].shape == (16, 5)
    present = batch["present"]
    assert not present[3, MODALITIES.index("video")] and not present[4, MODALITIES.index("audio")]
    assert not present[6, MODALITIES.index("image")] and present[:, 0].all()
    with torch.no_grad():
        out = net(batch)
        emb = net.embedding(out)
        assert out.fused.shape == (16, 5, 32) and out.pooled.shape == (16, 5, 16)
        assert emb.shape == (16, 32) and torch.isfinite(emb).all()
        # the sum of the chosen modalities' fused first tokens, absent ones left out
        manual = (out.fused * present[..., None]).sum(1)
        assert torch.allclose(emb, manual, atol=1e-6)
        assert torch.allclose(net.embedding(out, "t"), out.fused[:, 0])
        # an item alone or in a batch: the same embedding
        alone = net.embedding(net({k: v[3:4] if torch.is_tensor(v) else v[3:4]
                                   for k, v in batch.items()}))
        assert torch.allclose(alone[0], emb[3], atol=1e-5)
        # what sits under an absent modality's mask changes nothing
        noisy = dict(batch, video=batch["video"].clone())
        noisy["video"][3] = 5.0
        assert torch.allclose(net.embedding(net(noisy))[3], emb[3], atol=1e-5)


@pytest.mark.parametrize("task", ["mlm", "mem", "mrm", "mfm", "mam", "clr"])
def test_each_loss_is_finite_and_decreases_on_a_fixed_batch(task: str, splits: dict[str, Any],
                                                           tmp_path: Path) -> None:
    weights = {f"{name}_weight": float(name == task)
               for name in ("mlm", "mem", "mrm", "mfm", "mam", "clr")}
    probs = {f"{name}_probability": 0.5 for name in ("mlm", "mem", "mrm", "mfm", "mam")}
    torch.manual_seed(0)
    m = Scale.create({**TINY, **weights, **probs}, fake_spec(), splits["train"], tmp_path)
    batch = batch_of(m, splits["train"])
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    values = []
    for _ in range(25):
        torch.manual_seed(1)  # the same masks every step
        losses = m.training_step(batch)
        assert set(losses) == {"loss", "mlm", "mem", "mrm", "mfm", "mam", "clr"}
        assert all(torch.isfinite(v) for v in losses.values())
        assert torch.allclose(losses["loss"], losses[task])
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        values.append(losses[task].item())
    assert values[-1] < 0.8 * values[0], values


def test_every_head_gets_a_gradient(model: Scale, splits: dict[str, Any]) -> None:
    """DDP needs every parameter in the graph: all tasks run even at weight 0."""
    cfg = replace(model.cfg, mfm_weight=0.0)
    model.model.cfg = cfg
    losses = pretext_losses(model.model, batch_of(model, splits["train"]), model.token_ids)
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


# -- the registered baseline ----------------------------------------------------------------
def test_tokenizer_reads_titles_and_tables(model: Scale) -> None:
    tok = model.tokenizer
    pieces = tok.convert_ids_to_tokens(tok("安踏 羽绒服")["input_ids"])
    assert pieces == ["[CLS]", "安", "踏", "羽", "绒", "服", "[SEP]"]
    assert tok.unk_token_id not in tok("品牌 类目 海尔 洗衣机")["input_ids"]


def test_ranking_drops_the_query_and_keeps_top_k(model: Scale, splits: dict[str, Any]) -> None:
    """Queries are gallery items: the official ranking keeps the 10 best, then drops the
    query's own id (9 left when it was among them)."""
    preds = predict_rows(model, splits["coarse_query"], batch_size=4)
    assert set(preds) == set(splits["coarse_query"]["id"])
    gallery = set(splits["coarse_gallery"]["id"])
    for qid, ranked in preds.items():
        assert qid not in ranked and set(ranked) <= gallery and len(set(ranked)) == len(ranked)
        assert len(ranked) in (9, 10)


def test_top_k_cuts_the_list(splits: dict[str, Any], tmp_path: Path) -> None:
    m = Scale.create({**TINY, "top_k": 3, "modalities": "ti"}, fake_spec(), splits["train"], tmp_path)
    m.bind_splits(lambda name: splits[name])
    ranked = predict_rows(m, splits["coarse_query"], 4)
    assert all(len(r) in (2, 3) and qid not in r for qid, r in ranked.items())


def test_gallery_follows_the_query_split(model: Scale, splits: dict[str, Any]) -> None:
    assert gallery_for("coarse_query") == "coarse_gallery"
    assert gallery_for("fine_query") == "fine_gallery"
    with pytest.raises(RefbenchError, match="gallery_split"):
        gallery_for("train")
    asked: list[str] = []
    model.bind_splits(lambda name: asked.append(name) or splits["coarse_gallery"])
    fine = splits["coarse_query"].cast(splits["coarse_query"].features)
    fine._split = "fine_query"  # a table loaded as the fine-grained queries
    predict_rows(model, fine, batch_size=8)
    assert asked == ["fine_gallery"]


def test_restore_rebuilds_the_same_model(model: Scale, splits: dict[str, Any], tmp_path: Path) -> None:
    again = Scale.restore({}, fake_spec(), tmp_path / "run")
    again.load_state_dict(model.state_dict())
    again.bind_splits(lambda name: splits[name])
    assert predict_rows(again, splits["coarse_query"], 4) == predict_rows(model, splits["coarse_query"], 4)
    unbound = Scale.restore({}, fake_spec(), tmp_path / "run")
    with pytest.raises(RefbenchError, match="gallery"):
        predict_rows(unbound, splits["coarse_query"], 4)


def test_refuses_other_tasks_and_checkpoints(splits: dict[str, Any], tmp_path: Path) -> None:
    classification = replace(fake_spec(), task=TaskRef("classification", num_labels=2))
    with pytest.raises(RefbenchError, match="retrieval"):
        Scale.validate_config({}, classification)
    with pytest.raises(NotImplementedError):
        Scale.create(TINY, fake_spec(), splits["train"], tmp_path, init_from=str(tmp_path))
    with pytest.raises(RefbenchError, match="incomplete"):
        Scale.restore({}, fake_spec(), tmp_path / "nothing")


@pytest.mark.parametrize("column, value, message", [
    ("video", np.zeros((3, 1000), np.float32), "video features of shape"),
    ("audio", np.full((80, 751), np.nan, np.float32), "non-finite audio"),
    ("regions", np.full((2, 2048), np.inf, np.float32), "non-finite region"),
])
def test_bad_media_name_the_item(model: Scale, splits: dict[str, Any], column: str,
                                 value: np.ndarray, message: str) -> None:
    import datasets

    rows = splits["train"].select(range(2)).to_dict()
    rows[column][1] = value.tolist()
    if column == "regions":
        rows["boxes"][1] = [[0.0] * 4] * 2
    features = splits["train"].features.copy()
    if column == "video":  # a release whose video features are 1000-d
        features["video"] = datasets.Array2D((None, 1000), "float32")
        rows["video"][0] = value.tolist()
    bad = datasets.Dataset.from_dict(rows, features=features)
    with pytest.raises(RefbenchError, match=message) as err:
        model.encode(bad)[1]
    assert "'t1'" in str(err.value)


def test_bad_tables_name_the_problem(model: Scale, splits: dict[str, Any]) -> None:
    with pytest.raises(RefbenchError, match="no column 'has_video'"):
        model.encode(splits["train"].remove_columns("has_video"))
    dup = splits["train"].select([0, 1, 0])
    with pytest.raises(RefbenchError, match="'t0' occurs twice"):
        model.encode(dup)


# -- the tiny recipe and the synthetic release it learns from --------------------------------
def test_tiny_recipe_keeps_every_task_and_scores_the_final_weights() -> None:
    """The tiny recipe trains all six pretext tasks (masked ones at 0.2) without the
    harmonized graph; the base recipe keeps the official switches (all at 1, graph on)."""
    base, tiny = (load_recipe(f"scale_{v}_m5product") for v in ("base", "tiny"))
    tasks = ("mlm", "mem", "mrm", "mfm", "mam")
    assert base["model"]["harmonize"] is True and base["model"]["clr_weight"] == 1.0
    assert all(base["model"][f"{t}_weight"] == 1.0 for t in tasks)
    assert tiny["model"]["harmonize"] is False and tiny["model"]["clr_weight"] == 1.0
    assert all(tiny["model"][f"{t}_weight"] == 0.2 for t in tasks)
    assert (tiny["trainer"]["max_steps"], tiny["trainer"]["batch_size"],
            tiny["trainer"]["eval_every"]) == (300, 64, 0)


def test_harmonized_graph_is_small_off_the_diagonal_at_random_init(model: Scale,
                                                                    splits: dict[str, Any]) -> None:
    """Why the tiny recipe trains without the graph: from scratch the title's [CLS] is the
    same for every item and the graph's off-diagonal weights scale the contrastive logits
    far down (the official run starts from bert-base-chinese instead)."""
    with torch.no_grad():
        out = model.model(dict(batch_of(model, splits["train"])))
    title = F.normalize(out.pooled[:, 0], dim=-1)
    assert float((title @ title.T).min()) > 0.99
    graph = harmonized_graph(out.pooled, out.present)
    both = out.present[:, :, None] & out.present[:, None, :] & ~torch.eye(5, dtype=torch.bool)
    print(f"off-diagonal graph weights: mean {float(graph[both].mean()):.3f}")
    assert float(graph[both].mean()) < 0.3


def _setup_similarity(nuisance: float) -> tuple[float, float]:
    """Mean cosine of averaged video features: same category but another camera, versus
    another category but the same camera."""
    from refbench.datasets.m5product.synth import Catalogue

    cat = Catalogue(np.random.default_rng(0), categories=4, groups=8, nuisance=nuisance)
    rng = np.random.default_rng(1)
    by_cat = {c: [p for p, prod in enumerate(cat.products) if prod[1] == c] for c in cat.categories}
    first, second = by_cat[cat.categories[0]], by_cat[cat.categories[1]]

    def view(p: int, setup: int) -> np.ndarray:
        v = cat.signal(rng, p, "video", 12, setup).mean(0)
        return v / np.linalg.norm(v)

    same_cat = [view(a, 0) @ view(b, 1) for a in first for b in first if a != b]
    same_setup = [view(a, 0) @ view(b, 0) for a in first for b in second]
    return float(np.mean(same_cat)), float(np.mean(same_setup))


def test_synthetic_capture_setups_hide_the_product_from_raw_features() -> None:
    same_cat, same_setup = _setup_similarity(nuisance=2.0)
    assert same_setup > same_cat + 0.2  # raw features group items by camera
    same_cat, same_setup = _setup_similarity(nuisance=0.0)
    assert same_cat > same_setup + 0.1  # without setups they group by category


def test_synthetic_english_release_matches_the_chinese_one(tmp_path: Path) -> None:
    import json

    from refbench.datasets.m5product.synth import WORDS, synthesize

    zh = synthesize(tmp_path / "zh", n=24, seed=3, missing_video=0.0, missing_audio=0.0)
    en = synthesize(tmp_path / "en", n=24, seed=3, missing_video=0.0, missing_audio=0.0,
                    language="en")
    info_zh, info_en = (json.loads((r / "subset_v2_id_label.json").read_text("utf-8"))
                        for r in (zh, en))
    assert list(info_zh) == list(info_en)  # same ids, same catalogue draws
    assert all(v["title"].isascii() and v["pv"].isascii() for v in info_en.values())
    fields = ("brands", "categories", "colours", "materials", "fillers")
    english = {z: e for f in fields
               for z, e in zip(getattr(WORDS["zh"], f), getattr(WORDS["en"], f))}
    for i, item in info_zh.items():  # word for word the same draws
        assert " ".join(english[w] for w in item["title"].split()) == info_en[i]["title"]
        assert english[item["label"]] == info_en[i]["label"]
    some = next(iter(info_zh))
    assert np.array_equal(np.load(zh / "video_feature" / f"{some}.npy"),
                          np.load(en / "video_feature" / f"{some}.npy"))
    with pytest.raises(ValueError, match="language"):
        synthesize(tmp_path / "x", n=24, language="fr")
    with pytest.raises(ValueError, match="nuisance"):
        synthesize(tmp_path / "x", n=24, nuisance=float("nan"))
