"""The registered CAPTURE baseline (`capture`): self-supervised pretraining on product titles
and region features, then instance-level retrieval with the fused embedding.

Training reads the benchmark's training split (title + regions, no labels) and minimises
MLM + MRM + CLR (`pretext.py`). Predictions follow the official pipeline: every query and
every gallery item is embedded by the pretrained network and the gallery is ranked for
each query by cosine similarity (exact search), keeping the top 100 ids, which is what the
`product1m_ranked` format writes to `retrieval_id_list.txt`. The gallery split is reached
through `bind_splits`: the runner hands the model a loader of the benchmark's prepared
splits.

Nothing is downloaded: the official recipe starts from bert-base-chinese, here the
WordPiece vocabulary is built from the training titles (BERT's normalizer splits CJK
characters, so every character seen becomes a token) and weights start random, or the
text stream starts from all-MiniLM-L6-v2 with its own tokenizer (`text_init: minilm`, the
`models` extra; `retrieval/text_init.py`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.nlp.bert import train_wordpiece
from refbench.baselines.retrieval.capture.model import CaptureConfig, CaptureModel, check_config
from refbench.baselines.retrieval.capture.pretext import TokenIds, pretext_losses
from refbench.baselines.retrieval.regions import ItemFeatures, collate_regions
from refbench.baselines.retrieval.embedding import embed_features, rank_gallery
from refbench.baselines.retrieval.text_init import (force_text_shape, install_tokenizer,
                                                    load_minilm_tower)
from refbench.config import from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

TOKENIZER_DIR = "tokenizer"
MODEL_CONFIG = "model_config.json"
TASK_TYPE = "retrieval"
#: items per batch when the model embeds the gallery itself
GALLERY_BATCH = 64
#: where MiniLM's weights go in `CaptureModel` (`text_init.load_minilm_tower`)
MINILM_TARGETS = {"word_embeddings": "word_embeddings",
                  "position_embeddings": "position_embeddings",
                  "token_type_embeddings": "token_type_embeddings", "LayerNorm": "text_norm"}


def check_task(spec: "BenchmarkSpec") -> None:
    """CAPTURE answers retrieval benchmarks only."""
    if spec.task.type != TASK_TYPE:
        raise RefbenchError(f"benchmark {spec.name} is a {spec.task.type!r} task; capture ranks "
                            f"a gallery ({TASK_TYPE} benchmarks)", key="benchmark")


def titles(rows: "hf_datasets.Dataset") -> list[str]:
    """The items' titles (the tokenizer's corpus and the text input)."""
    if "title" not in rows.column_names:
        raise RefbenchError(f"the split has no 'title' column (columns: "
                            f"{', '.join(rows.column_names)})")
    return [t or "" for t in rows["title"]]


@BASELINES.register("capture", family="CAPTURE (Zhan et al., 2021)", tasks="product1m")
class Capture(Baseline):
    """CAPTURE: hybrid-stream transformer pretrained with MLM + MRM + CLR; ranks a gallery."""

    Config = CaptureConfig

    def __init__(self, cfg: CaptureConfig, tokenizer: Any, spec: "BenchmarkSpec") -> None:
        super().__init__()
        self.cfg, self.tokenizer, self.spec = cfg, tokenizer, spec
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.model = CaptureModel(cfg, vocab_size=len(tokenizer), pad_token_id=self.pad_token_id)
        self.token_ids = TokenIds(mask=int(tokenizer.mask_token_id), vocab_size=len(tokenizer),
                                  special=(int(tokenizer.cls_token_id), int(tokenizer.sep_token_id),
                                           self.pad_token_id))
        self._load_split: Callable[[str], "hf_datasets.Dataset"] | None = None
        self._gallery: ItemFeatures | None = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> CaptureConfig:
        cfg = from_dict(CaptureConfig, dict(model_cfg), prefix="model")
        cfg = force_text_shape(cfg, cfg.text_init)
        check_config(cfg)
        check_task(spec)
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "Capture":
        from transformers import AutoTokenizer

        cfg = cls.validate_config(model_cfg, spec)
        if init_from is not None:
            raise NotImplementedError(
                "capture cannot start from a checkpoint yet: the official weights are pickled "
                "torch files of the repo's own module names (over bert-base-chinese's 21,128 "
                "tokens) and no converter to this model exists")
        run_dir = Path(run_dir)
        tok_dir = run_dir / TOKENIZER_DIR
        if not tok_dir.exists():
            if cfg.text_init == "minilm":
                install_tokenizer(tok_dir)
            else:
                train_wordpiece(iter(titles(train_rows)), cfg.vocab_size, cfg.lowercase, tok_dir)
        atomic_write_json(run_dir / MODEL_CONFIG, asdict(cfg))
        model = cls(cfg, AutoTokenizer.from_pretrained(str(tok_dir)), spec)
        if cfg.text_init == "minilm":
            load_minilm_tower(model.model, MINILM_TARGETS, "text_layers")
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "Capture":
        from transformers import AutoTokenizer

        run_dir = Path(run_dir)
        for needed in (run_dir / TOKENIZER_DIR, run_dir / MODEL_CONFIG):
            if not needed.exists():
                raise RefbenchError("run folder is incomplete (was it trained?)", path=needed)
        cfg = from_dict(CaptureConfig, json.loads((run_dir / MODEL_CONFIG).read_text()),
                        prefix="model")
        check_config(cfg)
        return cls(cfg, AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER_DIR)), spec)

    def bind_splits(self, load_split: Callable[[str], "hf_datasets.Dataset"]) -> None:
        """Keep the split loader: `finalize` embeds the gallery split with it."""
        self._load_split = load_split
        self._gallery = None

    # -- data -------------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> ItemFeatures:
        """Titles tokenised now (`[CLS] title [SEP]`, at most `max_length`); regions read
        from the table when a batch needs them."""
        enc = self.tokenizer(titles(rows), truncation=True, max_length=self.cfg.max_length,
                             return_attention_mask=False, return_token_type_ids=False)
        return ItemFeatures(rows, enc["input_ids"], self.cfg.v_feature_size, self.cfg.max_regions)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Titles padded to `max_length` and regions to `max_regions` (fixed widths, as the
        official loader: the joint position embedding then never depends on the batch)."""
        n, width = len(features), self.cfg.max_length
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        for i, f in enumerate(features):
            ids = list(f["input_ids"])[:width]
            input_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, :len(ids)] = 1
        return {"input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids),
                "attention_mask": attention_mask,
                **collate_regions(features, self.cfg.max_regions, self.cfg.v_feature_size),
                "ids": [str(f["id"]) for f in features]}

    # -- training and prediction ----------------------------------------------------------
    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """MLM + MRM + CLR on a batch of training items (weights in the config)."""
        if batch["input_ids"].size(0) < 2:
            raise RefbenchError("the contrastive loss needs at least 2 items per batch",
                                key="trainer.batch_size")
        return pretext_losses(self.model, batch, self.token_ids)

    def embed(self, batch: Mapping[str, Any]) -> Tensor:
        """The L2-normalised retrieval features `(B, 1024)` of a batch (on its device)."""
        out = self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                         batch["regions"], batch["locations"], batch["region_mask"])
        return self.model.embedding(out)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        """One embedding per query item; `finalize` ranks the gallery with them."""
        embeddings = self.embed(batch)
        return [Prediction(qid, embeddings[i]) for i, qid in enumerate(batch["ids"])]

    def gallery_features(self) -> ItemFeatures:
        """The gallery split's features (loaded once per binding)."""
        if self._load_split is None:
            raise RefbenchError("capture needs the gallery split to rank: the runner binds it "
                                "(call bind_splits(load_split) when driving the model by hand)")
        if self._gallery is None:
            self._gallery = self.encode(self._load_split(self.cfg.gallery_split))
        return self._gallery

    def embed_gallery(self, batch_size: int = GALLERY_BATCH) -> Tensor:
        """Every gallery item's embedding, batched on the model's device without autograd."""
        return embed_features(self, self.gallery_features(), self.collate, self.embed, batch_size)

    def finalize(self, rows: "hf_datasets.Dataset", features: Sequence[Mapping[str, Any]],
                 predictions: Sequence[Prediction]) -> dict[Any, Any]:
        """`{query_id: [top_k gallery ids, best first]}` by exact cosine search."""
        if not predictions:
            return {}
        gallery = self.gallery_features()
        gallery_embeddings = self.embed_gallery()
        queries = torch.stack([p.value for p in predictions]).to(gallery_embeddings.device)
        return rank_gallery([p.id for p in predictions], queries, gallery.ids,
                            gallery_embeddings, self.cfg.top_k)

    def num_parameters(self) -> int:
        return self.model.num_parameters()
