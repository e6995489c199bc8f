"""Losses of the OpenPCDet (v0.3) anchor and R-CNN heads, re-derived for refbench.

All losses return UNREDUCED, per-anchor (or per-code) values already multiplied by the
caller's weights: the heads normalise (by the number of positives) through those weights
and then sum, which is what fixes the relative scale of the classification, box and
direction terms in the official configs.

- `SigmoidFocalClassificationLoss`: RetinaNet focal loss on sigmoid logits,
  alpha_t * (1 - p_t)^gamma * BCE, with the numerically stable BCE-with-logits
  max(x, 0) - x z + log(1 + exp(-|x|)).
- `WeightedSmoothL1Loss`: smooth-L1 with change point `beta` (L1 when beta < 1e-5), per-code
  weights applied to the DIFFERENCE before the smooth-L1, NaN targets ignored.
- `WeightedCrossEntropyLoss`: softmax cross-entropy over bins (the direction classifier)
  from one-hot targets.
- `add_sin_difference`: replaces the heading codes a, b by sin(a)cos(b) and cos(a)sin(b), so
  their difference is sin(a - b) and a box turned by pi is not penalised (the direction
  classifier resolves that ambiguity).
- `get_corner_loss_lidar`: mean over the 8 corners of smooth-L1 (delta 1) of the distance to
  the matching gt corner, the gt taken as it is or turned by pi, whichever is nearer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from refbench.baselines.det3d.boxes import boxes_to_corners_3d

__all__ = [
    "SigmoidFocalClassificationLoss",
    "WeightedCrossEntropyLoss",
    "WeightedSmoothL1Loss",
    "add_sin_difference",
    "get_corner_loss_lidar",
    "smooth_l1",
]


def smooth_l1(diff: torch.Tensor, beta: float) -> torch.Tensor:
    """Element-wise smooth-L1 of `diff`: 0.5 x^2 / beta below beta, |x| - beta / 2 above
    (plain |x| when beta < 1e-5, where the quadratic part would divide by ~0)."""
    n = diff.abs()
    if beta < 1e-5:
        return n
    return torch.where(n < beta, 0.5 * n * n / beta, n - 0.5 * beta)


class SigmoidFocalClassificationLoss(nn.Module):
    """Sigmoid focal loss with anchor-wise weights (no reduction).

    Focal weighting lets the dense anchor classifier train on every anchor at once: the
    huge number of easy negatives gets a (p)^gamma factor close to 0.
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    @staticmethod
    def sigmoid_cross_entropy_with_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy on logits, stable for large |logits|."""
        return torch.clamp(logits, min=0) - logits * target + torch.log1p(torch.exp(-logits.abs()))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, A, C) (target one-hot, background excluded); weights: (B, A)
        (or (A,) for 2-D inputs, or the loss's own shape). Returns (B, A, C) weighted losses."""
        p = torch.sigmoid(logits)
        alpha_t = target * self.alpha + (1.0 - target) * (1.0 - self.alpha)
        pt = target * (1.0 - p) + (1.0 - target) * p
        loss = alpha_t * pt.pow(self.gamma) * self.sigmoid_cross_entropy_with_logits(logits, target)
        if weights.dim() == loss.dim() - 1:
            weights = weights.unsqueeze(-1)
        if weights.dim() != loss.dim():
            raise ValueError(f"focal loss weights of shape {tuple(weights.shape)} do not fit "
                             f"the loss of shape {tuple(loss.shape)}")
        return loss * weights


class WeightedSmoothL1Loss(nn.Module):
    """Code-wise and anchor-wise weighted smooth-L1 (no reduction).

    `code_weights` is a buffer so it follows the module to the input's device.
    """

    code_weights: torch.Tensor | None

    def __init__(self, beta: float = 1.0 / 9.0, code_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.beta = float(beta)
        if code_weights is None:
            self.code_weights = None
        else:
            self.register_buffer("code_weights", torch.tensor([float(w) for w in code_weights],
                                                              dtype=torch.float32), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        """pred, target: (B, A, K); weights: (B, A) or None. Returns (B, A, K)."""
        target = torch.where(torch.isnan(target), pred, target)  # NaN targets: no loss
        diff = pred - target
        if self.code_weights is not None:
            diff = diff * self.code_weights.to(diff.dtype).view(*([1] * (diff.dim() - 1)), -1)
        loss = smooth_l1(diff, self.beta)
        if weights is not None:
            if tuple(weights.shape) != tuple(loss.shape[:-1]):
                raise ValueError(f"smooth-L1 weights of shape {tuple(weights.shape)} do not fit "
                                 f"the loss of shape {tuple(loss.shape)}")
            loss = loss * weights.unsqueeze(-1)
        return loss


class WeightedCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy with one-hot targets and anchor-wise weights (no reduction)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, A, K) (target one-hot); weights: (B, A). Returns (B, A)."""
        labels = target.argmax(dim=-1)
        loss = F.cross_entropy(logits.permute(0, 2, 1), labels, reduction="none")
        return loss * weights


def add_sin_difference(boxes1: torch.Tensor, boxes2: torch.Tensor,
                       dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace code `dim` by sin(a)cos(b) in boxes1 and cos(a)sin(b) in boxes2, so that the
    regression loss on their difference sees sin(a - b): headings that differ by pi match."""
    if dim < 0:
        raise ValueError("add_sin_difference needs a non-negative code index")
    a = boxes1[..., dim:dim + 1]
    b = boxes2[..., dim:dim + 1]
    enc1 = torch.sin(a) * torch.cos(b)
    enc2 = torch.cos(a) * torch.sin(b)
    boxes1 = torch.cat([boxes1[..., :dim], enc1, boxes1[..., dim + 1:]], dim=-1)
    boxes2 = torch.cat([boxes2[..., :dim], enc2, boxes2[..., dim + 1:]], dim=-1)
    return boxes1, boxes2


def get_corner_loss_lidar(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """(N, 7) predicted and gt boxes -> (N,) corner loss: mean over corners of smooth-L1
    (delta 1) of min(|pred - gt corner|, |pred - corner of gt turned by pi|), so a box
    facing backwards is not penalised beyond what the heading ambiguity allows."""
    if pred_boxes.shape[0] != gt_boxes.shape[0]:
        raise ValueError("corner loss needs as many predicted as gt boxes")
    pred_c = boxes_to_corners_3d(pred_boxes)
    gt_c = boxes_to_corners_3d(gt_boxes)
    flipped = gt_boxes.clone()
    flipped[:, 6] = flipped[:, 6] + math.pi
    gt_fc = boxes_to_corners_3d(flipped)
    dist = torch.minimum(torch.linalg.norm(pred_c - gt_c, dim=2), torch.linalg.norm(pred_c - gt_fc, dim=2))
    return smooth_l1(dist, 1.0).mean(dim=1)
