"""Schedule generators behind one interface: given a task, a budget and the zoo, choose a
schedule (zoo member, learning rate, batch size); after the task, observe how it did.

- `online`: NASOA's online schedule generator. An adaptive performance predictor over
  task features, model features, hyper-parameters and what the budget buys with them
  (`features()`) scores every candidate of a grid (zoo member x `LR_GRID` x
  `BATCH_SIZES`) and the best-scored one is chosen; it trains no candidate, so choosing
  costs well under a second. It is refitted after every task on all it has observed. Its
  history starts from `warmup` fine-tunings on warm-up tasks (never the benchmark's
  tasks), the "past tasks" of the paper, their schedules spread evenly over the grid
  (`warmup_schedules`); their cost is reported separately as a one-off.

  Why the predictor is built as it is. A first version (a plain GP on accuracies) ran
  into the grid's edges with predictions above 100%; a second (a GP on logit accuracy,
  ranked by mean - 1 std) still chose batch 16 and edge learning rates under step
  budgets and mispredicted tasks unlike its history, because with ~24 noisy points a
  GP over raw features has no notion of "more data helps" or "lr has an optimum". Now:
  (1) the features say what a step budget buys: examples seen (steps x batch), epochs,
  lr x steps; (2) `Predictor` `prior+gp` fits a parametric prior first (ridge
  regression, quadratic in log lr, so it falls towards both ends of the grid) and a GP
  only on its residuals; `prior` (ridge alone), `gp` and `forest` (randomised trees) are
  the alternatives; (3) which one is used is decided once, at the end of the warm-up, by
  leave-one-warm-up-task-out validation (`leave_one_task_out`: how well each orders the
  held-out task's schedules, `pairwise_loss`), never by the benchmark tasks' results,
  and kept for the whole sequence; (4) targets are logits and predictions are clipped to
  the targets' range, so they stay in (0, 100); candidates are ranked by mean + `explore`
  x std, explore -1 by default (a lower confidence bound: a schedule is chosen to be used,
  not to learn from); GP length scales are bounded below by half a standard deviation of
  each standardised feature.
- `random`, `hyperband`, `bohb`: per-task searches through optuna (random sampler; random
  sampler + Hyperband pruner; multivariate TPE + Hyperband pruner, the BOHB recipe), each
  trial a fine-tuning under the task's budget on 4/5 of the training split scored on the
  other fifth, reporting every ninth of its steps to the pruner. Trials run as jobs of the
  job pool, sharing one optuna journal file, so parallel workers (or Ray) see each
  other's trials.
- `largest-default`: the largest zoo member with vega's default fine-tune settings
  (SGD lr 0.003, batch 32), the paper's "large model, default schedule" reference.

How the paper's predictor is parameterised is not public ([UNVERIFIED] in the reference
notes); the features here are documented in `features()`."""

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
#: the kinds of `Predictor` (`auto` selects one) and the prior's ridge penalty
PREDICTORS, RIDGE_ALPHA = ("prior+gp", "prior", "gp", "forest"), 1.0


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
    """Predictor input (`FEATURE_NAMES`): task (log train size, log classes, probe
    accuracy), model (log params, log seconds per step, pretrain accuracy),
    hyper-parameters (log10 lr, log2 batch) and what the budget buys with them: log steps,
    log examples seen (steps x batch: under a step budget batch 64 sees 4x the data of
    batch 16), log epochs (examples seen / train size) and log10 (lr x steps), the
    distance SGD can travel, which trades against lr on short budgets."""
    steps = budget.steps_for(member.seconds_per_step * batch / TIMING_BATCH)
    seen = steps * batch
    return [ctx_features["log_train"], ctx_features["log_classes"], ctx_features["probe"],
            math.log(member.params), math.log(member.seconds_per_step),
            member.pretrain_accuracy, math.log10(lr), math.log2(batch), math.log(steps),
            math.log(seen), math.log(seen / max(1, train_size)), math.log10(lr * steps)]


FEATURE_NAMES = ("log_train", "log_classes", "probe", "log_params", "log_seconds_per_step",
                 "pretrain_accuracy", "log10_lr", "log2_batch", "log_steps", "log_seen",
                 "log_epochs", "log10_lr_x_steps")
_LR, _BATCH, _STEPS = (FEATURE_NAMES.index(k) for k in ("log10_lr", "log2_batch", "log_steps"))


def to_logit(accuracy: float) -> float:
    """Percent accuracy -> the predictor's target, logit(p) with p kept off 0 and 1."""
    p = min(max(accuracy / 100.0, ACC_FLOOR), 1.0 - ACC_FLOOR)
    return math.log(p / (1.0 - p))


def from_logit(value: Any) -> Any:
    """The predictor's output -> percent accuracy, always inside (0, 100) (numpy-aware)."""
    import numpy as np

    return 100.0 / (1.0 + np.exp(-np.asarray(value, dtype=float)))


# -- the predictors the online generator selects from ----------------------------------------
def _gp(dims: int) -> Any:
    """A Matern GP whose length scales stay >= MIN_LENGTH_SCALE (no spikes on few points)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0) * Matern(length_scale=[3.0] * dims,
                                          length_scale_bounds=(MIN_LENGTH_SCALE, 1e3),
                                          nu=2.5) + WhiteKernel(1e-1, (1e-3, 1e1))
    return GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)


def prior_basis(x: Any) -> Any:
    """The parametric prior's inputs: the features plus (log10 lr)^2 (accuracy has an
    optimum in lr, so the prior falls towards both ends of the grid instead of running on
    into them), log10 lr x log2 batch and log10 lr x log steps (the best lr moves with the
    batch and the budget)."""
    import numpy as np

    lr = x[:, _LR]
    return np.column_stack([x, lr ** 2, lr * x[:, _BATCH], lr * x[:, _STEPS]])


class Predictor:
    """A regression model of logit accuracy on standardised features; `predict` gives
    (mean, std), logit scale. `kind`: `gp` (a GP on the features), `prior` (ridge on
    `prior_basis`, std its training RMSE: a smooth trend, robust on few noisy points),
    `prior+gp` (that ridge, then a GP on its residuals: the prior carries the trend where
    the history is thin, the GP the task- and model-specific rest), `forest` (randomised
    trees, std across trees: robust to outliers, cannot extrapolate)."""

    def __init__(self, kind: str) -> None:
        if kind not in PREDICTORS:
            raise RefbenchError(f"unknown predictor {kind!r} (known: {', '.join(PREDICTORS)})",
                                key="online.predictor")
        self.kind = kind

    def fit(self, x: Any, y: Any) -> Predictor:
        import numpy as np
        from sklearn.ensemble import ExtraTreesRegressor
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.scale = StandardScaler().fit(x)
        z = self.scale.transform(x)
        with warnings.catch_warnings():  # bounds reached on a few points: expected, harmless
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.kind == "forest":
                self.model = ExtraTreesRegressor(200, min_samples_leaf=2, max_features=0.5,
                                                 random_state=0).fit(z, y)
            if self.kind.startswith("prior"):
                self.basis = StandardScaler().fit(prior_basis(z))
                self.prior = Ridge(RIDGE_ALPHA).fit(self.basis.transform(prior_basis(z)), y)
                y = y - self.prior.predict(self.basis.transform(prior_basis(z)))
                self.noise = float(np.sqrt(np.mean(y ** 2))) + 1e-6
            if self.kind in ("gp", "prior+gp"):
                self.model = _gp(z.shape[1]).fit(z, y)
        return self

    def predict(self, x: Any) -> tuple[Any, Any]:
        import numpy as np

        z = self.scale.transform(np.asarray(x, dtype=float))
        if self.kind == "forest":
            each = np.stack([tree.predict(z) for tree in self.model.estimators_])
            return each.mean(0), each.std(0) + 1e-6
        if self.kind == "prior":
            mean = self.prior.predict(self.basis.transform(prior_basis(z)))
            return mean, np.full(len(mean), self.noise)
        mean, std = self.model.predict(z, return_std=True)
        if self.kind == "prior+gp":
            mean = mean + self.prior.predict(self.basis.transform(prior_basis(z)))
        return mean, std


def pairwise_loss(accuracy: Any, predicted: Any) -> float:
    """How badly `predicted` orders the schedules of one (task, budget): the share of the
    accuracy gaps between pairs that it orders the wrong way round (0 perfect, 1 reversed;
    a big gap wrongly ordered costs more than a small one, as it does when choosing)."""
    total = wrong = 0.0
    for i in range(len(accuracy)):
        for j in range(i + 1, len(accuracy)):
            gap = abs(accuracy[i] - accuracy[j])
            total += gap
            if (accuracy[i] - accuracy[j]) * (predicted[i] - predicted[j]) < 0:
                wrong += gap
            elif predicted[i] == predicted[j]:
                wrong += gap / 2
    return wrong / total if total else 0.0


def leave_one_task_out(x: Any, y: Any, tasks: list[str], budgets: list[str],
                       kinds: tuple[str, ...] = PREDICTORS) -> dict[str, dict[str, float]]:
    """Each predictor kind fitted on every task but one and scored on the one left out:
    the mean `pairwise_loss` over its (task, budget) groups (what choosing needs) and the
    RMSE of its predicted accuracies in points (calibration, the tie-break)."""
    import numpy as np

    x, y, tasks_a = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(tasks)
    out: dict[str, dict[str, float]] = {}
    for kind in kinds:
        losses, errors = [], []
        for task in sorted(set(tasks)):
            held = tasks_a == task
            mean, _ = Predictor(kind).fit(x[~held], y[~held]).predict(x[held])
            truth, guess = from_logit(y[held]), from_logit(mean)
            errors.extend(truth - guess)
            for b in sorted({budgets[k] for k in np.flatnonzero(held)}):
                group = np.asarray([budgets[k] == b for k in np.flatnonzero(held)])
                if group.sum() > 1:
                    losses.append(pairwise_loss(truth[group], guess[group]))
        out[kind] = {"pairwise": round(float(np.mean(losses)) if losses else 0.0, 4),
                     "rmse": round(float(np.sqrt(np.mean(np.square(errors)))), 3)}
    return out


class OnlineGenerator(ScheduleGenerator):
    """NASOA's online generator (module doc)."""

    name = "online"

    def __init__(self, explore: float = PESSIMISM, predictor: str = "auto") -> None:
        if not math.isfinite(explore):
            raise RefbenchError(f"explore must be finite, got {explore}", key="finetune.explore")
        if predictor != "auto":
            Predictor(predictor)  # a bad name fails here
        self.explore, self.predictor = explore, predictor
        self.x: list[list[float]] = []
        self.y: list[float] = []
        self.tasks: list[str] = []  # each observation's task and budget (leave-one-task-out)
        self.budgets: list[str] = []
        self.selection: dict[str, dict[str, float]] = {}
        self._model: Predictor | None = None

    def add(self, x: list[float], y: float, task: str = "", budget: str = "") -> None:
        """One observation: features, accuracy reached (percent, 0-100), task, budget."""
        if not all(math.isfinite(v) for v in [*x, y]):
            raise RefbenchError(f"a non-finite observation {x} -> {y}", key="online")
        if not 0.0 <= y <= 100.0:
            raise RefbenchError(f"an accuracy is a percentage in [0, 100], got {y}", key="online")
        self.x.append(x)
        self.y.append(y)
        self.tasks.append(task)
        self.budgets.append(budget)
        self._model = None

    def select(self) -> str:
        """The predictor kind, chosen once by `leave_one_task_out` at the first fit (the
        end of the warm-up: warm-up tasks only), then kept; `prior+gp` if < 3 past tasks."""
        if self.predictor != "auto":
            return self.predictor
        if len(self.tasks) != len(self.y) or len(set(self.tasks)) < 3:
            self.predictor = "prior+gp"
            return self.predictor
        self.selection = leave_one_task_out(self.x, [to_logit(v) for v in self.y], self.tasks,
                                            self.budgets)
        self.predictor = min(PREDICTORS, key=lambda k: (
            self.selection[k]["pairwise"], self.selection[k]["rmse"]))
        return self.predictor

    def fit(self) -> Predictor:
        """The selected predictor refitted on every observation (logit targets)."""
        if len(self.y) < 2:
            raise RefbenchError("the online generator needs at least two past fine-tunings; "
                                "give it warm-up tasks (finetune.warmup)", key="online")
        self._model = Predictor(self.select()).fit(self.x, [to_logit(v) for v in self.y])
        return self._model

    def predict(self, x: Any) -> tuple[Any, Any, Any]:
        """Predicted accuracy (percent, in (0, 100)), its pessimistic score and the std on
        the logit scale, for rows of features."""
        import numpy as np

        mean, std = (self._model or self.fit()).predict(x)
        bound = to_logit(100.0)  # the targets' range: shown accuracies are clipped to it,
        clipped = np.clip(mean, -bound, bound)  # the ranking score is not (no ties)
        return from_logit(clipped), mean + self.explore * std, std

    def choose(self, ctx: Context) -> Choice:
        import numpy as np

        grid = [(m, lr, b) for m in ctx.zoo.members for lr in LR_GRID for b in BATCH_SIZES]
        x = [features(ctx.features, ctx.train_size, m, lr, b, ctx.budget) for m, lr, b in grid]
        accuracy, score, std = self.predict(x)
        best, bound = int(np.argmax(score)), to_logit(100.0)
        member, lr, batch = grid[best]
        shown = np.clip(score[best], -bound, bound)
        return Choice(Schedule(member.name, lr, batch), 0,
                      {"predicted": round(float(accuracy[best]), 3),
                       "pessimistic": round(float(from_logit(shown)), 3),
                       "logit_std": round(float(std[best]), 4), "predictor": self.predictor,
                       "selection": self.selection, "history": len(self.y),
                       "grid": len(grid)})

    def observe(self, ctx: Context, schedule: Schedule, accuracy: float) -> None:
        member = ctx.zoo.member(schedule.model)
        self.add(features(ctx.features, ctx.train_size, member, schedule.lr,
                          schedule.batch_size, ctx.budget), accuracy, ctx.task,
                 ctx.budget.label)


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
    """A uniformly drawn schedule (log-uniform lr), e.g. an ad-hoc history in tests."""
    lr = math.exp(rng.uniform(math.log(LR_RANGE[0]), math.log(LR_RANGE[1])))
    return Schedule(rng.choice(zoo.members).name, round(lr, 6), rng.choice(BATCH_SIZES))
