"""Retrieval embeddings: how a model learns them across modalities and how it ranks with them.

Learning: the cross-modal contrastive loss (InfoNCE over the batch) of CAPTURE's CLR task.
The official `info_nce_loss` (CAPTURE `model/capture_IT.py`, after SimCLR) stacks the two
views of a batch of N items, e.g. pooled visual and pooled text features, into 2N
L2-normalised vectors; each vector's positive is the other view of the same item and its
negatives are the other 2N - 2 vectors, *both* modalities (the self-similarity is
dropped); logits are cosine similarities over a temperature (0.07) and the loss is the
cross-entropy of picking the positive, averaged over all 2N anchors. Cross-entropy does
not depend on the order of the candidates, so masking the diagonal of the 2N x 2N
similarity matrix and pointing each row at its partner gives the same value.

Ranking: predictions are ranked lists of gallery ids (`{query_id: [id, ...]}`, the
Product1M `retrieval_id_list.txt`). The model embeds the queries batch by batch in
`predict` (the runner moves those batches); the gallery is not a scored split, so the
model embeds it itself with `embed_features`, which puts every batch on the model's
device, and ranks it with `rank_gallery`: an exact search (every gallery item is scored)
through the search all retrieval families share, so rankings do not depend on the model.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.engine.device import model_device, to_device
from refbench.errors import RefbenchError
from refbench.evaluation.retrieval import exact_search


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


def embed_features(model: nn.Module, features: Sequence[Mapping[str, Any]],
                   collate: Callable[[Sequence[Mapping[str, Any]]], Mapping[str, Any]],
                   embed: Callable[[Mapping[str, Any]], Tensor], batch_size: int) -> Tensor:
    """`embed(batch)` over `features` in order, each batch moved to the model's device, in
    eval mode without autograd; returns `(N, D)` on that device (the mode is restored)."""
    if batch_size < 1:
        raise RefbenchError(f"batch size must be positive, got {batch_size}")
    device = model_device(model)
    chunks: list[Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(features), batch_size):
                batch = to_device(collate(features[start:start + batch_size]), device)
                chunks.append(embed(batch))
    finally:
        model.train(was_training)
    if not chunks:
        raise RefbenchError("nothing to embed: the split is empty")
    return torch.cat(chunks)


def rank_gallery(query_ids: Sequence[Any], queries: Tensor, gallery_ids: Sequence[Any],
                 gallery: Tensor, k: int = 100) -> dict[Any, list[Any]]:
    """`{query_id: [gallery ids, best first]}` with at most `k` ids per query, by exact
    inner-product search (`refbench.evaluation.retrieval.exact_search`, faiss's flat
    index: the search every retrieval family shares)."""
    if len(query_ids) != queries.size(0) or len(gallery_ids) != gallery.size(0):
        raise RefbenchError(f"{len(query_ids)} query ids for {queries.size(0)} embeddings, "
                            f"{len(gallery_ids)} gallery ids for {gallery.size(0)} embeddings")
    found = exact_search(queries.detach().float().cpu().numpy(),
                         gallery.detach().float().cpu().numpy(), k, similarity="ip")
    return {qid: list(ids) for qid, ids in zip(query_ids, found.ids([str(g) for g in gallery_ids]))}
