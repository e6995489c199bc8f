"""Optimizer and learning-rate schedules: AdamW with the usual no-decay split, warm-up + decay.

The schedule is a pure function of the step (`lr_factor`), wrapped in a `LambdaLR`, so
its whole state is a few integers and resuming needs nothing beyond `state_dict()`.

Conventions (those of Hugging Face's schedulers, so recipes ported from the original repos
keep their meaning): `warmup = ceil(warmup_ratio * max_steps)`; the factor used for the
optimizer step that follows scheduler step `s` is

- `constant`:  s / warmup during warm-up, then 1;
- `linear`:    warm-up, then a straight line down to 0 at `max_steps`;
- `cosine`:    warm-up, then half a cosine down to 0 at `max_steps`;
- `one_cycle`: like `torch.optim.lr_scheduler.OneCycleLR` with linear annealing up:
  from lr / 25 up to lr over the warm-up, then a cosine down to lr / (25 * 1e4).
"""

from __future__ import annotations

import math
import torch
from torch import nn

from refbench.config import TrainerConfig

SCHEDULES = ("constant", "linear", "cosine", "one_cycle")
ONE_CYCLE_DIV = 25.0
ONE_CYCLE_FINAL_DIV = 1e4


def warmup_steps(config: TrainerConfig) -> int:
    """Number of linear warm-up steps: ceil(warmup_ratio * max_steps)."""
    return int(math.ceil(config.warmup_ratio * config.max_steps))


def lr_factor(schedule: str, step: int, max_steps: int, warmup: int) -> float:
    """Multiplier of the base learning rate after `step` scheduler steps."""
    if schedule == "one_cycle":
        start, end = 1.0 / ONE_CYCLE_DIV, 1.0 / (ONE_CYCLE_DIV * ONE_CYCLE_FINAL_DIV)
        if step < warmup:
            return start + (1.0 - start) * step / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")


def build_scheduler(optimizer: torch.optim.Optimizer,
                    config: TrainerConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` following `config.schedule` with linear warm-up."""
    schedule, total, warm = config.schedule, config.max_steps, warmup_steps(config)
    lr_factor(schedule, 0, total, warm)  # fail early on an unknown schedule

    def factor(step: int) -> float:
        return lr_factor(schedule, step, total, warm)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _is_norm(module: nn.Module) -> bool:
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
                  nn.modules.batchnorm._NormBase, nn.RMSNorm)
    return isinstance(module, norm_types) or "norm" in type(module).__name__.lower()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights, and biases / norm weights / 1-d params without decay.

    Order follows `named_parameters()`, so every process (and every resume) builds the
    same groups; frozen and shared parameters are skipped or listed once.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        is_norm = _is_norm(module)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if is_norm or name.endswith("bias") or param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainerConfig) -> torch.optim.AdamW:
    """AdamW with `lr, weight_decay, betas, eps` from the config and the no-decay split."""
    groups = param_groups(model, config.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    betas = tuple(float(b) for b in config.betas)
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas,  # type: ignore[arg-type]
                             eps=config.eps, weight_decay=config.weight_decay)


def lr_curve(config: TrainerConfig) -> list[float]:
    """The learning rate of every optimizer step of a run (for plots and tests)."""
    warm = warmup_steps(config)
    return [config.lr * lr_factor(config.schedule, s, config.max_steps, warm)
            for s in range(config.max_steps)]

