"""The CAPTURE network: a hybrid-stream transformer over a product title and its image regions.

Re-derived from the official code (`zhanxlin/Product1M`, `CAPTURE/model/capture_IT.py`,
`model/module_cross.py`, `config/capture.json`), in plain PyTorch:

- text stream: BERT embeddings (word + position + segment, LayerNorm, dropout) and
  `num_hidden_layers` post-LN BERT layers (4 x 768, 12 heads, FFN 3072);
- visual stream: each region's 2048-d bottom-up feature and its 5-d box geometry
  (corners over the image size, area fraction) are two linear maps summed, LayerNorm,
  dropout; a "global" region (the mean of the item's region features, box `0,0,1,1,1`)
  goes first; then `v_num_hidden_layers` BERT layers (4 x 768, 8 heads, FFN 1024);
- co-attention (ViLBERT connection) layers at the stack positions `t_biattention_id` /
  `v_biattention_id` ([4, 5, 6, 7]: after the four single-stream layers): each stream's
  queries attend to the other stream's keys and values in a `bi_hidden_size` (512) space
  with 8 heads, project back with residual + LayerNorm, then each stream's own FFN;
- CLR poolers: ReLU(Linear(h -> 512)) of the first text token and of the global region,
  taken before the first co-attention layer, feed the contrastive loss;
- co-transformer (`CrossModel`): the text and region sequences concatenated, a learned
  position embedding over the joint sequence, `co_num_layers` (6) pre-LN blocks (8 heads,
  4x MLP with QuickGELU), then per token ReLU(Linear(h -> 512)) for each modality;
- heads: MLM (Linear 512 -> 768, dense + GELU + LayerNorm, decoder tied to the word
  embeddings plus a bias) and MRM feature regression (Linear 512 -> 768, dense + GELU +
  LayerNorm, Linear -> 2048), as `BertPreTrainingHeads_woITM` with `--predict_feature`.

The retrieval feature is the fused first-token output of each modality (`pooled_output_t`,
`pooled_output_v`, what the official model returns with `return_features`), concatenated
as `Capture_IT_ForClassification` does (or multiplied, `embedding: mul`, ViLBERT's
`fusion_method`), then L2-normalised so that inner product is cosine similarity.

`text_init: minilm` (`retrieval/text_init.py`) starts the text stream from the real
all-MiniLM-L6-v2 weights (its shape forced to 384 wide); when that differs from
`v_hidden_size`, a learned linear map projects the text sequence into the co-transformer's
width, the only module the official network does not have.

Left out, because the official forward never uses their outputs: the per-co-layer
`q_dense1` / `q_dense2` projections of `BertBiOutput` and `CrossModel`'s pooler (3.74M
parameters: the official module tree holds 151.94M, its forward uses the 148.19M here).

Checked against the official modules with the same weights (eval mode): sequence outputs,
CLR, MLM and MRM losses agree to 3e-6 when no item is padded. With padding they differ,
on purpose: the official co-transformer builds its per-head mask with
`attn_mask.repeat(n_head, 1, 1)`, but `nn.MultiheadAttention` reads masks item-major
(`item * n_head + head`), so in a batch of several items the joint attention uses other
items' padding masks. Here every item is masked by its own padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.errors import RefbenchError

MASK_VALUE = -10000.0  # the official additive attention mask
GLOBAL_LOCATION = (0.0, 0.0, 1.0, 1.0, 1.0)  # the whole image, as the official loader


@dataclass
class CaptureConfig:
    """`model:` of a CAPTURE recipe. Defaults are the official `config/capture.json` and
    `run_pretrain_task1.sh` (MLM + MRM with feature regression + CLR, sequence length 36)."""

    # text stream (bert-base-chinese widths, 4 layers)
    hidden_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    # visual stream over bottom-up regions
    v_feature_size: int = 2048
    v_hidden_size: int = 768
    v_num_hidden_layers: int = 4
    v_num_attention_heads: int = 8
    v_intermediate_size: int = 1024
    # co-attention layers: their positions in the text / visual stacks
    bi_hidden_size: int = 512
    bi_num_attention_heads: int = 8
    t_biattention_id: list[int] = field(default_factory=lambda: [4, 5, 6, 7])
    v_biattention_id: list[int] = field(default_factory=lambda: [4, 5, 6, 7])
    # co-transformer over the concatenated sequences (module_cross.CrossModel)
    co_num_layers: int = 6
    co_num_attention_heads: int = 8
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    # inputs: a WordPiece vocabulary built from the training titles, 36 tokens, 36 regions
    vocab_size: int = 21128
    lowercase: bool = True
    #: `minilm`: the text stream starts from all-MiniLM-L6-v2 (`retrieval/text_init.py`)
    text_init: Literal["none", "minilm"] = "none"
    max_length: int = 36
    max_regions: int = 36
    # pretext tasks (loss = mlm_weight * MLM + mrm_weight * MRM + clr_weight * CLR)
    mlm_weight: float = 1.0
    mrm_weight: float = 1.0
    clr_weight: float = 1.0
    mlm_probability: float = 0.15
    mrm_probability: float = 0.15
    temperature: float = 0.07
    # retrieval
    embedding: Literal["concat", "mul"] = "concat"
    gallery_split: str = "gallery"
    top_k: int = 100


def check_config(cfg: CaptureConfig) -> None:
    """Sizes that cannot build, named by their recipe key."""
    for width, heads, key in ((cfg.hidden_size, cfg.num_attention_heads, "hidden_size"),
                              (cfg.v_hidden_size, cfg.v_num_attention_heads, "v_hidden_size"),
                              (cfg.bi_hidden_size, cfg.bi_num_attention_heads, "bi_hidden_size"),
                              (cfg.hidden_size, cfg.co_num_attention_heads, "hidden_size"),
                              (cfg.v_hidden_size, cfg.co_num_attention_heads,
                               "co_num_attention_heads")):
        if heads < 1 or width % heads:
            raise RefbenchError(f"{width} is not a multiple of its {heads} attention heads",
                                key=f"model.{key}")
    t_ids, v_ids = cfg.t_biattention_id, cfg.v_biattention_id
    if len(t_ids) != len(v_ids):
        raise RefbenchError(f"{len(t_ids)} text and {len(v_ids)} visual co-attention positions "
                            f"(they pair up)", key="model.v_biattention_id")
    for ids, layers, key in ((t_ids, cfg.num_hidden_layers, "t_biattention_id"),
                             (v_ids, cfg.v_num_hidden_layers, "v_biattention_id")):
        if sorted(set(ids)) != list(ids) or (ids and (ids[0] < 0 or ids[-1] >= layers + len(ids))):
            raise RefbenchError(f"positions {ids} must increase within a stack of {layers} "
                                f"single-stream + {len(ids)} co-attention layers",
                                key=f"model.{key}")
    if cfg.co_num_layers and cfg.hidden_size != cfg.v_hidden_size and cfg.text_init == "none":
        raise RefbenchError("the co-transformer joins both streams: hidden_size must equal "
                            "v_hidden_size (only a MiniLM text stream is projected)",
                            key="model.v_hidden_size")
    if cfg.max_length + cfg.max_regions + 1 > cfg.max_position_embeddings:
        raise RefbenchError(f"{cfg.max_length} tokens + {cfg.max_regions + 1} regions exceed "
                            f"max_position_embeddings {cfg.max_position_embeddings}",
                            key="model.max_position_embeddings")
    if cfg.max_length < 3 or cfg.max_regions < 1 or cfg.top_k < 1:
        raise RefbenchError("max_length must be >= 3, max_regions and top_k >= 1",
                            key="model.max_length")
    if cfg.temperature <= 0:
        raise RefbenchError(f"must be positive, got {cfg.temperature}", key="model.temperature")


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """`(B, L)` 1 = keep -> `(B, 1, 1, L)`, 0 where kept and -10000 where masked."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE


class Attention(nn.Module):
    """Multi-head attention of `queries` over `keys` (the same tensor for self-attention)."""

    def __init__(self, q_dim: int, kv_dim: int, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(q_dim, width)
        self.key = nn.Linear(kv_dim, width)
        self.value = nn.Linear(kv_dim, width)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, queries: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self._split(self.query(queries)), self._split(self.key(keys)), \
            self._split(self.value(keys))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype),
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).flatten(2)


class AddNorm(nn.Module):
    """`LayerNorm(residual + dropout(dense(x)))`, BERT's post-LN sublayer output."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, out_dim)
        self.LayerNorm = nn.LayerNorm(out_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class FeedForward(nn.Module):
    """BERT's FFN: GELU(dense to `inner`), then AddNorm back to `width`."""

    def __init__(self, width: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.intermediate = nn.Linear(width, inner)
        self.output = AddNorm(inner, width, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.output(F.gelu(self.intermediate(x)), x)


class BertLayer(nn.Module):
    """A single-stream layer: self-attention + AddNorm, FFN (used by both streams)."""

    def __init__(self, width: int, heads: int, inner: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.attention = Attention(width, width, width, heads, attn_dropout)
        self.attention_output = AddNorm(width, width, dropout)
        self.ffn = FeedForward(width, inner, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.ffn(self.attention_output(self.attention(x, x, mask), x))


class CoAttentionLayer(nn.Module):
    """ViLBERT's connection layer: regions attend to words and words to regions in the
    `bi` space, each result projected back (AddNorm) and passed through its stream's FFN."""

    def __init__(self, cfg: CaptureConfig) -> None:
        super().__init__()
        bi, heads, p = cfg.bi_hidden_size, cfg.bi_num_attention_heads, cfg.attention_probs_dropout_prob
        self.visual_attention = Attention(cfg.v_hidden_size, cfg.hidden_size, bi, heads, p)
        self.text_attention = Attention(cfg.hidden_size, cfg.v_hidden_size, bi, heads, p)
        self.visual_output = AddNorm(bi, cfg.v_hidden_size, cfg.hidden_dropout_prob)
        self.text_output = AddNorm(bi, cfg.hidden_size, cfg.hidden_dropout_prob)
        self.visual_ffn = FeedForward(cfg.v_hidden_size, cfg.v_intermediate_size,
                                      cfg.hidden_dropout_prob)
        self.text_ffn = FeedForward(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_dropout_prob)

    def forward(self, visual: Tensor, visual_mask: Tensor, text: Tensor,
                text_mask: Tensor) -> tuple[Tensor, Tensor]:
        from_text = self.visual_attention(visual, text, text_mask)
        from_visual = self.text_attention(text, visual, visual_mask)
        visual = self.visual_ffn(self.visual_output(from_text, visual))
        text = self.text_ffn(self.text_output(from_visual, text))
        return visual, text


class FusionBlock(nn.Module):
    """A pre-LN block of the co-transformer (CLIP's ResidualAttentionBlock)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-12)
        self.attention = Attention(width, width, width, heads, 0.0)
        self.out_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width, eps=1e-12)
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.out_proj(self.attention(h, h, mask))
        h = self.c_fc(self.ln_2(x))
        return x + self.c_proj(h * torch.sigmoid(1.702 * h))  # QuickGELU


class PredictionHead(nn.Module):
    """`Linear(512 -> width)`, then BERT's transform (dense, GELU, LayerNorm) and a decoder."""

    def __init__(self, bi: int, width: int, out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(bi, width)
        self.dense = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=1e-12)
        self.decoder = nn.Linear(width, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.LayerNorm(F.gelu(self.dense(self.fc(x)))))


@dataclass
class CaptureOutput:
    """Fused sequences after the 512-d projections, and the two CLR pooled features."""

    text: Tensor  # (B, T, bi)
    visual: Tensor  # (B, 1 + R, bi), the global region first
    clr_text: Tensor  # (B, bi)
    clr_visual: Tensor  # (B, bi)


class CaptureModel(nn.Module):
    """Text stream, visual stream, co-attention layers, co-transformer and pretext heads."""

    def __init__(self, cfg: CaptureConfig, vocab_size: int, pad_token_id: int = 0) -> None:
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        h, vh, bi, p = cfg.hidden_size, cfg.v_hidden_size, cfg.bi_hidden_size, cfg.hidden_dropout_prob
        self.word_embeddings = nn.Embedding(vocab_size, h, padding_idx=pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, h)
        self.text_norm = nn.LayerNorm(h, eps=1e-12)
        self.region_embeddings = nn.Linear(cfg.v_feature_size, vh)
        self.location_embeddings = nn.Linear(5, vh)
        self.visual_norm = nn.LayerNorm(vh, eps=1e-12)
        self.dropout = nn.Dropout(p)
        self.text_layers = nn.ModuleList(
            BertLayer(h, cfg.num_attention_heads, cfg.intermediate_size, p,
                      cfg.attention_probs_dropout_prob) for _ in range(cfg.num_hidden_layers))
        self.visual_layers = nn.ModuleList(
            BertLayer(vh, cfg.v_num_attention_heads, cfg.v_intermediate_size, p,
                      cfg.attention_probs_dropout_prob) for _ in range(cfg.v_num_hidden_layers))
        self.co_layers = nn.ModuleList(CoAttentionLayer(cfg) for _ in cfg.t_biattention_id)
        self.clr_text_pooler = nn.Linear(h, bi)
        self.clr_visual_pooler = nn.Linear(vh, bi)
        # a MiniLM text stream (384-d) is projected into the co-transformer's width
        self.text_projection = nn.Linear(h, vh) if cfg.co_num_layers and h != vh else None
        fused_h = vh if self.text_projection is not None else h
        self.fusion_positions = nn.Embedding(cfg.max_position_embeddings, fused_h)
        self.fusion_layers = nn.ModuleList(FusionBlock(fused_h, cfg.co_num_attention_heads)
                                           for _ in range(cfg.co_num_layers))
        self.text_fc = nn.Linear(fused_h, bi)
        self.visual_fc = nn.Linear(vh, bi)
        self.mlm_head = PredictionHead(bi, h, vocab_size)
        self.mlm_head.decoder.weight = self.word_embeddings.weight  # tied, plus its own bias
        self.mrm_head = PredictionHead(bi, vh, cfg.v_feature_size)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorms."""
        std = self.cfg.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # -- inputs -------------------------------------------------------------------------
    def embed_text(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        out = self.word_embeddings(input_ids) + self.position_embeddings(positions) + \
            self.token_type_embeddings(token_type_ids)
        return self.dropout(self.text_norm(out))

    def embed_regions(self, regions: Tensor, locations: Tensor,
                      region_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Prepend the global region (mean of the real regions' features; zeros without
        any) and embed; returns `(B, 1 + R, vh)` and the mask `(B, 1 + R)`."""
        mask = region_mask.to(regions.dtype)
        count = mask.sum(1, keepdim=True).clamp(min=1.0)
        whole = (regions * mask[..., None]).sum(1) / count
        regions = torch.cat([whole[:, None], regions], dim=1)
        first = torch.tensor(GLOBAL_LOCATION, dtype=locations.dtype, device=locations.device)
        locations = torch.cat([first.expand(len(locations), 1, 5), locations], dim=1)
        mask = torch.cat([torch.ones_like(region_mask[:, :1]), region_mask], dim=1)
        out = self.region_embeddings(regions) + self.location_embeddings(locations)
        return self.dropout(self.visual_norm(out)), mask

    # -- the network --------------------------------------------------------------------
    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor,
                regions: Tensor, locations: Tensor, region_mask: Tensor) -> CaptureOutput:
        cfg = self.cfg
        text = self.embed_text(input_ids, token_type_ids)
        visual, visual_mask = self.embed_regions(regions, locations, region_mask)
        text_add, visual_add = additive_mask(attention_mask, text.dtype), \
            additive_mask(visual_mask, visual.dtype)
        done_t = done_v = 0
        clr: tuple[Tensor, Tensor] | None = None
        for k, (t_id, v_id) in enumerate(zip(cfg.t_biattention_id, cfg.v_biattention_id)):
            for layer in self.text_layers[done_t:t_id - k]:
                text = layer(text, text_add)
            for layer in self.visual_layers[done_v:v_id - k]:
                visual = layer(visual, visual_add)
            done_t, done_v = max(done_t, t_id - k), max(done_v, v_id - k)
            if clr is None:
                clr = self._clr_features(text, visual)
            visual, text = self.co_layers[k](visual, visual_add, text, text_add)
        for layer in self.text_layers[done_t:]:
            text = layer(text, text_add)
        for layer in self.visual_layers[done_v:]:
            visual = layer(visual, visual_add)
        if clr is None:
            clr = self._clr_features(text, visual)
        text, visual = self._fuse(text, visual, attention_mask, visual_mask)
        return CaptureOutput(F.relu(self.text_fc(text)), F.relu(self.visual_fc(visual)), *clr)

    def _clr_features(self, text: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        return F.relu(self.clr_text_pooler(text[:, 0])), F.relu(self.clr_visual_pooler(visual[:, 0]))

    def _fuse(self, text: Tensor, visual: Tensor, text_mask: Tensor,
              visual_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The co-transformer over `[text; regions]` with a joint position embedding."""
        if not self.fusion_layers:
            return text, visual
        if self.text_projection is not None:
            text = self.text_projection(text)
        x = torch.cat([text, visual], dim=1)
        mask = additive_mask(torch.cat([text_mask, visual_mask], dim=1), x.dtype)
        x = self.dropout(x + self.fusion_positions(torch.arange(x.size(1), device=x.device)))
        for block in self.fusion_layers:
            x = block(x, mask)
        return x[:, :text.size(1)], x[:, text.size(1):]

    def embedding(self, out: CaptureOutput) -> Tensor:
        """The retrieval feature: fused first text token and global region, L2-normalised."""
        text, visual = out.text[:, 0].float(), out.visual[:, 0].float()
        joint = text * visual if self.cfg.embedding == "mul" else torch.cat([text, visual], -1)
        return F.normalize(joint, dim=-1)

    def num_parameters(self) -> int:
        """Parameters counted once (the tied MLM decoder shares the word embeddings)."""
        return sum(p.numel() for p in self.parameters())

