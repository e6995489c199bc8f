"""The registered `nasoa` baseline (a zoo member or the default code through the common
runner), its demo job, the online predictor's soundness, and the benchmark's result.json
self-reported on the leaderboard and read back."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from refbench.baselines.nas.nasoa.baseline import DEFAULT_CODE, MODEL_FILE, NasoaBaseline
from refbench.baselines.nas.nasoa.benchmark import BENCHMARK, BenchmarkConfig, run_benchmark
from refbench.baselines.nas.nasoa.finetune import Budget
from refbench.baselines.nas.nasoa.generators import (BATCH_SIZES, LR_GRID, PESSIMISM,
                                                     OnlineGenerator, features, random_schedule,
                                                     warmup_schedules)
from refbench.baselines.nas.nasoa.zoo import load_zoo
from refbench.errors import RefbenchError
from refbench.registry import get_spec
from tests.unit.test_nasoa_generators import _context, tiny_zoo

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_zoo(tmp_path_factory.mktemp("nasoa-baseline") / "zoo")


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    from refbench.datasets.images.digits import DigitsBuilder, bundled_file

    builder = DigitsBuilder()
    return builder.generate(bundled_file().parent, builder.configs()[0])


# -- the online predictor ---------------------------------------------------------------------
def test_warmup_schedules_cover_the_grid_evenly(zoo_dir: Path) -> None:
    zoo = load_zoo(zoo_dir)
    plan = warmup_schedules(random.Random(0), zoo, 24)
    assert len(plan) == 24
    lrs = [s.lr for s in plan]
    assert {lrs.count(v) for v in LR_GRID} <= {2, 3} and set(lrs) == set(LR_GRID)
    assert {[s.batch_size for s in plan].count(b) for b in BATCH_SIZES} == {8}
    share = 24 // len(zoo.members)  # the tiny zoo's front holds 1 or 2 (timed) members
    assert {[s.model for s in plan].count(m.name) for m in zoo.members} <= {share, share + 1}
    assert plan == warmup_schedules(random.Random(0), zoo, 24)  # seeded


def test_online_predictions_stay_percentages_and_rank_pessimistically(zoo_dir: Path) -> None:
    """The first predictor extrapolated to > 100%; predictions now live in (0, 100) even
    far outside the history, and the default ranks by mean - 1 std."""
    ctx = _context(zoo_dir, Budget("steps", 20))
    online = OnlineGenerator()
    assert online.explore == PESSIMISM == -1.0
    rng = random.Random(1)
    for _ in range(24):  # accuracies near 100 at high lr: the old model overshot here
        s = random_schedule(rng, ctx.zoo)
        online.observe(ctx, s, min(100.0, 60 + 40 * (math.log10(s.lr) + 3) / 2.5))
    member = ctx.zoo.members[0]
    far = [features(ctx.features, ctx.train_size, member, lr, 16, Budget("steps", 10 ** k))
           for lr in (1e-6, 0.3, 30.0) for k in (0, 2, 6)]
    accuracy, score, std = online.predict(far)
    assert ((accuracy > 0) & (accuracy < 100)).all() and (std > 0).all()
    assert torch.allclose(torch.as_tensor(score), torch.as_tensor(online.predict(far)[1]))
    choice = online.choose(ctx)
    assert 0 < choice.details["pessimistic"] <= choice.details["predicted"] < 100
    optimistic = OnlineGenerator(explore=0.0)
    optimistic.x, optimistic.y = online.x, online.y
    assert optimistic.choose(ctx).details["pessimistic"] == optimistic.choose(ctx).details[
        "predicted"]
    with pytest.raises(RefbenchError, match=r"percentage in \[0, 100\]"):
        online.add(far[0], 100.5)
    with pytest.raises(RefbenchError, match="explore must be finite"):
        OnlineGenerator(explore=math.nan)


# -- the baseline -------------------------------------------------------------------------------
def _train(model: NasoaBaseline, rows, run: Path, steps: int) -> None:  # type: ignore[no-untyped-def]
    from refbench.config import TrainerConfig, from_dict, load_recipe
    from refbench.engine import Trainer

    cfg = from_dict(TrainerConfig, load_recipe("nasoa_tiny_digits")["trainer"])
    cfg.max_steps, cfg.save_every, cfg.progress = steps, 0, False
    Trainer(model, cfg, run, model.encode(rows), model.collate).fit()


def test_default_code_trains_from_scratch_and_restores(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from refbench.runner import predict_rows

    spec = get_spec("digits")
    torch.manual_seed(0)
    model = NasoaBaseline.create({}, spec, digits["train"], tmp_path)
    assert model.code == DEFAULT_CODE and model.member is None and model.image_size == 32
    assert isinstance(model.configure_optimizer(_trainer_cfg()), torch.optim.SGD)
    _train(model, digits["train"].select(range(320)), tmp_path / "run", 40)
    rows = digits["validation"].select(range(100))
    preds = predict_rows(model, rows, 64)
    assert set(preds) == set(rows["id"])
    assert all(len(p) == 5 == len(set(p)) and set(p) <= set(range(10)) for p in preds.values())
    top1 = sum(preds[r["id"]][0] == r["label"] for r in rows) / len(rows)
    assert top1 > 0.3  # chance 0.1; 40 seeded steps on 320 real scans
    again = NasoaBaseline.restore({}, spec, tmp_path)
    again.load_state_dict(model.state_dict())
    again.eval()
    assert predict_rows(again, rows, 64) == preds


def _trainer_cfg():  # type: ignore[no-untyped-def]
    from refbench.config import TrainerConfig

    return TrainerConfig(lr=0.05, weight_decay=1e-4)


def test_a_zoo_member_starts_from_its_pretrained_weights(zoo_dir: Path, digits,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    zoo = load_zoo(zoo_dir)
    spec = get_spec("digits")
    name = zoo.members[0].name
    model = NasoaBaseline.create({"zoo": str(zoo_dir), "member": name}, spec,
                                 digits["train"], tmp_path)
    pretrained = zoo.load_model(name).state_dict()
    mine = model.net.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in pretrained.items() if not k.startswith("fc."))
    assert model.net.fc.out_features == 10 and model.image_size == zoo.image_size
    saved = json.loads((tmp_path / MODEL_FILE).read_text())
    assert saved["member"] == name and saved["code"] == zoo.members[0].code
    default = NasoaBaseline.create({"zoo": str(zoo_dir)}, spec, digits["train"], tmp_path / "b")
    assert default.member == zoo.largest.name


@pytest.mark.parametrize("cfg, message", [
    ({"code": "116-_32_--1"}, "116-_32_--1"),
    ({"member": "m0"}, "a member needs a zoo"),
    ({"zoo": "no/such/zoo"}, "no/such/zoo"),
    ({"image_size": 4}, r"\[model.image_size\]"),
    ({"momentum": 1.0}, r"\[model.momentum\]"),
    ({"lr": 0.1}, "lr"),
])
def test_bad_model_settings_are_one_line_errors(cfg: dict, message: str) -> None:
    with pytest.raises(RefbenchError, match=message) as info:
        NasoaBaseline.validate_config(cfg, get_spec("digits"))
    assert "\n" not in str(info.value)


def test_an_unknown_member_and_a_missing_run_record(zoo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="zoo has no member 'm9'"):
        NasoaBaseline.validate_config({"zoo": str(zoo_dir), "member": "m9"}, get_spec("digits"))
    with pytest.raises(RefbenchError, match=MODEL_FILE):
        NasoaBaseline.restore({}, get_spec("digits"), tmp_path)


# -- the demo job and the leaderboard -------------------------------------------------------------
def test_demo_job_is_the_tiny_recipe_on_digits_against_the_majority(tmp_path: Path) -> None:
    from refbench.baselines.nas.nasoa.demo_jobs import majority_class
    from refbench.datasets.base import load_prepared
    from refbench.registry import DATASETS, DEMOS

    assert DEMOS.meta("nasoa").get("default") is True
    job = DEMOS.get("nasoa")()
    assert (job.benchmark, job.baseline, job.recipe) == ("digits", "nasoa", "nasoa_tiny_digits")
    spec = get_spec(job.benchmark)
    builder = DATASETS.get("digits")()
    root = builder.synthesize(tmp_path / "src")
    builder.prepare(root, tmp_path / "cache")
    preds = majority_class(spec, str(tmp_path / "cache"))
    val = load_prepared("digits", split="validation", cache_dir=str(tmp_path / "cache"))
    train = list(load_prepared("digits", split="train", cache_dir=str(tmp_path / "cache"))["label"])
    assert set(preds) == set(val["id"]) and len(set(preds.values())) == 1
    (label,) = set(preds.values())
    assert train.count(label) == max(train.count(c) for c in range(10))
    assert job.references(root) == root


def test_benchmark_result_is_self_reported_and_read_back(zoo_dir: Path, tmp_path: Path) -> None:
    from refbench.leaderboard.db import LeaderboardDB

    out = tmp_path / "bench"
    cfg = BenchmarkConfig(tasks=["synthetic:easy:1"], budgets=["3steps"],
                          generators=["largest-default"], seeds=[0], warmup_tasks=[])
    run_benchmark(zoo_dir, out, cfg, recipe="nasoa_tiny_finetune", progress=lambda s: None)
    spec = get_spec(BENCHMARK)
    assert spec.key == "nasoa-finetune-budget@1" and spec.dataset.name == "digits"
    refs = tmp_path / "hidden" / "digits"
    refs.mkdir(parents=True)
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    board.set_references_dir(tmp_path / "hidden")
    board.add_benchmark(BENCHMARK, "digits")
    team = board.add_team("nasoa-cpu")
    entry = board.add_self_reported(team, out / "result.json")
    (row,) = board.leaderboard(spec.key, decimals=2)
    doc = json.loads((out / "result.json").read_text())
    assert not row.verified and row.primary == "accuracy" and row.model.startswith(
        "largest-default")
    assert row.value == round(doc["metrics"]["accuracy"], 2)
    stored = board.self_reported(entry)
    assert stored["benchmark"] == spec.key and stored["team"] == "nasoa-cpu"
    kept = stored["result"]["settings"]  # the chosen schedules and the machine survive
    assert kept["choices"] == doc["provenance"]["choices"] and kept["machine"]["device"] == "cpu"
    assert kept["choices"][0]["schedule"]["model"] == load_zoo(zoo_dir).largest.name
    assert kept["budgets"] == ["3steps"] and kept["tasks"] == ["synthetic:easy:1"]
    assert stored["result"]["provenance"]["label_set_sha256"] == doc["provenance"][
        "label_set_sha256"]
