"""M5Product rows as SCALE inputs: tokenised title and property table, lazily read image
regions, video frames and audio rows, and the fixed-width batch.

As the official loader (`dataloaders/pretrain_dataset_ITP3VA.py`) builds them:

- title: `[CLS] title [SEP]`, at most `max_length` (36) tokens;
- table ("pv"): for each property pair the key's tokens then the value's tokens, no
  separator between pairs, inside `[CLS] ... [SEP]`, then cut to `table_length` (64)
  tokens (a long table loses its `[SEP]`, as there); each token remembers its pair and
  part (`spans`) for entity masking;
- image: up to `max_regions` (36) regions with the 5-d box geometry (`regions.py`);
- video: the first `video_frames` (12) frame features; audio: the first `audio_rows` (80)
  rows of the 80 x 751 feature.

Every stream is padded to its fixed width with a mask, so an item's prediction never
depends on its batch. `present` holds the dataset's `has_*` flags (a stream without rows
counts as absent even when flagged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from refbench.baselines.lazy_rows import LazyRows, total_nbytes
from refbench.baselines.retrieval.regions import CACHE_BYTES, collate_regions, item_regions
from refbench.baselines.retrieval.scale.model import MODALITIES, ScaleConfig
from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

#: columns read per item on access (the heavy ones)
MEDIA_COLUMNS = ("regions", "boxes", "image_size", "video", "audio")
#: the dataset's presence flags, in `MODALITIES` order
PRESENCE = {"title": "has_text", "image": "has_image", "table": "has_table",
            "video": "has_video", "audio": "has_audio"}
TEXT_COLUMNS = ("id", "title", "pv_keys", "pv_values")


def require_columns(rows: "hf_datasets.Dataset") -> None:
    """A one-line error naming the first column SCALE needs and the split lacks."""
    needed = (*TEXT_COLUMNS, *MEDIA_COLUMNS, *PRESENCE.values())
    missing = [c for c in needed if c not in rows.column_names]
    if missing:
        raise RefbenchError(f"the split has no column {missing[0]!r} (columns: "
                            f"{', '.join(rows.column_names)})")


def table_tokens(keys: Sequence[Sequence[str]], values: Sequence[Sequence[str]], tokenizer: Any,
                 length: int) -> tuple[list[list[int]], list[list[int]]]:
    """Per item: `[CLS] k1 v1 k2 v2 ... [SEP]` token ids cut to `length`, and each token's
    span (2p + 1 key, 2p + 2 value of pair p, 0 for [CLS] / [SEP])."""
    strings: list[str] = []
    for k, v in zip(keys, values):
        if len(k) != len(v):
            raise RefbenchError(f"a property table has {len(k)} keys but {len(v)} values")
        for pair in zip(k, v):
            strings.extend(pair)
    pieces = tokenizer(strings, add_special_tokens=False)["input_ids"] if strings else []
    cls, sep = int(tokenizer.cls_token_id), int(tokenizer.sep_token_id)
    ids_out, spans_out, at = [], [], 0
    for k in keys:
        ids, spans = [cls], [0]
        for p in range(len(k)):
            for part in (0, 1):
                ids.extend(pieces[at])
                spans.extend([2 * p + 1 + part] * len(pieces[at]))
                at += 1
        ids.append(sep)
        spans.append(0)
        ids_out.append(ids[:length])
        spans_out.append(spans[:length])
    return ids_out, spans_out


def _rows_of(value: Any, width: int, limit: int, what: str, item: str) -> np.ndarray:
    array = np.asarray(value if value is not None else [], dtype=np.float32)
    if array.size == 0:
        return np.zeros((0, width), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != width:
        raise RefbenchError(f"item {item!r} has {what} features of shape {tuple(array.shape)}; "
                            f"the model expects (N, {width})")
    if not np.isfinite(array).all():
        raise RefbenchError(f"item {item!r} has non-finite {what} features")
    return array[:limit]


class ScaleItems(LazyRows):
    """Per-item feature dicts of a split: ids, token ids and presence held in memory, the
    media read from the memory-mapped Arrow table on access (decoded items cached up to
    `CACHE_BYTES`, so a small split is decoded once). A `Sequence` for the trainer and the
    predictor."""

    def __init__(self, rows: "hf_datasets.Dataset", tokenizer: Any, cfg: ScaleConfig) -> None:
        super().__init__(CACHE_BYTES)
        require_columns(rows)
        self.cfg = cfg
        self.ids = [str(i) for i in rows["id"]]
        if len(set(self.ids)) != len(self.ids):
            dup = next(i for i in self.ids if self.ids.count(i) > 1)
            raise RefbenchError(f"item id {dup!r} occurs twice in the split")
        titles = [t or "" for t in rows["title"]]
        self.title_ids = tokenizer(titles, truncation=True, max_length=cfg.max_length,
                                   return_attention_mask=False,
                                   return_token_type_ids=False)["input_ids"]
        self.table_ids, self.table_spans = table_tokens(rows["pv_keys"], rows["pv_values"],
                                                        tokenizer, cfg.table_length)
        flags = {m: [bool(v) for v in rows[c]] for m, c in PRESENCE.items()}
        self.present = np.array([[flags[m][i] for m in MODALITIES] for i in range(len(rows))],
                                dtype=bool).reshape(len(rows), len(MODALITIES))
        self.media = rows.with_format("numpy", columns=list(MEDIA_COLUMNS))

    def __len__(self) -> int:
        return len(self.ids)

    def _media(self, index: int) -> dict[str, np.ndarray]:
        return self.cached(index, lambda: self._decode(index), total_nbytes)

    def _decode(self, index: int) -> dict[str, np.ndarray]:
        cfg, item = self.cfg, self.ids[index]
        row = dict(self.media[index])
        row["id"] = item
        out = item_regions(row, cfg.v_feature_size, cfg.max_regions)
        if not np.isfinite(out["regions"]).all():
            raise RefbenchError(f"item {item!r} has non-finite region features")
        out["video"] = _rows_of(row["video"], cfg.video_feature_size, cfg.video_frames, "video", item)
        out["audio"] = _rows_of(row["audio"], cfg.audio_feature_size, cfg.audio_rows, "audio", item)
        return out

    def item(self, index: int) -> dict[str, Any]:
        media = self._media(index)
        present = self.present[index].copy()
        for m, column in (("image", "regions"), ("video", "video"), ("audio", "audio")):
            present[MODALITIES.index(m)] &= len(media[column]) > 0
        return {"index": index, "id": self.ids[index], "input_ids": self.title_ids[index],
                "table_ids": self.table_ids[index], "table_spans": self.table_spans[index],
                "present": present, **media}


def _pad_tokens(rows: Sequence[Sequence[int]], width: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        r = list(r)[:width]
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def _pad_rows(arrays: Sequence[np.ndarray], width: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.zeros(len(arrays), width, size)
    mask = torch.zeros(len(arrays), width, dtype=torch.long)
    for i, a in enumerate(arrays):
        if len(a):
            out[i, :len(a)] = torch.from_numpy(np.ascontiguousarray(a))
            mask[i, :len(a)] = 1
    return out, mask


def collate_items(features: Sequence[Mapping[str, Any]], cfg: ScaleConfig,
                  pad_token_id: int) -> dict[str, Any]:
    """Feature dicts -> one batch of fixed-width tensors (see the module doc)."""
    input_ids, attention_mask = _pad_tokens([f["input_ids"] for f in features], cfg.max_length,
                                            pad_token_id)
    table_ids, table_mask = _pad_tokens([f["table_ids"] for f in features], cfg.table_length,
                                        pad_token_id)
    spans, _ = _pad_tokens([f["table_spans"] for f in features], cfg.table_length, 0)
    video, video_mask = _pad_rows([f["video"] for f in features], cfg.video_frames,
                                  cfg.video_feature_size)
    audio, audio_mask = _pad_rows([f["audio"] for f in features], cfg.audio_rows,
                                  cfg.audio_feature_size)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "table_ids": table_ids, "table_mask": table_mask, "table_spans": spans,
            **collate_regions(features, cfg.max_regions, cfg.v_feature_size),
            "video": video, "video_mask": video_mask, "audio": audio, "audio_mask": audio_mask,
            "present": torch.from_numpy(np.stack([np.asarray(f["present"], dtype=bool)
                                                  for f in features])),
            "ids": [str(f["id"]) for f in features]}
