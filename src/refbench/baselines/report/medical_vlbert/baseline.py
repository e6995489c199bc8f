"""The registered Medical-VLBERT baseline (`medical-vlbert`): trained by alternate learning on a
report-generation benchmark's training split, it writes one report and term scores per
study in the `reports_json` format.

Lifecycle through the common runner: `create` builds the WordPiece vocabulary from the
training reports (characters for Chinese; `text.py`), the terminology classes (training
terms seen at least `min_term_count` times) and the network, loads a user-supplied
ImageNet ResNet file when `backbone.weights` names one (nothing is downloaded; without it
the CNN starts random), or starts from another Medical-VLBERT run with `init_from` (the
CX-CHR -> COVID-19 CT transfer: `init_weights`). Each `training_step` runs the procedure
the alternate schedule gives for the current optimizer step (`schedule.py`); `predict`
generates with beam search (`generate.py`) and scores every term.

What is written to the run folder: `tokenizer/`, `terms.json` and `model_config.json`,
so `restore` (used by `refbench predict` and the leaderboard) rebuilds the same model.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.report.inputs import (StudyFeatures, check_task, collate_images,
                                              require_columns, term_targets, term_vocabulary)
from refbench.baselines.report.medical_vlbert.generate import beam_search
from refbench.baselines.report.medical_vlbert.model import (MedicalVLBERT, MedicalVLBERTConfig,
                                                            check_config)
from refbench.baselines.report.medical_vlbert.pretext import (KnowledgeCorpus, TokenIds,
                                                              knowledge_loss, pad_reports,
                                                              report_ids, transfer_loss)
from refbench.baselines.report.medical_vlbert.schedule import AlternateSchedule, StepCounter
from refbench.baselines.report.medical_vlbert.text import (build_vocabulary, decode,
                                                           read_corpus, save_wordpiece,
                                                           vocabulary_of)
from refbench.baselines.report.vision import load_backbone_weights
from refbench.config import TrainerConfig, from_dict
from refbench.errors import RefbenchError
from refbench.evaluation.captions.metric import ReportPrediction
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

TOKENIZER_DIR = "tokenizer"
MODEL_CONFIG = "model_config.json"
TERMS_FILE = "terms.json"
#: the architecture settings a run started with `init_from` must share with its source
SHARED_SHAPE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_text_length")
#: tensors copied row by row by token / term / image index, not as a whole
_BY_TOKEN = ("model.word_embeddings.weight", "model.lm_bias")
_BY_TERM = ("model.term_query", "model.term_weight", "model.term_bias")
_BY_IMAGE = ("model.image_index_embeddings.weight",)


def _reports(rows: "hf_datasets.Dataset") -> list[str]:
    return [r or "" for r in rows["report"]] if "report" in rows.column_names else [""] * len(rows)


@BASELINES.register("medical-vlbert", family="Medical-VLBERT (Liu et al., TNNLS 2021)",
                    tasks="iu_xray, covid19_ct, cx_chr")
class MedicalVLBERTBaseline(Baseline):
    """Medical-VLBERT: region features + report in one BERT, alternate learning, beam search."""

    Config = MedicalVLBERTConfig
    #: knowledge steps leave the image encoder and term head out of the graph (DDP)
    ddp_find_unused_parameters = True

    def __init__(self, cfg: MedicalVLBERTConfig, tokenizer: Any, terms: Sequence[str],
                 spec: "BenchmarkSpec", corpus: KnowledgeCorpus | None = None) -> None:
        super().__init__()
        self.cfg, self.tokenizer, self.spec, self.corpus = cfg, tokenizer, spec, corpus
        self.terms = list(terms)
        self.term_index = {t: i for i, t in enumerate(self.terms)}
        self.ids = TokenIds(pad=int(tokenizer.pad_token_id), cls=int(tokenizer.cls_token_id),
                            sep=int(tokenizer.sep_token_id), mask=int(tokenizer.mask_token_id),
                            unk=int(tokenizer.unk_token_id), vocab_size=len(tokenizer))
        self.model = MedicalVLBERT(cfg, len(tokenizer), len(self.terms), self.ids.pad, self.ids.cls)
        self.schedule = AlternateSchedule(cfg.knowledge_steps, cfg.transfer_steps)
        self.counter = StepCounter()
        #: optimizer steps taken: the alternate schedule's clock, saved with the weights
        self.register_buffer("schedule_step", torch.zeros((), dtype=torch.long))

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> MedicalVLBERTConfig:
        cfg = from_dict(MedicalVLBERTConfig, dict(model_cfg), prefix="model")
        check_config(cfg)
        check_task(spec, "medical-vlbert")
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "MedicalVLBERTBaseline":
        from transformers import AutoTokenizer

        cfg = cls.validate_config(model_cfg, spec)
        require_columns(train_rows, "report")
        run_dir = Path(run_dir)
        source = read_source(Path(init_from)) if init_from else None
        if source is not None:
            check_compatible(source["config"], cfg)
        tok_dir, terms_path = run_dir / TOKENIZER_DIR, run_dir / TERMS_FILE
        if not tok_dir.exists():
            base = vocabulary_of(source["tokenizer"]) if source is not None else ()
            save_wordpiece(build_vocabulary(_reports(train_rows), cfg.vocab_size, cfg.lowercase,
                                            base), cfg.lowercase, tok_dir)
        if terms_path.exists():
            terms = _read_json(terms_path)
        else:
            terms = term_vocabulary(train_rows, cfg.min_term_count)
            atomic_write_json(terms_path, terms)
        atomic_write_json(run_dir / MODEL_CONFIG, asdict(cfg))
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        corpus = None
        if cfg.knowledge_corpus:
            texts = read_corpus(Path(cfg.knowledge_corpus))
            corpus = KnowledgeCorpus([report_ids(t, _token_ids(tokenizer), cfg.max_text_length)
                                      for t in _tokenize(tokenizer, texts)])
        model = cls(cfg, tokenizer, terms, spec, corpus)
        if source is not None:
            init_weights(model, source)
        elif cfg.backbone.weights:
            load_backbone_weights(model.model.regions.backbone, Path(cfg.backbone.weights))
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "MedicalVLBERTBaseline":
        from transformers import AutoTokenizer

        run_dir = Path(run_dir)
        for needed in (run_dir / TOKENIZER_DIR, run_dir / MODEL_CONFIG, run_dir / TERMS_FILE):
            if not needed.exists():
                raise RefbenchError("run folder is incomplete (was it trained?)", path=needed)
        cfg = from_dict(MedicalVLBERTConfig, _read_json(run_dir / MODEL_CONFIG), prefix="model")
        check_config(cfg)
        return cls(cfg, AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER_DIR)),
                   _read_json(run_dir / TERMS_FILE), spec)

    def configure_optimizer(self, cfg: TrainerConfig) -> torch.optim.Optimizer:
        """The runner's AdamW; the schedule's clock learns the accumulation factor here."""
        from refbench.engine.schedules import build_optimizer

        self.counter = StepCounter(cfg.grad_accum)
        return build_optimizer(self, cfg)

    # -- data -------------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> StudyFeatures:
        """Reports tokenised now (`[SEP] words [SEP]`, at most `max_text_length`), term
        classes now, images decoded when a batch needs them."""
        tokens = [report_ids(t, self.ids, self.cfg.max_text_length)
                  for t in _tokenize(self.tokenizer, _reports(rows))]
        terms = rows["terms"] if "terms" in rows.column_names else [[]] * len(rows)
        targets = [term_targets(t, self.term_index) for t in terms]
        return StudyFeatures(rows, self.cfg.num_images, self.cfg.backbone.image_size,
                             extra={"input_ids": tokens, "term_classes": targets})

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        input_ids, text_mask = pad_reports([f["input_ids"] for f in features], self.ids.pad)
        targets = torch.zeros(len(features), len(self.terms))
        for i, f in enumerate(features):
            targets[i, list(f["term_classes"])] = 1.0
        return {**collate_images(features), "input_ids": input_ids, "text_mask": text_mask,
                "term_targets": targets, "ids": [f["id"] for f in features]}

    # -- training and prediction ----------------------------------------------------------
    def phase(self) -> str:
        """The procedure of the next optimizer step."""
        return self.schedule.phase(int(self.schedule_step))

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Knowledge pretraining or transfer, as the alternate schedule says."""
        phase = self.phase()
        if self.counter.advance():
            self.schedule_step += 1
        if phase == "transfer":
            return transfer_loss(self.model, batch)
        input_ids, text_mask = batch["input_ids"], batch["text_mask"]
        if self.corpus is not None:
            input_ids, text_mask = self.corpus.draw(len(input_ids), self.ids.pad, input_ids.device)
        return knowledge_loss(self.model, input_ids, text_mask, self.ids)

    @torch.no_grad()
    def term_probabilities(self, batch: Mapping[str, Any]) -> Tensor:
        """`(B, T)` probability of each term from the images alone."""
        visual = self.model.embed_images(batch["images"], batch["image_mask"])
        start = torch.full((len(batch["images"]), 1), self.ids.sep, dtype=torch.long,
                           device=batch["images"].device)
        source, _ = self.model.encode(start, torch.ones_like(start), visual, causal=True)
        return torch.sigmoid(self.model.terms(source, visual.mask).logits.float())

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        """A generated report per study, with every term's score when there are terms."""
        cfg = self.cfg
        visual = self.model.embed_images(batch["images"], batch["image_mask"])
        words = beam_search(self.model, visual, self.ids, cfg.max_text_length, cfg.beam_size,
                            cfg.length_penalty, cfg.min_new_tokens)
        probs = self.term_probabilities(batch).tolist() if self.terms else None
        out = []
        for i, sid in enumerate(batch["ids"]):
            scores = None if probs is None else tuple(zip(self.terms, probs[i]))
            out.append(Prediction(sid, ReportPrediction(decode(self.tokenizer, words[i]) or ".",
                                                        None, scores)))
        return out

    def num_parameters(self) -> int:
        return self.model.num_parameters()


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False,
                     return_token_type_ids=False)["input_ids"]


def _token_ids(tokenizer: Any) -> TokenIds:
    return TokenIds(pad=int(tokenizer.pad_token_id), cls=int(tokenizer.cls_token_id),
                    sep=int(tokenizer.sep_token_id), mask=int(tokenizer.mask_token_id),
                    unk=int(tokenizer.unk_token_id), vocab_size=len(tokenizer))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RefbenchError(f"unreadable run file: {exc}", path=path) from None


# -- starting from another run (CX-CHR -> COVID-19 CT) --------------------------------------
def read_source(path: Path) -> dict[str, Any]:
    """A Medical-VLBERT run folder (its best checkpoint, else its last) or one of its
    checkpoint folders -> its config, tokenizer, terms and weights."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from refbench.engine import find_checkpoint
    from refbench.engine.checkpoint import MODEL_FILE

    path = Path(path)
    if (path / MODEL_FILE).is_file():
        checkpoint, run_dir = path, path.parent.parent
    elif path.is_dir():
        try:
            checkpoint = find_checkpoint(path, "best")
        except RefbenchError:
            checkpoint = find_checkpoint(path, "last")
        run_dir = path
    else:
        raise RefbenchError("init_from must be a Medical-VLBERT run folder or one of its "
                            "checkpoint folders", path=path, key="init_from")
    for needed in (run_dir / TOKENIZER_DIR, run_dir / MODEL_CONFIG, run_dir / TERMS_FILE):
        if not needed.exists():
            raise RefbenchError("not a Medical-VLBERT run folder (init_from)", path=needed)
    try:
        state = load_file(str(checkpoint / MODEL_FILE))
    except Exception as exc:  # noqa: BLE001 - a truncated file is the user's input error
        raise RefbenchError(f"unreadable checkpoint: {exc}", path=checkpoint / MODEL_FILE) from None
    return {"config": _read_json(run_dir / MODEL_CONFIG), "terms": _read_json(run_dir / TERMS_FILE),
            "tokenizer": AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER_DIR)),
            "state": state, "path": checkpoint}


def check_compatible(source_cfg: Mapping[str, Any], cfg: MedicalVLBERTConfig) -> None:
    """The transformer and CNN shapes must match the source run's (image size, number of
    images, vocabulary and terms may differ)."""
    for key in SHARED_SHAPE:
        if source_cfg.get(key) != getattr(cfg, key):
            raise RefbenchError(f"init_from run has {key} {source_cfg.get(key)!r}, this recipe "
                                f"{getattr(cfg, key)!r}", key=f"model.{key}")
    backbone = source_cfg.get("backbone") or {}
    for key in ("depth", "width"):
        if backbone.get(key) != getattr(cfg.backbone, key):
            raise RefbenchError(f"init_from run has backbone.{key} {backbone.get(key)!r}, this "
                                f"recipe {getattr(cfg.backbone, key)!r}",
                                key=f"model.backbone.{key}")


def init_weights(model: MedicalVLBERTBaseline, source: Mapping[str, Any]) -> int:
    """Copy the source run's weights: word rows by token, term rows by term name, image
    index rows by index; every other tensor whole. New tokens / terms / image indices
    keep their fresh initialisation; the schedule's clock restarts. Returns the tensors
    copied."""
    state, own = source["state"], model.state_dict()
    src_vocab = source["tokenizer"].get_vocab()
    token_rows = [(i, src_vocab[t]) for t, i in model.tokenizer.get_vocab().items() if t in src_vocab]
    src_terms = {t: i for i, t in enumerate(source["terms"])}
    term_rows = [(i, src_terms[t]) for i, t in enumerate(model.terms) if t in src_terms]
    copied = 0
    with torch.no_grad():
        for name, tensor in own.items():
            if name == "schedule_step":
                continue
            if name not in state:
                raise RefbenchError(f"the init_from checkpoint has no {name}", path=source["path"])
            src = state[name]
            if name in _BY_TOKEN or name in _BY_TERM or name in _BY_IMAGE:
                rows = token_rows if name in _BY_TOKEN else term_rows if name in _BY_TERM else \
                    [(k, k) for k in range(min(len(tensor), len(src)))]
                if rows:
                    dst_idx = torch.tensor([d for d, _ in rows])
                    src_idx = torch.tensor([s for _, s in rows])
                    tensor[dst_idx] = src[src_idx].to(tensor.dtype)
            elif src.shape == tensor.shape:
                tensor.copy_(src)
            else:
                raise RefbenchError(f"{name} has shape {tuple(src.shape)} in the init_from "
                                    f"checkpoint, {tuple(tensor.shape)} here", path=source["path"])
            copied += 1
    model.load_state_dict(own)
    return copied
