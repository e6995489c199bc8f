"""Cross-modal contrastive loss (InfoNCE over the batch), as CAPTURE's CLR pretext task uses it.

The official `info_nce_loss` (CAPTURE `model/capture_IT.py`, after SimCLR) stacks the two
views of a batch of N items, e.g. pooled visual and pooled text features, into 2N
L2-normalised vectors; each vector's positive is the other view of the same item and its
negatives are the other 2N - 2 vectors, *both* modalities (the self-similarity is
dropped); logits are cosine similarities over a temperature (0.07) and the loss is the
cross-entropy of picking the positive, averaged over all 2N anchors. Cross-entropy does
not depend on the order of the candidates, so masking the diagonal of the 2N x 2N
similarity matrix and pointing each row at its partner gives the same value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.errors import RefbenchError


def nt_xent_loss(first: Tensor, second: Tensor, temperature: float = 0.07) -> Tensor:
    """InfoNCE (NT-Xent) between two views `(N, D)` of the same N items; a scalar.

    Row i of `first` and row i of `second` are a positive pair; every other row of either
    view is a negative. Needs N >= 2 (one item has no negative)."""
    if first.shape != second.shape or first.dim() != 2:
        raise RefbenchError(f"contrastive views must both be (N, D), got {tuple(first.shape)} "
                            f"and {tuple(second.shape)}")
    if temperature <= 0:
        raise RefbenchError(f"temperature must be positive, got {temperature}", key="temperature")
    n = first.size(0)
    features = F.normalize(torch.cat([first, second], dim=0).float(), dim=1)
    logits = features @ features.T / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(eye, float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(logits.device)
    return F.cross_entropy(logits, partner)

