"""Resuming: a run stopped at any point (even SIGKILL mid-checkpoint) ends bit-identical on CPU.

The reference is one uninterrupted run of `toy.resume_config()` (14 steps over two epochs,
evaluation every 5 steps with best tracking, a checkpoint every 4 steps, dropout on so the
RNG state matters). The interrupted run is resumed with a new `Trainer` and compared
bit for bit: weights, optimizer tensors, every trainer_state.json, best.json, the set of
checkpoint folders and metrics.jsonl (without the timing field).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from refbench.engine import DistContext, Trainer, list_checkpoints
from refbench.engine.schedules import lr_factor
from refbench.errors import RefbenchError
from tests.unit.engine_workers import toy

pytestmark = pytest.mark.usefixtures("one_thread")

WORKERS = Path(__file__).resolve().parent / "engine_workers"


class Interrupted(Exception):
    """Raised by the test's collate function to stop a run part-way."""


def _trainer(run_dir: Path, collate=toy.collate, config=None) -> tuple[torch.nn.Module, Trainer]:
    features = toy.make_features()
    model = toy.make_model()
    trainer = Trainer(model, config or toy.resume_config(), run_dir, features, collate,
                      evaluate=toy.make_evaluator(features), primary="accuracy",
                      dist=DistContext.single("cpu"))
    return model, trainer


def _stop_after(calls: int):
    count = [0]

    def collate(features):
        count[0] += 1
        if count[0] > calls:
            raise Interrupted
        return toy.collate(features)

    return collate


def _without_timing(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]


def _assert_runs_identical(a: Path, b: Path) -> None:
    steps_a, steps_b = list_checkpoints(a), list_checkpoints(b)
    assert [s for s, _ in steps_a] == [s for s, _ in steps_b]
    for (_, fa), (_, fb) in zip(steps_a, steps_b):
        (ma, oa), (mb, ob) = toy.read_checkpoint(fa), toy.read_checkpoint(fb)
        assert ma.keys() == mb.keys() and oa.keys() == ob.keys()
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
        assert all(torch.equal(oa[k], ob[k]) for k in oa)
        assert json.loads((fa / "trainer_state.json").read_text()) == \
            json.loads((fb / "trainer_state.json").read_text())
    assert (a / "checkpoints" / "best.json").read_text() == (b / "checkpoints" / "best.json").read_text()
    assert _without_timing(a / "metrics.jsonl") == _without_timing(b / "metrics.jsonl")


@pytest.fixture
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The uninterrupted run: its folder and final weights."""
    run_dir = tmp_path_factory.mktemp("reference")
    model, trainer = _trainer(run_dir)
    result = trainer.fit()
    assert result.step == 14
    return run_dir, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("stop_at_step", [7, 10])
def test_resume_after_interruption_is_bit_identical(tmp_path: Path, reference, stop_at_step: int) -> None:
    ref_dir, ref_weights = reference
    _, trainer = _trainer(tmp_path, collate=_stop_after(stop_at_step - 1))
    with pytest.raises(Interrupted):
        trainer.fit()
    resumed_from = list_checkpoints(tmp_path)[-1][0]
    assert resumed_from < stop_at_step - 1  # some finished steps are lost and redone
    logged = _without_timing(tmp_path / "metrics.jsonl")
    assert logged[-1]["step"] > resumed_from  # ... and metrics.jsonl has lines to drop

    model, trainer = _trainer(tmp_path)
    result = trainer.fit(resume=True)
    assert result.step == 14
    assert all(torch.equal(t, ref_weights[k]) for k, t in model.state_dict().items())
    assert result.history == [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    _assert_runs_identical(ref_dir, tmp_path)

    # resuming a finished run trains nothing and reports the same result
    model2, trainer2 = _trainer(tmp_path)
    again = trainer2.fit(resume=True)
    assert (again.step, again.best_step, again.best_metrics) == (14, result.best_step, result.best_metrics)
    assert all(torch.equal(t, ref_weights[k]) for k, t in model2.state_dict().items())


def test_resume_after_sigkill_mid_checkpoint(tmp_path: Path, reference) -> None:
    ref_dir, ref_weights = reference
    run_dir, marker = tmp_path / "run", tmp_path / "hanging"
    log = (tmp_path / "worker.log").open("w")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(WORKERS / "kill_worker.py"), str(run_dir),
                             str(marker), "8"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker never reached the checkpoint write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    # the killed checkpoint is half-built under a temporary name, never as step-00000008
    ckpts = run_dir / "checkpoints"
    partial = [p for p in ckpts.iterdir() if p.name.startswith(".tmp-step-00000008")]
    assert len(partial) == 1 and (partial[0] / "optimizer.safetensors").is_file()
    assert not (ckpts / "step-00000008").exists()
    newest = list_checkpoints(run_dir)[-1][0]
    assert newest < 8

    model, trainer = _trainer(run_dir)
    result = trainer.fit(resume=True)
    assert result.step == 14 and not any(p.name.startswith(".") for p in ckpts.iterdir())
    assert all(torch.equal(t, ref_weights[k]) for k, t in model.state_dict().items())
    _assert_runs_identical(ref_dir, run_dir)


def test_resume_errors_are_one_line(tmp_path: Path) -> None:
    _, trainer = _trainer(tmp_path)
    with pytest.raises(RefbenchError, match="cannot resume: no complete checkpoint") as info:
        trainer.fit(resume=True)
    assert "\n" not in str(info.value)

    _, trainer = _trainer(tmp_path, collate=_stop_after(5))
    with pytest.raises(Interrupted):
        trainer.fit()
    folder = list_checkpoints(tmp_path)[-1][1]

    changed = toy.resume_config()
    changed.lr = 0.5
    _, trainer = _trainer(tmp_path, config=changed)
    with pytest.raises(RefbenchError, match=r"\[trainer.lr\]: cannot resume: trainer settings "
                       r"differ from the checkpoint's \(lr: 0.01 -> 0.5\); only max_steps"):
        trainer.fit(resume=True)

    state = folder / "trainer_state.json"
    good = state.read_text()
    state.write_text(good[: len(good) // 2])
    _, trainer = _trainer(tmp_path)
    with pytest.raises(RefbenchError, match="corrupt trainer state: invalid JSON") as info:
        trainer.fit(resume=True)
    assert str(state) in str(info.value) and "\n" not in str(info.value)

    state.write_text(json.dumps({**json.loads(good), "step": "three"}))
    _, trainer = _trainer(tmp_path)
    with pytest.raises(RefbenchError, match=r"\[step\]"):
        trainer.fit(resume=True)

    state.write_text(json.dumps({**json.loads(good), "rng": [{"rng": {}}]}))
    _, trainer = _trainer(tmp_path)
    with pytest.raises(RefbenchError, match="corrupt trainer state: KeyError"):
        trainer.fit(resume=True)

    state.write_text(good)
    (folder / "model.safetensors").write_bytes(b"\x00" * 40)
    _, trainer = _trainer(tmp_path)
    with pytest.raises(RefbenchError, match="corrupt safetensors file"):
        trainer.fit(resume=True)


def test_resume_with_another_world_size_warns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, trainer = _trainer(tmp_path, collate=_stop_after(5))
    with pytest.raises(Interrupted):
        trainer.fit()
    state_path = list_checkpoints(tmp_path)[-1][1] / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "rng": state["rng"] * 2}))  # as if 2 processes
    _, trainer = _trainer(tmp_path)
    assert trainer.fit(resume=True).step == 14
    assert "random streams restart" in capsys.readouterr().err


def test_a_finished_run_is_extended_to_more_steps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`max_steps` alone may change on resume: training continues from the last checkpoint
    with the schedule recomputed for the new length, said once and recorded in the run."""
    short = toy.config(max_steps=10)
    _, trainer = _trainer(tmp_path, config=short)
    assert trainer.fit().step == 10
    capsys.readouterr()

    longer = toy.config(max_steps=16)
    _, trainer = _trainer(tmp_path, config=longer)
    result = trainer.fit(resume=True)
    assert result.step == 16
    err = capsys.readouterr().err
    assert "extending the run from max_steps 10 to 16 at step 10: the learning-rate schedule " \
           "is recomputed for 16 steps" in err
    event = {"step": 10, "event": "extended", "from_max_steps": 10, "to_max_steps": 16}
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records.count(event) == 1
    at = records.index(event)  # after step 10's log and evaluation, before step 11
    assert records[at - 1] == {"step": 10, "eval": records[at - 1]["eval"]}
    assert records[at + 1]["step"] == 11
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 17))
    # step 11 uses the new schedule's learning rate at step 10 (linear decay over 16 steps)
    step11 = next(r for r in records if r.get("step") == 11 and "lr" in r)
    assert step11["lr"] == pytest.approx(1e-2 * lr_factor("linear", 10, 16, 2))
    state = json.loads((list_checkpoints(tmp_path)[-1][1] / "trainer_state.json").read_text())
    assert state["step"] == 16 and state["config"]["max_steps"] == 16
    assert state["history"] == [event]

    # resuming the extended run with its new length trains nothing and records nothing new
    _, trainer = _trainer(tmp_path, config=toy.config(max_steps=16))
    assert trainer.fit(resume=True).step == 16
    assert "extending" not in capsys.readouterr().err
    again = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert again == records


def test_an_interrupted_extension_resumes_bit_identically(tmp_path: Path) -> None:
    """An extension stopped part-way and resumed ends as the uninterrupted extension."""
    runs = {}
    for label, stop in (("straight", None), ("interrupted", 3)):
        run_dir = tmp_path / label
        _, trainer = _trainer(run_dir, config=toy.config(max_steps=10))
        trainer.fit()
        longer = toy.config(max_steps=18, save_every=2)
        if stop is not None:
            _, trainer = _trainer(run_dir, collate=_stop_after(stop), config=longer)
            with pytest.raises(Interrupted):
                trainer.fit(resume=True)
        model, trainer = _trainer(run_dir, config=longer)
        assert trainer.fit(resume=True).step == 18
        runs[label] = (run_dir, model.state_dict())
    (a, wa), (b, wb) = runs["straight"], runs["interrupted"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    _assert_runs_identical(a, b)


def test_a_resume_may_not_go_back_before_the_checkpoint(tmp_path: Path) -> None:
    _, trainer = _trainer(tmp_path, config=toy.config(max_steps=10))
    trainer.fit()
    _, trainer = _trainer(tmp_path, config=toy.config(max_steps=6))
    with pytest.raises(RefbenchError, match=r"\[trainer.max_steps\]: cannot resume: the "
                       r"checkpoint is at step 10, past max_steps 6") as info:
        trainer.fit(resume=True)
    assert "\n" not in str(info.value)
    _, trainer = _trainer(tmp_path, config=toy.config(max_steps=16, seed=8))
    with pytest.raises(RefbenchError, match=r"\[trainer.seed\].*\(seed: 7 -> 8\)"):
        trainer.fit(resume=True)
