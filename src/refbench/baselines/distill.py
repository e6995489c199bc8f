"""TinyBERT-style knowledge distillation, as EfficientBERT's search and fine-tuning use it.

The loss (re-derived from the official `calc_distil_losses`):

- attention: MSE between the student's attention *scores* (before softmax) of layer l and
  the teacher's of layer g(l) = (l + 1) * (T / S) - 1 (0-based; the last layer of every
  block of T/S teacher layers), with padded key positions set to 0 on both sides;
- hidden ("ffn"): MSE between the embedding outputs and between the student's layer-l output
  and the teacher's layer-g(l) output, the student's states first projected to the teacher's
  width by its fit-dense layer;
- prediction: soft cross-entropy between student and teacher logits at a temperature for
  classification; MSE to the gold score for regression (STS-B), as the official code does;
- total = hidden_ratio * (attention + hidden) + pred_ratio * prediction.

The teacher is a run of this same runner (e.g. `refbench train bert ...`): `load_teacher`
rebuilds it from its run folder and best checkpoint. Its attention scores are recomputed
from the query/key projections through forward hooks, because transformers returns only the
post-softmax probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from refbench.errors import RefbenchError


@dataclass
class DistillConfig:
    """`distill:` section of a student recipe."""

    teacher_run: str | None = None
    temperature: float = 1.0
    hidden_ratio: float = 1.0
    pred_ratio: float = 1.0
    checkpoint: str = "best"


@dataclass
class EncoderOutputs:
    """What distillation compares: logits, per-layer attention scores [B, H, L, L] (before
    softmax) and hidden states [embeddings, layer 1, ..., layer N], each [B, L, D]."""

    logits: torch.Tensor
    attention_scores: list[torch.Tensor]
    hidden_states: list[torch.Tensor]


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (0-based) distilled into each student layer."""
    if student_layers <= 0 or teacher_layers % student_layers:
        raise RefbenchError(f"teacher layers ({teacher_layers}) must be a multiple of student "
                            f"layers ({student_layers})")
    step = teacher_layers // student_layers
    return [(layer + 1) * step - 1 for layer in range(student_layers)]


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    target = F.softmax(teacher_logits / temperature, dim=-1)
    return (-target * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1).mean()


def _masked(scores: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scores with padded *key* positions set to 0, as the official code does (it zeroes
    the entries that carry the -1e4 padding mask, which is added along the key axis only;
    rows of padded queries still count)."""
    keep = attention_mask[:, None, None, :].bool()
    return torch.where(keep, scores, torch.zeros_like(scores))


def distill_losses(student: EncoderOutputs, teacher: EncoderOutputs,
                   attention_mask: torch.Tensor, labels: torch.Tensor | None, regression: bool,
                   cfg: DistillConfig) -> dict[str, torch.Tensor]:
    """The EfficientBERT/TinyBERT loss and its parts."""
    mapping = layer_map(len(student.attention_scores), len(teacher.attention_scores))
    if student.attention_scores[0].shape != teacher.attention_scores[0].shape:
        raise RefbenchError("student and teacher attention maps differ in shape "
                            f"{tuple(student.attention_scores[0].shape)} vs "
                            f"{tuple(teacher.attention_scores[0].shape)} (heads must match)")
    attn = sum(F.mse_loss(_masked(student.attention_scores[s], attention_mask),
                          _masked(teacher.attention_scores[t], attention_mask))
               for s, t in enumerate(mapping))
    hidden = F.mse_loss(student.hidden_states[0], teacher.hidden_states[0])
    hidden = hidden + sum(F.mse_loss(student.hidden_states[s + 1], teacher.hidden_states[t + 1])
                          for s, t in enumerate(mapping))
    if regression:
        if labels is None:
            raise RefbenchError("regression distillation needs the gold scores")
        pred = F.mse_loss(student.logits.squeeze(-1), labels.float())
    else:
        pred = soft_cross_entropy(student.logits, teacher.logits, cfg.temperature)
    total = cfg.hidden_ratio * (attn + hidden) + cfg.pred_ratio * pred
    return {"loss": total, "attention_loss": attn.detach(), "hidden_loss": hidden.detach(),
            "pred_loss": pred.detach()}


class BertTeacher(nn.Module):
    """A trained `bert` run (GLUE head) as a frozen teacher that returns `EncoderOutputs`."""

    def __init__(self, head: Any) -> None:
        super().__init__()
        self.head = head
        self.head.eval()
        for p in self.head.parameters():
            p.requires_grad_(False)
        self._qk: dict[int, dict[str, torch.Tensor]] = {}
        for index, layer in enumerate(head.model.bert.encoder.layer):
            attention = layer.attention.self
            attention.query.register_forward_hook(self._hook(index, "q"))
            attention.key.register_forward_hook(self._hook(index, "k"))
        config = head.model.config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads

    @property
    def tokenizer(self) -> Any:
        return self.head.tokenizer

    @property
    def num_layers(self) -> int:
        return len(self.head.model.bert.encoder.layer)

    @property
    def hidden_size(self) -> int:
        return int(self.head.model.config.hidden_size)

    def _hook(self, index: int, which: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self._qk.setdefault(index, {})[which] = output
        return hook

    def train(self, mode: bool = True) -> "BertTeacher":
        return super().train(False)  # always frozen, dropout off

    @torch.no_grad()
    def forward(self, batch: Mapping[str, torch.Tensor]) -> EncoderOutputs:
        self._qk.clear()
        out = self.head.model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                              attention_mask=batch["attention_mask"], output_hidden_states=True)
        scores = []
        for index in range(self.num_layers):
            q, k = self._qk[index]["q"], self._qk[index]["k"]
            b, length, _ = q.shape
            q = q.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)
            k = k.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)
            scores.append(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim))
        self._qk.clear()
        return EncoderOutputs(out.logits, scores, list(out.hidden_states))


def load_teacher(run_dir: str | Path, checkpoint: str = "best") -> BertTeacher:
    """Rebuild a trained `bert` run as a frozen teacher (its own spec, tokenizer, weights)."""
    from refbench.benchmarks.spec import get_spec
    from refbench.engine import find_checkpoint, load_model_weights
    from refbench.registry import BASELINES
    from refbench.runner import load_run_config

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if config.baseline != "bert":
        raise RefbenchError(f"the teacher must be a bert run, this one is {config.baseline!r}",
                            path=run_dir)
    spec = get_spec(config.benchmark)
    head = BASELINES.get("bert").restore(config.model, spec, run_dir)
    load_model_weights(head, find_checkpoint(run_dir, checkpoint))  # type: ignore[arg-type]
    return BertTeacher(head)
