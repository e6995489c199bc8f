"""The registered `nasoa` baseline: a NASOA zoo member fine-tuned through the common runner
on any `image-classification` benchmark (rows: `id`, `image` bytes or path, `label`), so a
schedule chosen by a generator becomes an ordinary run (`refbench train`, `predict`,
`evaluate`, the leaderboard).

What is trained:

- with `model.zoo: PATH` (a folder written by `refbench search nasoa-zoo`): the member
  `model.member` (default: the zoo's largest) with its pretrained weights and a fresh
  classifier head for the benchmark's classes, as NASOA fine-tunes a zoo model;
- without a zoo: the DNet of `model.code` (default `DEFAULT_CODE`, below) from scratch,
  the same network the zoo would hold, so the recipe runs on a bare checkout.

The schedule is the recipe's: `trainer.lr`, `trainer.batch_size` and `trainer.max_steps`
are the learning rate, batch size and steps a generator chose (the nasoa-finetune
benchmark's result.json lists every choice under `provenance.choices`; apply one with
`--set model.member=m1 trainer.lr=0.035 trainer.batch_size=32`). The optimizer is
NASOA's fine-tune optimizer (`finetune.py`: SGD, momentum 0.9, weight decay from
`trainer.weight_decay`, 1e-4 in the recipes) under the engine's warm-up + cosine
schedule, the same shape `finetune.lr_at` uses. Images are resized to the zoo's
resolution (`model.image_size` without a zoo) and scaled to [-1, 1] like the benchmark's
fine-tunings (`tasks.normalise`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.baselines.base import Baseline, Prediction
from refbench.config import from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec
    from refbench.config import TrainerConfig

#: the network without a zoo: the fastest member of the tiny zoo search (nasoa_tiny_zoo,
#: seed 0, synthetic:pretrain): block "116" (conv1 at half width, then a separable conv3),
#: channel 32 after the stem, macro "-22-1" (a downsampling block doubling the width, one
#: doubling it again, one keeping it); 69k backbone parameters, about 11 ms per step at
#: batch 32 and 32 px on one CPU thread
DEFAULT_CODE = "116-_32_-22-1"
#: what a run keeps beside its checkpoints to rebuild the network (`restore`)
MODEL_FILE = "nasoa_model.json"


@dataclass
class NasoaConfig:
    """`model:` of a nasoa recipe (module doc)."""

    #: a zoo folder (`refbench search nasoa-zoo --out PATH`); None: `code` from scratch
    zoo: str | None = None
    #: the zoo member to fine-tune; None: the zoo's largest (by backbone parameters)
    member: str | None = None
    #: the architecture without a zoo (vega's DNet encoding)
    code: str = DEFAULT_CODE
    #: input resolution without a zoo (with one, the zoo's own)
    image_size: int = 32
    momentum: float = 0.9


def _check(cfg: NasoaConfig) -> None:
    from refbench.baselines.nas.nasoa.encoding import parse

    if cfg.zoo is None:
        if cfg.member is not None:
            raise RefbenchError("a member needs a zoo (model.zoo: PATH)", key="model.member")
        parse(cfg.code)
    if not 8 <= cfg.image_size <= 1024:
        raise RefbenchError(f"must be in [8, 1024], got {cfg.image_size}", key="model.image_size")
    if not 0.0 <= cfg.momentum < 1.0:
        raise RefbenchError(f"must be in [0, 1), got {cfg.momentum}", key="model.momentum")


def _class_names(rows: "hf_datasets.Dataset") -> list[str]:
    feature = rows.features.get("label") if rows.features else None
    names = getattr(feature, "names", None)
    if not names or len(names) < 2:
        raise RefbenchError("the training split needs a ClassLabel `label` column with at "
                            "least two classes (an image-classification dataset)", key="label")
    return list(names)


@BASELINES.register("nasoa", family="NASOA (Xu et al., ICCV 2021)")
class NasoaBaseline(Baseline):
    """A NASOA zoo member (or a DNet code from scratch) fine-tuned as a classifier."""

    Config = NasoaConfig

    def __init__(self, cfg: NasoaConfig, code: str, image_size: int, classes: list[str],
                 member: str | None = None) -> None:
        super().__init__()
        from refbench.baselines.nas.nasoa.network import DNet

        self.cfg, self.code, self.image_size, self.member = cfg, code, image_size, member
        self.classes = classes
        self.net = DNet(code, len(classes))

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> NasoaConfig:
        cfg = from_dict(NasoaConfig, dict(model_cfg), prefix="model")
        _check(cfg)
        if cfg.zoo is not None:
            from refbench.baselines.nas.nasoa.zoo import load_zoo

            zoo = load_zoo(cfg.zoo)  # a missing / tampered zoo fails here, before a run
            if cfg.member is not None:
                zoo.member(cfg.member)
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "NasoaBaseline":
        cfg = cls.validate_config(model_cfg, spec)
        classes = _class_names(train_rows)
        if cfg.zoo is None:
            model = cls(cfg, cfg.code, cfg.image_size, classes)
        else:
            from refbench.baselines.nas.nasoa.zoo import load_zoo

            zoo = load_zoo(cfg.zoo)
            member = zoo.member(cfg.member) if cfg.member else zoo.largest
            model = cls(cfg, member.code, zoo.image_size, classes, member.name)
            net = zoo.load_model(member.name)  # checksummed pretrained weights
            net.reset_head(len(classes))
            model.net = net
        atomic_write_json(Path(run_dir) / MODEL_FILE,
                          {"code": model.code, "image_size": model.image_size,
                           "member": model.member, "zoo": cfg.zoo, "classes": classes})
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "NasoaBaseline":
        cfg = from_dict(NasoaConfig, dict(model_cfg), prefix="model")
        path = Path(run_dir) / MODEL_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            code, size, classes = str(saved["code"]), int(saved["image_size"]), saved["classes"]
        except (OSError, ValueError, KeyError, TypeError):
            raise RefbenchError("missing or malformed network record of a nasoa run",
                                path=path) from None
        return cls(cfg, code, size, [str(c) for c in classes], saved.get("member"))

    # -- data ------------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        """Rows -> uint8 `(3, S, S)` tensors at the network's resolution (decoded once)."""
        import datasets as hf

        data = rows.cast_column("image", hf.Image(decode=False)) if getattr(
            rows.features.get("image"), "decode", False) else rows
        out = []
        for row in data:
            out.append({"id": str(row["id"]), "image": self._decode(row),
                        "label": int(row["label"])})
        return out

    def _decode(self, row: Mapping[str, Any]) -> Tensor:
        import numpy as np
        from PIL import Image

        image = row["image"]
        source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]
        try:
            with Image.open(source) as picture:
                picture = picture.convert("RGB").resize((self.image_size,) * 2, Image.BILINEAR)
                array = np.asarray(picture, dtype=np.uint8).transpose(2, 0, 1).copy()
        except (OSError, SyntaxError, ValueError) as exc:
            raise RefbenchError(f"cannot decode image {row['id']}: {' '.join(str(exc).split())}",
                                path=image.get("path") or str(row["id"])) from None
        return torch.from_numpy(array)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        from refbench.baselines.nas.nasoa.tasks import normalise

        return {"images": normalise(torch.stack([f["image"] for f in features])),
                "labels": torch.tensor([f["label"] for f in features], dtype=torch.long),
                "ids": [f["id"] for f in features]}

    # -- training and prediction -----------------------------------------------------------
    def configure_optimizer(self, config: "TrainerConfig") -> torch.optim.Optimizer:
        """NASOA's fine-tune optimizer: SGD with momentum on every parameter."""
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=config.lr,
                               momentum=self.cfg.momentum, weight_decay=config.weight_decay)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return {"loss": F.cross_entropy(self.net(batch["images"]), batch["labels"])}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        """Class indices ranked best first (five or more give the format its top-5)."""
        logits = self.net(batch["images"])
        ranked = logits.argsort(dim=1, descending=True)[:, : min(5, logits.shape[1])].tolist()
        return [Prediction(i, r) for i, r in zip(batch["ids"], ranked)]
