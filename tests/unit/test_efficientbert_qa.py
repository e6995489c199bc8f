"""EfficientBERT's SQuAD span head: dispatch, windows, loss, decoding, restore, distillation
from a `bert` SQuAD teacher run (the official start/end soft cross-entropy)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from refbench.baselines.nlp.distill import DistillConfig, span_soft_cross_entropy
from refbench.baselines.nlp.efficientbert.model import (
    EfficientBert,
    EfficientBertQuestionAnswering,
    EfficientBertStudent,
)
from refbench.baselines.nlp.qa import span_loss
from refbench.config import build_run_config, from_dict, load_recipe
from refbench.datasets.base import get_builder, load_prepared
from refbench.registry import BASELINES, get_spec
from refbench.runner import train

STUDENT = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "embedding_size": 16,
           "ffn_expressions": ["linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"],
           "vocab_size": 2000, "max_length": 64,
           "qa": {"doc_stride": 16, "max_query_length": 16}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("eb-squad")
    builder = get_builder("squad")
    root = builder.synthesize(base / "squad", n=48, seed=0)
    builder.prepare(root, base / "cache", configs=["v1.1", "v2.0"])
    train(build_run_config("bert", "squad-v1.1", "bert_tiny_squad", [
        f"output_dir={base / 'runs'}", f"data.cache_dir={base / 'cache'}", "name=teacher",
        "model.num_hidden_layers=2", "model.hidden_size=32", "model.num_attention_heads=4",
        "model.intermediate_size=64", "model.max_length=64", "model.qa.doc_stride=16",
        "model.qa.max_query_length=16", "trainer.max_steps=6", "trainer.eval_every=0",
        "trainer.save_every=0", "trainer.progress=false"]))
    return {"base": base, "cache": base / "cache", "teacher": base / "runs" / "teacher"}


def _rows(env: dict[str, Path], config: str, split: str = "train"):
    return load_prepared("squad", split=split, config=config, cache_dir=str(env["cache"]))


@pytest.mark.parametrize("config", ["v1.1", "v2.0"])
def test_span_head_trains_decodes_and_restores(env: dict[str, Path], config: str) -> None:
    spec = get_spec(f"squad-{config}")
    rows, dev = _rows(env, config), _rows(env, config, "validation")
    run = env["base"] / f"plain-{config}"
    torch.manual_seed(0)
    model = BASELINES.get("efficientbert").create(STUDENT, spec, rows, run)
    assert isinstance(model, EfficientBertQuestionAnswering) and model.teacher is None
    assert not hasattr(model, "pooler") and model.qa_outputs.out_features == 2
    assert model.qa_config.max_length == 64 and model.qa_config.doc_stride == 16
    feats = model.encode(rows)
    assert len(feats) >= len(rows) and all(len(f["input_ids"]) <= 64 for f in feats)
    assert [f["feature_index"] for f in feats] == list(range(len(feats)))
    batch = model.collate(feats[:16])
    assert batch["input_ids"].shape == (16, 64)  # padded to max_length, like the official code
    model.eval()
    out = model(batch)
    assert out.start_logits.shape == out.end_logits.shape == (16, 64)
    assert model.training_step(batch)["loss"].item() == pytest.approx(
        span_loss(out.start_logits, out.end_logits, batch).item(), rel=1e-5)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.training_step(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0], losses
    model.eval()
    dev_feats = model.encode(dev)
    preds = model.predict(model.collate(dev_feats))
    assert [len(p.value[0]) for p in preds] == [len(f["input_ids"]) for f in dev_feats]
    alone = model.predict(model.collate(dev_feats[:2]))  # independent of the batch's rows
    assert [p.value for p in alone] == [p.value for p in preds[:2]]
    answers = model.finalize(dev, dev_feats, preds)
    assert set(answers) == set(dev["id"])
    assert all(isinstance(a["text"], str) for a in answers.values())
    if config == "v2.0":
        assert all(0.0 <= a["na_prob"] <= 1.0 for a in answers.values())
    else:
        assert all(a["text"] and a["na_prob"] is None for a in answers.values())
    again = EfficientBert.restore({}, spec, run)
    assert isinstance(again, EfficientBertQuestionAnswering)
    again.load_state_dict(model.state_dict())
    again.eval()
    assert again.finalize(dev, dev_feats, again.predict(again.collate(dev_feats))) == answers


def test_squad_distillation_uses_the_official_span_loss(env: dict[str, Path]) -> None:
    spec = get_spec("squad-v1.1")
    rows = _rows(env, "v1.1")
    torch.manual_seed(0)
    model = EfficientBert.create({**STUDENT, "distill": {"teacher_run": str(env["teacher"])}},
                                 spec, rows, env["base"] / "distilled")
    assert isinstance(model, EfficientBertStudent) and model.teacher is not None
    assert model.teacher.is_span and model.cfg.teacher_hidden_size == 32
    teacher_before = [p.clone() for p in model.teacher.parameters()]
    feats = model.encode(rows)
    batch = model.collate(feats[:16])
    model.eval()
    out = model.training_step(batch)
    student, teacher = model(batch).logits, model.teacher(batch).logits
    assert student.shape == teacher.shape == (16, 64, 2)
    official = span_soft_cross_entropy(student, teacher, batch["attention_mask"])
    assert out["pred_loss"].item() == pytest.approx(official.item(), rel=1e-5)
    assert out["pred_loss"].item() != pytest.approx(span_soft_cross_entropy(
        student, teacher, batch["attention_mask"], mask_cls=False).item(), rel=1e-3)
    # pure distillation, as finetune.py: the gold span does not enter the loss
    moved = dict(batch, start_positions=batch["start_positions"] + 1)
    assert model.training_step(moved)["loss"].item() == pytest.approx(out["loss"].item())
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    totals = []
    for step in range(30):
        out = model.training_step(model.collate(feats[(step % 2) * 16:(step % 2) * 16 + 16]))
        assert all(math.isfinite(v.item()) for v in out.values())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        totals.append(out["loss"].item())
    assert sum(totals[-4:]) / 4 < 0.6 * sum(totals[:4]) / 4, totals
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, model.teacher.parameters()))


def test_span_mask_cls_switch_and_squad_recipes() -> None:
    assert DistillConfig().span_mask_cls is True  # the official behaviour by default
    base = load_recipe("efficientbert_base_squad")
    cfg = from_dict(EfficientBert.Config, base["model"], prefix="model")
    assert (cfg.max_length, cfg.qa.max_query_length, cfg.qa.doc_stride) == (128, 64, 32)
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads) == (6, 540, 12)
    assert base["trainer"]["lr"] == 1e-4 and base["trainer"]["epochs"] == 10
    assert base["trainer"]["batch_size"] == 32 and cfg.distill.teacher_run is None
    tiny = from_dict(EfficientBert.Config, load_recipe("efficientbert_tiny_squad")["model"],
                     prefix="model")
    teacher = load_recipe("bert_tiny_squad")["model"]
    # the tiny student can distil from a bert_tiny_squad run without overrides
    assert (tiny.num_heads, tiny.vocab_size, tiny.max_length) == (
        teacher["num_attention_heads"], teacher["vocab_size"], teacher["max_length"])
    assert teacher["num_hidden_layers"] % tiny.num_layers == 0
