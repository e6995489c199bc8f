"""The EfficientBERT encoder: its recipe configuration, the MobileBERT embedding, BERT
self-attention and one searched FFN per layer, and the fit-dense projection distillation
uses. Re-derived from the official `models/auto_bert.py`, `models/mobile_bert.py` and
`models/bert.py` of `cheneydon/efficient-bert`; the task heads and the baseline around this
encoder are `model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.nlp.distill import DistillConfig
from refbench.baselines.nlp.efficientbert.ffn import SearchedFFN
from refbench.baselines.nlp.efficientbert.space import parse_valid
from refbench.baselines.nlp.qa import QAConfig
from refbench.errors import RefbenchError

#: The searched EfficientBERT, one expression per layer (`FFN_EXPR` in nas_finetune.sh).
PUBLISHED_EFFICIENTBERT: tuple[str, ...] = (
    "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))",
    "elu(linear2_1(gelu(linear2_1(x,wb1)),wb2))",
    "sigmoid(linear1_2(relu(linear1_2(x,wb1)),wb2))",
    "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)",
    "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)",
    "leaky_relu(linear2_3(gelu(linear2_3(x,wb1)),wb2))",
)
#: EfficientBERT-TINY (`auto_bert_small`, 6 x 360) uses the same FFN_EXPR in nas_finetune.sh.
PUBLISHED_EFFICIENTBERT_TINY: tuple[str, ...] = PUBLISHED_EFFICIENTBERT
#: EfficientBERT++ (`auto_bert_12`, 12 x 360): finetune.py repeats each expression twice.
PUBLISHED_EFFICIENTBERT_PLUSPLUS: tuple[str, ...] = tuple(
    e for e in PUBLISHED_EFFICIENTBERT for _ in range(2))

MASK_VALUE = -10000.0  # the official additive attention mask


@dataclass
class EfficientBertConfig:
    """`model:` section of an EfficientBERT recipe (defaults: the published EfficientBERT,
    `AutoBertConfig` in models/configs.py)."""

    hidden_size: int = 540
    num_layers: int = 6
    num_heads: int = 12
    embedding_size: int = 128
    ffn_expressions: list[str] = field(default_factory=lambda: list(PUBLISHED_EFFICIENTBERT))
    ffn_hidden_size: int | None = None  # None = hidden_size, as in every auto_bert config
    dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    vocab_size: int = 30522
    max_length: int = 128
    lowercase: bool = True
    tokenizer: str | None = None
    teacher_hidden_size: int | None = 768  # fit_size; None = no fit-dense projection
    qa: QAConfig = field(default_factory=QAConfig)  # SQuAD windows (max_length is the above)
    distill: DistillConfig = field(default_factory=DistillConfig)
    #: the `supernet.safetensors` of `refbench search efficientbert`: the student starts
    #: from the search's shared weights (the official pipeline initialises its searched
    #: student from the stage-3 supernet); needs the search's teacher (its tokenizer)
    init_supernet: str | None = None


def check_config(cfg: EfficientBertConfig) -> None:
    """Fail early, naming the recipe key, on sizes or expressions that cannot build."""
    if cfg.hidden_size % cfg.num_heads:
        raise RefbenchError(f"hidden_size {cfg.hidden_size} is not a multiple of num_heads "
                            f"{cfg.num_heads}", key="model.hidden_size")
    if len(cfg.ffn_expressions) != cfg.num_layers:
        raise RefbenchError(f"{len(cfg.ffn_expressions)} FFN expressions for {cfg.num_layers} "
                            f"layers (one per layer)", key="model.ffn_expressions")
    if cfg.max_length > cfg.max_position_embeddings:
        raise RefbenchError(f"max_length {cfg.max_length} exceeds max_position_embeddings "
                            f"{cfg.max_position_embeddings}", key="model.max_length")
    for i, text in enumerate(cfg.ffn_expressions):
        parse_valid(text, key=f"model.ffn_expressions[{i}]")
    if cfg.distill.temperature <= 0:
        raise RefbenchError(f"must be positive, got {cfg.distill.temperature}",
                            key="model.distill.temperature")


@dataclass
class EncoderOutput:
    """What distillation needs: all hidden states (embedding output first) and the
    per-layer attention scores `(batch, heads, len, len)` (empty unless requested)."""

    last_hidden_state: Tensor
    hidden_states: list[Tensor]
    attention_scores: list[Tensor]


class MobileBertEmbedding(nn.Module):
    """Trigram token embedding (size E) -> dense to H, + segment + position, LayerNorm."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden: int, max_positions: int,
                 type_vocab_size: int, dropout: float, pad_token_id: int) -> None:
        super().__init__()
        self.token_embeddings = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_token_id)
        self.segment_embeddings = nn.Embedding(type_vocab_size, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.dense = nn.Linear(3 * embedding_size, hidden)
        self.layernorm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        tok = self.token_embeddings(input_ids)
        nxt = F.pad(tok[:, 1:], (0, 0, 0, 1))  # token i+1, zeros after the last position
        prev = F.pad(tok[:, :-1], (0, 0, 1, 0))  # token i-1, zeros before the first
        tok = self.dense(torch.cat([nxt, tok, prev], dim=-1))
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        out = tok + self.segment_embeddings(token_type_ids) + self.position_embeddings(positions)
        return self.dropout(self.layernorm(out))


class SelfAttention(nn.Module):
    """BERT self-attention with its output dense, dropout, residual and LayerNorm."""

    def __init__(self, hidden: int, heads: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.heads, self.head_size = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(attention_dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.hidden_dropout = nn.Dropout(dropout)
        self.layernorm = nn.LayerNorm(hidden)

    def _split(self, t: Tensor) -> Tensor:
        return t.view(t.size(0), t.size(1), self.heads, self.head_size).transpose(1, 2)

    def forward(self, h: Tensor, additive_mask: Tensor,
                return_scores: bool) -> tuple[Tensor, Tensor | None]:
        q, k, v = self._split(self.query(h)), self._split(self.key(h)), self._split(self.value(h))
        additive_mask = additive_mask.to(q.dtype)  # q is half precision under autocast
        scores = None
        if return_scores:  # the official maths, keeping the scores for distillation
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size) + additive_mask
            context = self.attn_dropout(scores.softmax(dim=-1)) @ v
        else:  # the same function through the fused kernel
            p = self.attn_dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask, dropout_p=p)
        context = context.transpose(1, 2).reshape(h.shape)
        return self.layernorm(h + self.hidden_dropout(self.dense(context))), scores


class EfficientBertLayer(nn.Module):
    def __init__(self, cfg: EfficientBertConfig, expression: str) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.dropout,
                                       cfg.attention_dropout)
        self.ffn = SearchedFFN(parse_valid(expression), cfg.hidden_size, cfg.ffn_hidden_size,
                               cfg.dropout)

    def forward(self, h: Tensor, additive_mask: Tensor,
                return_scores: bool) -> tuple[Tensor, Tensor | None]:
        h, scores = self.attention(h, additive_mask, return_scores)
        return self.ffn(h), scores


class EfficientBertEncoder(nn.Module):
    """Embedding + the searched layers (the official `AutoBertSingle` without LM head)."""

    def __init__(self, cfg: EfficientBertConfig, vocab_size: int, pad_token_id: int = 0) -> None:
        super().__init__()
        check_config(cfg)
        self.embeddings = MobileBertEmbedding(vocab_size, cfg.embedding_size, cfg.hidden_size,
                                              cfg.max_position_embeddings, cfg.type_vocab_size,
                                              cfg.dropout, pad_token_id)
        self.layers = nn.ModuleList(EfficientBertLayer(cfg, e) for e in cfg.ffn_expressions)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor,
                output_attentions: bool = False) -> EncoderOutput:
        """`attention_mask` is 1 on tokens and 0 on padding."""
        additive = (1.0 - attention_mask[:, None, None, :].float()) * MASK_VALUE
        h = self.embeddings(input_ids, token_type_ids)
        hidden_states, scores = [h], []
        for layer in self.layers:
            h, s = layer(h, additive, output_attentions)
            hidden_states.append(h)
            if s is not None:
                scores.append(s)
        return EncoderOutput(h, hidden_states, scores)


class FitDense(nn.Module):
    """Project student hidden states to the teacher's width (TinyBERT's `fit_dense`)."""

    def __init__(self, hidden: int, teacher_hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, teacher_hidden)

    def forward(self, hidden_states: Sequence[Tensor]) -> list[Tensor]:
        return [self.dense(h) for h in hidden_states]


def init_weights(module: nn.Module) -> None:
    """The official `_init_weights`: N(0, 0.02) weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
