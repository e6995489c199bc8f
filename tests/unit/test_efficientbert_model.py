"""The EfficientBERT student: shapes, distillation outputs, size, learning, restore, recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refbench.baselines.nlp.efficientbert.encoder import (
    PUBLISHED_EFFICIENTBERT,
    EfficientBertConfig,
    check_config,
)
from refbench.baselines.nlp.efficientbert.model import EfficientBertClassifier
from refbench.baselines.nlp.efficientbert.space import LinearType
from refbench.config import from_dict, load_recipe
from refbench.datasets.base import get_builder, load_prepared
from refbench.errors import RefbenchError
from refbench.registry import get_spec

TINY = dict(hidden_size=16, num_layers=2, num_heads=2, embedding_size=8, max_length=12,
            ffn_expressions=[PUBLISHED_EFFICIENTBERT[0], PUBLISHED_EFFICIENTBERT[4]],
            teacher_hidden_size=24)


def _batch(vocab: int = 50, n: int = 3, width: int = 12) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (n, width), generator=gen)
    mask = torch.ones(n, width, dtype=torch.long)
    mask[1, 7:] = 0
    ids[1, 7:] = 0
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}


def test_shapes_hidden_states_and_attention_scores_per_layer() -> None:
    torch.manual_seed(0)
    model = EfficientBertClassifier(EfficientBertConfig(**TINY), vocab_size=50, num_labels=3).eval()
    batch = _batch()
    out = model(batch, output_attentions=True)
    assert out.logits.shape == (3, 3)
    enc = out.encoder
    assert len(enc.hidden_states) == 3 and all(h.shape == (3, 12, 16) for h in enc.hidden_states)
    assert torch.equal(enc.hidden_states[-1], enc.last_hidden_state)
    assert len(enc.attention_scores) == 2
    assert all(s.shape == (3, 2, 12, 12) for s in enc.attention_scores)
    assert (enc.attention_scores[0][1, :, :, 7:] < -1000).all()  # padding masked additively
    assert (enc.attention_scores[0][0] > -1000).all()
    # without attention outputs the fused kernel computes the same function
    fast = model(batch)
    assert fast.encoder.attention_scores == []
    assert torch.allclose(fast.logits, out.logits, atol=1e-5)
    projected = model.fit_dense(enc.hidden_states)
    assert [p.shape for p in projected] == [(3, 12, 24)] * 3
    assert not any(p.requires_grad for p in model.fit_dense.parameters())
    no_fit = EfficientBertConfig(**{**TINY, "teacher_hidden_size": None})
    regression = EfficientBertClassifier(no_fit, vocab_size=50, num_labels=1)
    assert regression.fit_dense is None and regression(batch).logits.shape == (3,)


def test_mobilebert_trigram_embedding() -> None:
    torch.manual_seed(0)
    model = EfficientBertClassifier(EfficientBertConfig(**TINY), vocab_size=50, num_labels=2).eval()
    emb = model.encoder.embeddings
    ids = torch.tensor([[2, 7, 9, 3]])
    tok = emb.token_embeddings(ids)[0]
    zero = torch.zeros(8)
    rows = [torch.cat([tok[i + 1] if i < 3 else zero, tok[i], tok[i - 1] if i > 0 else zero])
            for i in range(4)]
    x = (emb.dense(torch.stack(rows)) + emb.segment_embeddings.weight[0]
         + emb.position_embeddings.weight[:4])
    expected = torch.nn.functional.layer_norm(x, (16,), emb.layernorm.weight, emb.layernorm.bias)
    assert torch.allclose(emb(ids, torch.zeros_like(ids))[0], expected, atol=1e-6)


def test_published_parameter_count_by_hand() -> None:
    model = EfficientBertClassifier(EfficientBertConfig(), vocab_size=30522, num_labels=2)
    h, e, v = 540, 128, 30522
    embedding = v * e + 2 * h + 512 * h + (3 * e * h + h) + 2 * h
    attention = 4 * (h * h + h) + 2 * h
    stacks_inner = [(4, 270), (2, 540), (1, 270), (2, 270), (1, 270), (2, 180)]
    ffns = sum(n * (h * i + i + i * h + h + 2 * h) for n, i in stacks_inner)
    fit_dense = h * 768 + 768
    heads = (h * h + h) + (h * 2 + 2)
    assert model.num_parameters() == embedding + 6 * attention + ffns + fit_dense + heads
    # the official size (configs.py param_list: embed_fit_dense + attn + FFN per layer, in M)
    official = 4.8088 + 6 * 1.1696 + 1.1740 + 1.1707 + 0.2935 + 0.5870 + 0.2935 + 0.3924
    assert model.paper_parameter_count() / 1e6 == pytest.approx(official, abs=1e-3)
    # "6.9x smaller than BERT-base" (109.48M parameters with its pooler)
    assert 109_482_240 / model.paper_parameter_count() == pytest.approx(6.9, abs=0.1)


@pytest.mark.parametrize("recipe, layers, hidden", [
    ("efficientbert_base_glue", 6, 540), ("efficientbert_small_glue", 6, 360),
    ("efficientbert_plus_glue", 12, 360), ("efficientbert_tiny_glue", 2, 64)])
def test_recipes_describe_the_published_students(recipe: str, layers: int, hidden: int) -> None:
    data = load_recipe(recipe)
    assert data["baseline"] == "efficientbert"
    cfg = from_dict(EfficientBertConfig, data["model"], prefix="model")
    check_config(cfg)
    assert (cfg.num_layers, cfg.hidden_size) == (layers, hidden)
    if recipe != "efficientbert_tiny_glue":
        assert (cfg.num_heads, cfg.embedding_size, cfg.teacher_hidden_size) == (12, 128, 768)
        assert tuple(cfg.ffn_expressions[::layers // 6]) == PUBLISHED_EFFICIENTBERT
        assert data["trainer"]["lr"] == 5e-5 and data["trainer"]["batch_size"] == 32
    if recipe == "efficientbert_small_glue":  # official param_list of AutoBertSmallConfig
        model = EfficientBertClassifier(cfg, vocab_size=30522, num_labels=2)
        official = 4.5084 + 6 * 0.5206 + 0.5234 + 0.5213 + 0.1309 + 0.2617 + 0.1309 + 0.1752
        assert model.paper_parameter_count() / 1e6 == pytest.approx(official, abs=1e-3)


def test_tinybert4_recipe() -> None:
    from refbench.baselines.nlp.bert import BertConfig

    data = load_recipe("bert_tinybert4_glue")
    assert data["baseline"] == "bert"
    model = from_dict(BertConfig, data["model"], prefix="model")
    assert (model.num_hidden_layers, model.hidden_size, model.num_attention_heads,
            model.intermediate_size) == (4, 312, 12, 1200)


@pytest.mark.parametrize("change, key, message", [
    ({"hidden_size": 15}, "model.hidden_size", "not a multiple of num_heads"),
    ({"num_layers": 3}, "model.ffn_expressions", "2 FFN expressions for 3 layers"),
    ({"ffn_expressions": [PUBLISHED_EFFICIENTBERT[0], "tanh(gelu(linear1_1(x,wb1)))"]},
     "model.ffn_expressions[1]", "expected exactly two linears"),
    ({"max_length": 600}, "model.max_length", "exceeds max_position_embeddings"),
])
def test_config_errors_name_the_key(change: dict, key: str, message: str) -> None:
    with pytest.raises(RefbenchError) as err:
        check_config(EfficientBertConfig(**{**TINY, **change}))
    assert f"[{key}]" in str(err.value) and message in str(err.value)


@pytest.fixture(scope="module")
def sst2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("efficientbert")
    builder = get_builder("glue")
    root = builder.synthesize(base / "glue", n=64, seed=0)
    builder.prepare(root, base / "cache", configs=["sst2"])
    return base


def test_tiny_recipe_learns_sst2_and_restores_identically(sst2: Path) -> None:
    spec = get_spec("glue-sst2")
    rows = load_prepared("glue", split="train", config="sst2", cache_dir=str(sst2 / "cache"))
    model_cfg = load_recipe("efficientbert_tiny_glue")["model"]
    run = sst2 / "run"
    torch.manual_seed(0)
    model = EfficientBertClassifier.create(model_cfg, spec, rows, run)
    feats = model.encode(rows)
    first = feats[0]["input_ids"]
    assert first[0] == model.tokenizer.cls_token_id and len(first) <= 64
    batch = model.collate(feats[:32])
    assert batch["input_ids"].shape == (32, 64)  # padded to max_length, like the official code
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(40):
        loss = model.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses
    model.eval()
    preds = model.predict(batch)
    assert [p.id for p in preds] == batch["idx"].tolist()
    assert all(isinstance(p.value, int) for p in preds)
    # a row's prediction does not depend on the rest of its batch
    alone = model.predict(model.collate(feats[:4]))
    assert [p.value for p in alone] == [p.value for p in preds[:4]]
    again = EfficientBertClassifier.restore(model_cfg, spec, run)
    again.load_state_dict(model.state_dict())
    again.eval()
    assert [p.value for p in again.predict(batch)] == [p.value for p in preds]
    with pytest.raises(RefbenchError, match="no such checkpoint"):  # test_efficientbert_official
        EfficientBertClassifier.create(model_cfg, spec, rows, sst2 / "other", init_from="x")


def test_linear_type_sizes_of_the_tiny_recipe() -> None:
    model = EfficientBertClassifier(EfficientBertConfig(**{**TINY, "hidden_size": 64,
                                                           "num_heads": 2}), 50, 2)
    ffns = [layer.ffn for layer in model.encoder.layers]
    assert [len(f.blocks) for f in ffns] == [4, 1]
    assert [f.inner for f in ffns] == [LinearType(4, 2).inner_width(64), 32]
