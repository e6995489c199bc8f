"""Fine-tuning a zoo model on a task under a budget, and the training loop the zoo search
shares with it.

A budget is wall-clock seconds or optimizer steps on the machine the run declares (its
CPU count, torch threads and device go into every result). A schedule is what a
generator chooses: the zoo member, the learning rate and the batch size (SGD with
momentum 0.9 and weight decay 1e-4 as vega's DNet fine-tune recipe, a linear warm-up
over the first tenth of the steps, then cosine decay to zero).

How a budget becomes steps: under a step budget the schedule plans exactly that many
steps; under a seconds budget it plans `seconds / (seconds per step)` steps, the seconds
per step of the member as the zoo measured them on this machine (at batch 32, scaled
linearly to the schedule's batch size), and the run also stops when the wall clock
reaches the budget, so a member slower than measured is cut short with its learning rate
not yet decayed (the price of a wrong cost estimate, as on the paper's time budgets).
Evaluation time is not counted in the budget.

`eval_on="test"` trains on the whole training split and scores the task's test split
(the benchmark's final number); `eval_on="heldout"` trains on 4/5 of the training split
and scores the other fifth, what the search-based generators use for their trials, so
no generator ever sees the test split before its choice is made.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from refbench.errors import RefbenchError

TIMING_BATCH = 32


@dataclass(frozen=True)
class Budget:
    """`value` seconds or optimizer steps; zero, negative or non-finite budgets are refused."""

    kind: Literal["seconds", "steps"]
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("seconds", "steps"):
            raise RefbenchError(f"a budget is in seconds or steps, got {self.kind!r}",
                                key="budget")
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) \
                or not math.isfinite(self.value) or self.value <= 0:
            raise RefbenchError(f"a budget must be a positive finite number, got "
                                f"{self.value!r} {self.kind}", key="budget")
        if self.kind == "steps" and float(self.value) != int(self.value):
            raise RefbenchError(f"a step budget is a whole number, got {self.value!r}",
                                key="budget")

    @classmethod
    def parse(cls, text: str | int | float) -> "Budget":
        """`"30s"` / `"30sec"` -> 30 seconds; `"200"` / `"200steps"` -> 200 steps."""
        raw = str(text).strip().lower()
        for suffix, kind in (("steps", "steps"), ("step", "steps"), ("sec", "seconds"),
                             ("s", "seconds")):
            if raw.endswith(suffix):
                number = raw[: -len(suffix)]
                break
        else:
            number, kind = raw, "steps"
        try:
            value = float(number)
        except ValueError:
            raise RefbenchError(f"cannot read budget {text!r} (e.g. 30s or 200steps)",
                                key="budget") from None
        return cls(kind, value)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        return f"{self.value:g}s" if self.kind == "seconds" else f"{int(self.value)}steps"

    def steps_for(self, seconds_per_step: float) -> int:
        """The steps this budget plans for a model costing `seconds_per_step`."""
        if self.kind == "steps":
            return int(self.value)
        return max(1, int(self.value / max(seconds_per_step, 1e-6)))


@dataclass(frozen=True)
class Schedule:
    """A fine-tuning schedule: zoo member, learning rate and batch size (+ fixed SGD terms)."""

    model: str
    lr: float
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup: float = 0.1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise RefbenchError(f"learning rate must be positive, got {self.lr}", key="lr")
        if self.batch_size < 1:
            raise RefbenchError(f"batch size must be >= 1, got {self.batch_size}",
                                key="batch_size")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainOutcome:
    """What a training run did: steps, seconds of training, the mean loss of its last
    tenth, and (step, accuracy) reports."""

    steps: int
    seconds: float
    loss: float
    reports: list[tuple[int, float]] = field(default_factory=list)


def lr_at(step: int, planned: int, base: float, warmup: float) -> float:
    """Linear warm-up over `warmup * planned` steps, then cosine to zero at `planned`."""
    warm = max(1, int(round(warmup * planned)))
    if step < warm:
        return base * (step + 1) / warm
    progress = (step - warm) / max(1, planned - warm)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                schedule: Schedule, planned: int, *, seed: int,
                max_seconds: float | None = None,
                report_every: int = 0,
                report: Callable[[int], float] | None = None) -> TrainOutcome:
    """SGD on uint8 `images` for `planned` steps (or until `max_seconds` of training); every
    `report_every` steps `report(step)` is called (its time is not counted) and a
    `TrainingStopped` it raises ends the run early (a pruned trial)."""
    from refbench.baselines.nas.nasoa.tasks import normalise

    if planned < 1:
        raise RefbenchError(f"planned steps must be >= 1, got {planned}", key="steps")
    if len(labels) == 0:
        raise RefbenchError("no training image", key="task")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=schedule.momentum,
                          weight_decay=schedule.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    order = torch.randperm(len(labels), generator=gen)
    cursor, spent, losses, reports = 0, 0.0, [], []
    step = 0
    while step < planned:
        if max_seconds is not None and spent >= max_seconds:
            break
        started = time.perf_counter()
        if cursor + schedule.batch_size > len(order):
            order, cursor = torch.randperm(len(labels), generator=gen), 0
        index = order[cursor:cursor + schedule.batch_size]
        cursor += schedule.batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step, planned, schedule.lr, schedule.warmup)
        loss = loss_fn(model(normalise(images[index])), labels[index])
        if not torch.isfinite(loss):
            raise RefbenchError(f"the loss became {loss.item()} at step {step + 1} "
                                f"(learning rate {schedule.lr:g} too high?)", key="lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        spent += time.perf_counter() - started
        losses.append(loss.item())
        step += 1
        if report is not None and report_every and step % report_every == 0 and step < planned:
            try:
                reports.append((step, report(step)))
            except TrainingStopped:
                break
            model.train()
    tail = losses[-max(1, len(losses) // 10):]
    return TrainOutcome(step, spent, sum(tail) / len(tail), reports)


class TrainingStopped(Exception):
    """Raised by a report callback to end training early (a pruned trial)."""


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch: int = 256) -> float:
    """Top-1 accuracy (0-1) in eval mode."""
    from refbench.baselines.nas.nasoa.tasks import normalise

    model.eval()
    right = 0
    for start in range(0, len(labels), batch):
        logits = model(normalise(images[start:start + batch]))
        right += int((logits.argmax(1) == labels[start:start + batch]).sum())
    return right / max(1, len(labels))


def seconds_per_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     batch: int = TIMING_BATCH, steps: int = 5) -> float:
    """Median wall time of one SGD step at `batch` (after one untimed step), on a copy of
    the optimizer state so the model's training is not disturbed beyond those steps."""
    from refbench.baselines.nas.nasoa.tasks import normalise

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    model.train()
    x, y = normalise(images[:batch]), labels[:batch]
    times = []
    for i in range(steps + 1):
        started = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2] * len(y) / batch if len(y) < batch else times[len(times) // 2]


def split_heldout(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(fit x, fit y, held-out x, held-out y): every 5th image is held out."""
    held = torch.arange(len(y)) % 5 == 4
    return x[~held], y[~held], x[held], y[held]


# -- fine-tuning a zoo member -------------------------------------------------------------
@dataclass
class FinetuneResult:
    accuracy: float
    steps: int
    planned_steps: int
    train_seconds: float
    schedule: dict[str, Any]
    budget: str
    reports: list[tuple[int, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def finetune(zoo_dir: str | Path, task: str, schedule: Schedule, budget: Budget, *,
             seed: int = 0, eval_on: Literal["test", "heldout"] = "test",
             report_every: int = 0, report: Callable[[int, float], None] | None = None,
             image_size: int | None = None) -> FinetuneResult:
    """Fine-tune zoo member `schedule.model` on `task` within `budget`; its accuracy on the
    task's test split (or held-out fifth). `report(step, accuracy)` sees intermediate
    held-out accuracies every `report_every` steps and may raise `TrainingStopped`."""
    from refbench.baselines.nas.nasoa.tasks import load_task
    from refbench.baselines.nas.nasoa.zoo import cached_zoo

    zoo = cached_zoo(zoo_dir)
    member = zoo.member(schedule.model)
    data = load_task(task, image_size or zoo.image_size)
    if eval_on == "heldout":
        fit_x, fit_y, val_x, val_y = split_heldout(data.train_x, data.train_y)
    elif eval_on == "test":
        fit_x, fit_y, val_x, val_y = data.train_x, data.train_y, data.test_x, data.test_y
    else:
        raise RefbenchError(f"eval_on is 'test' or 'heldout', got {eval_on!r}", key="eval_on")
    torch.manual_seed(seed)
    model = zoo.load_model(schedule.model)
    model.reset_head(data.num_classes)
    cost = member.seconds_per_step * schedule.batch_size / TIMING_BATCH
    planned = budget.steps_for(cost)

    def on_report(step: int) -> float:
        value = accuracy(model, val_x, val_y)
        if report is not None:
            report(step, value)
        return value

    outcome = train_steps(model, fit_x, fit_y, schedule, planned, seed=seed,
                          max_seconds=budget.value if budget.kind == "seconds" else None,
                          report_every=report_every, report=on_report if report_every else None)
    return FinetuneResult(accuracy(model, val_x, val_y), outcome.steps, planned,
                          round(outcome.seconds, 4), schedule.to_json(), budget.label,
                          outcome.reports)


def finetune_job(zoo_dir: str, task: str, schedule: dict[str, Any], budget: str, seed: int,
                 eval_on: str = "test") -> dict[str, Any]:
    """Job-pool target (`engine/jobs.py`): JSON in, JSON out."""
    result = finetune(zoo_dir, task, Schedule(**schedule), Budget.parse(budget), seed=seed,
                      eval_on=eval_on)  # type: ignore[arg-type]
    return result.to_json()
