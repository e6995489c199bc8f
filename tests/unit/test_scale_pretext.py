"""SCALE's pretext pieces against the official formulas: the self-harmonized graph and the
weighted InfoNCE (`model/SCALE.py` re-stated below), missing modalities in the pairs, the
table token layout of the official loaders, and entity / frame / audio masking."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from refbench.baselines.retrieval.scale.inputs import table_tokens
from refbench.baselines.retrieval.scale.pretext import (IGNORE, harmonized_graph, mask_entities,
                                                       mask_items, simcl_loss, weighted_info_nce)
from refbench.errors import RefbenchError

# -- the self-harmonized contrastive loss ---------------------------------------------------
def official_graph(features: torch.Tensor) -> torch.Tensor:
    """`graph_construct_per_sample`: per item, cosine similarities, times their row
    softmax, each row L2-normalised (every modality present)."""
    out = []
    for b in range(features.size(0)):
        group = features[b]
        sim = F.cosine_similarity(group[:, None], group[None], dim=2)
        out.append(F.normalize(sim * F.softmax(sim, dim=-1), dim=-1))
    return torch.stack(out)


def official_weighted_info_nce(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, t: float) -> torch.Tensor:
    """`info_nce_loss` (positives column first) with every row's logits times its item's
    pair weight, as `BertEncoder.forward` scales them."""
    n = a.size(0)
    labels = torch.cat([torch.arange(n), torch.arange(n)])
    same = labels[None, :] == labels[:, None]
    feats = F.normalize(torch.cat([a, b]), dim=1)
    sim = feats @ feats.T
    keep = ~torch.eye(2 * n, dtype=torch.bool)
    same, sim = same[keep].view(2 * n, -1), sim[keep].view(2 * n, -1)
    logits = torch.cat([sim[same].view(2 * n, -1), sim[~same].view(2 * n, -1)], 1) / t
    logits = torch.cat([w, w])[:, None] * logits
    return F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long))


def test_graph_and_simcl_equal_the_official_formulas() -> None:
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(6, 5, 8, generator=gen)
    everything = torch.ones(6, 5, dtype=torch.bool)
    graph = harmonized_graph(feats, everything)
    assert torch.allclose(graph, official_graph(feats), atol=1e-6)
    assert torch.allclose(graph.norm(dim=-1), torch.ones(6, 5), atol=1e-5)
    expected = sum(official_weighted_info_nce(feats[:, i], feats[:, j], graph[:, i, j], 0.07)
                   for i in range(5) for j in range(i + 1, 5)) / 10
    assert torch.allclose(simcl_loss(feats, everything, 0.07), expected, atol=1e-5)
    plain = sum(official_weighted_info_nce(feats[:, i], feats[:, j], torch.ones(6), 0.07)
                for i in range(5) for j in range(i + 1, 5)) / 10
    assert torch.allclose(simcl_loss(feats, everything, 0.07, harmonize=False), plain, atol=1e-5)


def test_absent_modalities_leave_the_graph_and_the_pairs() -> None:
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(4, 5, 8, generator=gen, requires_grad=True)
    present = torch.ones(4, 5, dtype=torch.bool)
    present[0, 3] = present[1, 3] = present[2, 3] = False  # video only on item 3
    present[:2, 4] = False  # audio only on items 2 and 3
    graph = harmonized_graph(feats, present)
    assert (graph[0, 3] == 0).all() and (graph[0, :, 3] == 0).all()
    # item 0's graph is the official one over its 3 present modalities
    keep = [0, 1, 2]
    assert torch.allclose(graph[0][keep][:, keep], official_graph(feats[:1, keep])[0], atol=1e-6)
    # pairs with video have one item: skipped; pairs with audio run over items 2-3
    expected = 0.0
    for i in range(5):
        for j in range(i + 1, 5):
            both = present[:, i] & present[:, j]
            if both.sum() >= 2:
                expected = expected + official_weighted_info_nce(
                    feats[both, i], feats[both, j], graph[both, i, j], 0.07)
    loss = simcl_loss(feats, present, 0.07)
    assert torch.allclose(loss, expected / 6, atol=1e-5)  # the 4 pairs with video are skipped
    loss.backward()
    assert torch.isfinite(feats.grad).all()
    with pytest.raises(RefbenchError):
        weighted_info_nce(feats[:1, 0], feats[:1, 1], None, 0.07)


# -- masking and the masked tasks -----------------------------------------------------------
def test_table_layout_is_the_official_loaders() -> None:
    class Tok:
        cls_token_id, sep_token_id = 2, 3

        def __call__(self, strings: list[str], add_special_tokens: bool) -> dict[str, Any]:
            return {"input_ids": [[10 + ord(c) % 50 for c in s] for s in strings]}

    ids, spans = table_tokens([["ab", "c"], []], [["d", "ef"], []], Tok(), 64)
    k = [10 + ord(c) % 50 for c in "abdcef"]
    assert ids[0] == [2, *k, 3] and spans[0] == [0, 1, 1, 2, 3, 4, 4, 0]
    assert ids[1] == [2, 3] and spans[1] == [0, 0]
    cut, cut_spans = table_tokens([["ab", "c"]], [["d", "ef"]], Tok(), 4)
    assert cut[0] == [2, *k[:3]] and cut_spans[0] == [0, 1, 1, 2]  # [SEP] cut, as there
    with pytest.raises(RefbenchError, match="2 keys but 1 values"):
        table_tokens([["a", "b"]], [["c"]], Tok(), 64)


def test_entity_masking_hides_a_whole_key_or_value() -> None:
    torch.manual_seed(0)
    spans = torch.tensor([[0, 1, 1, 2, 2, 2, 3, 4, 0, 0]]).repeat(4000, 1)
    ids = torch.arange(10, 20).repeat(4000, 1)
    masked, labels = mask_entities(ids, spans, mask_id=4, probability=0.15)
    chosen = labels != IGNORE
    assert torch.equal(masked[chosen], torch.full_like(masked[chosen], 4))
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    assert not chosen[:, [0, 8, 9]].any()
    for first, last in ((1, 2), (3, 5), (6, 6), (7, 7)):  # a span is masked whole or not at all
        part = chosen[:, first:last + 1]
        assert (part.all(1) | ~part.any(1)).all()
    key_p0, value_p0 = chosen[:, 1], chosen[:, 3]
    assert not (key_p0 & value_p0).any()  # a picked pair masks its key or its value
    assert 0.12 < (key_p0 | value_p0).float().mean() < 0.18  # pairs picked at 0.15
    assert 0.4 < key_p0.float().sum() / (key_p0 | value_p0).float().sum() < 0.6


def test_frame_and_audio_masking_zero_real_items_only() -> None:
    torch.manual_seed(0)
    mask = torch.ones(500, 13, dtype=torch.long)
    mask[:, 10:] = 0
    feats = torch.rand(500, 13, 6) + 0.1
    out, picked = mask_items(feats, mask, 0.15)
    assert not picked[:, 10:].any() and 0.12 < picked[:, :10].float().mean() < 0.18
    assert ((out == 0).all(-1) == picked).all()  # every picked item zeroed, nothing else
