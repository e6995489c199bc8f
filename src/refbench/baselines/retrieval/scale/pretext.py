"""SCALE's pretext tasks: the self-harmonized inter-modal contrastive loss (SIMCL) and the
masked modelling of every modality (MLM, MEM, MRM, MFM, MAM).

As the official code computes them (`model/SCALE.py`: `BertEncoder.forward`,
`graph_construct_per_sample`, `info_nce_loss`, `BertForMultiModalPreTraining.forward`;
masking in `dataloaders/pretrain_dataset_ITP3VA.py`):

- **harmonized graph**: per item, the cosine similarities `S` of its five modality
  features; `R = S * softmax(S)` row-wise, each row L2-normalised. `G[b, i, j]` is how much
  modality j agrees with modality i on item b. Not detached: the weights are learned with
  the features they weigh.
- **SIMCL**: for each of the 10 modality pairs (i, j), InfoNCE between the two views of
  the batch (CAPTURE's formulation: 2N anchors, positives the other view of the same
  item, temperature 0.07) whose logits on the rows of item b are multiplied by
  `G[b, i, j]` (an item-specific temperature: pairs that disagree pull less); the loss is
  the mean over pairs. The graph is built on the CLR pooler features of the encoders.
- **modality weights**: the diagonal of the graph built on the *fused* first tokens
  (B x 5) scales each item's predictions of that modality's masked task (MLM / MEM logits,
  MRM / MFM / MAM regressed features) before its loss, the official "self-harmonized"
  masked modelling. `harmonize: false` sets every weight to 1 (plain sum / mean).
- **masking** (probabilities 0.15): MLM as BERT (80% [MASK], 10% random, 10% kept); MEM
  picks property pairs and replaces every token of the pair's key or (coin flip) value
  by [MASK]; MRM zeroes 90% of the picked regions; MFM and MAM zero every picked frame /
  audio row. The regression tasks' loss is the squared error averaged over the picked
  items' elements against the unmasked features; the global tokens are computed from the
  masked inputs, as the official loader does.

Missing modalities (refbench's `has_*` masks; the official code zero-fills them): an
absent modality is left out of the graph's softmax, and a pair's InfoNCE runs over the
items that have both modalities (skipped below two such items); the SIMCL loss is the
mean over the pairs that ran. Masked tasks only pick real tokens, so an absent stream
has nothing to predict.

Masks are drawn inside the training step from torch's global generator (the runner's
seeding and exact resume cover them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.baselines.retrieval.capture.pretext import IGNORE, TokenIds, mask_regions, mask_tokens
from refbench.baselines.retrieval.scale.model import MODALITIES, ScaleModel
from refbench.errors import RefbenchError

__all__ = ["IGNORE", "TokenIds", "harmonized_graph", "weighted_info_nce", "simcl_loss",
           "mask_entities", "mask_items", "pretext_losses"]


def harmonized_graph(features: Tensor, present: Tensor) -> Tensor:
    """`(B, M, D)` features, `(B, M)` presence -> `(B, M, M)` the row-normalised revised
    similarity `S * softmax(S)`; rows and columns of absent modalities are 0."""
    f = F.normalize(features.float(), dim=-1)
    sim = f @ f.transpose(1, 2)
    both = present[:, :, None] & present[:, None, :]
    weights = torch.softmax(sim.masked_fill(~both, -1e4), dim=-1)  # finite: no NaN gradient
    revised = torch.where(both, sim * weights, torch.zeros_like(sim))
    return F.normalize(revised, dim=-1)


def weighted_info_nce(first: Tensor, second: Tensor, weight: Tensor | None,
                      temperature: float) -> Tensor:
    """InfoNCE between two views `(N, D)`, each anchor's logits (cosine / temperature)
    multiplied by its item's `weight` `(N,)` (None: 1); averaged over the 2N anchors."""
    if first.shape != second.shape or first.dim() != 2 or first.size(0) < 2:
        raise RefbenchError(f"contrastive views must both be (N >= 2, D), got "
                            f"{tuple(first.shape)} and {tuple(second.shape)}")
    n = first.size(0)
    features = F.normalize(torch.cat([first, second]).float(), dim=1)
    logits = features @ features.T / temperature
    if weight is not None:
        logits = logits * torch.cat([weight, weight]).float()[:, None]
    eye = torch.eye(2 * n, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(eye, float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(logits.device)
    return F.cross_entropy(logits, partner)


def simcl_loss(pooled: Tensor, present: Tensor, temperature: float,
               harmonize: bool = True) -> Tensor:
    """The mean over modality pairs of the graph-weighted InfoNCE (see the module doc)."""
    graph = harmonized_graph(pooled, present) if harmonize else None
    total, pairs = pooled.sum() * 0.0, 0  # stays in the graph when no pair runs
    m = pooled.size(1)
    for i in range(m):
        for j in range(i + 1, m):
            both = present[:, i] & present[:, j]
            if int(both.sum()) < 2:
                continue
            weight = None if graph is None else graph[both, i, j]
            total = total + weighted_info_nce(pooled[both, i], pooled[both, j], weight, temperature)
            pairs += 1
    return total / max(pairs, 1)


def mask_entities(table_ids: Tensor, spans: Tensor, mask_id: int,
                  probability: float) -> tuple[Tensor, Tensor]:
    """MEM: pick property pairs with `probability`, mask every token of the key or of the
    value (even odds) -> (masked ids, labels with -100 elsewhere). `spans` numbers each
    token's part: 2p + 1 for pair p's key, 2p + 2 for its value, 0 for special / padding."""
    pair = ((spans - 1).clamp(min=0) // 2)
    part = (spans - 1).clamp(min=0) % 2
    count = int(pair.max()) + 1 if spans.numel() else 1
    picked = torch.rand(spans.size(0), count, device=spans.device) < probability
    which = (torch.rand(spans.size(0), count, device=spans.device) >= 0.5).long()
    chosen = (spans > 0) & picked.gather(1, pair) & (which.gather(1, pair) == part)
    labels = torch.where(chosen, table_ids, torch.full_like(table_ids, IGNORE))
    return table_ids.masked_fill(chosen, mask_id), labels


def mask_items(features: Tensor, mask: Tensor, probability: float) -> tuple[Tensor, Tensor]:
    """MFM / MAM: zero every picked real frame or audio row -> (features, picked)."""
    picked = mask.bool() & (torch.rand(mask.shape, device=features.device) < probability)
    return features.masked_fill(picked[..., None], 0.0), picked


def _cross_entropy(head: torch.nn.Module, states: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    """Cross-entropy of the (weighted) logits on the chosen tokens only (0 when none)."""
    chosen = labels != IGNORE
    scale = weight[:, None].expand(labels.shape)[chosen][:, None]
    logits = head(states[chosen]).float() * scale
    total = F.cross_entropy(logits, labels[chosen], reduction="sum")
    return total / chosen.sum().clamp(min=1)


def _regression(head: torch.nn.Module, states: Tensor, targets: Tensor, chosen: Tensor,
                weight: Tensor) -> Tensor:
    """Squared error of the (weighted) regressed features, averaged over the chosen
    items' elements (0 when none)."""
    scale = weight[:, None].expand(chosen.shape)[chosen][:, None]
    predicted = head(states[chosen]).float() * scale
    total = F.mse_loss(predicted, targets[chosen].float(), reduction="sum")
    return total / (chosen.sum() * targets.size(-1)).clamp(min=1)


@dataclass
class Masked:
    """A batch after masking, with what each task must predict."""

    batch: dict[str, Tensor]
    mlm: Tensor
    mem: Tensor
    regions: Tensor
    frames: Tensor
    rows: Tensor


def mask_batch(model: ScaleModel, batch: Mapping[str, Tensor], ids: TokenIds) -> Masked:
    """Draw every task's masks over one batch (nothing is changed in place)."""
    cfg = model.cfg
    out = dict(batch)
    out["input_ids"], mlm = mask_tokens(batch["input_ids"], batch["attention_mask"], ids,
                                        cfg.mlm_probability)
    out["table_ids"], mem = mask_entities(batch["table_ids"], batch["table_spans"], ids.mask,
                                          cfg.mem_probability)
    out["regions"], regions = mask_regions(batch["regions"], batch["region_mask"],
                                           cfg.mrm_probability)
    out["video"], frames = mask_items(batch["video"], batch["video_mask"], cfg.mfm_probability)
    out["audio"], rows = mask_items(batch["audio"], batch["audio_mask"], cfg.mam_probability)
    return Masked(out, mlm, mem, regions, frames, rows)


def pretext_losses(model: ScaleModel, batch: Mapping[str, Tensor], ids: TokenIds) -> dict[str, Tensor]:
    """Mask the batch, run the network once and return each task's loss and the weighted
    sum `loss`. Every task is computed even at weight 0 (each head stays in the graph, as
    DDP needs; the official script multiplies a switched-off loss by 0)."""
    cfg = model.cfg
    masked = mask_batch(model, batch, ids)
    out = model(masked.batch)
    if cfg.harmonize:
        weights = torch.diagonal(harmonized_graph(out.fused, out.present), dim1=1, dim2=2)
    else:
        weights = torch.ones(out.fused.shape[:2], device=out.fused.device)
    w = {m: weights[:, k] for k, m in enumerate(MODALITIES)}
    seq = out.fused_sequences if cfg.heads_on == "fusion" else out.encoded
    losses = {
        "mlm": _cross_entropy(model.mlm_head, seq["title"], masked.mlm, w["title"]),
        "mem": _cross_entropy(model.mlm_head, seq["table"], masked.mem, w["table"]),
        "mrm": _regression(model.mrm_head, seq["image"][:, 1:], batch["regions"],
                           masked.regions, w["image"]),
        "mfm": _regression(model.mfm_head, seq["video"][:, 1:], batch["video"],
                           masked.frames, w["video"]),
        "mam": _regression(model.mam_head, seq["audio"][:, 1:], batch["audio"],
                           masked.rows, w["audio"]),
        "clr": simcl_loss(out.pooled, out.present, cfg.temperature, cfg.harmonize),
    }
    losses["loss"] = sum(getattr(cfg, f"{k}_weight") * v for k, v in list(losses.items()))
    return losses
