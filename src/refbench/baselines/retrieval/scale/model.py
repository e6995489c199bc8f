"""The SCALE (M5-MMT) network: five modality encoders and a unified fusion transformer.

Re-derived from the official code (`Xiaodongsuper/SCALE_code`: `model/SCALE.py`,
`model/module_cross.py`, `config/bert_base_6layer_6conect_capture_itp3va.json`,
`dataloaders/pretrain_dataset_ITP3VA.py`), in plain PyTorch, on CAPTURE's BERT blocks
(SCALE's code is a fork of CAPTURE's):

- modality-specific embeddings: title and table ("pv") tokens through BERT embeddings
  (word + position + segment, LayerNorm, dropout); image regions as CAPTURE (2048-d
  feature + 5-d box, a "global" region first: the mean of the real regions); video frames
  (<= 12 x 1024) and audio rows (80 x 751) through a linear map plus a learned position
  embedding (50 and 100 positions), each with a global first token (their mean), as the
  official `BertVideoEmbeddings` / `BertAudioEmbeddings` and loader;
- modality encoders: `num_hidden_layers` BERT layers for text (6 x 768, 12 heads, FFN
  3072), `v_num_hidden_layers` for the other streams (6 x 768, 8 heads, FFN 1024);
- CLR poolers: ReLU(Linear(h -> `bi_hidden_size` 1024)) of each encoder's first token,
  the features of the self-harmonized contrastive loss (`pretext.py`);
- the unified fusion transformer (`CrossModel`): the five encoded sequences concatenated
  (title 36, table 64, image 37, video 13, audio 81 tokens), a learned position
  embedding, `co_num_layers` (6) pre-LN blocks (8 heads, 4x MLP with QuickGELU); the fused
  first token of each modality is its retrieval embedding (`pooled_output_*`);
- heads (`BertPreTrainingHeads_woITM`): MLM / MEM share one decoder tied to the word
  embeddings; MRM (2048-d, `--predict_feature`), MFM (1024-d) and MAM (751-d) regress
  features; as the official forward, they read the *encoder* outputs (`heads_on`).

Kept from the official forward, though its module tree differs (`shared_encoders`): the
title and table share the text embeddings and layers, and the image and video share the
visual layers (`pv_embeddings`, `pv_layer` and `video_layer` are built there but never
called); `shared_encoders: false` gives every modality its own layers, as the paper
describes. Missing modalities: the official loader zero-fills an absent video (12 zero
frames) or audio (80 zero rows) and attends to them; here the dataset's `has_*` masks
are used instead: an absent stream keeps only its first token, the fusion transformer
never attends to an absent modality, and `pretext.py` / the retrieval embedding leave it
out (see there).

`text_init: minilm` (`retrieval/text_init.py`) loads all-MiniLM-L6-v2 into the text
tower; its 384-d states are then projected to the fusion width (`v_hidden_size`) by a
learned linear map, the only module the official network does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.retrieval.capture.model import (GLOBAL_LOCATION, BertLayer, FusionBlock,
                                                        additive_mask)
from refbench.errors import RefbenchError

#: the official modality order of the contrastive graph and the modality weights
MODALITIES = ("title", "image", "table", "video", "audio")
#: the official feature letters (`retrieval_unit_id_list_v2.py`: t, p, i, v, a)
LETTERS = {"t": "title", "p": "table", "i": "image", "v": "video", "a": "audio"}


@dataclass
class ScaleConfig:
    """`model:` of a SCALE recipe. Defaults are the official config and
    `examples/SCALE/run_pretrain_task.sh` (all six pretext tasks, --predict_feature)."""

    # text encoder (title and table), bert-base-chinese widths
    hidden_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    # image / video / audio encoders
    v_feature_size: int = 2048
    video_feature_size: int = 1024
    audio_feature_size: int = 751
    v_hidden_size: int = 768
    v_num_hidden_layers: int = 6
    v_num_attention_heads: int = 8
    v_intermediate_size: int = 1024
    max_video_len: int = 50
    max_audio_len: int = 100
    shared_encoders: bool = True
    # CLR poolers and the fusion transformer
    bi_hidden_size: int = 1024
    co_num_layers: int = 6
    co_num_attention_heads: int = 8
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    # inputs: WordPiece vocabulary from the training titles (or MiniLM's, `text_init`)
    vocab_size: int = 21128
    lowercase: bool = True
    text_init: Literal["none", "minilm"] = "none"
    max_length: int = 36
    table_length: int = 64
    max_regions: int = 36
    video_frames: int = 12
    audio_rows: int = 80
    # pretext tasks: loss = sum of weight * task
    mlm_weight: float = 1.0
    mem_weight: float = 1.0
    mrm_weight: float = 1.0
    mfm_weight: float = 1.0
    mam_weight: float = 1.0
    clr_weight: float = 1.0
    mlm_probability: float = 0.15
    mem_probability: float = 0.15
    mrm_probability: float = 0.15
    mfm_probability: float = 0.15
    mam_probability: float = 0.15
    temperature: float = 0.07
    harmonize: bool = True
    heads_on: Literal["encoder", "fusion"] = "encoder"
    # retrieval: which modalities' embeddings are summed, how many ids are kept
    modalities: str = "tpiva"
    top_k: int = 10
    gallery_split: str | None = None


def check_config(cfg: ScaleConfig) -> None:
    """Sizes and options that cannot build, named by their recipe key."""
    for width, heads, key in ((cfg.hidden_size, cfg.num_attention_heads, "hidden_size"),
                              (cfg.v_hidden_size, cfg.v_num_attention_heads, "v_hidden_size"),
                              (cfg.v_hidden_size, cfg.co_num_attention_heads,
                               "co_num_attention_heads")):
        if heads < 1 or width % heads:
            raise RefbenchError(f"{width} is not a multiple of its {heads} attention heads",
                                key=f"model.{key}")
    if cfg.hidden_size != cfg.v_hidden_size and cfg.text_init == "none":
        raise RefbenchError("the fusion transformer joins every stream: hidden_size must equal "
                            "v_hidden_size (only a MiniLM text tower is projected)",
                            key="model.v_hidden_size")
    if cfg.heads_on == "fusion" and cfg.hidden_size != cfg.v_hidden_size:
        raise RefbenchError("heads on the fused sequences need hidden_size == v_hidden_size "
                            "(the MLM decoder is tied to the word embeddings)", key="model.heads_on")
    total = fusion_length(cfg)
    if total > cfg.max_position_embeddings:
        raise RefbenchError(f"the fused sequence has {total} tokens, more than "
                            f"max_position_embeddings {cfg.max_position_embeddings}",
                            key="model.max_position_embeddings")
    if cfg.video_frames + 1 > cfg.max_video_len or cfg.audio_rows + 1 > cfg.max_audio_len:
        raise RefbenchError(f"{cfg.video_frames} frames / {cfg.audio_rows} audio rows plus the "
                            f"global token exceed max_video_len {cfg.max_video_len} / "
                            f"max_audio_len {cfg.max_audio_len}", key="model.max_video_len")
    if cfg.max_length < 3 or cfg.table_length < 2 or min(cfg.max_regions, cfg.video_frames,
                                                         cfg.audio_rows, cfg.top_k) < 1:
        raise RefbenchError("max_length must be >= 3, table_length >= 2, max_regions, "
                            "video_frames, audio_rows and top_k >= 1", key="model.max_length")
    if not cfg.modalities or set(cfg.modalities) - set(LETTERS) or \
            len(set(cfg.modalities)) != len(cfg.modalities):
        raise RefbenchError(f"{cfg.modalities!r} is not a combination of the letters t (title), "
                            f"p (table), i (image), v (video), a (audio)", key="model.modalities")
    if cfg.temperature <= 0:
        raise RefbenchError(f"must be positive, got {cfg.temperature}", key="model.temperature")


def fusion_length(cfg: ScaleConfig) -> int:
    """Tokens of the fused sequence: title, table, and each stream's global token + items."""
    return cfg.max_length + cfg.table_length + cfg.max_regions + cfg.video_frames + \
        cfg.audio_rows + 3


class TextEmbeddings(nn.Module):
    """BERT embeddings: word + position + segment, LayerNorm, dropout."""

    def __init__(self, vocab_size: int, width: int, positions: int, types: int, dropout: float,
                 pad_token_id: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width, padding_idx=pad_token_id)
        self.position_embeddings = nn.Embedding(positions, width)
        self.token_type_embeddings = nn.Embedding(types, width)
        self.LayerNorm = nn.LayerNorm(width, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        out = self.word_embeddings(input_ids) + self.position_embeddings(positions) + \
            self.token_type_embeddings(torch.zeros_like(input_ids))
        return self.dropout(self.LayerNorm(out))


class SequenceEmbeddings(nn.Module):
    """Video frames or audio rows: a linear map plus a learned position embedding,
    LayerNorm, dropout (the global token, their mean, is prepended by the caller)."""

    def __init__(self, feature_size: int, width: int, positions: int, dropout: float) -> None:
        super().__init__()
        self.feature_embeddings = nn.Linear(feature_size, width)
        self.position_embeddings = nn.Embedding(positions, width)
        self.LayerNorm = nn.LayerNorm(width, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor) -> Tensor:
        positions = torch.arange(features.size(1), device=features.device)
        out = self.feature_embeddings(features) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(out))


class RegionEmbeddings(nn.Module):
    """Image regions: feature and 5-d box geometry, two linear maps summed, LayerNorm."""

    def __init__(self, feature_size: int, width: int, dropout: float) -> None:
        super().__init__()
        self.image_embeddings = nn.Linear(feature_size, width)
        self.image_location_embeddings = nn.Linear(5, width)
        self.LayerNorm = nn.LayerNorm(width, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, regions: Tensor, locations: Tensor) -> Tensor:
        out = self.image_embeddings(regions) + self.image_location_embeddings(locations)
        return self.dropout(self.LayerNorm(out))


class Head(nn.Module):
    """BERT's prediction head: dense, GELU, LayerNorm, then a decoder."""

    def __init__(self, width: int, out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=1e-12)
        self.decoder = nn.Linear(width, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.LayerNorm(F.gelu(self.dense(x))))


def with_global(features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Prepend the mean of the real items (zeros without any), mask 1, as the official
    loader builds the global region / frame / audio token."""
    m = mask.to(features.dtype)
    mean = (features * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
    return torch.cat([mean[:, None], features], 1), torch.cat([torch.ones_like(mask[:, :1]), mask], 1)


@dataclass
class ScaleOutput:
    """Encoder sequences, CLR features `(B, 5, bi)` and fused first tokens `(B, 5, H)`,
    both in `MODALITIES` order, and which modalities each item has `(B, 5)`."""

    encoded: dict[str, Tensor]
    pooled: Tensor
    fused: Tensor
    present: Tensor
    fused_sequences: dict[str, Tensor]


def _layers(width: int, heads: int, inner: int, n: int, cfg: ScaleConfig) -> nn.ModuleList:
    return nn.ModuleList(BertLayer(width, heads, inner, cfg.hidden_dropout_prob,
                                   cfg.attention_probs_dropout_prob) for _ in range(n))


class ScaleModel(nn.Module):
    """Modality encoders, CLR poolers, the fusion transformer and the pretext heads."""

    def __init__(self, cfg: ScaleConfig, vocab_size: int, pad_token_id: int = 0) -> None:
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        h, vh, p = cfg.hidden_size, cfg.v_hidden_size, cfg.hidden_dropout_prob
        self.text_embeddings = TextEmbeddings(vocab_size, h, cfg.max_position_embeddings,
                                              cfg.type_vocab_size, p, pad_token_id)
        self.region_embeddings = RegionEmbeddings(cfg.v_feature_size, vh, p)
        self.video_embeddings = SequenceEmbeddings(cfg.video_feature_size, vh, cfg.max_video_len, p)
        self.audio_embeddings = SequenceEmbeddings(cfg.audio_feature_size, vh, cfg.max_audio_len, p)
        text = (h, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers, cfg)
        visual = (vh, cfg.v_num_attention_heads, cfg.v_intermediate_size, cfg.v_num_hidden_layers, cfg)
        self.text_layers = _layers(*text)
        self.image_layers = _layers(*visual)
        self.audio_layers = _layers(*visual)
        if not cfg.shared_encoders:
            self.table_embeddings = TextEmbeddings(vocab_size, h, cfg.max_position_embeddings,
                                                   cfg.type_vocab_size, p, pad_token_id)
            self.table_layers = _layers(*text)
            self.video_layers = _layers(*visual)
        self.poolers = nn.ModuleDict({m: nn.Linear(h if m in ("title", "table") else vh,
                                                   cfg.bi_hidden_size) for m in MODALITIES})
        self.text_projection = nn.Linear(h, vh) if h != vh else None
        self.fusion_positions = nn.Embedding(cfg.max_position_embeddings, vh)
        self.fusion_layers = nn.ModuleList(FusionBlock(vh, cfg.co_num_attention_heads)
                                           for _ in range(cfg.co_num_layers))
        self.dropout = nn.Dropout(p)
        head_width = vh if cfg.heads_on == "fusion" else h
        self.mlm_head = Head(head_width, vocab_size)
        self.mlm_head.decoder.weight = self.text_embeddings.word_embeddings.weight  # tied
        self.mrm_head = Head(vh, cfg.v_feature_size)
        self.mfm_head = Head(vh, cfg.video_feature_size)
        self.mam_head = Head(vh, cfg.audio_feature_size)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation (the official `init_bert_weights` runs last over the
        whole model, the fusion transformer included)."""
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

    # -- encoders ---------------------------------------------------------------------------
    @staticmethod
    def _encode(x: Tensor, mask: Tensor, layers: nn.ModuleList) -> Tensor:
        add = additive_mask(mask, x.dtype)
        for layer in layers:
            x = layer(x, add)
        return x

    def encode(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Each modality through its embeddings and encoder -> sequences and their masks
        (image, video and audio with their global token first)."""
        shared = self.cfg.shared_encoders
        table_embeddings = self.text_embeddings if shared else self.table_embeddings
        table_layers = self.text_layers if shared else self.table_layers
        video_layers = self.image_layers if shared else self.video_layers
        regions, region_mask = with_global(batch["regions"], batch["region_mask"])
        first = torch.tensor(GLOBAL_LOCATION, dtype=regions.dtype, device=regions.device)
        locations = torch.cat([first.expand(len(regions), 1, 5), batch["locations"]], 1)
        video, video_mask = with_global(batch["video"], batch["video_mask"])
        audio, audio_mask = with_global(batch["audio"], batch["audio_mask"])
        masks = {"title": batch["attention_mask"], "image": region_mask,
                 "table": batch["table_mask"], "video": video_mask, "audio": audio_mask}
        inputs = {"title": (self.text_embeddings(batch["input_ids"]), self.text_layers),
                  "image": (self.region_embeddings(regions, locations), self.image_layers),
                  "table": (table_embeddings(batch["table_ids"]), table_layers),
                  "video": (self.video_embeddings(video), video_layers),
                  "audio": (self.audio_embeddings(audio), self.audio_layers)}
        encoded = {m: self._encode(x, masks[m], layers) for m, (x, layers) in inputs.items()}
        return encoded, masks

    def fuse(self, encoded: dict[str, Tensor], masks: dict[str, Tensor],
             present: Tensor) -> dict[str, Tensor]:
        """The fusion transformer over `[title; table; image; video; audio]` (the official
        concatenation order); an absent modality's tokens are masked for every query."""
        order = ("title", "table", "image", "video", "audio")
        parts = []
        for m in order:
            x = encoded[m]
            if m in ("title", "table") and self.text_projection is not None:
                x = self.text_projection(x)
            parts.append(x)
        x = torch.cat(parts, 1)
        if not self.fusion_layers:
            return dict(zip(order, torch.split(x, [p.size(1) for p in parts], 1)))
        keep = torch.cat([masks[m] * present[:, MODALITIES.index(m), None].to(masks[m].dtype)
                          for m in order], 1)
        add = additive_mask(keep, x.dtype)
        x = self.dropout(x + self.fusion_positions(torch.arange(x.size(1), device=x.device)))
        for block in self.fusion_layers:
            x = block(x, add)
        return dict(zip(order, torch.split(x, [p.size(1) for p in parts], 1)))

    def forward(self, batch: dict[str, Tensor]) -> ScaleOutput:
        encoded, masks = self.encode(batch)
        present = batch["present"].bool()
        pooled = torch.stack([F.relu(self.poolers[m](encoded[m][:, 0])) for m in MODALITIES], 1)
        fused_sequences = self.fuse(encoded, masks, present)
        fused = torch.stack([fused_sequences[m][:, 0] for m in MODALITIES], 1)
        return ScaleOutput(encoded, pooled, fused, present, fused_sequences)

    # -- retrieval --------------------------------------------------------------------------
    def embedding(self, out: ScaleOutput, modalities: str | None = None) -> Tensor:
        """The official retrieval feature: the sum of the chosen modalities' fused first
        tokens (no normalisation; ranked by raw dot product). A modality the item lacks
        adds nothing (the official zero-filled inputs would add an embedding of zeros)."""
        letters = modalities or self.cfg.modalities
        chosen = [MODALITIES.index(LETTERS[c]) for c in letters]
        keep = out.present[:, chosen].to(out.fused.dtype)
        return (out.fused[:, chosen].float() * keep[..., None].float()).sum(1)

    def num_parameters(self) -> int:
        """Parameters counted once (the tied MLM decoder shares the word embeddings)."""
        return sum(p.numel() for p in self.parameters())
