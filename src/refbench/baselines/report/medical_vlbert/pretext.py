"""The two procedures' losses: knowledge pretraining (masked language modelling on medical
text) and transfer (image-conditioned report generation + terminology prediction).

- Knowledge: BERT's masking of report text without an image (`[CLS] [SEP] w1 .. wn
  [SEP]`, bidirectional attention): each word (not `[CLS]`, `[SEP]`, padding) is chosen
  with probability `mlm_probability` (0.15); a chosen word becomes `[MASK]` 80% of the
  time, a random vocabulary token 10% and stays 10%; cross-entropy on the chosen words.
  The text is the batch's own training reports, or `knowledge_corpus` texts drawn at
  random (the paper memorises "medical texts"; a user may bring more than the reports).
- Transfer: teacher-forced generation under the sequence-to-sequence mask, each word
  predicting the next (`[SEP]` ends the report), cross-entropy averaged over the
  report's predicted tokens; plus `term_weight` x the terminology head's binary
  cross-entropy over the training split's terms (mean over studies and terms).

Masks and corpus draws come from torch's global generator inside the training step, so
the runner's seeding and exact resume cover them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.baselines.report.medical_vlbert.model import MedicalVLBERT

IGNORE = -100


@dataclass(frozen=True)
class TokenIds:
    """The tokenizer ids the losses and generation need."""

    pad: int
    cls: int
    sep: int
    mask: int
    unk: int
    vocab_size: int

    @property
    def special(self) -> tuple[int, ...]:
        return (self.pad, self.cls, self.sep, self.mask, self.unk)


def report_ids(tokens: Sequence[int], ids: TokenIds, max_length: int) -> list[int]:
    """`[SEP] tokens [SEP]`, the tokens cut so the whole fits `max_length`."""
    return [ids.sep, *list(tokens)[:max_length - 2], ids.sep]


def pad_reports(reports: Sequence[Sequence[int]], pad: int) -> tuple[Tensor, Tensor]:
    """Right-padded `input_ids (B, T)` and `text_mask (B, T)`."""
    width = max(1, max(len(r) for r in reports))
    input_ids = torch.full((len(reports), width), pad, dtype=torch.long)
    mask = torch.zeros((len(reports), width), dtype=torch.long)
    for i, r in enumerate(reports):
        input_ids[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[i, :len(r)] = 1
    return input_ids, mask


def mask_tokens(input_ids: Tensor, text_mask: Tensor, ids: TokenIds,
                probability: float) -> tuple[Tensor, Tensor]:
    """BERT masking of report words -> (masked input ids, labels with -100 elsewhere)."""
    candidates = text_mask.bool()
    for special in ids.special:
        candidates &= input_ids != special
    chosen = candidates & (torch.rand(input_ids.shape, device=input_ids.device) < probability)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    how = torch.rand(input_ids.shape, device=input_ids.device)
    masked = torch.where(chosen & (how < 0.8), torch.full_like(input_ids, ids.mask), input_ids)
    random_ids = torch.randint(0, ids.vocab_size, input_ids.shape, device=input_ids.device)
    return torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, masked), labels


def knowledge_loss(model: MedicalVLBERT, input_ids: Tensor, text_mask: Tensor,
                   ids: TokenIds) -> dict[str, Tensor]:
    """Masked language modelling on text alone (0 when no word was chosen)."""
    masked, labels = mask_tokens(input_ids, text_mask, ids, model.cfg.mlm_probability)
    _, text = model.encode(masked, text_mask, None, causal=False)
    chosen = labels != IGNORE
    logits = model.lm_logits(text[chosen]).float()
    mlm = F.cross_entropy(logits, labels[chosen], reduction="sum") / chosen.sum().clamp(min=1)
    return {"loss": mlm, "mlm": mlm.detach()}


def transfer_loss(model: MedicalVLBERT, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Next-word cross-entropy given the images, plus the weighted terminology loss."""
    visual = model.embed_images(batch["images"], batch["image_mask"])
    input_ids, text_mask = batch["input_ids"], batch["text_mask"]
    source, text = model.encode(input_ids, text_mask, visual, causal=True)
    targets = input_ids[:, 1:].masked_fill(text_mask[:, 1:] == 0, IGNORE)
    logits = model.lm_logits(text[:, :-1]).float()
    generation = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    out = {"generation": generation.detach()}
    loss = generation
    if model.num_terms:
        term_logits = model.terms(source, visual.mask).logits.float()
        terms = F.binary_cross_entropy_with_logits(term_logits, batch["term_targets"].float())
        out["terms"] = terms.detach()
        loss = loss + model.cfg.term_weight * terms
    out["loss"] = loss
    return out


class KnowledgeCorpus:
    """Tokenised medical texts that knowledge steps draw batches from (with replacement,
    from torch's global generator)."""

    def __init__(self, texts: Sequence[Sequence[int]]) -> None:
        self.texts = [list(t) for t in texts if len(t) > 2]
        if not self.texts:
            raise ValueError("the knowledge corpus holds no text")

    def __len__(self) -> int:
        return len(self.texts)

    def draw(self, n: int, pad: int, device: torch.device) -> tuple[Tensor, Tensor]:
        picks = torch.randint(0, len(self.texts), (n,)).tolist()
        input_ids, mask = pad_reports([self.texts[i] for i in picks], pad)
        return input_ids.to(device), mask.to(device)
