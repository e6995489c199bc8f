"""EfficientBERT's weight-sharing supernet: one student that runs any per-layer FFN list.

Re-derived from the official `AutoBert` / `MultiTaskAutoBert` (`models/auto_bert.py` of
`cheneydon/efficient-bert`), the model every search stage trains and scores:

- the embedding and the self-attention of every layer are the student's own
  (`efficientbert.MobileBertEmbedding`, `efficientbert.SelfAttention`), shared by all
  candidates;
- every layer owns `MAX_STACKS` (4) FFN blocks of the full FFN width `F` (= hidden size in
  every official config). A candidate `linear{n}_{r}` runs the first `n` blocks and, in
  each, the first `I = int(ratio_r * F)` units: `W1[:I]`, `b1[:I]`, `W2[:, :I]` and the
  whole `b2` (the official `dense1.weight.t()[:, :I]`, `dense2.weight.t()[:I, :]`).
  So every expression with the same linear type runs on exactly the same tensors, and
  narrower / shallower types run on a prefix of the wider / deeper ones' weights; each
  block's LayerNorm is shared the same way;
- the expression is evaluated with `ffn.evaluate` on those slices (no
  copies: the slices are views, so gradients flow into the shared parameters);
- `fit_dense` maps the embedding output and every layer output to the teacher's width,
  and a pooler + classifier head gives the logits, so `distill.distill_losses` applies.

`export_ffn` copies one layer's slices into a stand-alone `SearchedFFN`, the module
`refbench train efficientbert` builds, so a searched layer can be checked (or started)
from the supernet's weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.base import pad_token_batch
from refbench.baselines.nlp.distill import EncoderOutputs
from refbench.baselines.nlp.efficientbert.encoder import (
    MASK_VALUE,
    EfficientBertConfig,
    FitDense,
    MobileBertEmbedding,
    SelfAttention,
    init_weights,
)
from refbench.baselines.nlp.efficientbert.ffn import SearchedFFN, evaluate, ffn_parameter_count
from refbench.baselines.nlp.efficientbert.space import (
    Expr,
    Linear,
    LinearType,
    Unary,
    Var,
    format_expression,
    linear_type,
    parse_expression,
)
from refbench.errors import RefbenchError

#: `max_stacked_ffn` of every official auto_bert config
MAX_STACKS = 4


# -- architectures --------------------------------------------------------------------------
def plain_expression(kind: LinearType) -> Expr:
    """`linear{n}_{r}(gelu(linear{n}_{r}(x,wb1)),wb2)`: the BERT FFN, the official `init_expr`."""
    return Linear(kind, Unary("gelu", Linear(kind, Var("x"), Var("wb1"))), Var("wb2"))


def retype(expr: Expr, kind: LinearType) -> Expr:
    """The same expression with both linears of type `kind` (what the official stage 2
    does by writing a bare `linear` and stage 3 by swapping `linear{n}_{r}`)."""
    return parse_expression(re.sub(r"linear\d+_\d+", kind.name, format_expression(expr)))


@dataclass(frozen=True)
class Architecture:
    """One FFN expression per layer: a candidate of the search."""

    expressions: tuple[Expr, ...]

    @classmethod
    def parse(cls, texts: Sequence[str]) -> "Architecture":
        return cls(tuple(parse_expression(t) for t in texts))

    @property
    def strings(self) -> list[str]:
        return [format_expression(e) for e in self.expressions]

    @property
    def types(self) -> tuple[LinearType, ...]:
        return tuple(linear_type(e) for e in self.expressions)

    @property
    def key(self) -> str:
        """The official `entire_ind_to_string`: the layers joined by ', '."""
        return ", ".join(self.strings)

    def __len__(self) -> int:
        return len(self.expressions)


def student_parameter_count(cfg: EfficientBertConfig, types: Sequence[LinearType],
                            vocab_size: int | None = None,
                            teacher_hidden: int | None = None) -> int:
    """Parameters of the student with these linear types, counted like the official
    `param_list` (`embed_fit_dense + sum(attn + ffn[type])`, pooler and classifier left
    out): equal to `EfficientBertClassifier.paper_parameter_count()`."""
    h, e = cfg.hidden_size, cfg.embedding_size
    vocab = cfg.vocab_size if vocab_size is None else vocab_size
    fit = cfg.teacher_hidden_size if teacher_hidden is None else teacher_hidden
    embed = vocab * e + cfg.type_vocab_size * h + cfg.max_position_embeddings * h
    embed += 3 * e * h + h + 2 * h  # trigram dense + LayerNorm
    fit_dense = h * fit + fit if fit else 0
    attention = 4 * (h * h + h) + 2 * h
    ffn = sum(ffn_parameter_count(t, h, cfg.ffn_hidden_size) for t in types)
    return embed + fit_dense + len(types) * attention + ffn


# -- modules --------------------------------------------------------------------------------
class SharedFFNBlock(nn.Module):
    """One full-width FFN block whose leading units every linear type slices."""

    def __init__(self, hidden: int, ffn_hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense1 = nn.Linear(hidden, ffn_hidden)
        self.dense2 = nn.Linear(ffn_hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.layernorm = nn.LayerNorm(hidden)

    def slices(self, inner: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`(W1, b1, W2, b2)` of an `inner`-wide FFN: views of the shared parameters."""
        return (self.dense1.weight[:inner], self.dense1.bias[:inner],
                self.dense2.weight[:, :inner], self.dense2.bias)

    def forward(self, hidden_states: Tensor, expr: Expr, inner: int) -> Tensor:
        w1, b1, w2, b2 = self.slices(inner)

        def linear(t: Tensor, which: str) -> Tensor:
            return F.linear(t, w1, b1) if which == "wb1" else F.linear(t, w2, b2)

        out = evaluate(expr, hidden_states, linear)
        return self.layernorm(hidden_states + self.dropout(out))


class SupernetLayer(nn.Module):
    """Self-attention, then the first `n` shared FFN blocks."""

    def __init__(self, cfg: EfficientBertConfig, ffn_hidden: int) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.dropout,
                                       cfg.attention_dropout)
        self.blocks = nn.ModuleList(SharedFFNBlock(cfg.hidden_size, ffn_hidden, cfg.dropout)
                                    for _ in range(MAX_STACKS))

    def forward(self, h: Tensor, additive_mask: Tensor, expr: Expr, kind: LinearType, inner: int,
                return_scores: bool) -> tuple[Tensor, Tensor | None]:
        h, scores = self.attention(h, additive_mask, return_scores)
        for block in self.blocks[:kind.stacks]:
            h = block(h, expr, inner)
        return h, scores


class EfficientBertSupernet(nn.Module):
    """The weight-sharing student of the search, with a GLUE head and fit-dense.

    `forward(batch, arch)` returns `distill.EncoderOutputs` (logits `[B, C]`, attention
    scores per layer, hidden states projected to the teacher's width) for any
    `Architecture` with one expression per layer.
    """

    def __init__(self, cfg: EfficientBertConfig, vocab_size: int, num_labels: int,
                 teacher_hidden: int, pad_token_id: int = 0) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.num_heads:
            raise RefbenchError(f"hidden_size {cfg.hidden_size} is not a multiple of num_heads "
                                f"{cfg.num_heads}", key="model.hidden_size")
        self.cfg, self.num_labels = cfg, num_labels
        self.ffn_hidden = cfg.ffn_hidden_size or cfg.hidden_size
        self.embeddings = MobileBertEmbedding(vocab_size, cfg.embedding_size, cfg.hidden_size,
                                              cfg.max_position_embeddings, cfg.type_vocab_size,
                                              cfg.dropout, pad_token_id)
        self.layers = nn.ModuleList(SupernetLayer(cfg, self.ffn_hidden)
                                    for _ in range(cfg.num_layers))
        self.fit_dense = FitDense(cfg.hidden_size, teacher_hidden)
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.pooler_dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        init_weights(self)

    def inner_width(self, kind: LinearType) -> int:
        return kind.inner_width(self.ffn_hidden)

    def forward(self, batch: Mapping[str, Tensor], arch: Architecture,
                output_attentions: bool = True) -> EncoderOutputs:
        if len(arch) != len(self.layers):
            raise ValueError(f"{len(arch)} expressions for {len(self.layers)} layers")
        mask = batch["attention_mask"]
        additive = (1.0 - mask[:, None, None, :].float()) * MASK_VALUE
        h = self.embeddings(batch["input_ids"], batch["token_type_ids"])
        hidden_states, scores = [h], []
        for layer, expr, kind in zip(self.layers, arch.expressions, arch.types):
            h, s = layer(h, additive, expr, kind, self.inner_width(kind), output_attentions)
            hidden_states.append(h)
            if s is not None:
                scores.append(s)
        pooled = self.pooler_dropout(torch.tanh(self.pooler(h[:, 0])))
        return EncoderOutputs(self.classifier(pooled), scores, self.fit_dense(hidden_states))

    @torch.no_grad()
    def export_ffn(self, layer: int, expr: Expr | str) -> SearchedFFN:
        """The stand-alone FFN of `expr` at `layer`, holding copies of the supernet slices."""
        expr = parse_expression(expr) if isinstance(expr, str) else expr
        ffn = SearchedFFN(expr, self.cfg.hidden_size, self.ffn_hidden, self.cfg.dropout)
        for mine, theirs in zip(ffn.blocks, self.layers[layer].blocks):
            w1, b1, w2, b2 = theirs.slices(ffn.inner)
            mine.dense1.weight.copy_(w1)
            mine.dense1.bias.copy_(b1)
            mine.dense2.weight.copy_(w2)
            mine.dense2.bias.copy_(b2)
            mine.layernorm.load_state_dict(theirs.layernorm.state_dict())
        return ffn


# -- the shared weights on disk ------------------------------------------------------------
def write_weights(path: Path, state: Mapping[str, Tensor]) -> None:
    """A supernet's state dict as safetensors, atomically (the search's and the ranking
    benchmark's `supernet.safetensors`)."""
    from safetensors.torch import save

    from refbench.io import atomic_write_bytes

    atomic_write_bytes(path, save({k: v.detach().contiguous().clone() for k, v in state.items()}))


def load_weights(net: nn.Module, path: Path) -> dict[str, Tensor]:
    """Load `write_weights`'s file into `net` and return its state; a missing file, an
    unreadable one or one of another student size is a one-line error naming it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RefbenchError("no supernet weights here (refbench search efficientbert writes "
                            "supernet.safetensors)", path=path)
    try:
        state = load_file(str(path))
        net.load_state_dict(state)
    except Exception as exc:  # safetensors / torch raise many types for a bad file
        raise RefbenchError(f"cannot load the supernet ({str(exc).splitlines()[0][:120]})",
                            path=path) from None
    return state


# -- data: the teacher's tokens, padded like the EfficientBERT student ----------------------
def encode_rows(tokenizer: Any, rows: Any, text_fields: Sequence[str],
                max_length: int) -> list[dict[str, Any]]:
    """GLUE rows -> token features (the teacher's tokenizer, so both see the same tokens)."""
    columns = [list(rows[name]) for name in text_fields]
    enc = tokenizer(*columns, truncation=True, max_length=max_length,
                    return_attention_mask=False)
    labels = list(rows["label"])
    return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
             "label": labels[i]} for i in range(len(labels))]


def collate(features: Sequence[Mapping[str, Any]], pad_token_id: int, max_length: int,
            regression: bool) -> dict[str, Tensor]:
    """Pad to `max_length` as `EfficientBertClassifier.collate` does (the trigram embedding
    makes predictions depend on the padding width)."""
    dtype = torch.float32 if regression else torch.long
    return {**pad_token_batch(features, pad_token_id, max_length),
            "labels": torch.tensor([f["label"] for f in features], dtype=dtype)}


def supernet_of(state: Mapping[str, Tensor], cfg: EfficientBertConfig, path: Path, *,
                official: bool, vocab: int, fit: int,
                pad_token_id: int = 0) -> EfficientBertSupernet:
    """The supernet of the student `cfg` holding `state` (a search's `supernet.safetensors`,
    or an official checkpoint read by `official.read_state`, whose fit-dense width is its
    own and which may lack the head and fit-dense). A tensor of another shape, a missing
    one or an extra one is a one-line error naming the file: another student size."""
    from refbench.baselines.nlp.efficientbert.official import OPTIONAL_PREFIXES

    what = "checkpoint" if official else "supernet"
    num_labels = state["classifier.weight"].shape[0] if "classifier.weight" in state else 2
    if official and "fit_dense.dense.weight" in state:
        fit = state["fit_dense.dense.weight"].shape[0]
    net = EfficientBertSupernet(cfg, vocab, num_labels, fit, pad_token_id)
    try:
        missing, unexpected = net.load_state_dict(state, strict=not official)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        first = (lines[1] if len(lines) > 1 else lines[0]).strip()
        shapes = re.search(r"size mismatch for (\S+): copying a param with shape "
                           r"torch.Size\((\[[^\]]*\])\).*current model is "
                           r"torch.Size\((\[[^\]]*\])\)", first)
        if shapes:
            first = f"{shapes[1]} is {shapes[2]} there, {shapes[3]} in this student"
        raise RefbenchError(f"the {what} was trained for another student size "
                            f"({first[:140]})", path=path) from None
    lacking = [k for k in missing if not k.startswith(OPTIONAL_PREFIXES)]
    if lacking or unexpected:
        name, problem = (lacking[0], "lacks") if lacking else (unexpected[0], "has an extra")
        raise RefbenchError(f"the {what} was trained for another student size (it "
                            f"{problem} tensor {name})", path=path)
    return net
