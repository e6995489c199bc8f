"""Report generation: greedy decoding and beam search with a length penalty.

Generation runs the encoder under the sequence-to-sequence mask on `[CLS] regions [SEP]`
plus the words written so far and asks the language head for the next word, until
`[SEP]` or `max_length` tokens (start and end included). `[PAD]`, `[CLS]`, `[MASK]` and
`[UNK]` are never written, and `[SEP]` not before `min_new_tokens` words, so every
generated report decodes to non-empty text. The whole prefix is re-encoded at each step
(no key/value cache): exact under the causal mask, and cheap at report lengths.

Beam search keeps `beam_size` hypotheses per study, expands them by the `2 x beam_size`
best continuations of the beam, moves those that end with `[SEP]` and rank among the
`beam_size` best (as fairseq does: a weak ending must not fill the list) to a finished list
scored by GNMT's length penalty, `log P(Y) / ((5 + |Y|) / 6) ** alpha` (alpha =
`length_penalty`; 0 compares raw log-probabilities, which favours short reports), and
stops a study once `beam_size` hypotheses are finished (hypotheses still open at
`max_length` are finished there). `beam_size: 1` is greedy decoding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from refbench.baselines.report.medical_vlbert.model import MedicalVLBERT, Visual
from refbench.baselines.report.medical_vlbert.pretext import TokenIds


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's `((5 + length) / 6) ** alpha` (length counts the written words and `[SEP]`)."""
    return ((5.0 + length) / 6.0) ** alpha


def next_logprobs(model: MedicalVLBERT, visual: Visual, prefix: Tensor, ids: TokenIds,
                  written: int, min_new_tokens: int) -> Tensor:
    """Log-probabilities `(N, V)` of the word after each prefix, banned words at -inf."""
    mask = torch.ones_like(prefix)
    _, text = model.encode(prefix, mask, visual, causal=True)
    logits = model.lm_logits(text[:, -1]).float()
    for banned in (ids.pad, ids.cls, ids.mask, ids.unk):
        logits[:, banned] = float("-inf")
    if written < min_new_tokens:
        logits[:, ids.sep] = float("-inf")
    return logits.log_softmax(-1)


@torch.no_grad()
def greedy(model: MedicalVLBERT, visual: Visual, ids: TokenIds, max_length: int,
           min_new_tokens: int = 1) -> list[list[int]]:
    """The most probable word at every step; the words of each study (no `[SEP]`)."""
    n = visual.elements.size(0)
    prefix = torch.full((n, 1), ids.sep, dtype=torch.long, device=visual.elements.device)
    done = torch.zeros(n, dtype=torch.bool, device=prefix.device)
    for written in range(max_length - 1):
        if bool(done.all()):
            break
        if written == max_length - 2:  # the last slot can only end the report
            word = torch.full((n,), ids.sep, dtype=torch.long, device=prefix.device)
        else:
            word = next_logprobs(model, visual, prefix, ids, written, min_new_tokens).argmax(-1)
        word = torch.where(done, torch.full_like(word, ids.pad), word)
        prefix = torch.cat([prefix, word[:, None]], dim=1)
        done |= word == ids.sep
    out = []
    for row in prefix[:, 1:].tolist():
        out.append([w for w in row[:row.index(ids.sep)] if w != ids.pad] if ids.sep in row
                   else [w for w in row if w != ids.pad])
    return out


@torch.no_grad()
def beam_search(model: MedicalVLBERT, visual: Visual, ids: TokenIds, max_length: int,
                beam_size: int, alpha: float, min_new_tokens: int = 1) -> list[list[int]]:
    """The best finished hypothesis of each study by length-penalised log-probability."""
    if beam_size == 1:
        return greedy(model, visual, ids, max_length, min_new_tokens)
    n, device = visual.elements.size(0), visual.elements.device
    # every study starts with one live hypothesis: the start token, log-probability 0
    beams: list[list[tuple[float, list[int]]]] = [[(0.0, [])] for _ in range(n)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    for written in range(max_length - 1):
        live = [(i, score, words) for i in range(n) if len(finished[i]) < beam_size
                for score, words in beams[i]]
        if not live:
            break
        rows = torch.tensor([i for i, _, _ in live], device=device)
        prefix = torch.tensor([[ids.sep, *words] for _, _, words in live], device=device)
        if written == max_length - 2:  # the last slot: close every open hypothesis
            for i, score, words in live:
                finished[i].append((score / length_penalty(len(words) + 1, alpha), words))
            break
        logp = next_logprobs(model, visual.select(rows), prefix, ids, written, min_new_tokens)
        logp = logp + torch.tensor([s for _, s, _ in live], device=device)[:, None]
        for i in range(n):
            mine = [k for k, (j, _, _) in enumerate(live) if j == i]
            if not mine:
                continue
            scores = logp[mine].flatten()
            top, flat = scores.topk(min(2 * beam_size, scores.numel()))
            vocab = logp.size(1)
            nxt: list[tuple[float, list[int]]] = []
            for rank, (value, index) in enumerate(zip(top.tolist(), flat.tolist())):
                if value == float("-inf"):
                    break
                _, _, words = live[mine[index // vocab]]
                word = index % vocab
                if word == ids.sep:  # an ending counts only among the beam_size best
                    if rank < beam_size and len(finished[i]) < beam_size:
                        finished[i].append((value / length_penalty(len(words) + 1, alpha), words))
                elif len(nxt) < beam_size:
                    nxt.append((value, [*words, word]))
                if len(nxt) == beam_size and len(finished[i]) >= beam_size:
                    break
            beams[i] = nxt
    for i in range(n):  # studies whose beam ran out before finishing
        if not finished[i]:
            finished[i] = [(s / length_penalty(len(w) + 1, alpha), w) for s, w in beams[i]]
    return [max(f, key=lambda sw: sw[0])[1] for f in finished]
