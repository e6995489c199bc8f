"""EfficientBERT warm-up distillation from a `bert` teacher run, through the common runner.

A 2-layer / hidden-32 / 4-head BERT teacher is trained on synthetic SST-2 (and a few steps on
STS-B) with `runner.train`; students are 1- or 2-layer 4-head EfficientBERTs.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from refbench.baselines.nlp.distill import (DistillConfig, EncoderOutputs, distill_losses,
                                        soft_cross_entropy, span_soft_cross_entropy)
from refbench.baselines.nlp.efficientbert.model import EfficientBert, EfficientBertClassifier
from refbench.registry import get_spec
from refbench.config import build_run_config
from refbench.datasets.base import get_builder, load_prepared
from refbench.errors import RefbenchError
from refbench.io import sha256_path
from refbench.registry import BASELINES
from refbench.runner import predict, train

TEACHER = ["model.num_hidden_layers=2", "model.hidden_size=32", "model.num_attention_heads=4",
           "model.intermediate_size=64", "model.max_length=32", "trainer.progress=false",
           "trainer.eval_every=0", "trainer.save_every=0"]


def _student(teacher_run: Path | None, **change: object) -> dict:
    """A 1-layer (or `num_layers`) 4-head student config compatible with the teacher."""
    layers = int(change.pop("num_layers", 1))  # type: ignore[call-overload]
    exprs = ["tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))",
             "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"]
    cfg = {"hidden_size": 32, "num_layers": layers, "num_heads": 4, "embedding_size": 16,
           "ffn_expressions": (exprs * 2)[-layers:] if layers <= 2 else [exprs[1]] * layers,
           "vocab_size": 1000, "max_length": 32,
           "distill": {"teacher_run": None if teacher_run is None else str(teacher_run)}}
    cfg.update(change)
    return cfg


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("eb-distill")
    builder = get_builder("glue")
    root = builder.synthesize(base / "glue", n=128, seed=0)
    builder.prepare(root, base / "cache", configs=["sst2", "stsb"])
    common = [f"output_dir={base / 'runs'}", f"data.cache_dir={base / 'cache'}", *TEACHER]
    train(build_run_config("bert", "glue-sst2", "bert_tiny_glue", common + [
        "name=sst2", "trainer.max_steps=120", "trainer.lr=3e-3"]))
    train(build_run_config("bert", "glue-stsb", "bert_tiny_glue", common + [
        "name=stsb", "trainer.max_steps=4"]))
    return {"base": base, "cache": base / "cache", "sst2": base / "runs" / "sst2",
            "stsb": base / "runs" / "stsb"}


def _rows(env: dict[str, Path], config: str, split: str = "train"):
    return load_prepared("glue", split=split, config=config, cache_dir=str(env["cache"]))


# -- the loss arithmetic of the official code -------------------------------------------------
def test_official_soft_cross_entropy_averages_every_element() -> None:
    s, t = torch.zeros(1, 2), torch.zeros(1, 2)
    assert soft_cross_entropy(s, t, reduction="element").item() == pytest.approx(math.log(2) / 2)
    assert soft_cross_entropy(s, t).item() == pytest.approx(math.log(2))  # textbook form
    assert soft_cross_entropy(s, t, reduction="none").shape == (1, 2)
    # distill_losses uses that reduction for GLUE classification (finetune.py mean=True)
    zeros = [torch.zeros(1, 1, 3, 3)], [torch.zeros(1, 3, 4)] * 2
    student = EncoderOutputs(torch.zeros(1, 2), *zeros)
    teacher = EncoderOutputs(torch.tensor([[math.log(3), 0.0]]), *zeros)
    parts = distill_losses(student, teacher, torch.ones(1, 3), None, False, DistillConfig())
    assert parts["pred_loss"].item() == pytest.approx(math.log(2) / 2)
    assert parts["loss"].item() == pytest.approx(math.log(2) / 2)


def test_span_loss_masks_padding_and_cls_like_finetune_py() -> None:
    mask = torch.tensor([[1, 1, 0]])
    student = torch.zeros(1, 3, 2)
    teacher = torch.tensor([[[0.0, 0.0], [math.log(3), math.log(3)], [9.0, 9.0]]])
    # [CLS] kept: teacher (1/4, 3/4) on positions 0-1 against the student's (1/2, 1/2):
    # start and end each give ln 2 summed over positions; mean over 1 x 3 positions
    kept = span_soft_cross_entropy(student, teacher, mask, mask_cls=False)
    assert kept.item() == pytest.approx(2 * math.log(2) / 3, abs=1e-6)
    # official: [CLS] masked too, so only position 1 is left and both sides agree
    assert span_soft_cross_entropy(student, teacher, mask).item() == pytest.approx(0.0, abs=1e-6)
    outputs = EncoderOutputs(student, [torch.zeros(1, 1, 3, 3)], [torch.zeros(1, 3, 4)] * 2)
    teach = EncoderOutputs(teacher, [torch.zeros(1, 1, 3, 3)], [torch.zeros(1, 3, 4)] * 2)
    parts = distill_losses(outputs, teach, mask, None, False, DistillConfig(span_mask_cls=False),
                           span=True)
    assert parts["pred_loss"].item() == pytest.approx(kept.item())


# -- training by distillation ----------------------------------------------------------------
def test_student_learns_the_teacher(env: dict[str, Path]) -> None:
    spec = get_spec("glue-sst2")
    rows, dev = _rows(env, "sst2"), _rows(env, "sst2", "validation")
    torch.manual_seed(0)
    student = _student(env["sst2"], num_layers=2, hidden_size=64)
    model = BASELINES.get("efficientbert").create(student, spec, rows, env["base"] / "learn")
    assert isinstance(model, EfficientBertClassifier) and model.teacher is not None
    assert model.cfg.teacher_hidden_size == 32 and model.fit_dense.dense.out_features == 32
    assert all(p.requires_grad for p in model.fit_dense.parameters())
    teacher = model.teacher
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_ids = {id(p) for p in model.parameters()}
    assert not student_ids & {id(p) for p in teacher.parameters()}
    assert not any(k.startswith(("_teacher", "teacher", "head.")) for k in model.state_dict())
    feats, dev_batch = model.encode(rows), model.collate(model.encode(dev))

    def agreement() -> float:
        model.eval()
        with torch.no_grad():
            mine = model(dev_batch).logits.argmax(-1)
            theirs = teacher(dev_batch).logits.argmax(-1)
        model.train()
        return (mine == theirs).float().mean().item()

    start = agreement()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    gen, totals = torch.Generator().manual_seed(0), []
    for _ in range(40):
        order = torch.randperm(len(feats), generator=gen)[:32].tolist()
        out = model.training_step(model.collate([feats[i] for i in order]))
        assert set(out) == {"loss", "attention_loss", "hidden_loss", "pred_loss"}
        assert all(math.isfinite(v.item()) for v in out.values())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        totals.append(out["loss"].item())
    assert sum(totals[-5:]) / 5 < 0.6 * sum(totals[:5]) / 5, totals
    end = agreement()
    assert end >= 0.85 and end >= start + 0.25, (start, end)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_runner_distils_checkpoints_without_teacher_and_resumes_exactly(
        env: dict[str, Path], tmp_path: Path) -> None:
    teacher_run = tmp_path / "teacher"
    shutil.copytree(env["sst2"], teacher_run)
    teacher_sha = sha256_path(teacher_run)
    overrides = [f"output_dir={tmp_path / 'runs'}", f"data.cache_dir={env['cache']}",
                 f"model.distill.teacher_run={teacher_run}", "model.num_heads=4",
                 "model.hidden_size=32", "model.embedding_size=16", "model.max_length=32",
                 "trainer.max_steps=8", "trainer.save_every=4", "trainer.eval_every=0",
                 "trainer.keep_last=5", "trainer.progress=false"]
    first = train(build_run_config("efficientbert", "glue-sst2", "efficientbert_tiny_glue",
                                   overrides + ["name=a"]))
    run = first.run_dir
    assert sha256_path(teacher_run) == teacher_sha  # the teacher run is only read
    assert sha256_path(run / "tokenizer") == sha256_path(teacher_run / "tokenizer")
    spec = get_spec("glue-sst2")
    student = EfficientBert.restore({}, spec, run)  # no teacher needed to rebuild
    assert student.teacher is None and student.cfg.teacher_hidden_size == 32
    step4, step8 = (load_file(run / "checkpoints" / f"step-{s:08d}" / "model.safetensors")
                    for s in (4, 8))
    assert set(step8) == set(student.state_dict())  # student weights only, no teacher
    assert not torch.equal(step4["fit_dense.dense.weight"], step8["fit_dense.dense.weight"])
    optim = load_file(run / "checkpoints" / "step-00000008" / "optimizer.safetensors")
    assert len({k.split(".")[1] for k in optim}) == len(list(student.parameters()))

    # resume from step 4 of a copy: bit-identical to the uninterrupted run
    shutil.copytree(run, tmp_path / "runs" / "b")
    resumed = tmp_path / "runs" / "b"
    shutil.rmtree(resumed / "checkpoints" / "step-00000008")
    for name in ("checkpoints/best.json", "result.json"):
        (resumed / name).unlink(missing_ok=True)
    train(build_run_config("efficientbert", "glue-sst2", "efficientbert_tiny_glue",
                           overrides + ["name=b"]), resume=True)
    again = load_file(resumed / "checkpoints" / "step-00000008" / "model.safetensors")
    assert all(torch.equal(step8[k], again[k]) for k in step8)

    # predict needs no teacher
    shutil.rmtree(teacher_run)
    out = predict(run, "validation", tmp_path / "SST-2.tsv", which="last",
                  cache_dir=str(env["cache"]))
    assert out.read_text() == (run / "predictions" / "SST-2.tsv").read_text()


def test_stsb_distils_with_mse_to_gold(env: dict[str, Path]) -> None:
    spec = get_spec("glue-stsb")
    rows = _rows(env, "stsb")
    torch.manual_seed(0)
    model = EfficientBert.create(_student(env["stsb"]), spec, rows, env["base"] / "stsb-student")
    assert model.regression and model.teacher is not None
    model.eval()  # no dropout: the loss parts are deterministic
    batch = model.collate(model.encode(rows)[:16])
    out = model.training_step(batch)
    logits = model(batch).logits
    assert out["pred_loss"].item() == pytest.approx(F.mse_loss(logits, batch["labels"]).item(),
                                                    rel=1e-4)
    teacher_scores = model.teacher(batch).logits.squeeze(-1)
    assert out["pred_loss"].item() != pytest.approx(F.mse_loss(logits, teacher_scores).item(),
                                                    rel=1e-3)
    assert out["attention_loss"].item() > 0 and out["hidden_loss"].item() > 0


# -- refused configurations --------------------------------------------------------------------
@pytest.mark.parametrize("change, key, needles", [
    ({"vocab_size": 500}, "model.vocab_size", ["500", "teacher's tokenizer"]),
    ({"lowercase": False}, "model.lowercase", ["lowercase=False"]),
    ({"num_heads": 2}, "model.num_heads", ["2 heads", "the teacher 4"]),
    ({"num_layers": 3}, "model.num_layers", ["teacher's 2 layers", "student's 3"]),
    ({"max_length": 600, "max_position_embeddings": 600}, "model.max_length", ["600", "512"]),
])
def test_incompatible_students_are_refused_in_one_line(env: dict[str, Path], tmp_path: Path,
                                                       change: dict, key: str,
                                                       needles: list[str]) -> None:
    run = tmp_path / "run"
    with pytest.raises(RefbenchError) as err:
        EfficientBert.create(_student(env["sst2"], **change), get_spec("glue-sst2"),
                             _rows(env, "sst2"), run)
    text = str(err.value)
    assert "\n" not in text and f"[{key}]" in text and str(env["sst2"]) in text
    assert all(n in text for n in needles), text
    assert not (run / "tokenizer").exists()  # refused before anything is written


def test_tokenizer_mismatches_are_refused(env: dict[str, Path], tmp_path: Path) -> None:
    from refbench.baselines.nlp.bert import train_wordpiece

    spec, rows = get_spec("glue-sst2"), _rows(env, "sst2")
    other = tmp_path / "other-tokenizer"
    train_wordpiece(iter(["completely different words here"]), 100, True, other)
    with pytest.raises(RefbenchError, match=r"\[model.tokenizer\].*differs from the teacher"):
        EfficientBert.create(_student(env["sst2"], tokenizer=str(other)), spec, rows,
                             tmp_path / "a")
    # naming the teacher's own tokenizer is fine
    model = EfficientBert.create(_student(env["sst2"], tokenizer=str(env["sst2"] / "tokenizer")),
                                 spec, rows, tmp_path / "b")
    assert model.teacher is not None
    # a run folder that already holds another tokenizer is not silently switched
    EfficientBert.create(_student(None, vocab_size=100), spec, rows, tmp_path / "c")
    with pytest.raises(RefbenchError, match="tokenizer differs from the teacher's"):
        EfficientBert.create(_student(env["sst2"]), spec, rows, tmp_path / "c")


def test_teacher_of_another_task_or_missing_is_refused(env: dict[str, Path],
                                                       tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match=r"\[model.distill.teacher_run\].*glue-sst2.*glue-stsb"):
        EfficientBert.create(_student(env["sst2"]), get_spec("glue-stsb"), _rows(env, "stsb"),
                             tmp_path / "a")
    with pytest.raises(RefbenchError, match="not a run folder"):
        EfficientBert.create(_student(tmp_path / "nowhere"), get_spec("glue-sst2"),
                             _rows(env, "sst2"), tmp_path / "b")
