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
  for SQuAD, soft cross-entropy of the start and of the end distributions over positions,
  padding (and, as in the official code, [CLS]) pushed to -1e4 on both sides first;
- total = hidden_ratio * (attention + hidden) + pred_ratio * prediction.

The soft cross-entropy is averaged over every element (rows x classes, or rows x positions),
as the official `soft_cross_entropy(..., mean=True)` and `(start + end).mean()` do, not
summed over classes: the scale matters because it sets the weight of the prediction term
against the attention and hidden terms.

The teacher is a run of this same runner (e.g. `refbench train bert ...`, GLUE or SQuAD
head): `load_teacher` rebuilds it from its run folder and best checkpoint. Its attention
scores are recomputed from the query/key projections through forward hooks, because
transformers returns only the post-softmax probabilities. A student holds it through
`TeacherHandle`, outside `nn.Module` registration, so the teacher never enters the
student's optimizer, DDP wrapper or checkpoints; the `check_*` / `install_teacher_tokenizer`
helpers make sure student and teacher see the very same token ids.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    from refbench.benchmarks.spec import BenchmarkSpec

MASK_VALUE = -10000.0  # the official additive mask


@dataclass
class DistillConfig:
    """`distill:` section of a student recipe."""

    teacher_run: str | None = None
    temperature: float = 1.0
    hidden_ratio: float = 1.0
    pred_ratio: float = 1.0
    checkpoint: str = "best"
    #: SQuAD only. True = the official loss: [CLS] is masked out of the start/end
    #: distributions like padding (finetune.py sets attn_mask[:, 0] = 1), so the null
    #: score is not distilled; False keeps [CLS] (a SQuAD v2.0 variant, not official).
    span_mask_cls: bool = True


@dataclass
class EncoderOutputs:
    """What distillation compares: logits, per-layer attention scores [B, H, L, L] (before
    softmax) and hidden states [embeddings, layer 1, ..., layer N], each [B, L, D].

    `logits` is [B, C] for classification, [B, 1] or [B] for regression and [B, L, 2]
    (start, end) for SQuAD."""

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
                       temperature: float = 1.0,
                       reduction: Literal["row", "element", "none"] = "row") -> torch.Tensor:
    """Cross-entropy of the student's softmax against the teacher's, both at `temperature`.

    `row`: summed over the last axis, averaged over rows (the textbook form); `element`:
    averaged over every element, as the official `soft_cross_entropy` (mean=True) does;
    `none`: the per-element terms (the official mean=False)."""
    target = F.softmax(teacher_logits / temperature, dim=-1)
    terms = -target * F.log_softmax(student_logits / temperature, dim=-1)
    if reduction == "none":
        return terms
    return terms.mean() if reduction == "element" else terms.sum(-1).mean()


def span_soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            attention_mask: torch.Tensor, temperature: float = 1.0,
                            mask_cls: bool = True) -> torch.Tensor:
    """The official SQuAD prediction loss on [B, L, 2] (start, end) logits.

    Padded positions (and [CLS] at position 0 when `mask_cls`) get -1e4 added on both
    sides; the start and end soft cross-entropies per position are added and averaged over
    batch x positions (`(start_loss + end_loss).mean()` in finetune.py)."""
    masked = 1.0 - attention_mask.to(student_logits.dtype)
    if mask_cls:
        masked = masked.clone()
        masked[:, 0] = 1.0
    penalty = (masked * MASK_VALUE).unsqueeze(-1)
    student, teacher = student_logits + penalty, teacher_logits.to(student_logits.dtype) + penalty
    start = soft_cross_entropy(student[..., 0], teacher[..., 0], temperature, "none")
    end = soft_cross_entropy(student[..., 1], teacher[..., 1], temperature, "none")
    return (start + end).mean()


def _masked(scores: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scores with padded *key* positions set to 0, as the official code does (it zeroes
    the entries that carry the -1e4 padding mask, which is added along the key axis only;
    rows of padded queries still count)."""
    keep = attention_mask[:, None, None, :].bool()
    return torch.where(keep, scores, torch.zeros_like(scores))


def distill_losses(student: EncoderOutputs, teacher: EncoderOutputs,
                   attention_mask: torch.Tensor, labels: torch.Tensor | None, regression: bool,
                   cfg: DistillConfig, *, span: bool = False) -> dict[str, torch.Tensor]:
    """The EfficientBERT/TinyBERT loss and its parts (`span`: SQuAD start/end logits)."""
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
    if span:
        pred = span_soft_cross_entropy(student.logits, teacher.logits, attention_mask,
                                       cfg.temperature, cfg.span_mask_cls)
    elif regression:
        if labels is None:
            raise RefbenchError("regression distillation needs the gold scores")
        pred = F.mse_loss(student.logits.squeeze(-1), labels.float())
    else:
        pred = soft_cross_entropy(student.logits, teacher.logits, cfg.temperature, "element")
    total = cfg.hidden_ratio * (attn + hidden) + cfg.pred_ratio * pred
    return {"loss": total, "attention_loss": attn.detach(), "hidden_loss": hidden.detach(),
            "pred_loss": pred.detach()}


class BertTeacher(nn.Module):
    """A trained `bert` run (GLUE or SQuAD head) as a frozen teacher returning `EncoderOutputs`
    (for SQuAD, `logits` stacks the start and end logits as [B, L, 2])."""

    def __init__(self, head: Any, run_dir: str | Path | None = None) -> None:
        super().__init__()
        self.run_dir = None if run_dir is None else Path(run_dir)
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

    @property
    def is_span(self) -> bool:
        """True for a SQuAD (start/end span) head."""
        return hasattr(self.head.model, "qa_outputs")

    @property
    def spec(self) -> "BenchmarkSpec":
        return self.head.spec

    @property
    def config(self) -> Any:
        """The teacher run's `model:` section (`refbench.baselines.nlp.bert.BertConfig`)."""
        return self.head.cfg

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
        logits = (torch.stack([out.start_logits, out.end_logits], dim=-1) if self.is_span
                  else out.logits)
        return EncoderOutputs(logits, scores, list(out.hidden_states))


def load_teacher(run_dir: str | Path, checkpoint: str = "best") -> BertTeacher:
    """Rebuild a trained `bert` run as a frozen teacher (its own spec, tokenizer, weights)."""
    from refbench.registry import get_spec
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
    return BertTeacher(head, run_dir)


class TeacherHandle:
    """Holds a frozen teacher for a student without making it a submodule.

    An `nn.Module` attribute holding this plain object is not registered, so the teacher
    stays out of the student's `parameters()`, `state_dict()`, optimizer, DDP wrapper and
    checkpoints, and `student.to(device)` does not move it: the first call on a batch
    moves the teacher to the batch's device."""

    def __init__(self, teacher: BertTeacher) -> None:
        self.teacher = teacher
        self._device: torch.device | None = None

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> EncoderOutputs:
        device = batch["input_ids"].device
        if self._device != device:
            self.teacher.to(device)
            self._device = device
        return self.teacher(batch)


# -- student / teacher compatibility -----------------------------------------------------
def check_teacher(teacher: BertTeacher, spec: "BenchmarkSpec", *, num_heads: int,
                  num_layers: int, max_length: int) -> None:
    """Raise, naming the student's recipe key, unless the teacher can teach this student:
    same task (head and labels), equal head counts (attention maps are compared head by
    head), a layer count the teacher's is a multiple of, and room for the student's length."""
    where = {"path": teacher.run_dir}
    mine, theirs = spec.dataset, teacher.spec.dataset
    # a span head fits any config of the same QA dataset; a classifier only its own labels
    same_type = spec.task.type == teacher.spec.task.type
    same_task = same_type and (mine == theirs or (spec.task.type == "extractive-qa"
                                                  and mine.name == theirs.name))
    if not same_task:
        raise RefbenchError(f"the teacher was trained on {teacher.spec.name} "
                            f"({theirs.name}/{theirs.config}), the student trains on {spec.name} "
                            f"({mine.name}/{mine.config}); distil from a teacher of the same task",
                            key="model.distill.teacher_run", **where)
    if teacher.num_heads != num_heads:
        raise RefbenchError(f"attention-map distillation needs equal head counts: the student has "
                            f"{num_heads} heads (model.num_heads), the teacher "
                            f"{teacher.num_heads}", key="model.num_heads", **where)
    if teacher.num_layers % num_layers:
        raise RefbenchError(f"the teacher's {teacher.num_layers} layers are not a multiple of the "
                            f"student's {num_layers} (model.num_layers)", key="model.num_layers",
                            **where)
    limit = int(teacher.head.model.config.max_position_embeddings)
    if max_length > limit:
        raise RefbenchError(f"the student's max_length {max_length} exceeds the teacher's "
                            f"max_position_embeddings {limit}", key="model.max_length", **where)


def _vocab_of(tokenizer: Any) -> dict[str, int]:
    return dict(tokenizer.get_vocab())


def check_tokenization(teacher: BertTeacher, *, vocab_size: int, lowercase: bool,
                       tokenizer: str | None) -> None:
    """The student must tokenize exactly like the teacher (it uses the teacher's tokenizer):
    raise when the student's `model.vocab_size`, `model.lowercase` or `model.tokenizer` say
    otherwise."""
    where = {"path": teacher.run_dir}
    size, configured = len(teacher.tokenizer), int(teacher.config.vocab_size)
    if vocab_size not in (size, configured):
        raise RefbenchError(f"the student's model.vocab_size {vocab_size} contradicts the "
                            f"teacher's tokenizer ({size} tokens); a distilled student uses the "
                            f"teacher's tokenizer, so set model.vocab_size={size}",
                            key="model.vocab_size", **where)
    if bool(lowercase) != bool(teacher.config.lowercase):
        raise RefbenchError(f"the student's model.lowercase={lowercase} contradicts the teacher's "
                            f"lowercase={teacher.config.lowercase}", key="model.lowercase", **where)
    if tokenizer is not None:
        from transformers import AutoTokenizer

        if _vocab_of(AutoTokenizer.from_pretrained(tokenizer)) != _vocab_of(teacher.tokenizer):
            raise RefbenchError(f"model.tokenizer {tokenizer!r} differs from the teacher's "
                                f"tokenizer; leave model.tokenizer unset to use the teacher's",
                                key="model.tokenizer", **where)


def install_teacher_tokenizer(teacher: BertTeacher, tok_dir: Path) -> None:
    """Copy the teacher's tokenizer folder to `tok_dir` (atomically), or check that the one
    already there (a resumed run) is the teacher's."""
    from transformers import AutoTokenizer

    from refbench.io import atomic_dir_replace

    tok_dir = Path(tok_dir)
    if tok_dir.exists():
        if _vocab_of(AutoTokenizer.from_pretrained(str(tok_dir))) != _vocab_of(teacher.tokenizer):
            raise RefbenchError("the run folder's tokenizer differs from the teacher's; use a new "
                                "run folder (--name) to distil from this teacher", path=tok_dir)
        return
    source = None if teacher.run_dir is None else teacher.run_dir / "tokenizer"
    tok_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{tok_dir.name}.", dir=tok_dir.parent))
    try:
        if source is not None and source.is_dir():
            shutil.rmtree(tmp)
            shutil.copytree(source, tmp)
        else:
            teacher.tokenizer.save_pretrained(str(tmp))
        atomic_dir_replace(tmp, tok_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
