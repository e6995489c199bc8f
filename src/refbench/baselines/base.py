"""The baseline contract the common runner relies on.

A baseline is an `nn.Module` registered with `@BASELINES.register(name)`. It owns
everything model-specific: turning dataset rows into features (`encode`), batching
(`collate`), the loss (`training_step`) and predictions in the benchmark's submission
format (`predict`). The engine only sees these methods, so it never imports a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec


@dataclass(frozen=True)
class Prediction:
    """One prediction: the id the submission format keys on and the value it writes."""

    id: Any
    value: Any


def pad_token_batch(features: Sequence[Mapping[str, Any]], pad_id: int,
                    width: int | None = None) -> dict[str, torch.Tensor]:
    """`input_ids` / `token_type_ids` of variable length -> padded tensors plus the
    attention mask; `width` pads to a fixed length (default: the longest row)."""
    width = width or max(len(f["input_ids"]) for f in features)
    n = len(features)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((n, width), dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    for i, f in enumerate(features):
        length = len(f["input_ids"])
        input_ids[i, :length] = torch.tensor(f["input_ids"])
        token_type_ids[i, :length] = torch.tensor(f["token_type_ids"])
        attention_mask[i, :length] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids,
            "attention_mask": attention_mask}


class Baseline(nn.Module):
    """Base class of every registered baseline.

    Lifecycle: `create(model_cfg, spec, train_rows, run_dir)` builds a fresh model (and
    any artifacts such as a tokenizer, saved under `run_dir`); `restore(model_cfg, spec,
    run_dir)` rebuilds the same architecture from `run_dir` so a checkpoint can be loaded.
    """

    #: dataclass describing `model:` in recipes; overrides are type-checked against it
    Config: ClassVar[type]

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        """Check `model:` before anything is written (types, and a family's own rules)."""
        from refbench.config import from_dict

        return from_dict(cls.Config, dict(model_cfg), prefix="model")

    @classmethod
    def check_init_from(cls, init_from: str, model_cfg: Mapping[str, Any],
                        spec: "BenchmarkSpec") -> None:
        """`--init-from PATH`, before the run writes anything: a family checks here that
        PATH holds what `create` can start from (one-line error naming it). Default:
        nothing; `create` checks."""

    @classmethod
    def configure_trainer(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                          trainer: Any) -> list[str]:
        """Trainer settings the model's own config decides, applied in place before the run
        writes its config.yaml (e.g. the batch size and steps of a fine-tuning schedule a
        search chose, so naming the schedule is enough); returns one line per change, which
        the runner prints. Default: nothing is decided here."""
        return []

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "Baseline":
        raise NotImplementedError

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "Baseline":
        raise NotImplementedError

    def bind_splits(self, load_split: Callable[[str], "hf_datasets.Dataset"]) -> None:
        """Called by the runner after `create` / `restore` with a loader of the benchmark's
        prepared splits (same cache and config as the run): a model whose predictions need
        more than the scored rows (a retrieval gallery) keeps it; the default ignores it."""

    def encode(self, rows: "hf_datasets.Dataset") -> Sequence[Mapping[str, Any]]:
        """Dataset rows -> a sequence of feature dicts (done once, before training)."""
        raise NotImplementedError

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """A list of feature dicts -> one batch of tensors."""
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return at least `{"loss": scalar tensor}`."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, batch: Mapping[str, torch.Tensor]) -> list[Prediction]:
        """Predictions for one batch (per feature)."""
        raise NotImplementedError

    def finalize(self, rows: "hf_datasets.Dataset", features: Sequence[Mapping[str, Any]],
                 predictions: Sequence[Prediction]) -> dict[Any, Any]:
        """Per-feature predictions -> `{id: value}` in the benchmark's submission format.

        The default is one feature per row; a model whose rows span several features
        (SQuAD windows) merges them here."""
        return {p.id: p.value for p in predictions}


class HeadDispatch(Baseline):
    """A registered baseline whose head depends on the benchmark (GLUE classifier, SQuAD
    span head, ...): `create`/`restore` delegate to `head_for(spec)`."""

    @staticmethod
    def head_for(spec: "BenchmarkSpec") -> type[Baseline]:
        raise NotImplementedError

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> Baseline:
        return cls.head_for(spec).create(model_cfg, spec, train_rows, run_dir, init_from)

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> Baseline:
        return cls.head_for(spec).restore(model_cfg, spec, run_dir)

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        return cls.head_for(spec).validate_config(model_cfg, spec)

    @classmethod
    def check_init_from(cls, init_from: str, model_cfg: Mapping[str, Any],
                        spec: "BenchmarkSpec") -> None:
        cls.head_for(spec).check_init_from(init_from, model_cfg, spec)

    @classmethod
    def configure_trainer(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                          trainer: Any) -> list[str]:
        return cls.head_for(spec).configure_trainer(model_cfg, spec, trainer)
