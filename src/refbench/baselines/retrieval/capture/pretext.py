"""CAPTURE's pretext tasks on a batch: masked language modelling (MLM), masked region
modelling by feature regression (MRM) and the cross-modal contrastive loss (CLR).

Masking follows the official data loader (`dataloaders/pretrain_dataset_IT.py`):

- MLM: each title token (not [CLS], [SEP] or padding) is chosen with probability 0.15;
  a chosen token becomes [MASK] 80% of the time, a random vocabulary token 10% and stays
  10%; the loss is cross-entropy on the chosen tokens;
- MRM (`--predict_feature`): each real region is chosen with probability 0.15 and its
  feature zeroed 90% of the time; the head regresses the *original* 2048-d feature and the
  loss is the squared error averaged over the chosen regions' elements. The global region
  is computed from the masked features, as the official loader does.

Masks are drawn on the batch's device from torch's global generator, inside the training
step, so the runner's seeding and exact resume cover them and predictions never see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.baselines.retrieval.capture.model import CaptureModel
from refbench.baselines.retrieval.embedding import nt_xent_loss

IGNORE = -100


@dataclass(frozen=True)
class TokenIds:
    """The tokenizer ids masking needs."""

    mask: int
    vocab_size: int
    special: tuple[int, ...]


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, ids: TokenIds,
                probability: float) -> tuple[Tensor, Tensor]:
    """BERT masking of title tokens -> (masked input ids, labels with -100 elsewhere)."""
    candidates = attention_mask.bool()
    for special in ids.special:
        candidates &= input_ids != special
    draw = torch.rand(input_ids.shape, device=input_ids.device)
    chosen = candidates & (draw < probability)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    how = torch.rand(input_ids.shape, device=input_ids.device)
    masked = torch.where(chosen & (how < 0.8), torch.full_like(input_ids, ids.mask), input_ids)
    random_ids = torch.randint(0, ids.vocab_size, input_ids.shape, device=input_ids.device)
    masked = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, masked)
    return masked, labels


def mask_regions(regions: Tensor, region_mask: Tensor, probability: float) -> tuple[Tensor, Tensor]:
    """Choose real regions with `probability`, zero 90% of the chosen -> (features, chosen)."""
    draw = torch.rand(region_mask.shape, device=regions.device)
    chosen = region_mask.bool() & (draw < probability)
    how = torch.rand(region_mask.shape, device=regions.device)
    zeroed = chosen & (how < 0.9)
    return regions.masked_fill(zeroed[..., None], 0.0), chosen


def mlm_loss(model: CaptureModel, text: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy on the chosen tokens only (0 when none was chosen)."""
    chosen = labels != IGNORE
    logits = model.mlm_head(text[chosen]).float()
    total = F.cross_entropy(logits, labels[chosen], reduction="sum")
    return total / chosen.sum().clamp(min=1)


def mrm_loss(model: CaptureModel, visual: Tensor, targets: Tensor, chosen: Tensor) -> Tensor:
    """Mean squared error over the chosen regions' feature elements (0 when none)."""
    predicted = model.mrm_head(visual[:, 1:][chosen]).float()  # drop the global region
    total = F.mse_loss(predicted, targets[chosen].float(), reduction="sum")
    return total / (chosen.sum() * targets.size(-1)).clamp(min=1)


def pretext_losses(model: CaptureModel, batch: Mapping[str, Tensor], ids: TokenIds) -> dict[str, Tensor]:
    """Mask the batch, run the network once and return each task's loss and the weighted
    sum `loss` (weights from the model's config). Every task is computed even at weight 0,
    as the official script multiplies a switched-off loss by 0: each head stays in the
    graph, which DDP requires."""
    cfg = model.cfg
    input_ids, labels = mask_tokens(batch["input_ids"], batch["attention_mask"], ids,
                                    cfg.mlm_probability)
    regions, chosen = mask_regions(batch["regions"], batch["region_mask"], cfg.mrm_probability)
    out = model(input_ids, batch["token_type_ids"], batch["attention_mask"], regions,
                batch["locations"], batch["region_mask"])
    losses = {"mlm": mlm_loss(model, out.text, labels),
              "mrm": mrm_loss(model, out.visual, batch["regions"], chosen),
              "clr": nt_xent_loss(out.clr_visual, out.clr_text, cfg.temperature)}
    losses["loss"] = cfg.mlm_weight * losses["mlm"] + cfg.mrm_weight * losses["mrm"] + \
        cfg.clr_weight * losses["clr"]
    return losses
