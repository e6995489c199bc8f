"""BERT family through Hugging Face transformers: sentence(-pair) classification / regression
heads (GLUE) and the span head (SQuAD), behind one registered baseline (`bert`) that picks
the head from the benchmark's `task.type`.

The architecture comes from the recipe (`hidden_size`, `num_hidden_layers`, ...), so one
file covers BERT-base, BERT-small and the tiny CPU smoke model. Weights start random, or
from a local checkpoint folder (`init_from`, e.g. a BERT saved with `save_pretrained`);
nothing is downloaded. The tokenizer is a WordPiece vocabulary trained on the training
split (saved in the run folder, so predict and resume use the very same one) or the
tokenizer of `tokenizer` / `init_from`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import torch

from refbench.baselines.base import Baseline, HeadDispatch, Prediction, pad_token_batch
from refbench.baselines.nlp.qa import QAConfig, collate_qa, encode_squad, postprocess, span_loss
from refbench.config import from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TOKENIZER_DIR = "tokenizer"
MODEL_CONFIG = "model_config.json"


@dataclass
class BertConfig:
    """`model:` section of a BERT recipe (BERT-base defaults)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    vocab_size: int = 30522
    max_length: int = 128
    lowercase: bool = True
    tokenizer: str | None = None
    classifier_dropout: float | None = None
    qa: QAConfig = field(default_factory=QAConfig)


def is_extractive_qa(spec: "BenchmarkSpec") -> bool:
    """Whether the benchmark asks for answer spans (SQuAD-style), from its `task.type`."""
    return spec.task.type == "extractive-qa"


@dataclass(frozen=True)
class TextTask:
    """A sentence(-pair) classification or regression task, as a benchmark spec states it."""

    text_fields: tuple[str, ...]
    is_regression: bool
    num_labels: int


def text_task(spec: "BenchmarkSpec") -> TextTask:
    """The text task of a classification / regression benchmark (its `task:` block)."""
    task = spec.task
    if task.type not in ("classification", "regression"):
        raise RefbenchError(f"benchmark {spec.name} is a {task.type!r} task; this head handles "
                            f"classification, regression and extractive-qa", key="benchmark")
    if not task.inputs:
        raise RefbenchError(f"benchmark {spec.name} names no text columns (task.inputs)",
                            key="benchmark")
    if task.type == "classification" and task.num_labels is None:
        raise RefbenchError(f"benchmark {spec.name} does not say how many labels there are "
                            f"(task.num_labels)", key="benchmark")
    regression = task.type == "regression"
    return TextTask(task.inputs, regression, 1 if regression else int(task.num_labels or 0))


def texts(rows: "hf_datasets.Dataset", fields: Sequence[str]) -> Iterator[str]:
    """Every text of the given columns, column by column (a tokenizer's training corpus)."""
    for name in fields:
        yield from list(rows[name])


def build_wordpiece_vocab(texts: Iterator[str], vocab_size: int, lowercase: bool) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: special tokens, every character seen (word-initial
    and `##` continuation), then whole words by frequency (ties by spelling).

    The `tokenizers` WordPiece trainer breaks frequency ties in hash-map order, which
    changes from process to process, so two runs with the same seed would get different
    vocabularies (and different models). Greedy longest-match WordPiece tokenization works
    with any vocabulary holding all characters, so this one is valid, and it is the same
    on every machine.
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    seen = set(vocab)
    for word, _count in sorted(words.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    return {token: i for i, token in enumerate(vocab)}


def train_wordpiece(texts: Iterator[str], vocab_size: int, lowercase: bool, out: Path) -> None:
    """Build a BERT WordPiece tokenizer from local text and save it as a transformers folder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = build_wordpiece_vocab(texts, vocab_size, lowercase)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.decoder = decoders.WordPiece()
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                             do_lower_case=lowercase)
    fast.save_pretrained(str(out))


def _check_checkpoint_folder(src: Path) -> None:
    if not (src / "config.json").exists():
        raise RefbenchError("not a local checkpoint folder (no config.json)", path=src)


class _BertHead(Baseline):
    """Shared construction: tokenizer (trained, local, or from `init_from`) and HF config."""

    Config = BertConfig

    def __init__(self, cfg: BertConfig, hf_model: Any, tokenizer: Any, spec: "BenchmarkSpec") -> None:
        super().__init__()
        self.cfg = cfg
        self.model = hf_model
        self.tokenizer = tokenizer
        self.spec = spec

    # subclasses: the transformers class, its head arguments and the tokenizer corpus
    hf_class_name: str = ""

    @classmethod
    def head_kwargs(cls, spec: "BenchmarkSpec") -> dict[str, Any]:
        return {}

    @classmethod
    def corpus(cls, rows: "hf_datasets.Dataset", spec: "BenchmarkSpec") -> Iterator[str]:
        raise NotImplementedError

    @classmethod
    def _hf_class(cls) -> Any:
        import transformers

        return getattr(transformers, cls.hf_class_name)

    @classmethod
    def check_init_from(cls, init_from: str, model_cfg: Mapping[str, Any],
                        spec: "BenchmarkSpec") -> None:
        _check_checkpoint_folder(Path(init_from))

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "_BertHead":
        from transformers import AutoTokenizer
        from transformers import BertConfig as HFBertConfig

        cfg = from_dict(BertConfig, dict(model_cfg), prefix="model")
        run_dir = Path(run_dir)
        tok_dir = run_dir / TOKENIZER_DIR
        head = cls.head_kwargs(spec)
        if init_from is not None:
            src = Path(init_from)
            _check_checkpoint_folder(src)
            if not tok_dir.exists():
                AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(tok_dir))
            hf_model = cls._hf_class().from_pretrained(str(src), **head)
        else:
            if not tok_dir.exists():
                if cfg.tokenizer is not None:
                    AutoTokenizer.from_pretrained(cfg.tokenizer).save_pretrained(str(tok_dir))
                else:
                    train_wordpiece(cls.corpus(train_rows, spec), cfg.vocab_size, cfg.lowercase,
                                    tok_dir)
            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
            hf_cfg = HFBertConfig(
                vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
                num_hidden_layers=cfg.num_hidden_layers,
                num_attention_heads=cfg.num_attention_heads,
                intermediate_size=cfg.intermediate_size, hidden_act=cfg.hidden_act,
                hidden_dropout_prob=cfg.hidden_dropout_prob,
                attention_probs_dropout_prob=cfg.attention_probs_dropout_prob,
                max_position_embeddings=cfg.max_position_embeddings,
                classifier_dropout=cfg.classifier_dropout,
                pad_token_id=tokenizer.pad_token_id, **head)
            hf_model = cls._hf_class()(hf_cfg)
        hf_model.config.save_pretrained(str(run_dir / "hf_config"))
        atomic_write_json(run_dir / MODEL_CONFIG, asdict(cfg))
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        return cls(cfg, hf_model, tokenizer, spec)

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "_BertHead":
        from transformers import AutoConfig, AutoTokenizer

        run_dir = Path(run_dir)
        for needed in (run_dir / TOKENIZER_DIR, run_dir / "hf_config" / "config.json",
                       run_dir / MODEL_CONFIG):
            if not needed.exists():
                raise RefbenchError("run folder is incomplete (was it trained?)", path=needed)
        cfg = from_dict(BertConfig, json.loads((run_dir / MODEL_CONFIG).read_text()), prefix="model")
        hf_model = cls._hf_class()(AutoConfig.from_pretrained(str(run_dir / "hf_config")))
        tokenizer = AutoTokenizer.from_pretrained(str(run_dir / TOKENIZER_DIR))
        return cls(cfg, hf_model, tokenizer, spec)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class BertClassifier(_BertHead):
    """`BertForSequenceClassification` for a GLUE task (MSE for STS-B)."""

    hf_class_name = "BertForSequenceClassification"

    def __init__(self, cfg: BertConfig, hf_model: Any, tokenizer: Any, spec: "BenchmarkSpec") -> None:
        super().__init__(cfg, hf_model, tokenizer, spec)
        self.task = text_task(spec)

    @classmethod
    def head_kwargs(cls, spec: "BenchmarkSpec") -> dict[str, Any]:
        task = text_task(spec)
        return {"num_labels": task.num_labels,
                "problem_type": "regression" if task.is_regression else "single_label_classification"}

    @classmethod
    def corpus(cls, rows: "hf_datasets.Dataset", spec: "BenchmarkSpec") -> Iterator[str]:
        return texts(rows, text_task(spec).text_fields)

    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        fields = self.task.text_fields
        columns = [list(rows[name]) for name in fields]
        enc = self.tokenizer(*columns, truncation=True, max_length=self.cfg.max_length,
                             return_attention_mask=False)
        labels = list(rows["label"])
        ids = list(rows["idx"])
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "label": labels[i], "idx": ids[i]} for i in range(len(rows))]

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        dtype = torch.float32 if self.task.is_regression else torch.long
        return {**pad_token_batch(features, self.tokenizer.pad_token_id),
                "labels": torch.tensor([f["label"] for f in features], dtype=dtype),
                "idx": torch.tensor([f["idx"] for f in features], dtype=torch.long)}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Any:
        labels = batch.get("labels")
        if labels is not None and not self.task.is_regression and bool((labels < 0).any()):
            labels = None  # unlabeled (test) rows: logits only
        return self.model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                          attention_mask=batch["attention_mask"], labels=labels)

    def training_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.forward(batch)
        if out.loss is None:
            raise RefbenchError("training split has unlabeled rows (label -1)")
        return {"loss": out.loss}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, torch.Tensor]) -> list[Prediction]:
        logits = self.forward({k: v for k, v in batch.items() if k != "labels"}).logits
        ids = batch["idx"].tolist()
        if self.task.is_regression:
            values = logits.squeeze(-1).float().tolist()
        else:
            values = logits.argmax(-1).tolist()
        return [Prediction(i, v) for i, v in zip(ids, values)]


class BertQuestionAnswering(_BertHead):
    """`BertForQuestionAnswering` for SQuAD v1.1 / v2.0 (windows, n-best spans, null score)."""

    hf_class_name = "BertForQuestionAnswering"

    @property
    def qa_config(self) -> QAConfig:
        qa = self.cfg.qa
        return QAConfig(max_length=self.cfg.max_length, doc_stride=qa.doc_stride,
                        max_query_length=qa.max_query_length, n_best=qa.n_best,
                        max_answer_length=qa.max_answer_length, null_threshold=qa.null_threshold)

    @classmethod
    def corpus(cls, rows: "hf_datasets.Dataset", spec: "BenchmarkSpec") -> Iterator[str]:
        return texts(rows, spec.task.inputs or ("question", "context"))

    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        features = encode_squad(self.tokenizer, rows, self.qa_config)
        for index, feature in enumerate(features):
            feature["feature_index"] = index
        return features

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_qa(features, self.tokenizer.pad_token_id)

    def _logits(self, batch: Mapping[str, torch.Tensor]) -> Any:
        return self.model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                          attention_mask=batch["attention_mask"])

    def training_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self._logits(batch)
        return {"loss": span_loss(out.start_logits, out.end_logits, batch)}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, torch.Tensor]) -> list[Prediction]:
        out = self._logits(batch)
        mask = batch["attention_mask"].bool()
        preds = []
        for i, index in enumerate(batch["feature_index"].tolist()):
            length = int(mask[i].sum())
            preds.append(Prediction(index, (out.start_logits[i, :length].tolist(),
                                            out.end_logits[i, :length].tolist())))
        return preds

    def finalize(self, rows: "hf_datasets.Dataset", features: Sequence[Mapping[str, Any]],
                 predictions: Sequence[Prediction]) -> dict[Any, Any]:
        logits = {p.id: p.value for p in predictions}
        version2 = self.spec.metric.kwargs().get("version") == "2.0"
        return postprocess(rows, features, logits, self.qa_config, version2)


@BASELINES.register("bert", family="BERT (Devlin et al., 2019)", tasks="glue, squad")
class Bert(HeadDispatch):
    """The registered BERT baseline: the GLUE head or the SQuAD span head, by benchmark."""

    Config = BertConfig

    @staticmethod
    def head_for(spec: "BenchmarkSpec") -> type[_BertHead]:
        return BertQuestionAnswering if is_extractive_qa(spec) else BertClassifier
