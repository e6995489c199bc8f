"""The common runner: training loop, checkpoints, schedules, distribution and progress.

Importing this package imports torch but nothing model-specific; orchestration code
(`refbench train`, `refbench predict`) builds the model and calls `Trainer.fit`.
"""

from __future__ import annotations

from refbench.engine.checkpoint import find_checkpoint, list_checkpoints, load_model_weights
from refbench.engine.device import model_device, to_device
from refbench.engine.distributed import DistContext
from refbench.engine.schedules import build_optimizer, build_scheduler, lr_factor
from refbench.engine.trainer import METRICS_FILE, TrainResult, Trainer, seed_everything

__all__ = [
    "METRICS_FILE",
    "DistContext",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "find_checkpoint",
    "list_checkpoints",
    "load_model_weights",
    "lr_factor",
    "model_device",
    "seed_everything",
    "to_device",
]
