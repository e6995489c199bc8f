"""Extractive question answering around any encoder: SQuAD-style windows in, answer text out.

Pre-processing follows the original BERT SQuAD recipe: the question is cut to
`max_query_length` tokens, the context is split into windows of `max_length` tokens that
overlap by `doc_stride`, and a training window whose answer is not fully inside it points
at [CLS] (index 0), as do unanswerable (SQuAD v2.0) questions. Post-processing takes the
`n_best` start and end logits of every window, keeps spans inside the context that are
at most `max_answer_length` tokens long, scores a span by start + end logit, and for v2.0
answers "" when the best null score ([CLS] start + end, minimum over windows) beats the
best span by more than `null_threshold`. The answer text is cut from the original context
by character offsets, so it keeps the context's own spelling and spacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

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


def _cut_question(tokenizer: Any, questions: list[str], max_query_length: int) -> list[str]:
    """Questions longer than `max_query_length` tokens are cut at that token's end offset."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for text, offsets in zip(questions, enc["offset_mapping"]):
        out.append(text if len(offsets) <= max_query_length
                   else text[:offsets[max_query_length - 1][1]])
    return out


def encode_squad(tokenizer: Any, rows: "hf_datasets.Dataset", cfg: QAConfig) -> list[dict[str, Any]]:
    """Rows (id, question, context, answers, is_impossible) -> window features."""
    questions = _cut_question(tokenizer, [q.lstrip() for q in rows["question"]],
                              cfg.max_query_length)
    contexts = list(rows["context"])
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=cfg.max_length,
                    stride=cfg.doc_stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True, padding=False)
    answers = list(rows["answers"])
    impossible = list(rows["is_impossible"])
    features = []
    for i, example in enumerate(enc["overflow_to_sample_mapping"]):
        offsets = enc["offset_mapping"][i]
        sequence_ids = enc.sequence_ids(i)
        context_offsets = [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence_ids)]
        start = end = 0
        gold = answers[example]
        if not impossible[example] and gold["text"]:
            char_start = gold["answer_start"][0]
            char_end = char_start + len(gold["text"][0])
            inside = [k for k, o in enumerate(context_offsets) if o is not None]
            if inside and context_offsets[inside[0]][0] <= char_start \
                    and context_offsets[inside[-1]][1] >= char_end:
                start = next(k for k in inside if context_offsets[k][1] > char_start)
                end = next(k for k in reversed(inside) if context_offsets[k][0] < char_end)
        features.append({"input_ids": enc["input_ids"][i],
                         "token_type_ids": enc["token_type_ids"][i],
                         "start_position": start, "end_position": end,
                         "example_index": example, "offsets": context_offsets})
    return features


def collate_qa(features: Sequence[Mapping[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in features)
    n = len(features)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((n, width), dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    for i, f in enumerate(features):
        length = len(f["input_ids"])
        input_ids[i, :length] = torch.tensor(f["input_ids"])
        token_type_ids[i, :length] = torch.tensor(f["token_type_ids"])
        attention_mask[i, :length] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
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
            null_score = min(null_score, starts[0] + ends[0])
            for s in _top(starts, cfg.n_best):
                for e in _top(ends, cfg.n_best):
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None \
                            or offsets[e] is None or e < s or e - s + 1 > cfg.max_answer_length:
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
