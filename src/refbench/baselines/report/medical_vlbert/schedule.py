"""Medical-VLBERT's alternate learning: knowledge pretraining and transfer take turns.

The paper trains one model with two procedures in alternation rather than one after the
other: *knowledge pretraining* memorises medical knowledge from text (masked language
modelling on report text, no image), *transferring* uses that knowledge to write reports
from images (image-conditioned generation, plus the terminology head). Alternating keeps
the language knowledge from being overwritten while the model learns to look at images,
which pretraining-then-fine-tuning does not guarantee on a few hundred CT studies.

Here a cycle is `knowledge_steps` optimizer steps of pretraining followed by
`transfer_steps` of transfer, repeated for the whole run (1 + 1 by default: the
procedures alternate every step); `knowledge_steps: 0` trains the transfer procedure
only (the ablation without knowledge pretraining). The cycle position is a pure function
of the optimizer step, which the baseline keeps as a buffer of its checkpoint, so a
resumed run continues the cycle where it stopped and every DDP rank runs the same
procedure at every step. The number of steps of each procedure in a run of `steps`
optimizer steps is `counts(steps)`.

[UNVERIFIED] the paper's exact alternation period is not retrievable here (no code, the
full text is not in this workplace); the period is a recipe setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Phase = Literal["knowledge", "transfer"]


@dataclass(frozen=True)
class AlternateSchedule:
    """`knowledge_steps` pretraining steps, then `transfer_steps` transfer steps, cycled."""

    knowledge_steps: int = 1
    transfer_steps: int = 1

    def __post_init__(self) -> None:
        if self.knowledge_steps < 0 or self.transfer_steps < 1:
            raise ValueError("knowledge_steps must be >= 0 and transfer_steps >= 1")

    @property
    def cycle(self) -> int:
        return self.knowledge_steps + self.transfer_steps

    def phase(self, step: int) -> Phase:
        """The procedure of optimizer step `step` (0-based)."""
        return "knowledge" if step % self.cycle < self.knowledge_steps else "transfer"

    def counts(self, steps: int) -> dict[Phase, int]:
        """Steps of each procedure among the first `steps` optimizer steps."""
        full, rest = divmod(steps, self.cycle)
        knowledge = full * self.knowledge_steps + min(rest, self.knowledge_steps)
        return {"knowledge": knowledge, "transfer": steps - knowledge}


class StepCounter:
    """Optimizer steps from training-step calls: with gradient accumulation the trainer
    calls `training_step` `grad_accum` times per optimizer step, all of one procedure."""

    def __init__(self, grad_accum: int = 1) -> None:
        self.grad_accum = max(1, int(grad_accum))
        self.calls = 0

    def advance(self) -> bool:
        """Count one call; True when it completes an optimizer step."""
        self.calls += 1
        if self.calls == self.grad_accum:
            self.calls = 0
            return True
        return False
