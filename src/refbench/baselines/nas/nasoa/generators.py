"""Schedule generators behind one interface: given a task, a budget and the zoo, choose a
schedule (zoo member, learning rate, batch size); after the task, observe how it did.

- `online`: NASOA's online schedule generator. An adaptive performance predictor (a
  Gaussian process over task features, model features and hyper-parameters, the budget
  entering through the steps and epochs it buys for that model) scores every candidate of
  a grid and the best-scored one is chosen; it trains no candidate, so choosing costs
  milliseconds. It is refitted after every task on all it has observed. Its history
  starts from `warmup` fine-tunings on warm-up tasks (never the benchmark's tasks), the
  "past tasks" of the paper, their schedules spread evenly over the grid
  (`warmup_schedules`); their cost is reported separately as a one-off.

  Why the predictor is built as it is (a first version, a plain GP on accuracies ranked
  by its mean, extrapolated to the learning-rate edges with predictions above 100%):
  the GP models the *logit* of accuracy, so every prediction maps back into (0, 100);
  candidates are ranked by a pessimistic score, mean + `explore` x std with explore -1
  by default (a lower confidence bound: a schedule is chosen to be used, not to learn
  from, so a region the history barely covers must not win on an optimistic guess);
  the kernel's length scales are bounded below by half a standard deviation of each
  standardised feature, so 24-40 noisy points cannot be fitted by spikes.
- `random`, `hyperband`, `bohb`: per-task searches through optuna (random sampler; random
  sampler + Hyperband pruner; multivariate TPE + Hyperband pruner, the BOHB recipe), each
  trial a fine-tuning under the task's budget on 4/5 of the training split scored on the
  other fifth, reporting every ninth of its steps to the pruner. Trials run as jobs of the
  job pool, sharing one optuna journal file, so parallel workers (or Ray) see each
  other's trials.
- `largest-default`: the largest zoo member with vega's default fine-tune settings
  (SGD lr 0.003, batch 32), the paper's "large model, default schedule" reference.

How the paper's predictor is parameterised is not public ([UNVERIFIED] in the reference
notes); the features here are documented in `features()`.
"""

from __future__ import annotations

import math
import random
import warnings
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from refbench.baselines.nas.nasoa.finetune import TIMING_BATCH, Budget, Schedule
from refbench.baselines.nas.nasoa.zoo import Member, Zoo
from refbench.errors import RefbenchError

LR_RANGE = (1e-3, 0.3)
BATCH_SIZES = (16, 32, 64)
DEFAULT_LR = 0.003
#: the online generator's learning rates: 9 log-spaced values over LR_RANGE
LR_GRID = tuple(round(LR_RANGE[0] * (LR_RANGE[1] / LR_RANGE[0]) ** (k / 8), 6) for k in range(9))
#: the online generator's default score: mean - 1 std (a lower confidence bound)
PESSIMISM = -1.0
#: accuracies are modelled as logit(p), p clipped to [ACC_FLOOR, 1 - ACC_FLOOR]
ACC_FLOOR = 0.005
#: the smallest kernel length scale, in standard deviations of a standardised feature
MIN_LENGTH_SCALE = 0.5


@dataclass
class Context:
    """What a generator knows when it chooses: the zoo, the task, the budget, how to run jobs."""

    zoo: Zoo
    task: str
    features: dict[str, float]
    train_size: int
    budget: Budget
    seed: int
    workers: int = 1
    threads: int = 1
    address: str | None = None
    work: Path | None = None  # a scratch folder (optuna journals)


@dataclass
class Choice:
    schedule: Schedule
    trials: int = 0
    details: dict[str, Any] = field(default_factory=dict)


class ScheduleGenerator(ABC):
    """The interface every generator implements."""

    name: ClassVar[str]

    @abstractmethod
    def choose(self, ctx: Context) -> Choice:
        """The schedule for `ctx.task` under `ctx.budget` (test split never seen)."""

    def observe(self, ctx: Context, schedule: Schedule, accuracy: float) -> None:
        """What the chosen schedule reached on the finished task (online learners update)."""


def features(ctx_features: dict[str, float], train_size: int, member: Member, lr: float,
             batch: int, budget: Budget) -> list[float]:
    """Predictor input: task (log train size, log classes, images per class / 100, probe
    accuracy), model (log params, log seconds per step, pretrain accuracy),
    hyper-parameters (log10 lr, log2 batch) and budget (log steps and log epochs the
    budget buys this model at this batch size)."""
    steps = budget.steps_for(member.seconds_per_step * batch / TIMING_BATCH)
    return [ctx_features["log_train"], ctx_features["log_classes"],
            ctx_features["per_class"] / 100.0, ctx_features["probe"],
            math.log(member.params), math.log(member.seconds_per_step),
            member.pretrain_accuracy, math.log10(lr), math.log2(batch),
            math.log(steps), math.log(steps * batch / max(1, train_size))]


def to_logit(accuracy: float) -> float:
    """Percent accuracy -> the predictor's target, logit(p) with p kept off 0 and 1."""
    p = min(max(accuracy / 100.0, ACC_FLOOR), 1.0 - ACC_FLOOR)
    return math.log(p / (1.0 - p))


def from_logit(value: Any) -> Any:
    """The predictor's output -> percent accuracy, always inside (0, 100) (numpy-aware)."""
    import numpy as np

    return 100.0 / (1.0 + np.exp(-np.asarray(value, dtype=float)))


class OnlineGenerator(ScheduleGenerator):
    """NASOA's online generator (module doc)."""

    name = "online"

    def __init__(self, explore: float = PESSIMISM) -> None:
        if not math.isfinite(explore):
            raise RefbenchError(f"explore must be finite, got {explore}", key="finetune.explore")
        self.explore = explore
        self.x: list[list[float]] = []
        self.y: list[float] = []
        self._model: Any = None

    def add(self, x: list[float], y: float) -> None:
        """One observation: features and the accuracy reached (percent, 0-100)."""
        if not all(math.isfinite(v) for v in [*x, y]):
            raise RefbenchError(f"a non-finite observation {x} -> {y}", key="online")
        if not 0.0 <= y <= 100.0:
            raise RefbenchError(f"an accuracy is a percentage in [0, 100], got {y}", key="online")
        self.x.append(x)
        self.y.append(y)
        self._model = None

    def fit(self) -> Any:
        """The Gaussian process on every observation (standardised features, logit targets)."""
        import numpy as np
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if len(self.y) < 2:
            raise RefbenchError("the online generator needs at least two past fine-tunings; "
                                "give it warm-up tasks (finetune.warmup)", key="online")
        kernel = ConstantKernel(1.0) * Matern(length_scale=np.ones(len(self.x[0])) * 3.0,
                                              length_scale_bounds=(MIN_LENGTH_SCALE, 1e3),
                                              nu=2.5) + WhiteKernel(1e-1, (1e-3, 1e1))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0,
                                      random_state=0)
        with warnings.catch_warnings():  # bounds reached on a few points: expected, harmless
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._model = make_pipeline(StandardScaler(), gp).fit(
                np.asarray(self.x), np.asarray([to_logit(v) for v in self.y]))
        return self._model

    def predict(self, x: Any) -> tuple[Any, Any, Any]:
        """Predicted accuracy (percent, in (0, 100)), its pessimistic score and the std on
        the logit scale, for rows of features."""
        import numpy as np

        model = self._model or self.fit()
        mean, std = model[1].predict(model[0].transform(np.asarray(x)), return_std=True)
        score = mean + self.explore * std
        return from_logit(mean), score, std

    def choose(self, ctx: Context) -> Choice:
        import numpy as np

        grid = [(m, lr, b) for m in ctx.zoo.members for lr in LR_GRID for b in BATCH_SIZES]
        x = [features(ctx.features, ctx.train_size, m, lr, b, ctx.budget) for m, lr, b in grid]
        accuracy, score, std = self.predict(x)
        best = int(np.argmax(score))
        member, lr, batch = grid[best]
        return Choice(Schedule(member.name, lr, batch), 0,
                      {"predicted": round(float(accuracy[best]), 3),
                       "pessimistic": round(float(from_logit(score[best])), 3),
                       "logit_std": round(float(std[best]), 4),
                       "history": len(self.y), "grid": len(grid)})

    def observe(self, ctx: Context, schedule: Schedule, accuracy: float) -> None:
        member = ctx.zoo.member(schedule.model)
        self.add(features(ctx.features, ctx.train_size, member, schedule.lr,
                          schedule.batch_size, ctx.budget), accuracy)


class LargestDefault(ScheduleGenerator):
    """The largest zoo member (by backbone parameters) with vega's fine-tune defaults."""

    name = "largest-default"

    def choose(self, ctx: Context) -> Choice:
        return Choice(Schedule(ctx.zoo.largest.name, DEFAULT_LR, 32))


class OptunaGenerator(ScheduleGenerator):
    """A per-task optuna search (`sampler` random or tpe, `pruner` none or hyperband)."""

    def __init__(self, name: str, sampler: str, pruner: str, trials: int = 8) -> None:
        if trials < 1:
            raise RefbenchError(f"trials must be >= 1, got {trials}", key="trials")
        self.name, self.sampler, self.pruner, self.trials = name, sampler, pruner, trials  # type: ignore[misc]

    def choose(self, ctx: Context) -> Choice:
        import tempfile

        import optuna

        from refbench.engine.jobs import Job, raise_failures, run_jobs

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        work = Path(tempfile.mkdtemp(prefix="nasoa-optuna-", dir=ctx.work))
        journal = str(work / "journal.log")
        study = optuna.create_study(storage=_storage(journal), direction="maximize",
                                    study_name="schedule")
        workers = max(1, min(ctx.workers, self.trials))
        shares = [self.trials // workers + (k < self.trials % workers) for k in range(workers)]
        jobs = [Job(f"{self.name}-w{k}", f"{__name__}:optuna_worker",
                    dict(journal=journal, zoo_dir=str(ctx.zoo.folder), task=ctx.task,
                         budget=ctx.budget.label, trials=share,
                         seed=ctx.seed * 1000 + k + zlib.crc32(self.name.encode()) % 997,
                         sampler=self.sampler, pruner=self.pruner,
                         members=[m.name for m in ctx.zoo.members]))
                for k, share in enumerate(shares)]
        raise_failures(run_jobs(jobs, workers=workers, threads=ctx.threads, address=ctx.address))
        study = optuna.load_study(study_name="schedule", storage=_storage(journal))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise RefbenchError(f"{self.name}: no trial completed", key="trials")
        best = max(complete, key=lambda t: (t.value, -t.number))
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        return Choice(Schedule(best.params["model"], best.params["lr"], best.params["batch_size"]),
                      len(study.trials), {"heldout_accuracy": best.value, "pruned": pruned})


def _storage(journal: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(journal))


def optuna_worker(journal: str, zoo_dir: str, task: str, budget: str, seed: int, trials: int,
                  sampler: str, pruner: str, members: list[str]) -> int:
    """Job: run `trials` optuna trials of the shared study in `journal`."""
    import optuna

    from refbench.baselines.nas.nasoa.finetune import finetune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"random": lambda: optuna.samplers.RandomSampler(seed=seed),
                "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                                          n_startup_trials=3)}
    pruners = {"none": optuna.pruners.NopPruner,
               "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=11,
                                                                   max_resource=100,
                                                                   reduction_factor=3)}
    study = optuna.load_study(study_name="schedule", storage=_storage(journal),
                              sampler=samplers[sampler](), pruner=pruners[pruner]())
    plan = Budget.parse(budget)

    def objective(trial: optuna.Trial) -> float:
        schedule = Schedule(trial.suggest_categorical("model", members),
                            trial.suggest_float("lr", *LR_RANGE, log=True),
                            trial.suggest_categorical("batch_size", list(BATCH_SIZES)))
        pruned: list[int] = []
        result = finetune(zoo_dir, task, schedule, plan, seed=seed + trial.number,
                          eval_on="heldout", report_every=0, report=None) \
            if pruner == "none" else _pruned_run(zoo_dir, task, schedule, plan, seed + trial.number,
                                                 trial, pruned)
        if pruned:
            raise optuna.TrialPruned()
        return result.accuracy

    study.optimize(objective, n_trials=trials)
    return trials


def _pruned_run(zoo_dir: str, task: str, schedule: Schedule, budget: Budget, seed: int,
                trial: Any, pruned: list[int]) -> Any:
    """A trial that reports held-out accuracy at every ninth of its planned steps, as a
    percentage of the budget (the Hyperband resource, 11..100)."""
    from refbench.baselines.nas.nasoa.finetune import TrainingStopped, finetune
    from refbench.baselines.nas.nasoa.zoo import cached_zoo

    member = cached_zoo(zoo_dir).member(schedule.model)
    planned = budget.steps_for(member.seconds_per_step * schedule.batch_size / TIMING_BATCH)
    every = max(1, planned // 9)

    def report(step: int, value: float) -> None:
        trial.report(value, max(1, round(100 * step / planned)))
        if trial.should_prune():
            pruned.append(step)
            raise TrainingStopped

    return finetune(zoo_dir, task, schedule, budget, seed=seed, eval_on="heldout",
                    report_every=every, report=report)


GENERATORS = ("online", "random", "hyperband", "bohb", "largest-default")


def make_generator(name: str, trials: int = 8, explore: float = PESSIMISM) -> ScheduleGenerator:
    """A generator by name (`GENERATORS`)."""
    if name == "online":
        return OnlineGenerator(explore)
    if name == "largest-default":
        return LargestDefault()
    if name == "random":
        return OptunaGenerator(name, "random", "none", trials)
    if name == "hyperband":
        return OptunaGenerator(name, "random", "hyperband", trials)
    if name == "bohb":
        return OptunaGenerator(name, "tpe", "hyperband", trials)
    raise RefbenchError(f"unknown schedule generator {name!r} (known: {', '.join(GENERATORS)})",
                        key="generators")


def warmup_schedules(rng: random.Random, zoo: Zoo, count: int) -> list[Schedule]:
    """`count` warm-up schedules spread evenly over the online generator's grid: each
    learning rate of `LR_GRID`, member and batch size appears equally often (to within
    one), in shuffled pairings. Uniform draws leave the grid's edges with one or two
    points among 24, exactly where the first predictor extrapolated; a balanced design
    gives every value the predictor will score its share of evidence."""
    def cycle(values: list[Any]) -> list[Any]:
        out: list[Any] = []
        while len(out) < count:
            block = list(values)
            rng.shuffle(block)
            out.extend(block)
        return out[:count]

    members = cycle([m.name for m in zoo.members])
    return [Schedule(m, lr, b) for m, lr, b in zip(members, cycle(list(LR_GRID)),
                                                  cycle(list(BATCH_SIZES)))]


def random_schedule(rng: random.Random, zoo: Zoo) -> Schedule:
    """A uniformly drawn schedule (log-uniform lr): the warm-up history of `online`."""
    lr = math.exp(rng.uniform(math.log(LR_RANGE[0]), math.log(LR_RANGE[1])))
    return Schedule(rng.choice(zoo.members).name, round(lr, 6), rng.choice(BATCH_SIZES))
