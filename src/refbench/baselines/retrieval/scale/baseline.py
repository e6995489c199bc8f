"""The registered SCALE baseline (`scale`): self-supervised pretraining on the five
M5Product modalities, then retrieval with the summed per-modality embeddings.

Training reads the benchmark's training split (title, property table, image regions,
video and audio features; no labels) and minimises MLM + MEM + MRM + MFM + MAM + SIMCL
(`pretext.py`). Predictions follow SCALE's evaluation (`examples/SCALE/eval/
extract_features.py`, `retrieval_unit_id_list_v2.py`): every query and gallery item is
embedded as the sum of the chosen modalities' fused first tokens (`modalities`, the
official letters; `tpiva` = all five), the gallery is ranked by the raw dot product, the
top `top_k` (10, the official `--max_topk`) ids are kept and the query's own id is then
dropped from its list (so such a list has `top_k - 1` ids, as the official files). The
gallery split is reached through `bind_splits`; by default it is the query split's
partner (`coarse_query` -> `coarse_gallery`), `gallery_split` overrides it.

Nothing is downloaded: the official recipe starts from bert-base-chinese; here the
WordPiece vocabulary is built from the training titles and property tables (BERT's
normalizer splits CJK characters, so each character seen becomes a token) and weights
start random, or the text tower starts from all-MiniLM-L6-v2 (`text_init: minilm`, the
`models` extra; `retrieval/text_init.py`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.nlp.bert import train_wordpiece
from refbench.baselines.retrieval.embedding import embed_features, rank_gallery
from refbench.baselines.retrieval.scale.inputs import ScaleItems, collate_items, require_columns
from refbench.baselines.retrieval.scale.model import ScaleConfig, ScaleModel, check_config
from refbench.baselines.retrieval.scale.pretext import TokenIds, pretext_losses
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
#: where MiniLM's weights go in `ScaleModel` (`text_init.load_minilm_tower`)
MINILM_TARGETS = {"word_embeddings": "text_embeddings.word_embeddings",
                  "position_embeddings": "text_embeddings.position_embeddings",
                  "token_type_embeddings": "text_embeddings.token_type_embeddings",
                  "LayerNorm": "text_embeddings.LayerNorm"}


def check_task(spec: "BenchmarkSpec") -> None:
    """SCALE answers retrieval benchmarks only (classification fine-tuning is not built)."""
    if spec.task.type != TASK_TYPE:
        raise RefbenchError(f"benchmark {spec.name} is a {spec.task.type!r} task; scale ranks "
                            f"a gallery ({TASK_TYPE} benchmarks)", key="benchmark")


def gallery_for(query_split: str) -> str:
    """The gallery split paired with a query split (`fine_query` -> `fine_gallery`)."""
    if not query_split.endswith("query"):
        raise RefbenchError(f"cannot tell the gallery of split {query_split!r}: set "
                            f"model.gallery_split", key="model.gallery_split")
    return query_split[:-len("query")] + "gallery"


def corpus(rows: "hf_datasets.Dataset") -> Iterator[str]:
    """The tokenizer's training text: titles, property keys and values."""
    require_columns(rows)
    for title, keys, values in zip(rows["title"], rows["pv_keys"], rows["pv_values"]):
        yield " ".join([title or "", *keys, *values])


@BASELINES.register("scale", family="SCALE / M5-MMT (Dong et al., 2022)", tasks="m5product")
class Scale(Baseline):
    """SCALE: five modality encoders + a fusion transformer pretrained with the masked
    tasks and the self-harmonized contrastive loss; ranks a gallery."""

    Config = ScaleConfig

    def __init__(self, cfg: ScaleConfig, tokenizer: Any, spec: "BenchmarkSpec") -> None:
        super().__init__()
        self.cfg, self.tokenizer, self.spec = cfg, tokenizer, spec
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.model = ScaleModel(cfg, vocab_size=len(tokenizer), pad_token_id=self.pad_token_id)
        self.token_ids = TokenIds(mask=int(tokenizer.mask_token_id), vocab_size=len(tokenizer),
                                  special=(int(tokenizer.cls_token_id), int(tokenizer.sep_token_id),
                                           self.pad_token_id))
        self._load_split: Callable[[str], "hf_datasets.Dataset"] | None = None
        self._galleries: dict[str, ScaleItems] = {}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> ScaleConfig:
        cfg = from_dict(ScaleConfig, dict(model_cfg), prefix="model")
        cfg = force_text_shape(cfg, cfg.text_init)
        check_config(cfg)
        check_task(spec)
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "Scale":
        from transformers import AutoTokenizer

        cfg = cls.validate_config(model_cfg, spec)
        if init_from is not None:
            raise NotImplementedError(
                "scale cannot start from a checkpoint yet: the official weights are pickled "
                "torch files of the repo's own module names and no converter exists")
        run_dir = Path(run_dir)
        tok_dir = run_dir / TOKENIZER_DIR
        if not tok_dir.exists():
            if cfg.text_init == "minilm":
                install_tokenizer(tok_dir)
            else:
                train_wordpiece(corpus(train_rows), cfg.vocab_size, cfg.lowercase, tok_dir)
        atomic_write_json(run_dir / MODEL_CONFIG, asdict(cfg))
        model = cls(cfg, AutoTokenizer.from_pretrained(str(tok_dir)), spec)
        if cfg.text_init == "minilm":
            load_minilm_tower(model.model, MINILM_TARGETS, "text_layers")
            if not cfg.shared_encoders:  # the table's own text tower starts from it too
                load_minilm_tower(model.model, {k: v.replace("text_", "table_", 1)
                                                for k, v in MINILM_TARGETS.items()},
                                  "table_layers")
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "Scale":
        from transformers import AutoTokenizer

        run_dir = Path(run_dir)
        for needed in (run_dir / TOKENIZER_DIR, run_dir / MODEL_CONFIG):
            if not needed.exists():
                raise RefbenchError("run folder is incomplete (was it trained?)", path=needed)
        cfg = from_dict(ScaleConfig, json.loads((run_dir / MODEL_CONFIG).read_text()),
                        prefix="model")
        check_config(cfg)
        return cls(cfg, AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER_DIR)), spec)

    def bind_splits(self, load_split: Callable[[str], "hf_datasets.Dataset"]) -> None:
        """Keep the split loader: `finalize` embeds the gallery split with it."""
        self._load_split = load_split
        self._galleries = {}

    # -- data -------------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> ScaleItems:
        """Title and table tokenised now; media read from the table when a batch needs them."""
        return ScaleItems(rows, self.tokenizer, self.cfg)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Every stream padded to its fixed width (`inputs.collate_items`)."""
        return collate_items(features, self.cfg, self.pad_token_id)

    # -- training and prediction ----------------------------------------------------------
    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """MLM + MEM + MRM + MFM + MAM + SIMCL on a batch (weights in the config)."""
        if batch["input_ids"].size(0) < 2:
            raise RefbenchError("the contrastive loss needs at least 2 items per batch",
                                key="trainer.batch_size")
        return pretext_losses(self.model, batch, self.token_ids)

    def embed(self, batch: Mapping[str, Any]) -> Tensor:
        """The retrieval features `(B, v_hidden_size)` of a batch (on its device)."""
        return self.model.embedding(self.model(dict(batch)))

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        """One embedding per query item; `finalize` ranks the gallery with them."""
        embeddings = self.embed(batch)
        return [Prediction(qid, embeddings[i]) for i, qid in enumerate(batch["ids"])]

    def gallery_split(self, rows: "hf_datasets.Dataset | None" = None) -> str:
        """The configured gallery, else the partner of the scored split (the rows' own
        split name when the table carries one, else the benchmark's)."""
        if self.cfg.gallery_split:
            return self.cfg.gallery_split
        named = getattr(rows, "split", None) if rows is not None else None
        if named is not None and str(named).endswith("query"):
            return gallery_for(str(named))
        return gallery_for(self.spec.split)

    def gallery(self, split: str) -> tuple[ScaleItems, Tensor]:
        """A gallery split's items (tokenised once per binding) and their embeddings by the
        current weights."""
        if self._load_split is None:
            raise RefbenchError("scale needs the gallery split to rank: the runner binds it "
                                "(call bind_splits(load_split) when driving the model by hand)")
        if split not in self._galleries:
            self._galleries[split] = self.encode(self._load_split(split))
        items = self._galleries[split]
        embeddings = embed_features(self, items, self.collate, self.embed, GALLERY_BATCH)
        return items, embeddings

    def finalize(self, rows: "hf_datasets.Dataset", features: Sequence[Mapping[str, Any]],
                 predictions: Sequence[Prediction]) -> dict[Any, Any]:
        """`{query_id: [gallery ids, best first]}`: the top `top_k` by dot product, the
        query's own id removed."""
        if not predictions:
            return {}
        items, gallery = self.gallery(self.gallery_split(rows))
        queries = torch.stack([p.value for p in predictions]).to(gallery.device)
        ranked = rank_gallery([p.id for p in predictions], queries, items.ids, gallery,
                              self.cfg.top_k)
        return {qid: [g for g in ids if g != qid] for qid, ids in ranked.items()}

    def num_parameters(self) -> int:
        return self.model.num_parameters()
