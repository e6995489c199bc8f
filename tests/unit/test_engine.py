"""The common runner: schedules, optimizer groups, batching maths, evaluation, checkpoints, progress."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from refbench.engine import (DistContext, Trainer, build_optimizer, find_checkpoint,
                             list_checkpoints, load_model_weights, lr_factor)
from refbench.engine.progress import Progress
from refbench.engine.schedules import lr_curve
from refbench.errors import RefbenchError
from tests.unit.engine_workers import toy

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = DistContext.single("cpu")


def _train(run_dir: Path, model: nn.Module | None = None, features=None, **overrides):
    features = features if features is not None else toy.make_features()
    model = model if model is not None else toy.make_model()
    evaluate = overrides.pop("evaluate", None)
    primary = overrides.pop("primary", None)
    higher = overrides.pop("higher_is_better", True)
    collate = overrides.pop("collate", toy.collate)
    trainer = Trainer(model, toy.config(**overrides), run_dir, features, collate,
                      evaluate=evaluate, primary=primary, higher_is_better=higher, dist=CPU)
    return model, trainer.fit()


def _scripted(values: list[float]):
    """An evaluator returning the given scores in turn (and counting its calls)."""
    calls = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        calls.append(model.training)
        return {"score": values[len(calls) - 1], "other": 1.0}

    evaluate.calls = calls  # type: ignore[attr-defined]
    return evaluate


# -- schedules and optimizer ---------------------------------------------------------------
def test_lr_schedules_follow_their_definitions() -> None:
    # warm-up is linear from 0 (from lr/25 for one_cycle) over ceil(0.1 * 100) = 10 steps
    for schedule in ("constant", "linear", "cosine"):
        assert lr_factor(schedule, 0, 100, 10) == 0.0
        assert lr_factor(schedule, 5, 100, 10) == pytest.approx(0.5)
        assert lr_factor(schedule, 10, 100, 10) == pytest.approx(1.0)
    assert lr_factor("constant", 99, 100, 10) == 1.0
    assert lr_factor("linear", 55, 100, 10) == pytest.approx(0.5)
    assert lr_factor("linear", 100, 100, 10) == 0.0
    assert lr_factor("cosine", 55, 100, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 32.5, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("one_cycle", 0, 100, 10) == pytest.approx(1 / 25)
    assert lr_factor("one_cycle", 10, 100, 10) == pytest.approx(1.0)
    assert lr_factor("one_cycle", 100, 100, 10) == pytest.approx(1 / 25e4)
    assert lr_factor("constant", 3, 100, 0) == 1.0  # no warm-up
    curve = lr_curve(toy.config(max_steps=20, lr=0.1, warmup_ratio=0.1, schedule="linear"))
    assert curve[:3] == pytest.approx([0.0, 0.05, 0.1]) and curve[-1] == pytest.approx(0.1 / 18)


def test_adamw_skips_decay_on_biases_and_norms() -> None:
    model = toy.make_model()
    optimizer = build_optimizer(model, toy.config(weight_decay=0.3, betas=[0.8, 0.9], eps=1e-6))
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decay["params"]) == ["net.0.weight", "net.4.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == \
        ["net.0.bias", "net.1.bias", "net.1.weight", "net.4.bias"]
    assert decay["betas"] == (0.8, 0.9) and decay["eps"] == 1e-6


# -- the loop ------------------------------------------------------------------------------
def test_training_learns_and_logs(tmp_path: Path) -> None:
    features = toy.make_features()
    evaluate = toy.make_evaluator(features)
    before = evaluate(toy.make_model())
    model, result = _train(tmp_path, features=features, max_steps=60, log_every=5, eval_every=20,
                           evaluate=evaluate, primary="accuracy")
    assert result.step == 60
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == result.history
    logs = [r for r in lines if "loss" in r]
    evals = [r for r in lines if "eval" in r]
    assert [r["step"] for r in logs] == list(range(5, 61, 5))
    assert [r["step"] for r in evals] == [20, 40, 60]
    assert all(set(r) == {"step", "loss", "lr", "samples_per_s", "epoch"} for r in logs)
    assert logs[-1]["epoch"] == pytest.approx(60 / 12)  # 96 samples / batch 8 = 12 steps/epoch
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert evals[-1]["eval"]["accuracy"] > before["accuracy"] + 0.2
    assert result.best_metrics == max((e["eval"] for e in evals), key=lambda m: m["accuracy"])


def test_same_seed_same_run_and_other_seed_differs(tmp_path: Path) -> None:
    a, _ = _train(tmp_path / "a")
    b, _ = _train(tmp_path / "b")
    c, _ = _train(tmp_path / "c", seed=8)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name])
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


def test_grad_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    one, r1 = _train(tmp_path / "one", model=toy.make_model(dropout=0.0), batch_size=16)
    two, r2 = _train(tmp_path / "two", model=toy.make_model(dropout=0.0), batch_size=16,
                     grad_accum=2)
    four, _ = _train(tmp_path / "four", model=toy.make_model(dropout=0.0), batch_size=16,
                     grad_accum=4, grad_clip=None)
    for name, tensor in one.state_dict().items():
        torch.testing.assert_close(two.state_dict()[name], tensor, atol=1e-6, rtol=1e-5)
    losses = [(a["loss"], b["loss"]) for a, b in zip(r1.history, r2.history)]
    assert all(abs(a - b) < 1e-5 for a, b in losses)
    assert not torch.equal(four.net[0].weight, one.net[0].weight)  # no clipping: other run


def test_amp_is_ignored_on_cpu(tmp_path: Path) -> None:
    a, _ = _train(tmp_path / "a", amp=True)
    b, _ = _train(tmp_path / "b", amp=False)
    assert all(torch.equal(t, b.state_dict()[n]) for n, t in a.state_dict().items())


def test_evaluation_does_not_shift_training_randomness(tmp_path: Path) -> None:
    def noisy_eval(model: nn.Module) -> dict[str, float]:
        return {"noise": float(torch.rand(()))}  # consumes the global torch RNG

    a, _ = _train(tmp_path / "a", evaluate=noisy_eval, eval_every=1)
    b, _ = _train(tmp_path / "b")
    assert all(torch.equal(t, b.state_dict()[n]) for n, t in a.state_dict().items())


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match=r"trainer\.batch_size.*not divisible") as info:
        _train(tmp_path / "a", batch_size=10, grad_accum=4)
    assert "\n" not in str(info.value)
    with pytest.raises(RefbenchError, match="fewer than one batch"):
        _train(tmp_path / "b", features=toy.make_features(n=6))
    with pytest.raises(RefbenchError, match=r"trainer\.schedule"):
        _train(tmp_path / "c", schedule="exp")
    with pytest.raises(RefbenchError, match="primary metric 'acc' is not among"):
        _train(tmp_path / "d", evaluate=toy.make_evaluator(toy.make_features()), primary="acc")


# -- evaluation, best and checkpoints ---------------------------------------------------------
@pytest.mark.parametrize("higher, best", [(True, 4), (False, 2)])
def test_best_checkpoint_survives_rotation(tmp_path: Path, higher: bool, best: int) -> None:
    evaluate = _scripted([0.1, 0.5, 0.3, 0.2, 0.4])
    model, result = _train(tmp_path, max_steps=10, eval_every=2, save_every=2, keep_last=2,
                           evaluate=evaluate, primary="score", higher_is_better=higher)
    assert evaluate.calls == [False] * 5  # evaluated in eval mode, five times
    assert model.training
    assert result.best_step == best
    assert result.best_metrics == {"score": [0.1, 0.5][best // 2 - 1], "other": 1.0}
    kept = [step for step, _ in list_checkpoints(tmp_path)]
    assert kept == sorted({best, 8, 10})
    assert find_checkpoint(tmp_path, "best") == result.best_checkpoint == \
        tmp_path / "checkpoints" / f"step-{best:08d}"
    assert find_checkpoint(tmp_path, "last") == result.last_checkpoint
    record = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert record["step"] == best and record["primary"] == "score"

    # the last checkpoint holds the final weights, and loads into a fresh model
    fresh = toy.make_model(seed=99)
    load_model_weights(fresh, result.last_checkpoint)
    assert all(torch.equal(t, model.state_dict()[n]) for n, t in fresh.state_dict().items())


def test_checkpoint_lookup_errors(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="no complete checkpoint"):
        find_checkpoint(tmp_path, "last")
    _train(tmp_path, max_steps=3)  # no evaluation: a last checkpoint but no best
    assert find_checkpoint(tmp_path, "last").name == "step-00000003"
    with pytest.raises(RefbenchError, match="no best checkpoint"):
        find_checkpoint(tmp_path, "best")
    with pytest.raises(RefbenchError, match="does not fit the model"):
        load_model_weights(nn.Linear(3, 3), find_checkpoint(tmp_path, "last"))
    # a fresh (non-resume) fit refuses to mix with an existing run's checkpoints
    with pytest.raises(RefbenchError, match="already has checkpoints"):
        _train(tmp_path, max_steps=3)


def test_incomplete_folders_are_ignored_and_swept(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    (root / ".tmp-step-00000009-abc").mkdir(parents=True)
    (root / ".tmp-step-00000009-abc" / "model.safetensors").write_bytes(b"partial")
    (root / "step-00000007").mkdir()  # a folder without its files is not a checkpoint
    assert list_checkpoints(tmp_path) == []
    _train(tmp_path, max_steps=2)
    assert not (root / ".tmp-step-00000009-abc").exists()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(toy.DIM, toy.CLASSES)
        self.head = nn.Linear(toy.CLASSES, toy.DIM, bias=False)
        self.head.weight = self.embed.weight  # tied weights are stored once

    def training_step(self, batch):
        return {"loss": self.head(batch["x"][:, : toy.CLASSES]).pow(2).mean()}


def test_tied_weights_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, result = _train(tmp_path, model=_Tied(), max_steps=3)
    fresh = _Tied()
    load_model_weights(fresh, result.last_checkpoint)
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert fresh.head.weight is fresh.embed.weight


# -- progress -------------------------------------------------------------------------------
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_throttled_on_a_terminal() -> None:
    stream = _Tty()
    progress = Progress(10_000, stream=stream, max_fps=4)
    calls = []
    for step in range(1, 10_001):
        progress.tick(step, 8, lambda: calls.append(1) or 0.5, 1e-3)
    progress.log({"step": 1, "loss": 0.5, "lr": 1e-3, "samples_per_s": 1.0, "epoch": 0.0})
    progress.close()
    text = stream.getvalue()
    assert progress.bar and len(calls) == text.count("\r") and 1 <= len(calls) <= 5
    assert "step 10000/10000" in text and "loss 0.5000" in text and "samples/s" in text
    assert "epoch" not in text  # log lines are not printed under the bar


def test_trainer_draws_the_bar_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Tty()
    monkeypatch.setattr("sys.stderr", stream)
    _train(tmp_path, max_steps=6, progress=True, evaluate=_scripted([0.5]), primary="score")
    text = stream.getvalue()
    assert "\rstep 6/6 [" in text and "samples/s" in text
    assert "eval step 6: score=0.5 other=1 (best)\n" in text and text.endswith("\n")
    assert "epoch" not in text


def test_log_lines_without_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _train(tmp_path, max_steps=6, log_every=3, progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and lines[1].startswith("step 6/6 epoch 0.5 loss ")
    assert "samples/s" in lines[0] and "\r" not in err


def test_dist_context_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = DistContext.from_env()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    tensor = torch.tensor([3.0])
    assert ctx.all_reduce_mean(tensor) is tensor and tensor.item() == 3.0
    assert ctx.broadcast_object({"a": 1}) == {"a": 1} and ctx.all_gather_object(5) == [5]
    ctx.barrier()
    ctx.close()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "one")
    with pytest.raises(RefbenchError, match="WORLD_SIZE"):
        DistContext.from_env()
