"""The CAPTURE baseline: official architecture and size, co-attention placement, pretext
losses, the local Chinese tokenizer, gallery ranking and device handling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refbench.baselines.retrieval.capture import Capture, CaptureConfig, CaptureModel
from refbench.baselines.retrieval.capture.model import check_config
from refbench.baselines.retrieval.capture.pretext import (IGNORE, TokenIds, mask_regions,
                                                          mask_tokens, pretext_losses)
from refbench.baselines.retrieval.embedding import nt_xent_loss
from refbench.baselines.retrieval.regions import region_locations
from refbench.benchmarks.spec import (BenchmarkSpec, DatasetRef, MetricRef, Submission,
                                      TaskRef)
from refbench.config import from_dict, load_recipe
from refbench.errors import RefbenchError
from refbench.runner import predict_rows

pytestmark = pytest.mark.usefixtures("one_thread")

#: the base recipe with bert-base-chinese's vocabulary, counted once (tied decoder)
BASE_PARAMETERS = 148_192_136
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            v_hidden_size=32, v_num_hidden_layers=1, v_num_attention_heads=2,
            v_intermediate_size=64, bi_hidden_size=16, bi_num_attention_heads=2,
            t_biattention_id=[1], v_biattention_id=[1], co_num_layers=1,
            co_num_attention_heads=2, v_feature_size=2048, vocab_size=300, max_length=16,
            max_regions=6, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
BRANDS = ["雅诗兰黛", "兰蔻", "资生堂", "欧莱雅"]
KINDS = ["面霜", "精华液", "爽肤水", "眼霜"]


def fake_spec() -> BenchmarkSpec:
    """A retrieval benchmark as the Product1M specs declare it."""
    return BenchmarkSpec(
        name="product1m-fake", version=1, description="test",
        dataset=DatasetRef("product1m", "1", "default"), train_split="train",
        split="validation", metric=MetricRef("product1m", "1"), primary="mAP@10",
        submission=Submission("product1m_ranked", "retrieval_id_list.txt"),
        task=TaskRef("retrieval"))


def items(n: int, seed: int, prefix: str, labelled: bool = True) -> Any:
    """`n` Product1M-shaped items of 4 classes: class words in the title, 2-3 regions of a
    class prototype among noise; every fifth item has no regions."""
    import datasets

    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(99).standard_normal((4, 2048)).astype(np.float32)
    rows: dict[str, list[Any]] = {k: [] for k in ("id", "title", "labels", "image_url",
                                                  "mirror_url", "regions", "boxes",
                                                  "image_size", "has_regions")}
    for i in range(n):
        c = i % 4
        count = 0 if i % 5 == 4 else 6
        feats = rng.standard_normal((count, 2048)).astype(np.float32)
        feats[: min(count, 3)] += protos[c]
        rows["id"].append(f"{prefix}{i}")
        rows["title"].append(f"{BRANDS[c]} {KINDS[c]} 正品 包邮")
        rows["labels"].append([f"{BRANDS[c]} {KINDS[c]}"] if labelled else [])
        rows["image_url"].append("")
        rows["mirror_url"].append("")
        rows["regions"].append(np.maximum(feats, 0))
        rows["boxes"].append(np.tile([[10, 20, 110, 220]], (count, 1)).astype(np.float32))
        rows["image_size"].append([400, 500])
        rows["has_regions"].append(count > 0)
    features = datasets.Features({
        "id": datasets.Value("string"), "title": datasets.Value("string"),
        "labels": datasets.Sequence(datasets.Value("string")),
        "image_url": datasets.Value("string"), "mirror_url": datasets.Value("string"),
        "regions": datasets.Array2D((None, 2048), "float32"),
        "boxes": datasets.Array2D((None, 4), "float32"),
        "image_size": datasets.Sequence(datasets.Value("int32")),
        "has_regions": datasets.Value("bool")})
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def splits() -> dict[str, Any]:
    return {"train": items(24, 0, "t", labelled=False), "validation": items(8, 1, "q"),
            "gallery": items(20, 2, "g")}


@pytest.fixture()
def model(splits: dict[str, Any], tmp_path: Path) -> Capture:
    torch.manual_seed(0)
    m = Capture.create(TINY, fake_spec(), splits["train"], tmp_path / "run")
    m.bind_splits(lambda name: splits[name])
    return m


def tiny_batch(model: CaptureModel, n: int = 4) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    cfg = model.cfg
    ids = torch.randint(5, 50, (n, cfg.max_length), generator=gen)
    ids[:, 0], mask = 2, torch.ones(n, cfg.max_length, dtype=torch.long)
    mask[1, 9:] = 0
    ids[1, 9:] = 0
    region_mask = torch.ones(n, cfg.max_regions, dtype=torch.long)
    region_mask[2, 3:] = 0
    region_mask[3] = 0  # an item without regions
    regions = torch.rand(n, cfg.max_regions, cfg.v_feature_size, generator=gen) * region_mask[..., None]
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask,
            "regions": regions, "locations": torch.rand(n, cfg.max_regions, 5, generator=gen),
            "region_mask": region_mask}


# -- architecture ---------------------------------------------------------------------------
def test_base_recipe_is_the_official_architecture_and_size() -> None:
    """capture.json: 4 text + 4 visual layers, co-attention at stack positions 4-7 (after the
    single-stream layers), bi_hidden 512, 6 co-transformer layers; 148.19M parameters
    (the official module tree adds 3.74M its forward never uses)."""
    cfg = from_dict(CaptureConfig, load_recipe("capture_base_product1m")["model"])
    assert (cfg.num_hidden_layers, cfg.v_num_hidden_layers, cfg.co_num_layers) == (4, 4, 6)
    assert cfg.t_biattention_id == cfg.v_biattention_id == [4, 5, 6, 7]
    assert (cfg.hidden_size, cfg.v_hidden_size, cfg.bi_hidden_size) == (768, 768, 512)
    assert (cfg.num_attention_heads, cfg.v_num_attention_heads, cfg.bi_num_attention_heads) == (12, 8, 8)
    assert (cfg.intermediate_size, cfg.v_intermediate_size, cfg.max_length) == (3072, 1024, 36)
    with torch.device("meta"):
        net = CaptureModel(cfg, vocab_size=21128)
    assert len(net.text_layers) == len(net.visual_layers) == len(net.co_layers) == 4
    assert len(net.fusion_layers) == 6
    print(f"CAPTURE base parameters: {net.num_parameters():,}")
    assert net.num_parameters() == BASE_PARAMETERS
    assert net.mlm_head.decoder.weight is net.word_embeddings.weight


def test_co_attention_layers_run_at_their_stack_positions() -> None:
    """Positions count single-stream and co-attention layers together: [1, 3] over 2 text
    layers runs text, co, text, co; the CLR features are read before the first co layer."""
    cfg = CaptureConfig(**{**TINY, "num_hidden_layers": 2, "v_num_hidden_layers": 2,
                           "t_biattention_id": [1, 3], "v_biattention_id": [2, 3]})
    net = CaptureModel(cfg, vocab_size=60).eval()
    order: list[str] = []
    named = [*((f"t{i}", m) for i, m in enumerate(net.text_layers)),
             *((f"v{i}", m) for i, m in enumerate(net.visual_layers)),
             *((f"co{i}", m) for i, m in enumerate(net.co_layers)), ("clr", net.clr_text_pooler)]
    for name, module in named:
        module.register_forward_hook(lambda *_args, name=name: order.append(name))
    net(**tiny_batch(net))
    assert order == ["t0", "v0", "v1", "clr", "co0", "t1", "co1"]


@pytest.mark.parametrize("bad, key", [({"t_biattention_id": [1, 2]}, "v_biattention_id"),
                                      ({"t_biattention_id": [5], "v_biattention_id": [5]},
                                       "t_biattention_id"),
                                      ({"bi_hidden_size": 15}, "bi_hidden_size"),
                                      ({"v_hidden_size": 16, "v_num_attention_heads": 2},
                                       "v_hidden_size")])
def test_config_errors_name_the_key(bad: dict[str, Any], key: str) -> None:
    with pytest.raises(RefbenchError) as err:
        check_config(CaptureConfig(**{**TINY, **bad}))
    assert err.value.key == f"model.{key}"


def test_shapes_embedding_and_batch_independence() -> None:
    torch.manual_seed(0)
    net = CaptureModel(CaptureConfig(**TINY), vocab_size=60).eval()
    batch = tiny_batch(net)
    out = net(**batch)
    assert out.text.shape == (4, 16, 16) and out.visual.shape == (4, 7, 16)  # global + 6
    assert out.clr_text.shape == out.clr_visual.shape == (4, 16)
    emb = net.embedding(out)
    assert emb.shape == (4, 32) and torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    # each item is masked by its own padding: alone or in a batch, the same embedding
    alone = net.embedding(net(**{k: v[1:2] for k, v in batch.items()}))
    assert torch.allclose(alone[0], emb[1], atol=1e-5)
    mul = CaptureModel(CaptureConfig(**{**TINY, "embedding": "mul"}), vocab_size=60).eval()
    assert mul.embedding(mul(**batch)).shape == (4, 16)


def test_box_geometry_is_the_official_five_numbers() -> None:
    loc = region_locations(np.array([[10, 20, 110, 220]]), [400, 500])
    assert np.allclose(loc, [[0.025, 0.04, 0.275, 0.44, 100 * 200 / (400 * 500)]])


# -- pretext tasks --------------------------------------------------------------------------
def reference_info_nce(first: torch.Tensor, second: torch.Tensor, t: float) -> torch.Tensor:
    """The official `info_nce_loss`: positives column first, then the negatives, label 0."""
    n = first.size(0)
    labels = torch.cat([torch.arange(n), torch.arange(n)])
    same = labels[None, :] == labels[:, None]
    feats = F.normalize(torch.cat([first, second]), dim=1)
    sim = feats @ feats.T
    keep = ~torch.eye(2 * n, dtype=torch.bool)
    same, sim = same[keep].view(2 * n, -1), sim[keep].view(2 * n, -1)
    logits = torch.cat([sim[same].view(2 * n, -1), sim[~same].view(2 * n, -1)], 1) / t
    return F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long))


def test_contrastive_loss_equals_the_official_formulation() -> None:
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
    assert torch.allclose(nt_xent_loss(a, b, 0.07), reference_info_nce(a, b, 0.07), atol=1e-5)
    assert nt_xent_loss(a, a, 0.07) < nt_xent_loss(a, b, 0.07)  # matched views are easy
    with pytest.raises(RefbenchError):
        nt_xent_loss(a, b[:5])


def test_masking_follows_the_official_loader() -> None:
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (64, 36))
    ids[:, 0], ids[:, 20], ids[:, 21:] = 2, 3, 0
    mask = (ids != 0).long()
    masked, labels = mask_tokens(ids, mask, TokenIds(mask=4, vocab_size=100, special=(2, 3, 0)), 0.15)
    chosen = labels != IGNORE
    assert not chosen[:, [0, 20]].any() and not chosen[:, 21:].any()
    assert 0.10 < chosen[:, 1:20].float().mean() < 0.20
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    assert 0.7 < (masked[chosen] == 4).float().mean() < 0.9
    region_mask = torch.ones(64, 36, dtype=torch.long)
    region_mask[:, 30:] = 0
    regions = torch.rand(64, 36, 8) + 0.1
    out, picked = mask_regions(regions, region_mask, 0.15)
    assert not picked[:, 30:].any() and 0.10 < picked[:, :30].float().mean() < 0.20
    zeroed = (out == 0).all(-1)
    assert (zeroed <= picked).all() and 0.8 < zeroed[picked].float().mean() <= 1.0


@pytest.mark.parametrize("task", ["mlm", "mrm", "clr"])
def test_each_loss_is_finite_and_decreases_on_a_fixed_batch(task: str) -> None:
    weights = {f"{name}_weight": float(name == task) for name in ("mlm", "mrm", "clr")}
    torch.manual_seed(0)
    net = CaptureModel(CaptureConfig(**{**TINY, **weights, "mlm_probability": 0.5,
                                        "mrm_probability": 0.5}), vocab_size=60)
    batch = tiny_batch(net)
    ids = TokenIds(mask=4, vocab_size=60, special=(0, 2, 3))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    values = []
    for _ in range(30):
        torch.manual_seed(1)  # the same masks every step
        losses = pretext_losses(net, batch, ids)
        assert all(torch.isfinite(v) for v in losses.values())
        assert torch.allclose(losses["loss"], losses[task])
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        values.append(losses[task].item())
    assert values[-1] < 0.5 * values[0], values


# -- the registered baseline ----------------------------------------------------------------
def test_tokenizer_splits_chinese_titles_into_characters(model: Capture) -> None:
    tok = model.tokenizer
    pieces = tok.convert_ids_to_tokens(tok("雅诗兰黛 精华液")["input_ids"])
    assert pieces == ["[CLS]", "雅", "诗", "兰", "黛", "精", "华", "液", "[SEP]"]
    assert tok.unk_token_id not in tok("资生堂 爽肤水 正品")["input_ids"]


def test_training_step_and_gallery_ranking(model: Capture, splits: dict[str, Any]) -> None:
    features = model.encode(splits["train"])
    assert len(features) == 24 and features[4]["regions"].shape == (0, 2048)
    batch = model.collate(features[:6])
    assert batch["input_ids"].shape == (6, 16) and batch["regions"].shape == (6, 6, 2048)
    assert batch["region_mask"][4].sum() == 0 and batch["ids"][0] == "t0"
    out = model.training_step(batch)
    assert set(out) == {"loss", "mlm", "mrm", "clr"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    preds = predict_rows(model, splits["validation"], batch_size=3)
    gallery_ids = set(splits["gallery"]["id"])
    assert set(preds) == set(splits["validation"]["id"])
    assert all(len(r) == 20 and set(r) == gallery_ids for r in preds.values())
    # a gallery item identical to a query (same title and regions) ranks first
    model.bind_splits(lambda name: splits["validation"] if name == "gallery" else splits[name])
    same = predict_rows(model, splits["validation"], batch_size=8)
    assert all(ranked[0] == qid for qid, ranked in same.items())


def test_top_k_cuts_the_list(splits: dict[str, Any], tmp_path: Path) -> None:
    m = Capture.create({**TINY, "top_k": 5}, fake_spec(), splits["train"], tmp_path)
    m.bind_splits(lambda name: splits[name])
    assert all(len(r) == 5 for r in predict_rows(m, splits["validation"], 4).values())
    unbound = Capture.restore({}, fake_spec(), tmp_path)
    with pytest.raises(RefbenchError, match="gallery"):
        predict_rows(unbound, splits["validation"], 4)


def test_restore_rebuilds_the_same_model(model: Capture, splits: dict[str, Any], tmp_path: Path) -> None:
    again = Capture.restore({}, fake_spec(), tmp_path / "run")
    again.load_state_dict(model.state_dict())
    again.bind_splits(lambda name: splits[name])
    assert predict_rows(again, splits["validation"], 4) == predict_rows(model, splits["validation"], 4)
    assert again.num_parameters() == model.num_parameters()


def test_refuses_other_tasks_and_checkpoints(splits: dict[str, Any], tmp_path: Path) -> None:
    from dataclasses import replace

    classification = replace(fake_spec(), task=TaskRef("classification", num_labels=2))
    with pytest.raises(RefbenchError, match="retrieval"):
        Capture.validate_config({}, classification)
    with pytest.raises(NotImplementedError):
        Capture.create(TINY, fake_spec(), splits["train"], tmp_path, init_from=str(tmp_path))


def test_gallery_batches_go_to_the_model_device(model: Capture, splits: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU the meta device stands in for a GPU: every batch the model embeds, query
    batches (moved by the runner) and gallery batches (moved by the model), is on it."""
    seen: list[set[str]] = []

    def embed(batch: dict[str, Any]) -> torch.Tensor:
        seen.append({v.device.type for v in batch.values() if isinstance(v, torch.Tensor)})
        return torch.ones(len(batch["ids"]), 4)

    model.to("meta")
    monkeypatch.setattr(model, "embed", embed)
    preds = predict_rows(model, splits["validation"], batch_size=3)
    assert len(seen) == 3 + 1  # 8 queries in batches of 3, then the 20 gallery items
    assert all(devices == {"meta"} for devices in seen)
    assert set(preds) == set(splits["validation"]["id"])
