"""A toy baseline for the engine tests: a small MLP with LayerNorm and dropout.

The data is random but seeded and learnable (labels come from a fixed random linear map),
so tests can check both exactness (resume, DDP) and that training actually learns.
Used by the test files and by the subprocess workers next to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from refbench.config import TrainerConfig
from refbench.engine.checkpoint import MODEL_FILE, OPTIMIZER_FILE

DIM, HIDDEN, CLASSES = 16, 32, 4


class ToyModel(nn.Module):
    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.LayerNorm(HIDDEN), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(HIDDEN, CLASSES))

    def training_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.net(batch["x"])
        return {"loss": F.cross_entropy(logits, batch["y"])}


def make_model(seed: int = 0, dropout: float = 0.1) -> ToyModel:
    torch.manual_seed(seed)
    return ToyModel(dropout)


def make_features(n: int = 96, seed: int = 123) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=generator)
    w = torch.randn(DIM, CLASSES, generator=generator)
    y = (x @ w).argmax(dim=1)
    return [{"x": x[i], "y": int(y[i])} for i in range(n)]


def collate(features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([f["x"] for f in features]),
            "y": torch.tensor([f["y"] for f in features], dtype=torch.long)}


def make_evaluator(features: Sequence[Mapping[str, Any]]):
    """An `evaluate` callback: accuracy and loss of the model on `features`."""
    batch = collate(features)

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict[str, float]:
        logits = model.net(batch["x"])  # type: ignore[attr-defined]
        return {"accuracy": float((logits.argmax(1) == batch["y"]).float().mean()),
                "loss": float(F.cross_entropy(logits, batch["y"]))}

    return evaluate


def config(**overrides: Any) -> TrainerConfig:
    base = dict(seed=7, max_steps=20, batch_size=8, lr=1e-2, weight_decay=0.01,
                schedule="linear", warmup_ratio=0.1, grad_clip=1.0, amp=False,
                log_every=1, eval_every=0, save_every=0, keep_last=2, progress=False)
    base.update(overrides)
    return TrainerConfig(**base)


def resume_config() -> TrainerConfig:
    """The run the resume tests interrupt: checkpoints, evaluations, log windows and an epoch
boundary all fall at different steps."""
    return config(max_steps=14, save_every=4, eval_every=5, keep_last=2, schedule="cosine",
                  log_every=3)


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model tensors, optimizer tensors) of a checkpoint folder."""
    return load_file(str(folder / MODEL_FILE)), load_file(str(folder / OPTIMIZER_FILE))


def ddp_config(grad_accum: int = 1) -> TrainerConfig:
    """The run compared between 2 processes and 1: no dropout, so the maths must agree."""
    return config(max_steps=10, batch_size=8, grad_accum=grad_accum, eval_every=5, save_every=5,
                  schedule="one_cycle", log_every=1)
