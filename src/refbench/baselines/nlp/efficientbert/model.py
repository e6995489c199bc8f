"""EfficientBERT student for GLUE and SQuAD: a compact BERT whose every layer has a searched FFN.

The architecture follows the official `AutoBert` (`models/auto_bert.py`,
`models/mobile_bert.py`, `models/bert.py` of `cheneydon/efficient-bert`):

- MobileBERT embedding: token embeddings of size `embedding_size` (128); each position
  concatenates the embeddings of the next, the current and the previous token (zeros
  past the ends), a dense layer maps that 3 x 128 vector to the hidden size, then
  segment + position embeddings (hidden size), LayerNorm, dropout;
- per layer (`encoder`): BERT self-attention (`LayerNorm(h + dropout(dense(context)))`),
  then the layer's searched FFN (`ffn.SearchedFFN`: `n` stacked blocks, each
  `LayerNorm(h + dropout(expr(h)))`);
- GLUE head: pooler `tanh(dense(h[CLS]))` + dropout, then a linear classifier (one
  output, squeezed, for STS-B regression); SQuAD head: Linear(hidden, 2) on every token
  (start and end logits), no pooler;
- `fit_dense`: Linear(hidden -> teacher width, 768) applied to the embedding output and
  to every layer output, used only by distillation (frozen otherwise, see
  `EfficientBertStudent`).

The encoder returns every hidden state and every layer's attention scores (pre-softmax,
with the padding mask added, like the official `attn_score`) for the distillation loss of
`refbench.baselines.nlp.distill`, turned on by `model.distill.teacher_run` (a `bert` run of the
same task: the student then uses the teacher's tokenizer). Without a teacher the student
fine-tunes on the gold labels. Nothing is downloaded: the tokenizer is trained on the
training split as in `bert`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.base import Baseline, HeadDispatch, Prediction, pad_token_batch
from refbench.baselines.nlp.bert import (
    is_extractive_qa,
    text_task,
    texts,
    train_wordpiece,
)
from refbench.baselines.nlp.distill import (
    BertTeacher,
    EncoderOutputs,
    TeacherHandle,
    check_teacher,
    check_tokenization,
    distill_losses,
    install_teacher_tokenizer,
    load_teacher,
)
from refbench.baselines.nlp.efficientbert.encoder import (
    EfficientBertConfig,
    EfficientBertEncoder,
    EncoderOutput,
    FitDense,
    check_config,
    init_weights,
)
from refbench.baselines.nlp.efficientbert.official import (
    check_same_vocabulary,
    check_vocabulary,
    read_init_from,
    vocab_tokenizer,
)
from refbench.baselines.nlp.qa import (
    QAConfig,
    collate_qa,
    encode_squad,
    postprocess,
    span_loss,
)
from refbench.config import from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

TOKENIZER_DIR = "tokenizer"
MODEL_CONFIG = "model_config.json"


def check_supernet_file(cfg: EfficientBertConfig) -> None:
    """`model.init_supernet`, before anything is written: the search's teacher is set (the
    supernet uses its tokenizer and fit-dense width) and the file is a readable
    safetensors file. Whether its sizes fit the student is checked when it is loaded."""
    from safetensors import safe_open

    if cfg.distill.teacher_run is None:
        raise RefbenchError("starting from a search's supernet needs the search's teacher "
                            "(its tokenizer and fit-dense width): set "
                            "model.distill.teacher_run", key="model.init_supernet")
    path = Path(str(cfg.init_supernet))
    if not path.is_file():
        raise RefbenchError("no supernet weights here (refbench search efficientbert writes "
                            "supernet.safetensors)", path=path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as exc:  # safetensors raises several types for a bad header
        raise RefbenchError(f"cannot read the supernet ({str(exc).splitlines()[0][:120]})",
                            path=path) from None


@dataclass
class ClassifierOutput:
    logits: Tensor  # (batch, classes), or (batch,) for regression
    encoder: EncoderOutput


@dataclass
class SpanOutput:
    start_logits: Tensor  # (batch, length)
    end_logits: Tensor  # (batch, length)
    encoder: EncoderOutput

    @property
    def logits(self) -> Tensor:
        """(batch, length, 2): start and end, the layout distillation compares."""
        return torch.stack([self.start_logits, self.end_logits], dim=-1)


class EfficientBertStudent(Baseline):
    """What the GLUE and SQuAD heads share: encoder, fit-dense, tokenizer, run-folder
    construction and the warm-up distillation from a `bert` teacher run.

    `fit_dense` is part of the model (its parameters count, as in the paper) but is
    trained only by distillation; plain fine-tuning leaves it frozen so that the
    optimizer skips it and DDP sees no unused parameters. With `distill.teacher_run`
    set, `create` loads the teacher, gives the student the teacher's tokenizer and
    fit-dense width, unfreezes fit-dense, and `training_step` returns the distillation
    loss (as the official fine-tuning does: no gold loss except STS-B's MSE). The teacher
    is held by a `TeacherHandle`, never registered, so it stays out of the optimizer, DDP
    and checkpoints; `restore` (predict) does not load it.
    """

    Config = EfficientBertConfig

    def __init__(self, cfg: EfficientBertConfig, vocab_size: int, pad_token_id: int = 0,
                 tokenizer: Any = None) -> None:
        super().__init__()
        self.cfg, self.tokenizer, self.pad_token_id = cfg, tokenizer, pad_token_id
        self.encoder = EfficientBertEncoder(cfg, vocab_size, pad_token_id)
        self.fit_dense = (FitDense(cfg.hidden_size, cfg.teacher_hidden_size)
                          if cfg.teacher_hidden_size else None)
        self._teacher: TeacherHandle | None = None

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> EfficientBertConfig:
        """Types, then the expressions and sizes (search-space rules), before any write."""
        cfg = from_dict(EfficientBertConfig, dict(model_cfg), prefix="model")
        check_config(cfg)
        if cfg.init_supernet is not None:
            check_supernet_file(cfg)
        return cfg

    def _finish_init(self) -> None:
        """Initialise every weight (after the head is added) and freeze fit-dense."""
        init_weights(self)
        if self.fit_dense is not None:
            self.fit_dense.requires_grad_(False)

    # -- subclasses -------------------------------------------------------------------------
    @classmethod
    def corpus(cls, rows: "hf_datasets.Dataset", spec: "BenchmarkSpec") -> Iterator[str]:
        """The texts a fresh WordPiece vocabulary is built from."""
        raise NotImplementedError

    @classmethod
    def from_tokenizer(cls, cfg: EfficientBertConfig, tokenizer: Any,
                       spec: "BenchmarkSpec") -> "EfficientBertStudent":
        raise NotImplementedError

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "EfficientBertStudent":
        from transformers import AutoTokenizer

        cfg = from_dict(EfficientBertConfig, dict(model_cfg), prefix="model")
        check_config(cfg)
        official = read_init_from(init_from, cfg) if init_from is not None else None
        if cfg.init_supernet is not None:
            check_supernet_file(cfg)
        run_dir = Path(run_dir)
        tok_dir = run_dir / TOKENIZER_DIR
        teacher = None
        if cfg.distill.teacher_run is not None:
            with torch.random.fork_rng(devices=[]):  # the student's init ignores the teacher
                teacher = load_teacher(cfg.distill.teacher_run, cfg.distill.checkpoint)
            check_teacher(teacher, spec, num_heads=cfg.num_heads, num_layers=cfg.num_layers,
                          max_length=cfg.max_length)
            check_tokenization(teacher, vocab_size=cfg.vocab_size, lowercase=cfg.lowercase,
                               tokenizer=cfg.tokenizer)
            install_teacher_tokenizer(teacher, tok_dir)
            cfg.teacher_hidden_size = teacher.hidden_size
            if official is not None and official.vocab is not None:
                check_same_vocabulary(AutoTokenizer.from_pretrained(str(tok_dir)), official.vocab)
        elif not tok_dir.exists():
            if official is not None and official.vocab is not None:
                vocab_tokenizer(official.vocab, cfg.lowercase).save_pretrained(str(tok_dir))
            elif cfg.tokenizer is not None:
                AutoTokenizer.from_pretrained(cfg.tokenizer).save_pretrained(str(tok_dir))
            else:
                train_wordpiece(cls.corpus(train_rows, spec), cfg.vocab_size, cfg.lowercase,
                                tok_dir)
        model = cls.from_tokenizer(cfg, AutoTokenizer.from_pretrained(str(tok_dir)), spec)
        if cfg.init_supernet is not None:
            model.start_from_supernet(Path(cfg.init_supernet))
        if official is not None:
            check_vocabulary(official.state, model.tokenizer, official.path)
            model.copy_from_supernet(official.supernet, official.state, official=True)
        atomic_write_json(run_dir / MODEL_CONFIG, asdict(cfg))
        if teacher is not None:
            model.attach_teacher(teacher)
        return model

    @classmethod
    def check_init_from(cls, init_from: str, model_cfg: Mapping[str, Any],
                        spec: "BenchmarkSpec") -> None:
        """`--init-from`, before the run writes anything: the checkpoint reads and has
        a vocabulary to go with it."""
        cfg = from_dict(EfficientBertConfig, dict(model_cfg), prefix="model")
        read_init_from(init_from, cfg)

    @torch.no_grad()
    def start_from_supernet(self, path: Path) -> None:
        """Copy the weights of a search's supernet (`supernet.safetensors`) into this
        student: embedding, attention, each layer's FFN slices (`export_ffn`), fit-dense
        and, where the supernet has it, the head. A missing or unreadable file, or a
        supernet of another size, is a one-line error naming the file."""
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a bad file
            raise RefbenchError(f"cannot read the supernet ({str(exc).splitlines()[0][:120]})",
                                path=path) from None
        from refbench.baselines.nlp.efficientbert.supernet import supernet_of

        fit = self.fit_dense.dense.out_features if self.fit_dense is not None else 1
        vocab = self.encoder.embeddings.token_embeddings.num_embeddings
        net = supernet_of(state, self.cfg, path, official=False, vocab=vocab, fit=fit,
                          pad_token_id=self.pad_token_id)
        self.copy_from_supernet(net, state, official=False)

    @torch.no_grad()
    def copy_from_supernet(self, net: Any, state: Mapping[str, Tensor], official: bool) -> None:
        """Copy `net` (a supernet holding `state`) into this student: embedding, attention,
        each layer's FFN slices (`export_ffn`), fit-dense and the head where `state` has
        them. `official`: an official checkpoint, whose head of another label count (e.g.
        an MNLI student fine-tuned on RTE) stays fresh, as does a fit-dense of another
        teacher width; a search's supernet must match."""
        self.encoder.embeddings.load_state_dict(net.embeddings.state_dict())
        for i, (mine, expr) in enumerate(zip(self.encoder.layers, self.cfg.ffn_expressions)):
            mine.attention.load_state_dict(net.layers[i].attention.state_dict())
            mine.ffn.load_state_dict(net.export_ffn(i, expr).state_dict())
        if (self.fit_dense is not None and "fit_dense.dense.weight" in state
                and net.fit_dense.dense.weight.shape == self.fit_dense.dense.weight.shape):
            self.fit_dense.load_state_dict(net.fit_dense.state_dict())
        if "classifier.weight" in state:
            self._head_from_supernet(net, required=not official)

    def _head_from_supernet(self, net: Any, required: bool = True) -> None:
        """The supernet's GLUE head, where this student has one (SQuAD's stays fresh);
        `required`: a head of another size is an error (else it stays fresh)."""

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "EfficientBertStudent":
        from transformers import AutoTokenizer

        run_dir = Path(run_dir)
        for needed in (run_dir / TOKENIZER_DIR, run_dir / MODEL_CONFIG):
            if not needed.exists():
                raise RefbenchError("run folder is incomplete (was it trained?)", path=needed)
        cfg = from_dict(EfficientBertConfig, json.loads((run_dir / MODEL_CONFIG).read_text()),
                        prefix="model")
        return cls.from_tokenizer(cfg, AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER_DIR)),
                                  spec)

    # -- distillation -----------------------------------------------------------------------
    def attach_teacher(self, teacher: BertTeacher) -> None:
        """Distil from `teacher` from now on (unfreezes fit-dense; the teacher stays
        unregistered)."""
        if self.fit_dense is None or self.fit_dense.dense.out_features != teacher.hidden_size:
            raise RefbenchError(f"fit-dense width {self.cfg.teacher_hidden_size} does not match "
                                f"the teacher's hidden size {teacher.hidden_size}",
                                key="model.teacher_hidden_size")
        self.fit_dense.requires_grad_(True)
        self._teacher = TeacherHandle(teacher)

    @property
    def teacher(self) -> BertTeacher | None:
        return None if self._teacher is None else self._teacher.teacher

    def _distill(self, batch: Mapping[str, Tensor], logits: Tensor, enc: EncoderOutput, *,
                 regression: bool = False, span: bool = False) -> dict[str, Tensor]:
        assert self._teacher is not None and self.fit_dense is not None
        student = EncoderOutputs(logits, enc.attention_scores, self.fit_dense(enc.hidden_states))
        return distill_losses(student, self._teacher(batch), batch["attention_mask"],
                              batch.get("labels"), regression, self.cfg.distill, span=span)

    # -- data -------------------------------------------------------------------------------
    def _pad_inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Right-pad the input tensors to `max_length`, as the official data pipeline does:
        the trigram embedding lets the last real token see its right neighbour, so the
        padding width would otherwise change predictions with the batch's longest row."""
        extra = self.cfg.max_length - batch["input_ids"].size(1)
        if extra > 0:
            for name, value in (("input_ids", self.pad_token_id), ("token_type_ids", 0),
                                ("attention_mask", 0)):
                batch[name] = F.pad(batch[name], (0, extra), value=value)
        return batch

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class EfficientBertClassifier(EfficientBertStudent):
    """The EfficientBERT student with a GLUE head: pooler `tanh(dense(h[CLS]))`, dropout,
    linear classifier (one squeezed output and MSE for STS-B)."""

    def __init__(self, cfg: EfficientBertConfig, vocab_size: int, num_labels: int,
                 pad_token_id: int = 0, tokenizer: Any = None, task: Any = None) -> None:
        super().__init__(cfg, vocab_size, pad_token_id, tokenizer)
        self.task = task
        self.regression = num_labels == 1
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.pooler_dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self._finish_init()

    @classmethod
    def corpus(cls, rows: "hf_datasets.Dataset", spec: "BenchmarkSpec") -> Iterator[str]:
        return texts(rows, text_task(spec).text_fields)

    @classmethod
    def from_tokenizer(cls, cfg: EfficientBertConfig, tokenizer: Any,
                       spec: "BenchmarkSpec") -> "EfficientBertClassifier":
        return cls._build(cfg, tokenizer, text_task(spec))

    def _head_from_supernet(self, net: Any, required: bool = True) -> None:
        if net.classifier.weight.shape != self.classifier.weight.shape:
            if not required:
                return
            raise RefbenchError(f"the supernet's head has {net.classifier.out_features} "
                                f"outputs, this task {self.classifier.out_features}",
                                key="model.init_supernet")
        self.pooler.load_state_dict(net.pooler.state_dict())
        self.classifier.load_state_dict(net.classifier.state_dict())

    @classmethod
    def _build(cls, cfg: EfficientBertConfig, tokenizer: Any,
               task: Any) -> "EfficientBertClassifier":
        num_labels = task.num_labels
        return cls(cfg, len(tokenizer), num_labels, tokenizer.pad_token_id, tokenizer, task)

    # -- data -------------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        columns = [list(rows[name]) for name in self.task.text_fields]
        enc = self.tokenizer(*columns, truncation=True, max_length=self.cfg.max_length,
                             return_attention_mask=False)
        labels, ids = list(rows["label"]), list(rows["idx"])
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "label": labels[i], "idx": ids[i]} for i in range(len(rows))]

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        """Pad to `max_length` like the official data pipeline (see `_pad_inputs`)."""
        dtype = torch.float32 if self.regression else torch.long
        return {**pad_token_batch(features, self.pad_token_id, self.cfg.max_length),
                "labels": torch.tensor([f["label"] for f in features], dtype=dtype),
                "idx": torch.tensor([f["idx"] for f in features], dtype=torch.long)}

    # -- steps ------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Tensor],
                output_attentions: bool = False) -> ClassifierOutput:
        enc = self.encoder(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                           output_attentions)
        pooled = self.pooler_dropout(torch.tanh(self.pooler(enc.last_hidden_state[:, 0])))
        logits = self.classifier(pooled)
        return ClassifierOutput(logits.squeeze(-1) if self.regression else logits, enc)

    def training_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        labels = batch["labels"]
        if not self.regression and bool((labels < 0).any()):
            raise RefbenchError("training split has unlabeled rows (label -1)")
        if self._teacher is not None:
            out = self.forward(batch, output_attentions=True)
            logits = out.logits.unsqueeze(-1) if self.regression else out.logits
            return self._distill(batch, logits, out.encoder, regression=self.regression)
        logits = self.forward(batch).logits
        if self.regression:
            return {"loss": F.mse_loss(logits, labels.to(logits.dtype))}
        return {"loss": F.cross_entropy(logits, labels)}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Tensor]) -> list[Prediction]:
        logits = self.forward(batch).logits
        values = logits.float().tolist() if self.regression else logits.argmax(-1).tolist()
        return [Prediction(i, v) for i, v in zip(batch["idx"].tolist(), values)]

    def paper_parameter_count(self) -> int:
        """Embeddings + fit_dense + attention + FFNs, without pooler and classifier: what the
        official `param_list` sums (`embed_fit_dense + sum(attn + ffn[linear_idx])`)."""
        heads = (self.pooler, self.classifier)
        return self.num_parameters() - sum(p.numel() for m in heads for p in m.parameters())


class EfficientBertQuestionAnswering(EfficientBertStudent):
    """The EfficientBERT student with the SQuAD span head of the official `AutoBert`: one
    Linear(hidden, 2) on every token's last hidden state, split into start and end logits
    (no pooler). Windows, loss, n-best decoding and the v2.0 null score come from
    `refbench.baselines.nlp.qa`, exactly as for `bert`."""

    def __init__(self, cfg: EfficientBertConfig, vocab_size: int, pad_token_id: int = 0,
                 tokenizer: Any = None, spec: "BenchmarkSpec | None" = None) -> None:
        super().__init__(cfg, vocab_size, pad_token_id, tokenizer)
        self.spec = spec
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)
        self._finish_init()

    @classmethod
    def corpus(cls, rows: "hf_datasets.Dataset", spec: "BenchmarkSpec") -> Iterator[str]:
        return texts(rows, spec.task.inputs or ("question", "context"))

    @classmethod
    def from_tokenizer(cls, cfg: EfficientBertConfig, tokenizer: Any,
                       spec: "BenchmarkSpec") -> "EfficientBertQuestionAnswering":
        return cls(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer, spec)

    @property
    def qa_config(self) -> QAConfig:
        qa = self.cfg.qa
        return QAConfig(max_length=self.cfg.max_length, doc_stride=qa.doc_stride,
                        max_query_length=qa.max_query_length, n_best=qa.n_best,
                        max_answer_length=qa.max_answer_length, null_threshold=qa.null_threshold)

    # -- data -------------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        features = encode_squad(self.tokenizer, rows, self.qa_config)
        for index, feature in enumerate(features):
            feature["feature_index"] = index
        return features

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        return self._pad_inputs(collate_qa(features, self.pad_token_id))

    # -- steps ------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Tensor], output_attentions: bool = False) -> SpanOutput:
        enc = self.encoder(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                           output_attentions)
        start, end = self.qa_outputs(enc.last_hidden_state).unbind(dim=-1)
        return SpanOutput(start, end, enc)

    def training_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if self._teacher is not None:
            out = self.forward(batch, output_attentions=True)
            return self._distill(batch, out.logits, out.encoder, span=True)
        out = self.forward(batch)
        return {"loss": span_loss(out.start_logits, out.end_logits, batch)}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Tensor]) -> list[Prediction]:
        out = self.forward(batch)
        mask = batch["attention_mask"].bool()
        preds = []
        for i, index in enumerate(batch["feature_index"].tolist()):
            length = int(mask[i].sum())
            preds.append(Prediction(index, (out.start_logits[i, :length].float().tolist(),
                                            out.end_logits[i, :length].float().tolist())))
        return preds

    def finalize(self, rows: "hf_datasets.Dataset", features: Sequence[Mapping[str, Any]],
                 predictions: Sequence[Prediction]) -> dict[Any, Any]:
        logits = {p.id: p.value for p in predictions}
        assert self.spec is not None
        version2 = self.spec.metric.kwargs().get("version") == "2.0"
        return postprocess(rows, features, logits, self.qa_config, version2)


@BASELINES.register("efficientbert", family="EfficientBERT (Dong et al., 2021)",
                    tasks="glue, squad")
class EfficientBert(HeadDispatch):
    """The registered EfficientBERT baseline: the GLUE head or the SQuAD span head, by
    benchmark (`model.distill.teacher_run` turns on distillation from a `bert` run)."""

    Config = EfficientBertConfig

    @staticmethod
    def head_for(spec: "BenchmarkSpec") -> type[EfficientBertStudent]:
        return EfficientBertQuestionAnswering if is_extractive_qa(spec) else EfficientBertClassifier
