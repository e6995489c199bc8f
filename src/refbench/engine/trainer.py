"""The common training loop: one plain PyTorch loop for every baseline, CPU to many GPUs.

The trainer sees a model only through `training_step(batch) -> {"loss": ...}`, a sequence
of feature dicts and a `collate` function, so it imports nothing model-specific.

Batching: `batch_size` is the global number of samples per optimizer step. Each epoch
draws a permutation from a generator seeded by (seed, epoch), cuts it into global
batches (the incomplete last one is dropped) and splits every global batch into
`world_size * grad_accum` equal micro-batches; rank r takes micro-batch `a * world + r`
at accumulation step a. Each micro-batch loss is divided by `grad_accum` and DDP averages
over ranks, so the gradient equals that of the mean loss over the global batch no matter
how it is split.

Streamed rows (`StreamingRows`: webdataset shards or any iterable dataset) replace the
permutation by a seeded shuffle buffer per rank and epoch (see `engine/streaming.py`); the
global batch is still `world_size * grad_accum` micro-batches, each rank reading its own.

Resuming restores weights, optimizer, scheduler, scaler, every rank's RNG state and the
position in the epoch, and trims metrics.jsonl, so on CPU a resumed run is bit-identical
to an uninterrupted one. The one setting that may change on resume is `max_steps` (a
finished run extended to more steps, or an unfinished one given another length): the
learning-rate schedule is then recomputed for the new length from the checkpoint's step on,
which is said on the console and recorded as an `extended` event in metrics.jsonl and in
the `history` of every later trainer_state.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from refbench.config import TrainerConfig, to_dict
from refbench.engine import checkpoint as ckpt
from refbench.engine.device import to_device
from refbench.engine.distributed import DistContext
from refbench.engine.progress import Progress, format_metrics
from refbench.engine.streaming import StreamingRows
from refbench.engine.schedules import (SCHEDULES, build_optimizer, build_scheduler, lr_factor,
                                       warmup_steps)
from refbench.errors import RefbenchError
from refbench.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"
#: settings that change the numbers; a resume must use the same values (but see below)
MATH_FIELDS = ("seed", "max_steps", "batch_size", "lr", "weight_decay", "betas", "eps",
               "schedule", "warmup_ratio", "grad_clip", "grad_accum", "amp")
#: math settings a resume may change: the run is extended (or shortened) to the new length
EXTENDABLE_FIELDS = ("max_steps",)


@dataclass
class TrainResult:
    """What `Trainer.fit` returns: where the run ended and what it wrote."""

    step: int
    best_step: int | None
    best_metrics: dict[str, float] | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def math_config(config: TrainerConfig) -> dict[str, Any]:
    """The settings a checkpoint is tied to, and their hash."""
    data = to_dict(config)
    return {key: data[key] for key in MATH_FIELDS}


def config_hash(config: TrainerConfig) -> str:
    text = json.dumps(math_config(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_resumable(state: Mapping[str, Any], config: TrainerConfig, state_path: Path) -> int:
    """Refuse to resume a checkpoint (its parsed trainer state) with other math settings, in
    one line naming the first one that changed; only `max_steps` may differ, and not below
    the checkpoint's step. Returns the checkpoint's `max_steps`."""
    current = math_config(config)
    saved = state.get("config")
    if not isinstance(saved, dict):
        saved = {}
    if state["config_hash"] == config_hash(config):
        return int(current["max_steps"])
    changed = [k for k, v in current.items() if saved.get(k) != v]
    fixed = [k for k in changed if k not in EXTENDABLE_FIELDS]
    if fixed or not changed:
        what = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in fixed)
        raise RefbenchError("cannot resume: trainer settings differ from the checkpoint's "
                            f"({what or 'unknown'}); only max_steps (or epochs) may change "
                            "on resume, start a new run for the others", path=state_path,
                            key=f"trainer.{fixed[0]}" if fixed else "config_hash")
    if state["step"] > config.max_steps:
        raise RefbenchError(f"cannot resume: the checkpoint is at step {state['step']}, past "
                            f"max_steps {config.max_steps}", path=state_path,
                            key="trainer.max_steps")
    try:
        return int(saved["max_steps"])
    except (KeyError, TypeError, ValueError):
        raise RefbenchError("corrupt trainer state: no valid config.max_steps",
                            path=state_path, key="config") from None


def check_resume(run_dir: Path, config: TrainerConfig) -> None:
    """Raise the error `Trainer.fit(resume=True)` would raise for `config` on this run, so a
    caller can refuse before it writes anything into the run folder (its config.yaml)."""
    try:
        folder = ckpt.find_checkpoint(Path(run_dir), "last")
    except RefbenchError:
        raise RefbenchError("cannot resume: no complete checkpoint in this run",
                            path=Path(run_dir) / ckpt.CHECKPOINTS) from None
    check_resumable(ckpt.read_trainer_state(folder), config, folder / ckpt.STATE_FILE)


def epoch_permutation(seed: int, epoch: int, n: int) -> Tensor:
    """The sample order of one epoch; depends only on (seed, epoch), never on global RNG."""
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return torch.randperm(n, generator=generator)


def check_config(config: TrainerConfig, world_size: int) -> None:
    """Reject settings the loop cannot honour, naming the `trainer.*` key."""
    def bad(key: str, message: str) -> RefbenchError:
        return RefbenchError(message, key=f"trainer.{key}")

    for key in ("max_steps", "batch_size", "grad_accum"):
        if getattr(config, key) < 1:
            raise bad(key, f"must be at least 1, got {getattr(config, key)}")
    for key in ("log_every", "eval_every", "save_every"):
        if getattr(config, key) < 0:
            raise bad(key, f"must be 0 or more, got {getattr(config, key)}")
    parts = world_size * config.grad_accum
    if config.batch_size % parts:
        raise bad("batch_size", f"the global batch size {config.batch_size} is not divisible by "
                  f"world_size ({world_size}) x grad_accum ({config.grad_accum}) = {parts}")
    if not 0.0 <= config.warmup_ratio <= 1.0:
        raise bad("warmup_ratio", f"must be between 0 and 1, got {config.warmup_ratio}")
    if config.schedule not in SCHEDULES:
        raise bad("schedule", f"must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
    if config.grad_clip is not None and config.grad_clip <= 0:
        raise bad("grad_clip", f"must be positive or null, got {config.grad_clip}")
    if len(config.betas) != 2:
        raise bad("betas", f"expected two values, got {config.betas}")


def _finite_or_none(value: Any) -> float | None:
    """A metric as a float, or None when it is NaN/inf (JSON has no spelling for those)."""
    number = float(value)
    return number if math.isfinite(number) else None


class _StepModule(nn.Module):
    """`forward` = `model.training_step`, so DDP's gradient hooks see the training step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self.model.training_step(batch)  # type: ignore[operator]


class Trainer:
    """Trains any module with `training_step` on feature dicts; see the module docstring.

    `evaluate(model) -> {metric: value}` runs on rank 0 only, in eval mode under no_grad,
    every `eval_every` steps and at the end; `primary` (with `higher_is_better`) picks the
    best checkpoint. `dist=None` means `DistContext.from_env()` (a single process unless
    launched by torchrun), and the trainer then also closes that process group. Every rank
    returns the same `TrainResult`, except that after a resume only rank 0's `history`
    holds the records from before the resume.
    """

    def __init__(self, model: nn.Module, config: TrainerConfig, run_dir: Path,
                 train_features: Sequence[Mapping[str, Any]] | StreamingRows,
                 collate: Callable[[list], dict[str, Tensor]],
                 evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                 primary: str | None = None, higher_is_better: bool = True,
                 dist: DistContext | None = None) -> None:
        if not callable(getattr(model, "training_step", None)):
            raise TypeError("the model must define training_step(batch) -> {'loss': tensor}")
        self.dist = dist if dist is not None else DistContext.from_env()
        self._owns_dist = dist is None
        check_config(config, self.dist.world_size)
        self.config = config
        self.run_dir = Path(run_dir)
        self.features = train_features
        self.collate = collate
        self.evaluate = evaluate
        self.primary = primary
        self.higher_is_better = higher_is_better
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.micro_batch = config.batch_size // (self.dist.world_size * config.grad_accum)
        self.batches_per_epoch = len(train_features) // config.batch_size
        if self.batches_per_epoch == 0:
            raise RefbenchError(f"the training set has {len(train_features)} samples, fewer than "
                                f"one batch ({config.batch_size})", key="trainer.batch_size")
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.history: list[dict] = []

    # -- public -----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train to `max_steps` (continuing from the newest checkpoint when `resume`)."""
        try:
            return self._fit(resume)
        finally:
            if getattr(self, "_metrics_handle", None) is not None:
                self._metrics_handle.close()
                self._metrics_handle = None
            if getattr(self, "progress", None) is not None:
                self.progress.close()
            if self._owns_dist:
                self.dist.close()

    # -- setup ------------------------------------------------------------------------------
    def _fit(self, resume: bool) -> TrainResult:
        cfg, dist = self.config, self.dist
        main = dist.is_main
        seed_everything(cfg.seed + dist.rank)
        self.model.train()
        # a baseline may bring the optimizer its paper uses (SGD); the default is AdamW
        make = getattr(self.model, "configure_optimizer", None)
        self.optimizer = make(cfg) if callable(make) else build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = self.epoch = self.position = 0
        self.best: dict[str, Any] | None = None
        self.last_eval_step: int | None = None
        self.last_saved: Path | None = None
        self.events: list[dict[str, Any]] = []
        self._extension: dict[str, Any] | None = None
        self._window = torch.zeros((), dtype=torch.float64, device=self.device)
        self._window_steps = 0
        self.progress = Progress(cfg.max_steps, enabled=cfg.progress) if main else None
        self._metrics_handle = None
        if main:
            ckpt.sweep_temporaries(self.run_dir)
        if resume:
            self._restore()
        else:
            if main and ckpt.list_checkpoints(self.run_dir):
                raise RefbenchError("this run directory already has checkpoints; resume it or "
                                    "use a new run directory", path=self.run_dir)
            self.history = []
            if main:
                atomic_write_text(self.run_dir / METRICS_FILE, "")
                (self.run_dir / ckpt.CHECKPOINTS / ckpt.BEST_FILE).unlink(missing_ok=True)
        if main:
            self._metrics_handle = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
            if self._extension is not None and self._extension not in self.history:
                self._record(self._extension)  # not twice when an extension is retried
        self.forward = self._step_function()
        self._train()
        dist.barrier()
        return self._result()

    def _step_function(self) -> Callable[[Mapping[str, Tensor]], dict[str, Tensor]]:
        if not self.dist.distributed:
            self.ddp = None
            return self.model.training_step  # type: ignore[return-value]
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # weight-sharing supernets leave the candidates off the sampled path without gradient
        unused = bool(getattr(self.model, "ddp_find_unused_parameters", False))
        self.ddp = DistributedDataParallel(_StepModule(self.model), device_ids=ids,
                                           find_unused_parameters=unused)
        return self.ddp

    def _restore(self) -> None:
        try:
            folder = ckpt.find_checkpoint(self.run_dir, "last")
        except RefbenchError:
            raise RefbenchError("cannot resume: no complete checkpoint in this run",
                                path=self.run_dir / ckpt.CHECKPOINTS) from None
        state = ckpt.read_trainer_state(folder)
        state_path = folder / ckpt.STATE_FILE
        saved_steps = check_resumable(state, self.config, state_path)
        ckpt.load_model_weights(self.model, folder)
        try:
            tensors = ckpt.load_optimizer_tensors(folder)
            self.optimizer.load_state_dict(ckpt.join_optimizer_state(tensors, state["optimizer"]))
            self.scheduler.load_state_dict(state["scheduler"])
            if self.use_amp and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            exact = self._restore_rank_state(state["rng"])
            self.events = list(state.get("history") or [])
        except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
            raise RefbenchError(f"corrupt trainer state: {type(exc).__name__}: {exc}",
                                path=state_path) from None
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        if saved_steps != self.config.max_steps:
            self._extend(saved_steps)
        if self.position > self.batches_per_epoch:
            raise RefbenchError("cannot resume: the training set is smaller than when the "
                                "checkpoint was written", path=state_path, key="position")
        self.best = state.get("best")
        self.last_eval_step = state.get("last_eval_step")
        self.last_saved = folder
        if not self.dist.is_main:
            self.history = []
            return
        assert self.progress is not None
        if not exact:
            self.progress.message("warning: the checkpoint was written by another number of "
                                  "processes; random streams restart, so the run is not exact")
        self.history = self._trim_metrics(self.step)
        if self.best is not None and (folder.parent / self.best["checkpoint"]).is_dir():
            ckpt.write_best(self.run_dir, self.best)  # in case a crash came before best.json
        self.progress.message(f"resuming from {folder.name} (step {self.step})")
        if self._extension is not None:
            old, new = self._extension["from_max_steps"], self._extension["to_max_steps"]
            self.progress.message(
                f"extending the run from max_steps {old} to {new} at step {self.step}: the "
                f"learning-rate schedule is recomputed for {new} steps, so the learning rate "
                f"changes from this step on (now {self.optimizer.param_groups[0]['lr']:.3g})")

    def _extend(self, old_max_steps: int) -> None:
        """Continue with another `max_steps`: the schedule (a pure function of the step and
        the run length) gives the learning rate of the next step for the new length; the
        event goes into `history` (saved with every later checkpoint) and metrics.jsonl."""
        cfg = self.config
        factor = lr_factor(cfg.schedule, self.step, cfg.max_steps, warmup_steps(cfg))
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * factor
        event = {"step": self.step, "event": "extended", "from_max_steps": old_max_steps,
                 "to_max_steps": cfg.max_steps}
        if event not in self.events:
            self.events.append(event)
        self._extension = event

    def _restore_rank_state(self, per_rank: list[dict[str, Any]]) -> bool:
        """This rank's RNG and loss window; False when the world size changed (not exact)."""
        if len(per_rank) != self.dist.world_size:
            return False
        mine = per_rank[self.dist.rank]
        ckpt.restore_rng(mine["rng"], self.device)
        self._window.fill_(float(mine["window_loss"]))
        self._window_steps = int(mine["window_steps"])
        return True

    def _trim_metrics(self, step: int) -> list[dict]:
        """Keep metrics.jsonl records up to `step` (a torn last line is dropped) and rewrite it."""
        path = self.run_dir / METRICS_FILE
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        kept: list[dict] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record_step = int(record["step"])
            except (ValueError, KeyError, TypeError):
                if number == len(lines):
                    break  # torn by a crash while appending
                raise RefbenchError("corrupt metrics record", path=path, line=number) from None
            if record_step <= step:
                kept.append(record)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    # -- loop -------------------------------------------------------------------------------
    def _train(self) -> None:
        cfg, dist = self.config, self.dist
        accum, world, rank, micro = cfg.grad_accum, dist.world_size, dist.rank, self.micro_batch
        features, collate, forward = self.features, self.collate, self.forward
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        move = self.device.type != "cpu"
        amp = (lambda: torch.autocast("cuda", dtype=torch.float16)) if self.use_amp \
            else contextlib.nullcontext
        window = self._window
        stream = features.micro_batches(rank, world, micro, skip=self.step * accum) \
            if isinstance(features, StreamingRows) else None
        perm = epoch_permutation(cfg.seed, self.epoch, len(features))
        self._timer = (time.monotonic(), self.step)
        while self.step < cfg.max_steps:
            if self.position >= self.batches_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
                perm = epoch_permutation(cfg.seed, self.epoch, len(features))
            start = self.position * cfg.batch_size
            indices = perm[start:start + cfg.batch_size].tolist()
            for a in range(accum):
                if stream is not None:
                    batch = collate(next(stream))
                else:
                    lo = (a * world + rank) * micro
                    batch = collate([features[i] for i in indices[lo:lo + micro]])
                if move:
                    batch = to_device(batch, self.device)
                no_sync = self.ddp is not None and a < accum - 1
                with self.ddp.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[union-attr]
                    with amp():
                        loss = forward(batch)["loss"]
                    self.scaler.scale(loss / accum if accum > 1 else loss).backward()
                window += loss.detach()
            if cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            lr = self.optimizer.param_groups[0]["lr"]
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1
            self.position += 1
            self._window_steps += 1
            if self.progress is not None and self.progress.bar:
                self.progress.tick(self.step, cfg.batch_size, self._local_loss, lr)
            self._after_step(lr)

    def _local_loss(self) -> float:
        return float(self._window.item()) / max(1, self._window_steps * self.config.grad_accum)

    def _after_step(self, lr: float) -> None:
        cfg, step = self.config, self.step
        final = step == cfg.max_steps
        if final or (cfg.log_every and step % cfg.log_every == 0):
            self._log(lr)
        new_best = False
        if self.evaluate is not None and self.last_eval_step != step and \
                (final or (cfg.eval_every and step % cfg.eval_every == 0)):
            new_best = self._evaluate()
        if final or new_best or (cfg.save_every and step % cfg.save_every == 0):
            self._save()

    def _log(self, lr: float) -> None:
        mean = self._window / max(1, self._window_steps * self.config.grad_accum)
        loss = float(self.dist.all_reduce_mean(mean.to(torch.float64)).item())
        now = time.monotonic()
        started, steps_before = self._timer
        timed = self.step - steps_before
        samples_per_s = timed * self.config.batch_size / max(now - started, 1e-9)
        record = {"step": self.step, "loss": loss if math.isfinite(loss) else None, "lr": lr,
                  "samples_per_s": round(samples_per_s, 2),
                  "epoch": round(self.epoch + self.position / self.batches_per_epoch, 4)}
        self._window.zero_()
        self._window_steps = 0
        self._timer = (now, self.step)
        self._record(record)
        if self.progress is not None:
            self.progress.log(record)

    def _record(self, record: dict) -> None:
        self.history.append(record)
        if self._metrics_handle is not None:
            self._metrics_handle.write(json.dumps(record) + "\n")
            self._metrics_handle.flush()

    def _evaluate(self) -> bool:
        """Run `evaluate` on rank 0 (others wait); returns True when it is a new best."""
        metrics: dict[str, float | None] | None = None
        if self.dist.is_main:
            assert self.evaluate is not None
            rng = ckpt.capture_rng(self.device)  # evaluation must not shift training's RNG
            self.model.eval()
            try:
                with torch.no_grad():
                    raw = self.evaluate(self.model)
            finally:
                self.model.train()
                ckpt.restore_rng(rng, self.device)
            metrics = {str(k): _finite_or_none(v) for k, v in dict(raw).items()}
            if self.primary is not None and self.primary not in metrics:
                raise RefbenchError(f"primary metric {self.primary!r} is not among the evaluation "
                                    f"results ({', '.join(metrics)})", key="primary")
        metrics = self.dist.broadcast_object(metrics)
        assert metrics is not None
        self.last_eval_step = self.step
        new_best = False
        if self.primary is not None:
            value = metrics[self.primary]
            old = None if self.best is None else self.best["value"]
            if value is not None and (old is None or (value > old if self.higher_is_better
                                                      else value < old)):
                new_best = True
                self.best = {"step": self.step, "checkpoint": ckpt.step_dir_name(self.step),
                             "primary": self.primary, "value": value, "metrics": metrics}
        self._record({"step": self.step, "eval": metrics})
        if self.progress is not None:
            self.progress.message(f"eval step {self.step}: {format_metrics(metrics)}"
                                  + (" (best)" if new_best else ""))
        return new_best

    def _save(self) -> None:
        mine = {"rng": ckpt.capture_rng(self.device), "window_loss": float(self._window.item()),
                "window_steps": self._window_steps}
        per_rank = self.dist.all_gather_object(mine)
        folder = self.run_dir / ckpt.CHECKPOINTS / ckpt.step_dir_name(self.step)
        if self.dist.is_main:
            tensors, rest = ckpt.split_optimizer_state(self.optimizer.state_dict())
            state = {
                "format": ckpt.STATE_FORMAT, "step": self.step, "epoch": self.epoch,
                "position": self.position, "optimizer": rest,
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": per_rank, "best": self.best, "last_eval_step": self.last_eval_step,
                "world_size": self.dist.world_size, "config_hash": config_hash(self.config),
                "config": math_config(self.config), "history": self.events,
            }
            folder = ckpt.write_checkpoint(self.run_dir / ckpt.CHECKPOINTS, self.step, self.model,
                                           tensors, state)
            if self.best is not None and self.best["step"] == self.step:
                ckpt.write_best(self.run_dir, self.best)
            ckpt.rotate(self.run_dir, self.config.keep_last)
        self.last_saved = folder

    def _result(self) -> TrainResult:
        best_dir = None
        if self.best is not None:
            best_dir = self.run_dir / ckpt.CHECKPOINTS / self.best["checkpoint"]
        return TrainResult(step=self.step,
                           best_step=None if self.best is None else self.best["step"],
                           best_metrics=None if self.best is None else dict(self.best["metrics"]),
                           last_checkpoint=self.last_saved, best_checkpoint=best_dir,
                           history=list(self.history))
