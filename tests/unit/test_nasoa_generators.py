"""NASOA's budgets, schedules, zoo folder and schedule generators (online predictor,
optuna random / Hyperband / BOHB, largest-default)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from refbench.baselines.nas.nasoa.finetune import Budget, Schedule, lr_at
from refbench.baselines.nas.nasoa.generators import (
    BATCH_SIZES,
    FEATURE_NAMES,
    LR_GRID,
    LR_RANGE,
    PREDICTORS,
    Context,
    OnlineGenerator,
    Predictor,
    features,
    leave_one_task_out,
    make_generator,
    pairwise_loss,
    random_schedule,
    to_logit,
)
from refbench.baselines.nas.nasoa.zoo import (
    Member,
    ZooConfig,
    build_zoo,
    load_zoo,
    pareto_front,
    spread,
)
from refbench.errors import RefbenchError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_zoo(out: Path) -> Path:
    """Two members searched and pretrained in a few seconds (16 px, 8 channels)."""
    cfg = ZooConfig(block_candidates=3, macro_candidates=2, op_num=[2], skip_num=[0, 1],
                    base_channel=[8], default_macro="1-2", code_length=[3, 5],
                    final_channel=[16], downsample=[1], proxy_steps=3, pretrain_steps=6,
                    zoo_size=2, batch_size=16, image_size=16, seed=0)
    build_zoo("synthetic:easy:7", out, cfg, progress=lambda line: None)
    return out


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_zoo(tmp_path_factory.mktemp("nasoa") / "zoo")


# -- budgets and schedules --------------------------------------------------------------------
def test_budgets_parse_and_refuse_zero_negative_and_non_finite() -> None:
    assert Budget.parse("30s") == Budget("seconds", 30.0)
    assert Budget.parse("2.5sec") == Budget("seconds", 2.5)
    assert Budget.parse("200steps") == Budget("steps", 200.0) == Budget.parse("200")
    assert Budget.parse("1step").label == "1steps" and Budget.parse("0.5s").label == "0.5s"
    for bad in ("0s", "0", "-1steps", "nans", "infs", "1.5steps", "fast"):
        with pytest.raises(RefbenchError) as info:
            Budget.parse(bad)
        assert "\n" not in str(info.value) and "[budget]" in str(info.value)
    assert Budget("seconds", 1.0).steps_for(0.25) == 4
    assert Budget("seconds", 0.1).steps_for(1.0) == 1  # at least one step
    assert Budget("steps", 7).steps_for(123.0) == 7


def test_schedule_limits_and_learning_rate_shape() -> None:
    for lr in (0.0, -1.0, math.nan):
        with pytest.raises(RefbenchError, match="learning rate must be positive"):
            Schedule("m0", lr)
    with pytest.raises(RefbenchError, match="batch size must be >= 1"):
        Schedule("m0", 0.1, 0)
    # 100 planned steps, warm-up 0.1: linear over 10 steps, then cosine to zero at 100
    assert lr_at(0, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 0.1) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, 0.1) == pytest.approx(0.0)
    assert LR_GRID[0] == LR_RANGE[0] and LR_GRID[-1] == pytest.approx(LR_RANGE[1])
    assert len(LR_GRID) == 9 and BATCH_SIZES == (16, 32, 64)


def test_pareto_front_and_spread() -> None:
    points = [(0.9, 3.0), (0.8, 1.0), (0.85, 2.0), (0.7, 2.5), (0.9, 3.5), (0.8, 1.0)]
    assert pareto_front(points) == [0, 1, 2, 5]  # equal points do not dominate each other
    assert spread([(0, 3.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0)], 3) == [1, 0, 4]
    assert spread([(0, 3.0), (1, 1.0)], 4) == [1, 0]


# -- the zoo folder -----------------------------------------------------------------------------
def test_zoo_folder_is_verified(zoo_dir: Path, tmp_path: Path) -> None:
    import shutil

    zoo = load_zoo(zoo_dir)
    assert 1 <= len(zoo.members) <= 2 and zoo.image_size == 16 and zoo.num_classes == 4
    assert zoo.machine["cpu_count"] and zoo.machine["device"] == "cpu"
    assert (zoo_dir / "candidates.jsonl").read_text().count("\n") == 5
    assert zoo.largest.params == max(m.params for m in zoo.members)
    copy = tmp_path / "zoo"
    shutil.copytree(zoo_dir, copy)
    member = zoo.members[0]
    index = json.loads((copy / "zoo.json").read_text())
    index["members"][0]["code"] = "1_8_1"  # another architecture, same checkpoint
    (copy / "zoo.json").write_text(json.dumps(index))
    with pytest.raises(RefbenchError, match=r"checkpoint does not match architecture 1_8_1"):
        load_zoo(copy)
    index["members"][0]["code"] = member.code
    (copy / "zoo.json").write_text(json.dumps(index))
    (copy / member.checkpoint).write_bytes(b"\0" * 10)
    with pytest.raises(RefbenchError, match="does not match its sha256"):
        load_zoo(copy)
    (copy / member.checkpoint).unlink()
    with pytest.raises(RefbenchError, match=f"checkpoint of member {member.name} is missing"):
        load_zoo(copy)
    (copy / "zoo.json").write_text("{")
    with pytest.raises(RefbenchError, match="invalid JSON"):
        load_zoo(copy)
    with pytest.raises(RefbenchError, match="zoo folder not found"):
        load_zoo(tmp_path / "nowhere")
    with pytest.raises(RefbenchError, match="a zoo is a folder"):
        load_zoo(copy / "candidates.jsonl")
    with pytest.raises(RefbenchError, match="zoo has no member 'm9'"):
        zoo.member("m9")


def test_a_failed_zoo_search_writes_nothing(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "one" / "train" / "only"
    folder.mkdir(parents=True)
    for k in range(3):
        Image.new("RGB", (8, 8), (k, 0, 0)).save(folder / f"{k}.png")
    with pytest.raises(RefbenchError, match="has 1 class"):
        build_zoo(f"imagefolder:{tmp_path / 'one'}", tmp_path / "zoo", ZooConfig())
    with pytest.raises(RefbenchError, match=r"\[zoo.proxy_steps\]: must be >= 1"):
        build_zoo("synthetic:easy:7", tmp_path / "zoo", ZooConfig(proxy_steps=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one"]


# -- generators ---------------------------------------------------------------------------------
def _context(zoo_dir: Path, budget: Budget, seed: int = 0) -> Context:
    from refbench.baselines.nas.nasoa.tasks import load_task

    data = load_task("synthetic:easy:3", 16)
    return Context(load_zoo(zoo_dir), "synthetic:easy:3", data.features(), len(data.train_y),
                   budget, seed, work=None)


def test_unknown_generator_and_trial_count() -> None:
    with pytest.raises(RefbenchError, match="unknown schedule generator 'grid'"):
        make_generator("grid")
    with pytest.raises(RefbenchError, match="trials must be >= 1"):
        make_generator("bohb", trials=0)


def test_largest_default_uses_vegas_fine_tune_defaults(zoo_dir: Path) -> None:
    choice = make_generator("largest-default").choose(_context(zoo_dir, Budget("steps", 5)))
    assert choice.schedule.model == load_zoo(zoo_dir).largest.name
    assert (choice.schedule.lr, choice.schedule.batch_size) == (0.003, 32)
    assert (choice.schedule.momentum, choice.schedule.weight_decay) == (0.9, 1e-4)


def test_online_generator_learns_from_past_tasks_and_updates(zoo_dir: Path) -> None:
    ctx = _context(zoo_dir, Budget("steps", 20))
    online = OnlineGenerator()
    with pytest.raises(RefbenchError, match="needs at least two past fine-tunings"):
        online.choose(ctx)
    rng = random.Random(0)
    for _ in range(25):  # a history where accuracy peaks at lr 0.03 and prefers batch 16
        s = random_schedule(rng, ctx.zoo)
        acc = 90 - 20 * (math.log10(s.lr) - math.log10(0.03)) ** 2 - 0.05 * s.batch_size
        online.observe(ctx, s, acc)
    choice = online.choose(ctx)
    assert choice.trials == 0 and choice.details["history"] == 25
    assert 0.01 <= choice.schedule.lr <= 0.1 and choice.schedule.batch_size == 16
    online.observe(ctx, choice.schedule, 10.0)  # updated after every task: refitted
    assert online._model is None and len(online.y) == 26
    x = features(ctx.features, ctx.train_size, ctx.zoo.members[0], 0.01, 32, ctx.budget)
    assert len(x) == len(FEATURE_NAMES) == 12 and all(math.isfinite(v) for v in x)
    with pytest.raises(RefbenchError, match="non-finite observation"):
        online.add(x, math.nan)


@pytest.mark.parametrize("name", ["random", "bohb"])
def test_optuna_generators_run_trials_on_the_held_out_part(name: str, zoo_dir: Path) -> None:
    pytest.importorskip("optuna")
    ctx = _context(zoo_dir, Budget("steps", 18))
    choice = make_generator(name, trials=3).choose(ctx)
    assert choice.trials == 3
    assert choice.schedule.model in {m.name for m in ctx.zoo.members}
    assert LR_RANGE[0] <= choice.schedule.lr <= LR_RANGE[1]
    assert 0.0 <= choice.details["heldout_accuracy"] <= 1.0
    if name == "random":
        assert choice.details["pruned"] == 0


# -- the online predictor: features, toy response surface, leave-one-task-out -----------------
def _member(name: str, params: int, seconds: float, pretrain: float) -> Member:
    return Member(name, "1_8_1", params, seconds, 0.5, pretrain, f"models/{name}.safetensors",
                  "0" * 64)


MEMBERS = [_member("small", 60_000, 0.01, 0.94), _member("big", 900_000, 0.05, 0.98)]
TOY_TASKS = {f"toy:{k}": {"log_train": math.log(n), "log_classes": math.log(c), "per_class": n / c,
                          "probe": p}
             for k, (n, c, p) in enumerate([(160, 4, 0.9), (240, 8, 0.6), (320, 16, 0.3),
                                            (200, 6, 0.7), (280, 12, 0.45)])}


def toy_accuracy(task: dict[str, float], member: Member, lr: float, batch: int,
                 steps: int) -> float:
    """A known response surface: accuracy grows with the examples seen (steps x batch),
    peaks at lr 0.05 (a parabola in log lr), falls with the task's difficulty; the big
    member is 5 points better."""
    seen = math.log(steps * batch)
    logit = (1.6 * task["probe"] + 0.9 * (seen - 7.0) - 1.5 * (math.log10(lr) + 1.3) ** 2
             + 0.3 * (member.params > 100_000) - 0.2 * task["log_classes"])
    return 100.0 / (1.0 + math.exp(-logit))


def _toy_zoo() -> SimpleNamespace:
    return SimpleNamespace(members=MEMBERS, member=lambda name: next(
        m for m in MEMBERS if m.name == name))


def _toy_ctx(task: str, steps: int) -> Context:
    f = TOY_TASKS[task]
    return Context(_toy_zoo(), task, f, round(math.exp(f["log_train"])),  # type: ignore[arg-type]
                   Budget("steps", steps), 0)


def _toy_history(online: OnlineGenerator, tasks: list[str], per_task: int, seed: int) -> None:
    rng = random.Random(seed)
    for task in tasks:
        for k in range(per_task):
            steps = (30, 100)[k % 2]
            ctx = _toy_ctx(task, steps)
            s = Schedule(rng.choice(MEMBERS).name, rng.choice(LR_GRID), rng.choice(BATCH_SIZES))
            online.observe(ctx, s, toy_accuracy(ctx.features, ctx.zoo.member(s.model), s.lr,
                                                s.batch_size, steps))


def test_features_name_what_a_step_budget_buys() -> None:
    task = TOY_TASKS["toy:0"]
    for member in MEMBERS:  # a step budget plans the same steps for every member
        x = dict(zip(FEATURE_NAMES, features(task, 160, member, 0.01, 64, Budget("steps", 30))))
        assert x["log_steps"] == pytest.approx(math.log(30))
        assert x["log_seen"] == pytest.approx(math.log(30 * 64))  # examples seen
        assert x["log_epochs"] == pytest.approx(math.log(30 * 64 / 160))
        assert x["log10_lr"] == pytest.approx(-2.0) and x["log2_batch"] == pytest.approx(6.0)
        assert x["log10_lr_x_steps"] == pytest.approx(math.log10(0.3))
        assert x["log_params"] == pytest.approx(math.log(member.params))
        assert x["probe"] == task["probe"] and x["log_classes"] == task["log_classes"]
    # a seconds budget buys a slow member fewer steps, and batch 64 costs 2x batch 32
    slow = dict(zip(FEATURE_NAMES, features(task, 160, MEMBERS[1], 0.01, 64,
                                            Budget("seconds", 10.0))))
    assert slow["log_steps"] == pytest.approx(math.log(int(10.0 / (0.05 * 2))))


def test_pairwise_loss_weighs_wrongly_ordered_gaps() -> None:
    assert pairwise_loss([10, 50, 90], [1, 2, 3]) == 0.0
    assert pairwise_loss([10, 50, 90], [3, 2, 1]) == 1.0
    # gaps 40 (10-50), 80 (10-90), 40 (50-90); only 50-vs-90 reversed -> 40 / 160
    assert pairwise_loss([10, 50, 90], [1, 3, 2]) == pytest.approx(0.25)
    assert pairwise_loss([10, 50], [1, 1]) == pytest.approx(0.5)  # a tie is half wrong
    assert pairwise_loss([70, 70], [1, 2]) == 0.0


@pytest.mark.parametrize("kind", PREDICTORS)
def test_each_predictor_prefers_the_truly_best_schedule_on_a_toy_surface(kind: str) -> None:
    """Past tasks toy:0-3 observed at random schedules; on the new task toy:4 the choice
    must be the true optimum's setting: batch 64 (4x the examples of batch 16), lr near
    0.05 (not an edge of the grid), the big member; predicted within 10 points."""
    online = OnlineGenerator(predictor=kind)
    _toy_history(online, ["toy:0", "toy:1", "toy:2", "toy:3"], 10, seed=1)
    for steps in (30, 100):
        ctx = _toy_ctx("toy:4", steps)
        choice = online.choose(ctx)
        s = choice.schedule
        truth = toy_accuracy(ctx.features, ctx.zoo.member(s.model), s.lr, s.batch_size, steps)
        best = max(toy_accuracy(ctx.features, m, lr, b, steps)
                   for m in MEMBERS for lr in LR_GRID for b in BATCH_SIZES)
        assert choice.details["predictor"] == kind
        assert s.batch_size == 64 and 0.01 <= s.lr <= 0.15, (kind, s)
        assert best - truth < 5.0 and abs(choice.details["predicted"] - truth) < 10.0


def test_leave_one_task_out_never_fits_on_the_held_out_task(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    online = OnlineGenerator()
    _toy_history(online, ["toy:0", "toy:1", "toy:2"], 6, seed=2)
    seen: list[int] = []
    fit = Predictor.fit

    def spy(self: Predictor, x, y):  # type: ignore[no-untyped-def]
        seen.append(len(y))
        return fit(self, x, y)

    monkeypatch.setattr(Predictor, "fit", spy)
    assert online.budgets == ["30steps", "100steps"] * 9
    scores = leave_one_task_out(online.x, [to_logit(v) for v in online.y], online.tasks,
                                online.budgets, ("prior+gp",))
    assert seen == [12, 12, 12]  # 3 folds, each on the other two tasks' 6 + 6 points
    assert set(scores) == {"prior+gp"} and 0.0 <= scores["prior+gp"]["pairwise"] <= 1.0
    assert scores["prior+gp"]["rmse"] >= 0.0


def test_the_predictor_is_selected_once_from_the_warm_up_tasks() -> None:
    online = OnlineGenerator()
    assert online.predictor == "auto"
    _toy_history(online, ["toy:0", "toy:1", "toy:2"], 8, seed=3)
    online.fit()  # the end of the warm-up: leave-one-task-out over toy:0-2 picks a kind
    chosen = online.predictor
    assert chosen in PREDICTORS and set(online.selection) == set(PREDICTORS)
    best = min(PREDICTORS, key=lambda k: (online.selection[k]["pairwise"],
                                          online.selection[k]["rmse"]))
    assert chosen == best
    frozen = dict(online.selection)
    _toy_history(online, ["toy:3", "toy:4"], 4, seed=4)  # benchmark tasks: no re-selection
    choice = online.choose(_toy_ctx("toy:4", 30))
    assert online.predictor == chosen and online.selection == frozen
    assert choice.details["history"] == 32 and choice.details["predictor"] == chosen
    few = OnlineGenerator()  # fewer than three past tasks: the parametric prior + GP
    _toy_history(few, ["toy:0", "toy:1"], 4, seed=5)
    few.fit()
    assert few.predictor == "prior+gp" and few.selection == {}
    with pytest.raises(RefbenchError, match="unknown predictor 'svm'"):
        OnlineGenerator(predictor="svm")


def test_clipped_predictions_do_not_tie_the_ranking() -> None:
    """Shown accuracies are clipped to the targets' range [0.5, 99.5]%, but the choice
    follows the unclipped score: a predictor that extrapolates every candidate below the
    floor (a task far from the history) must not leave the choice to ties."""
    import numpy as np

    class Fixed:
        def predict(self, x):  # type: ignore[no-untyped-def]
            mean = -40.0 + np.arange(len(x), dtype=float) * 0.1  # all far below the floor
            mean[5] = -6.0  # the least bad, still below it
            return mean, np.ones(len(x))

    online = OnlineGenerator()
    online._model = Fixed()  # type: ignore[assignment]
    accuracy, score, _ = online.predict([[0.0]] * 12)
    assert np.allclose(accuracy, 0.5) and int(np.argmax(score)) == 5  # floor: ACC_FLOOR
    ctx = _toy_ctx("toy:0", 30)
    grid = [(m, lr, b) for m in MEMBERS for lr in LR_GRID for b in BATCH_SIZES]
    choice = online.choose(ctx)
    member, lr, batch = grid[5]
    assert choice.schedule == Schedule(member.name, lr, batch)
    assert choice.details["predicted"] == pytest.approx(0.5)
    assert 0 < choice.details["pessimistic"] <= choice.details["predicted"]
