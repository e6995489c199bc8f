"""The Medical-VLBERT network: a VL-BERT-style single-stream transformer over a study's image
regions and its report tokens, with a terminology head and a generation head.

Medical-VLBERT (Liu et al., IEEE TNNLS 2021) has no public code; this follows the paper's
abstract (a visual-linguistic BERT that detects lesion regions, predicts medical
terminology and writes the report) and VL-BERT (Su et al., ICLR 2020), whose input
embedding it builds on:

- the sequence is `[CLS] [IMG]x R [SEP] w1 .. wn [SEP]`: R visual elements (the grid
  cells of every view or slice, `vision.RegionEncoder`), then the report; the `[SEP]`
  after the regions starts the report and the last one ends it;
- every element's embedding is the sum of a token embedding (the word, or a learned
  `[IMG]` vector for regions), a visual feature embedding (a region's appearance and box
  geometry; for words, the whole study: the mean region feature with the full-image box,
  as VL-BERT gives text tokens the whole image's feature), a segment embedding (text 0,
  visual 1) and a sequence position (all regions share one position, as VL-BERT's
  unordered visual elements do); regions also get the index of their view / slice;
- one post-LN BERT encoder over the whole sequence. Two attention patterns share it:
  bidirectional over the text for knowledge pretraining (masked language modelling on
  report text without an image, where words get a learned "no image" feature), and the
  sequence-to-sequence pattern for transfer (regions and `[CLS]` see each other only,
  each word sees the regions and the words before it), so that a report is generated
  left to right and trained with teacher forcing in one pass;
- one language head (BERT's transform, decoder tied to the word embeddings) serves both
  masked-word prediction and next-word generation, so what knowledge pretraining teaches
  the head and the encoder is what generation uses;
- the terminology head is multi-label over the training split's terms: each term has a
  query that attends over the encoded regions (its attention is the lesion region it
  looks at, `TermOutput.attention`) and scores the attended vector. It reads the regions
  only, never the report, so it predicts from the images at test time as in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.report.vision import BackboneConfig, RegionEncoder, check_backbone
from refbench.errors import RefbenchError

#: the additive attention mask of a blocked pair
BLOCKED = -10000.0
CLS_POSITION, VISUAL_POSITION, TEXT_POSITION = 0, 1, 2


@dataclass
class MedicalVLBERTConfig:
    """`model:` of a Medical-VLBERT recipe. Transformer defaults are VL-BERT-base
    (BERT-base: 12 x 768, 12 heads, FFN 3072); the image encoder is a ResNet-50 whose
    7x7 last feature map gives 49 regions per image."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    # text: a WordPiece vocabulary built from the training reports (characters for Chinese)
    vocab_size: int = 30522
    lowercase: bool = True
    #: report tokens including the start and end `[SEP]` (R2Gen's IU X-ray setting: 60)
    max_text_length: int = 60
    # images: views of an X-ray study or slices spread over a CT volume
    num_images: int = 2
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # terminology head: terms seen at least this often in the training split
    min_term_count: int = 1
    term_weight: float = 1.0
    # alternate learning (`schedule.py`): optimizer steps of each procedure per cycle
    knowledge_steps: int = 1
    transfer_steps: int = 1
    mlm_probability: float = 0.15
    #: extra medical text for knowledge pretraining (UTF-8, one text a line); default:
    #: the training reports
    knowledge_corpus: str | None = None
    # generation (`generate.py`): beam size 1 is greedy decoding
    beam_size: int = 3
    length_penalty: float = 1.0
    min_new_tokens: int = 1


def check_config(cfg: MedicalVLBERTConfig) -> None:
    """Settings that cannot build or train, named by their recipe key."""
    if cfg.hidden_size % cfg.num_attention_heads:
        raise RefbenchError(f"{cfg.hidden_size} is not a multiple of its "
                            f"{cfg.num_attention_heads} attention heads", key="model.hidden_size")
    if cfg.max_text_length < 3:
        raise RefbenchError("max_text_length must be at least 3 (start, a word, end)",
                            key="model.max_text_length")
    if cfg.num_images < 1:
        raise RefbenchError("num_images must be at least 1", key="model.num_images")
    if cfg.knowledge_steps < 0 or cfg.transfer_steps < 1:
        raise RefbenchError("transfer_steps must be >= 1 and knowledge_steps >= 0 (0: no "
                            "knowledge pretraining)", key="model.transfer_steps")
    if not 0.0 < cfg.mlm_probability < 1.0:
        raise RefbenchError(f"must be in (0, 1), got {cfg.mlm_probability}",
                            key="model.mlm_probability")
    if cfg.beam_size < 1 or cfg.min_new_tokens < 1 or cfg.min_term_count < 1:
        raise RefbenchError("beam_size, min_new_tokens and min_term_count must be >= 1",
                            key="model.beam_size")
    check_backbone(cfg.backbone)


@dataclass
class Visual:
    """A batch's embedded regions, ready to join any text: `elements (B, R, h)`,
    `mask (B, R)` and the whole-study feature given to every word `(B, h)`."""

    elements: Tensor
    mask: Tensor
    text_feature: Tensor

    def select(self, index: Tensor) -> "Visual":
        """Rows `index` (beam search repeats each study once per hypothesis)."""
        return Visual(self.elements[index], self.mask[index], self.text_feature[index])


@dataclass
class TermOutput:
    logits: Tensor  # (B, T)
    attention: Tensor  # (B, T, R): where each term looks


class Layer(nn.Module):
    """A post-LN BERT layer taking a full `(B, 1, L, L)` additive mask."""

    def __init__(self, cfg: MedicalVLBERTConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.heads, self.attn_dropout = cfg.num_attention_heads, cfg.attention_probs_dropout_prob
        self.qkv = nn.Linear(h, 3 * h)
        self.attention_output = nn.Linear(h, h)
        self.attention_norm = nn.LayerNorm(h, eps=1e-12)
        self.intermediate = nn.Linear(h, cfg.intermediate_size)
        self.output = nn.Linear(cfg.intermediate_size, h)
        self.output_norm = nn.LayerNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype),
                                             dropout_p=self.attn_dropout if self.training else 0.0)
        x = self.attention_norm(x + self.dropout(self.attention_output(att.transpose(1, 2).flatten(2))))
        return self.output_norm(x + self.dropout(self.output(F.gelu(self.intermediate(x)))))


def attention_mask(source_mask: Tensor, text_mask: Tensor, causal: bool) -> Tensor:
    """`(B, 1, L, L)` additive mask over `[source ; text]`. Padding is never attended.
    `causal`: source sees source only, word i sees the source and words <= i; else every
    real element sees every real element."""
    keep = torch.cat([source_mask, text_mask], dim=1).bool()
    allowed = keep[:, None, :].expand(-1, keep.size(1), -1).clone()
    if causal:
        s, t = source_mask.size(1), text_mask.size(1)
        allowed[:, :s, s:] = False
        lower = torch.ones(t, t, dtype=torch.bool, device=keep.device).tril()
        allowed[:, s:, s:] &= lower
    diag = torch.eye(keep.size(1), dtype=torch.bool, device=keep.device)
    allowed |= diag  # a padded row attends to itself (no all-blocked softmax)
    return torch.where(allowed, 0.0, BLOCKED)[:, None]


class MedicalVLBERT(nn.Module):
    """Image encoder, joint embeddings, encoder, language head and terminology head."""

    def __init__(self, cfg: MedicalVLBERTConfig, vocab_size: int, num_terms: int,
                 pad_token_id: int, cls_token_id: int) -> None:
        super().__init__()
        check_config(cfg)
        self.cfg, self.num_terms, self._cls_id = cfg, num_terms, int(cls_token_id)
        h = cfg.hidden_size
        self.regions = RegionEncoder(cfg.backbone)
        self.word_embeddings = nn.Embedding(vocab_size, h, padding_idx=pad_token_id)
        self.position_embeddings = nn.Embedding(TEXT_POSITION + cfg.max_text_length, h)
        self.token_type_embeddings = nn.Embedding(2, h)
        self.image_index_embeddings = nn.Embedding(cfg.num_images, h)
        self.img_token = nn.Parameter(torch.zeros(h))
        self.no_image = nn.Parameter(torch.zeros(h))
        self.appearance = nn.Linear(self.regions.out_channels, h)
        self.geometry = nn.Linear(5, h)
        self.embedding_norm = nn.LayerNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.lm_transform = nn.Linear(h, h)
        self.lm_norm = nn.LayerNorm(h, eps=1e-12)
        self.lm_bias = nn.Parameter(torch.zeros(vocab_size))
        self.term_query = nn.Parameter(torch.zeros(num_terms, h))
        self.term_key = nn.Linear(h, h)
        self.term_weight = nn.Parameter(torch.zeros(num_terms, h))
        self.term_bias = nn.Parameter(torch.zeros(num_terms))
        self._init_weights()

    def _init_weights(self) -> None:
        """BERT's initialisation (normal 0.02, zero biases) outside the ResNet."""
        std = self.cfg.initializer_range
        for name, module in self.named_modules():
            if name.startswith("regions"):
                continue
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        for param in (self.img_token, self.no_image, self.term_query, self.term_weight):
            nn.init.normal_(param, std=std)

    # -- inputs -----------------------------------------------------------------------
    def embed_images(self, images: Tensor, image_mask: Tensor) -> Visual:
        """Images `(B, K, 2, S, S)` -> embedded visual elements (not yet normalised)."""
        feats, boxes, index, mask = self.regions(images, image_mask)
        appearance = self.appearance(feats)
        elements = self.img_token + appearance + self.geometry(boxes) + \
            self.image_index_embeddings(index)
        weights = mask.to(feats.dtype)[..., None]
        whole = (feats * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        full_box = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0], device=feats.device, dtype=feats.dtype)
        return Visual(elements, mask, self.appearance(whole) + self.geometry(full_box))

    def _sequence(self, input_ids: Tensor, visual: Visual | None) -> tuple[Tensor, Tensor]:
        """Embedded `[CLS] regions` source and text (positions from TEXT_POSITION)."""
        b, t = input_ids.shape
        device = input_ids.device
        cls_id = torch.full((b, 1), self._cls_id, dtype=torch.long, device=device)
        type_text, type_visual = self.token_type_embeddings.weight
        feature = self.no_image.expand(b, -1) if visual is None else visual.text_feature
        source = self.word_embeddings(cls_id) + self.position_embeddings.weight[CLS_POSITION] + \
            type_text + feature[:, None]
        if visual is not None:
            regions = visual.elements + type_visual + \
                self.position_embeddings.weight[VISUAL_POSITION]
            source = torch.cat([source, regions], dim=1)
        positions = torch.arange(TEXT_POSITION, TEXT_POSITION + t, device=device)
        text = self.word_embeddings(input_ids) + self.position_embeddings(positions) + \
            type_text + feature[:, None]
        return source, text

    # -- the network --------------------------------------------------------------------
    def encode(self, input_ids: Tensor, text_mask: Tensor, visual: Visual | None,
               causal: bool) -> tuple[Tensor, Tensor]:
        """Hidden states of the source block `(B, 1 + R, h)` and of the text `(B, T, h)`."""
        if input_ids.size(1) > self.cfg.max_text_length:
            raise RefbenchError(f"{input_ids.size(1)} report tokens exceed max_text_length "
                                f"{self.cfg.max_text_length}", key="model.max_text_length")
        source, text = self._sequence(input_ids, visual)
        b = input_ids.size(0)
        ones = torch.ones(b, 1, dtype=text_mask.dtype, device=text_mask.device)
        source_mask = ones if visual is None else torch.cat([ones, visual.mask.to(ones.dtype)], 1)
        x = self.dropout(self.embedding_norm(torch.cat([source, text], dim=1)))
        mask = attention_mask(source_mask, text_mask, causal)
        for layer in self.layers:
            x = layer(x, mask)
        return x[:, :source.size(1)], x[:, source.size(1):]

    def lm_logits(self, hidden: Tensor) -> Tensor:
        """Word scores from any text state (masked word or next word)."""
        h = self.lm_norm(F.gelu(self.lm_transform(hidden)))
        return h @ self.word_embeddings.weight.T + self.lm_bias

    def terms(self, source: Tensor, region_mask: Tensor) -> TermOutput:
        """Terminology logits from the encoded regions (the source block without `[CLS]`)."""
        regions = source[:, 1:]
        scores = torch.einsum("th,brh->btr", self.term_query, self.term_key(regions))
        scores = scores / math.sqrt(regions.size(-1))
        scores = scores.masked_fill(~region_mask.bool()[:, None, :], BLOCKED)
        attention = scores.softmax(-1)
        pooled = torch.einsum("btr,brh->bth", attention, regions)
        logits = (pooled * self.term_weight).sum(-1) + self.term_bias
        return TermOutput(logits, attention)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
