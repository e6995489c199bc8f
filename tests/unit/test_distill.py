"""Distillation losses and the BERT teacher's recomputed attention scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refbench.baselines.nlp.distill import (BertTeacher, DistillConfig, EncoderOutputs, distill_losses,
                                        layer_map, load_teacher, soft_cross_entropy)
from refbench.errors import RefbenchError


def test_layer_map_matches_tinybert_uniform_mapping() -> None:
    assert layer_map(6, 12) == [1, 3, 5, 7, 9, 11]
    assert layer_map(4, 12) == [2, 5, 8, 11]
    assert layer_map(2, 2) == [0, 1]
    with pytest.raises(RefbenchError, match="multiple"):
        layer_map(5, 12)


def test_soft_cross_entropy_hand_value() -> None:
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0]])
    assert soft_cross_entropy(s, t).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    # temperature flattens the teacher
    t = torch.tensor([[10.0, 0.0]])
    assert soft_cross_entropy(s, t, 100.0).item() == pytest.approx(0.6931, abs=2e-3)


def _outputs(seed: int, layers: int, b: int = 2, h: int = 2, length: int = 5, d: int = 8) -> EncoderOutputs:
    g = torch.Generator().manual_seed(seed)
    return EncoderOutputs(torch.randn(b, 3, generator=g),
                          [torch.randn(b, h, length, length, generator=g) for _ in range(layers)],
                          [torch.randn(b, length, d, generator=g) for _ in range(layers + 1)])


def test_losses_zero_for_identical_and_ignore_padding() -> None:
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    teacher = _outputs(0, 4)
    student = EncoderOutputs(teacher.logits.clone(), [teacher.attention_scores[i] for i in (1, 3)],
                             [teacher.hidden_states[i] for i in (0, 2, 4)])
    cfg = DistillConfig()
    out = distill_losses(student, teacher, mask, None, False, cfg)
    assert out["attention_loss"].item() == 0 and out["hidden_loss"].item() == 0
    # changing a padded attention entry changes nothing
    student.attention_scores[0] = student.attention_scores[0].clone()
    student.attention_scores[0][0, :, 4, 4] += 100.0
    assert distill_losses(student, teacher, mask, None, False, cfg)["attention_loss"].item() == 0
    student.attention_scores[0][0, :, 0, 0] += 1.0
    assert distill_losses(student, teacher, mask, None, False, cfg)["attention_loss"].item() > 0


def test_regression_uses_gold_scores() -> None:
    teacher, student = _outputs(0, 2), _outputs(1, 2)
    student.logits = torch.tensor([[1.0], [3.0]])
    mask = torch.ones(2, 5, dtype=torch.long)
    out = distill_losses(student, teacher, mask, torch.tensor([1.0, 1.0]), True,
                         DistillConfig(hidden_ratio=0.0))
    assert out["loss"].item() == pytest.approx(2.0)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from refbench.config import build_run_config
    from refbench.datasets.base import get_builder
    from refbench.runner import train

    base = tmp_path_factory.mktemp("teacher")
    builder = get_builder("glue")
    root = builder.synthesize(base / "glue", n=64, seed=0)
    builder.prepare(root, base / "cache", configs=["sst2"])
    config = build_run_config("bert", "glue-sst2", "bert_tiny_glue", [
        f"output_dir={base / 'runs'}", f"data.cache_dir={base / 'cache'}", "name=teacher",
        "trainer.max_steps=4", "trainer.progress=false", "model.num_hidden_layers=4",
        "model.hidden_size=32", "model.num_attention_heads=4", "model.intermediate_size=64"])
    train(config)
    return base / "runs" / "teacher"


def test_teacher_scores_reproduce_transformers_attention(teacher_run: Path) -> None:
    teacher = load_teacher(teacher_run)
    assert isinstance(teacher, BertTeacher) and teacher.num_layers == 4 and teacher.hidden_size == 32
    tok = teacher.tokenizer
    enc = tok(["a short one", "a much longer sentence with more words in it"], padding=True,
              return_tensors="pt")
    out = teacher(dict(enc))
    assert len(out.attention_scores) == 4 and len(out.hidden_states) == 5
    teacher.head.model.config._attn_implementation = "eager"
    ref = teacher.head.model(**enc, output_attentions=True).attentions
    mask = enc["attention_mask"][:, None, None, :].bool()
    for mine, theirs in zip(out.attention_scores, ref):
        probs = torch.softmax(mine.masked_fill(~mask, float("-inf")), dim=-1)
        torch.testing.assert_close(probs, theirs, atol=1e-5, rtol=1e-4)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training


def test_teacher_must_be_a_bert_run(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="not a run folder"):
        load_teacher(tmp_path)
