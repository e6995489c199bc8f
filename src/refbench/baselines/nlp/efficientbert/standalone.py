"""Stand-alone distilled students: the ground truth the EfficientBERT search is judged by.

A search is only useful if the architecture it picks trains better on its own than the
architectures it could have picked at random. This module trains single architectures from
fresh weights, each exactly the same way (same initial seed, same batches, same optimizer
and schedule, same distillation loss from the same teacher), and scores each on a split the
search never saw (the benchmark's validation split). It serves:

- `perf/efficientbert_search.py`: the searched architecture against the median random
  architecture of the same parameter budget, over several seeds;
- a ranking-consistency client: (architecture, search fitness) pairs against stand-alone
  accuracy, the pairs a generic Kendall-tau benchmark needs.

A student here is the supernet restricted to one architecture: its forward is the
stand-alone student's (the slices equal an independently built FFN, see the unit tests) and
its parameter count is `student_parameter_count` of that architecture; the untouched units
outside the slices get no gradient and are not counted.

`load_supernet` reads the shared weights a search wrote (`supernet.safetensors`); passed as
`init`, every architecture starts from them instead of fresh weights, which is how the
official pipeline trains its searched student (initialised from the stage-3 supernet).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from refbench.baselines.nlp.efficientbert.sampler import StageSampler
from refbench.baselines.nlp.efficientbert.search import _prepare, _Searcher, _Setup
from refbench.baselines.nlp.efficientbert.supernet import (Architecture, EfficientBertSupernet,
                                                           encode_rows, load_weights)
from refbench.errors import RefbenchError


@dataclass
class StandaloneResult:
    """One stand-alone training: the architecture, its size and its held-out scores."""

    arch: Architecture
    params: int
    metric: float | None  # the benchmark's primary metric on `split`; None: diverged (NaN)
    loss: float | None  # the distillation loss on `split`
    train_loss: float | None
    steps: int
    seed: int

    def to_json(self, primary: str) -> dict[str, Any]:
        return {"ffn_expressions": self.arch.strings, "params": self.params,
                primary: self.metric, "loss": self.loss, "train_loss": self.train_loss,
                "steps": self.steps, "seed": self.seed}


class StandaloneTrainer:
    """Trains architectures of one search setting from scratch, all the same way.

    The training follows the recipe's `trainer:` (max_steps, lr, batch size, warm-up ratio,
    weight decay, grad clip), on the whole training split, with the search's distillation
    loss; `steps` / `lr` override it. Scores are on `split` (default: the validation split,
    which the search never reads).
    """

    def __init__(self, benchmark: str, teacher_run: str | Path,
                 recipe: str = "efficientbert_tiny_glue", overrides: Sequence[str] = (), *,
                 cache_dir: str | None = None, split: str | None = None,
                 steps: int | None = None, lr: float | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        from refbench.runner import load_rows

        setup = _prepare(benchmark, teacher_run, recipe, overrides, cache_dir)
        trainer = setup.run.trainer
        self.steps = int(steps if steps is not None else (trainer.max_steps or 0))
        if self.steps < 1:
            raise RefbenchError(f"stand-alone training needs a step count >= 1, got "
                                f"{self.steps} (set trainer.max_steps)", key="trainer.max_steps")
        cfg = dataclasses.replace(
            setup.cfg, lr=lr if lr is not None else trainer.lr, batch_size=trainer.batch_size,
            weight_decay=trainer.weight_decay, warmup_ratio=trainer.warmup_ratio,
            grad_clip=trainer.grad_clip if trainer.grad_clip is not None else float("inf"))
        self.setup: _Setup = dataclasses.replace(setup, cfg=cfg)
        self.progress = progress or (lambda _line: None)
        self._searcher = _Searcher(self.setup, self.progress)
        # stand-alone students train on the whole training split, like `refbench train`
        self._searcher.train = self._searcher.train + self._searcher.heldout
        self.split = split or setup.spec.split
        rows, _ = load_rows(setup.spec, self.split, setup.run)
        tok = setup.teacher.tokenizer
        features = encode_rows(tok, rows, setup.task.text_fields, setup.student.max_length)
        labelled = [f for f in features if self._searcher.regression or f["label"] >= 0]
        if not labelled:
            raise RefbenchError(f"split {self.split!r} has no labelled rows to score "
                                f"stand-alone students on", key="split")
        self._searcher.heldout = labelled

    @property
    def primary(self) -> str:
        return str(self.setup.spec.primary)

    @property
    def eval_rows(self) -> int:
        return len(self._searcher.heldout)

    def params(self, arch: Architecture) -> int:
        return self.setup.budget.params(arch.types)

    def random_architectures(self, count: int, seed: int,
                             stage: str = "joint") -> list[Architecture]:
        """`count` distinct random architectures of `stage` inside the search's parameter
        budget (joint: random expressions and linear types, what the search starts from)."""
        current = Architecture.parse(self.setup.student.ffn_expressions)
        sampler = StageSampler(stage, current, self.setup.budget, random.Random(seed),
                               self.setup.cfg.mutation_steps, self.setup.cfg.tries)
        out: list[Architecture] = []
        seen: set[str] = set()
        for _ in range(self.setup.cfg.tries):
            if len(out) == count:
                break
            arch = sampler.random()
            if arch.key not in seen:
                seen.add(arch.key)
                out.append(arch)
        return out

    def load_supernet(self, path: Path) -> dict[str, torch.Tensor]:
        """The shared weights a search of this setting wrote; a missing or unreadable file,
        or one of another student size, is a one-line error naming it."""
        return load_weights(self._fresh(0), path)

    def _fresh(self, seed: int) -> EfficientBertSupernet:
        s = self.setup
        torch.manual_seed(seed)
        return EfficientBertSupernet(s.student, len(s.teacher.tokenizer), s.task.num_labels,
                                     s.teacher.hidden_size, s.teacher.tokenizer.pad_token_id)

    def train(self, arch: Architecture | Sequence[str], seed: int,
              init: Mapping[str, torch.Tensor] | None = None) -> StandaloneResult:
        """Fresh weights (`seed`), or the supernet weights `init`, then `steps` distillation
        steps on the batches of `seed`, then the primary metric and distillation loss on the
        evaluation split."""
        if not isinstance(arch, Architecture):
            arch = Architecture.parse(list(arch))
        searcher = self._searcher
        searcher.net = self._fresh(seed)
        if init is not None:
            searcher.net.load_state_dict(init)
        train_loss = searcher.train_steps(self.steps, seed, lambda: arch)
        metric, loss = searcher.score(arch) if train_loss is not None else (None, None)
        return StandaloneResult(arch, self.params(arch), metric, loss, train_loss, self.steps,
                                seed)


def median_metric(results: Sequence[StandaloneResult]) -> float:
    """The median primary metric of finished trainings (diverged ones count as the worst)."""
    values = [r.metric if r.metric is not None else float("-inf") for r in results]
    if not values:
        raise RefbenchError("no stand-alone result to take the median of")
    return float(statistics.median(values))
