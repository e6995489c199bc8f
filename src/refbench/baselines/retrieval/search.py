"""Embedding a split and ranking a gallery for each query by exact inner-product search.

A retrieval model's predictions are ranked lists of gallery ids (`{query_id: [id, ...]}`,
the Product1M `retrieval_id_list.txt`). The model embeds the queries batch by batch in
`predict` (the runner moves those batches); the gallery is not a scored split, so the
model embeds it itself with `embed_features`, which puts every batch on the model's
device, and ranks it with `rank_gallery`: an exact search (every gallery item is scored)
through the search all retrieval families share, so rankings do not depend on the model.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from refbench.engine.device import model_device, to_device
from refbench.errors import RefbenchError
from refbench.evaluation.retrieval import exact_search


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
