"""The official EfficientBERT checkpoints, read into refbench's supernet layout.

`cheneydon/efficient-bert` saves every model with `save_checkpoint({'state_dict':
model.state_dict(), ...})` from a DistributedDataParallel wrapper (keys prefixed
`module.`), and its fine-tuning loads a pre-trained student with
`load_pretrain_state_dict(..., is_finetune=True)`: take `state_dict`, drop the `module.`
prefix and every `lm_head` tensor. The models are `AutoBert` / `AutoBertSingle` /
`MultiTaskAutoBert` (`models/auto_bert.py`), whose layers always allocate
`max_stacked_ffn` (4) FFN blocks of the full FFN width and slice them at run time, so every
official student checkpoint is shaped like refbench's `EfficientBertSupernet`; only the
names differ:

    embeddings.*                      -> embeddings.*           (MobileBERT embedding)
    encoder.{i}.attention.*           -> layers.{i}.attention.* (query/key/value/dense/layernorm)
    encoder.{i}.all_ffn.{k}.*         -> layers.{i}.blocks.{k}.* (dense1/dense2/layernorm)
    fit_dense.{weight,bias}           -> fit_dense.dense.*
    cls_pooler.dense.*, classifier.*  -> pooler.*, classifier.*  (fine-tuned GLUE students)
    classifiers.{t}.*                 -> dropped (the multi-task stage-3 supernet's heads)

The student then takes each layer's slices exactly as it does from a search's
`supernet.safetensors` (`EfficientBertSupernet.export_ffn`). The vocabulary the official
students use is BERT-base uncased's `vocab.txt` (the repo's `pretrained_ckpt/vocab.txt`);
`--init-from` takes it from beside the checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from torch import Tensor

from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    from refbench.baselines.nlp.efficientbert.encoder import EfficientBertConfig

#: the best checkpoint's name (`save_checkpoint(..., is_best=True)` copies to it)
BEST_CHECKPOINT = "best_model.bin"
CHECKPOINT_SUFFIXES = (".bin", ".pth", ".pt")
VOCAB_FILE = "vocab.txt"
TOKEN_EMBEDDING = "embeddings.token_embeddings.weight"

_RENAMES = (
    (re.compile(r"^encoder\.(\d+)\.all_ffn\.(\d+)\."), r"layers.\1.blocks.\2."),
    (re.compile(r"^encoder\.(\d+)\.attention\."), r"layers.\1.attention."),
    (re.compile(r"^fit_dense\.(weight|bias)$"), r"fit_dense.dense.\1"),
    (re.compile(r"^cls_pooler\.dense\."), "pooler."),
    (re.compile(r"^(embeddings|classifier)\."), r"\1."),
)
_DROPPED = re.compile(r"^(lm_head|classifiers\.\d+)\.")
#: what a student can go without (a pre-trained student has no task head; fit-dense is
#: only used by distillation and is retrained against the run's teacher)
OPTIONAL_PREFIXES = ("pooler.", "classifier.", "fit_dense.")


def locate(path: str | Path) -> tuple[Path, Path | None]:
    """(checkpoint file, vocab.txt beside it or None) of `--init-from PATH`: a checkpoint
    file, or a folder holding `best_model.bin` or exactly one `*.bin` / `*.pth` / `*.pt`."""
    path = Path(path)
    if path.is_dir():
        best = path / BEST_CHECKPOINT
        found = [best] if best.is_file() else sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
        if not found:
            raise RefbenchError(f"no EfficientBERT checkpoint here (expected {BEST_CHECKPOINT} "
                                f"or one *.bin / *.pth file)", path=path)
        if len(found) > 1:
            raise RefbenchError(f"{len(found)} checkpoint files here "
                                f"({', '.join(p.name for p in found[:4])}); name one", path=path)
        path = found[0]
    elif not path.is_file():
        raise RefbenchError("no such checkpoint file or folder", path=path)
    vocab = path.parent / VOCAB_FILE
    return path, (vocab if vocab.is_file() else None)


def read_state(path: Path) -> dict[str, Tensor]:
    """The checkpoint's tensors under refbench's supernet names (see the module docstring).
    Loaded with `weights_only=True`: a checkpoint is data, never code. A file torch cannot
    read, one without tensors, or a key no official EfficientBERT model has is a one-line
    error naming the file (and the key)."""
    import torch

    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch raise many types for a bad file
        first = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:120]
        if "weights only load failed" in first.lower():  # torch's reason is pages long
            first = ("not a torch.save file of tensors; it is read with weights_only=True, so "
                     "a pickle holding code or other objects is refused")
        raise RefbenchError(f"cannot read the checkpoint ({first})", path=path) from None
    state = raw.get("state_dict", raw) if isinstance(raw, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise RefbenchError("not an EfficientBERT checkpoint (no state_dict of tensors)",
                            path=path)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = re.sub(r"^module\.", "", str(key))
        if _DROPPED.match(name):
            continue
        if not isinstance(value, Tensor):
            raise RefbenchError(f"{key} is not a tensor", path=path)
        out[_renamed(name, str(key), path)] = value
    return out


def _renamed(name: str, key: str, path: Path) -> str:
    for pattern, target in _RENAMES:
        if pattern.match(name):
            return pattern.sub(target, name)
    raise RefbenchError(f"unexpected tensor {key!r}: not an official EfficientBERT (auto_bert) "
                        f"checkpoint", path=path)


def read_vocab(path: Path) -> dict[str, int]:
    """`vocab.txt`: one token per line, its id the line's index (BERT's `load_vocab`); a
    file that is not UTF-8 text, a duplicate token or a missing special token is a one-line
    error naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"cannot read the vocabulary ({type(exc).__name__})",
                            path=path) from None
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for number, token in enumerate(lines, 1):
        token = token.rstrip("\r")
        if token in vocab:
            raise RefbenchError(f"line {number}: token {token!r} repeats line "
                                f"{vocab[token] + 1}", path=path)
        vocab[token] = number - 1
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        if special not in vocab:
            raise RefbenchError(f"no {special} token: not a BERT vocabulary", path=path)
    return vocab


def check_vocabulary(state: Mapping[str, Tensor], tokenizer: Any, path: Path) -> None:
    """The checkpoint's token embedding (always there: `supernet_of` checked) has one row
    per vocabulary entry."""
    rows = state[TOKEN_EMBEDDING].shape[0]
    if rows != len(tokenizer):
        raise RefbenchError(f"the checkpoint embeds {rows} tokens but the vocabulary has "
                            f"{len(tokenizer)} (the official students use BERT-base uncased's "
                            f"vocab.txt)", path=path)


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What `--init-from` read: the file, its tensors under the supernet's names, the
    vocab.txt beside it (or None) and the supernet holding the tensors."""

    path: Path
    state: dict[str, Tensor]
    vocab: Path | None
    supernet: Any  # EfficientBertSupernet


def read_init_from(init_from: str | Path, cfg: "EfficientBertConfig") -> OfficialCheckpoint:
    """`--init-from` of a student `cfg`, every check done (readable, a vocabulary to go
    with it, the student's sizes) before the run writes anything."""
    from refbench.baselines.nlp.efficientbert.supernet import supernet_of

    if cfg.init_supernet is not None:
        raise RefbenchError("start from an official checkpoint (--init-from) or from a "
                            "search's supernet, not both", key="model.init_supernet")
    path, vocab = locate(init_from)
    state = read_state(path)
    if vocab is None and cfg.distill.teacher_run is None and cfg.tokenizer is None:
        raise RefbenchError(f"no {VOCAB_FILE} beside the checkpoint: the official students "
                            f"use BERT-base uncased's vocab.txt; put it there (or set "
                            f"model.tokenizer)", path=path.parent)
    rows = state[TOKEN_EMBEDDING].shape[0] if TOKEN_EMBEDDING in state else cfg.vocab_size
    return OfficialCheckpoint(path, state, vocab,
                              supernet_of(state, cfg, path, official=True, vocab=rows, fit=1))


def vocab_tokenizer(vocab: Path, lowercase: bool) -> Any:
    """The BERT WordPiece tokenizer of a `vocab.txt` (what the official students use): one
    token per line, its id the line's index (BERT's `load_vocab`)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=read_vocab(vocab), do_lower_case=lowercase)


def check_same_vocabulary(tokenizer: Any, vocab: Path) -> None:
    """The teacher's tokenizer (the student's) must be the checkpoint's vocabulary."""
    if tokenizer.get_vocab() != vocab_tokenizer(vocab, True).get_vocab():
        raise RefbenchError("the teacher's vocabulary differs from the checkpoint's vocab.txt: "
                            "the student uses the teacher's tokenizer, so both must be the "
                            "same", path=vocab)
