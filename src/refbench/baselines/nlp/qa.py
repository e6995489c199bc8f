"""Extractive question answering around any encoder: SQuAD-style windows in, answer text out.

Pre-processing follows the original BERT `run_squad`: the question is cut to
`max_query_length` tokens, the context tokens are split into windows that fill
`max_length` and whose starts are `doc_stride` tokens apart, and a training window whose
answer is not fully inside it points at [CLS] (index 0), as do unanswerable (SQuAD v2.0)
questions. Post-processing takes the `n_best` start and end logits of every window, keeps
spans inside the context, at most `max_answer_length` tokens long and starting at a token
for which this window gives the most context (BERT's `_check_is_max_context`), scores a
span by start + end logit, and for v2.0
answers "" when the best null score ([CLS] start + end, minimum over windows) beats the
best span by more than `null_threshold`. The answer text is cut from the original context
by character offsets, so it keeps the context's own spelling and spacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from refbench.baselines.base import pad_token_batch
from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets


@dataclass
class QAConfig:
    """Window and decoding settings (the BERT SQuAD defaults)."""

    max_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0


def doc_spans(n_tokens: int, max_tokens: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of each window over `n_tokens` context tokens: windows of at most
    `max_tokens` whose starts are `doc_stride` apart (BERT's `run_squad` stride semantics:
    the step between window starts, not the overlap)."""
    spans, start = [], 0
    while start < n_tokens:
        length = min(n_tokens - start, max_tokens)
        spans.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, doc_stride)
    return spans or [(0, 0)]


def max_context_flags(spans: list[tuple[int, int]], index: int) -> list[bool]:
    """For each token of span `index`: is this the span where the token has the most
    context (min of left and right context, plus 0.01 x span length; BERT's rule)?"""
    start, length = spans[index]
    flags = []
    for position in range(start, start + length):
        best, best_index = -1.0, -1
        for other, (s, n) in enumerate(spans):
            if s <= position < s + n:
                score = min(position - s, s + n - 1 - position) + 0.01 * n
                if score > best:
                    best, best_index = score, other
        flags.append(best_index == index)
    return flags


def encode_squad(tokenizer: Any, rows: "hf_datasets.Dataset", cfg: QAConfig) -> list[dict[str, Any]]:
    """Rows (id, question, context, answers, is_impossible) -> window features
    `[CLS] question [SEP] context-window [SEP]`."""
    questions = [q.lstrip() for q in rows["question"]]
    contexts = list(rows["context"])
    q_enc = tokenizer(questions, add_special_tokens=False)
    c_enc = tokenizer(contexts, add_special_tokens=False, return_offsets_mapping=True)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    answers = list(rows["answers"])
    impossible = list(rows["is_impossible"])
    features = []
    for example, (q_ids, c_ids, c_offsets) in enumerate(zip(q_enc["input_ids"], c_enc["input_ids"],
                                                           c_enc["offset_mapping"])):
        q_ids = q_ids[:cfg.max_query_length]
        max_tokens = cfg.max_length - len(q_ids) - 3
        if max_tokens <= 0:
            raise RefbenchError(f"max_length {cfg.max_length} leaves no room for the context "
                                f"after a {len(q_ids)}-token question", key="model.max_length")
        gold = answers[example]
        tok_start = tok_end = None
        if not impossible[example] and gold["text"]:
            char_start = gold["answer_start"][0]
            char_end = char_start + len(gold["text"][0])
            covering = [k for k, (a, b) in enumerate(c_offsets) if a < char_end and b > char_start]
            if covering:
                tok_start, tok_end = covering[0], covering[-1]
        spans = doc_spans(len(c_ids), max_tokens, cfg.doc_stride)
        prefix = 2 + len(q_ids)  # [CLS] question [SEP]
        for index, (start, length) in enumerate(spans):
            ids = [cls_id, *q_ids, sep_id, *c_ids[start:start + length], sep_id]
            types = [0] * prefix + [1] * (length + 1)
            offsets: list[tuple[int, int] | None] = [None] * prefix + \
                [tuple(o) for o in c_offsets[start:start + length]] + [None]
            max_context = [False] * prefix + max_context_flags(spans, index) + [False]
            s_pos = e_pos = 0
            if tok_start is not None and tok_start >= start and tok_end < start + length:
                s_pos, e_pos = prefix + tok_start - start, prefix + tok_end - start
            features.append({"input_ids": ids, "token_type_ids": types, "start_position": s_pos,
                             "end_position": e_pos, "example_index": example,
                             "offsets": offsets, "max_context": max_context})
    return features


def collate_qa(features: Sequence[Mapping[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    return {**pad_token_batch(features, pad_id),
            "start_positions": torch.tensor([f["start_position"] for f in features]),
            "end_positions": torch.tensor([f["end_position"] for f in features]),
            "feature_index": torch.tensor([f.get("feature_index", -1) for f in features])}


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor,
              batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the start and end cross-entropies (the BERT SQuAD loss)."""
    ce = torch.nn.functional.cross_entropy
    return (ce(start_logits, batch["start_positions"]) + ce(end_logits, batch["end_positions"])) / 2


def _top(values: Sequence[float], n: int) -> list[int]:
    return sorted(range(len(values)), key=lambda k: values[k], reverse=True)[:n]


def postprocess(rows: "hf_datasets.Dataset", features: Sequence[Mapping[str, Any]],
                logits: Mapping[int, tuple[list[float], list[float]]], cfg: QAConfig,
                version2: bool) -> dict[str, dict[str, Any]]:
    """Per-window start/end logits -> `{question_id: {"text", "na_prob"}}`.

    `na_prob` is the sigmoid of (null score - best span score): a monotone score the
    official v2.0 script's `--na-prob-file` and best-threshold search can use.
    """
    by_example: dict[int, list[int]] = {}
    for index, feature in enumerate(features):
        by_example.setdefault(feature["example_index"], []).append(index)
    ids, contexts = list(rows["id"]), list(rows["context"])
    out: dict[str, dict[str, Any]] = {}
    for example, indices in by_example.items():
        best_score, best_text = -math.inf, ""
        null_score = math.inf
        for index in indices:
            if index not in logits:
                continue
            starts, ends = logits[index]
            offsets = features[index]["offsets"]
            max_context = features[index].get("max_context") or [True] * len(offsets)
            null_score = min(null_score, starts[0] + ends[0])
            for s in _top(starts, cfg.n_best):
                for e in _top(ends, cfg.n_best):
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None \
                            or offsets[e] is None or e < s or e - s + 1 > cfg.max_answer_length \
                            or not max_context[s]:
                        continue
                    score = starts[s] + ends[e]
                    if score > best_score:
                        best_score = score
                        best_text = contexts[example][offsets[s][0]:offsets[e][1]]
        diff = null_score - best_score if best_score > -math.inf else math.inf
        na_prob = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, diff))))
        text = "" if version2 and diff > cfg.null_threshold else best_text
        out[ids[example]] = {"text": text, "na_prob": na_prob if version2 else None}
    return out
