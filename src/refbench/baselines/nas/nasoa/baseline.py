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

Applying a generator's choice (`model.schedule: PATH`): the nasoa-finetune benchmark writes
one choice file per generator and task (`<out>/<generator>/choices/<task>.json`,
`choices.py`); `--set model.schedule=PATH` (with `model.schedule_budget=100steps` when the
file holds several budgets, `model.schedule_seed=K` to pick a seed other than the first)
fine-tunes the chosen member of the zoo the choice was made from (checked against its
zoo.json hash; `model.zoo` may point at a moved copy) with the chosen learning rate,
momentum and weight decay, and sets the trainer's batch size and step count to the
choice's (`configure_trainer`, before the run writes config.yaml; the runner prints each
setting it changed), so naming the schedule is enough. The recipe written beside each
choice file (`<task>@<budget>.yaml`) holds the same settings. Which choice file
(path, sha256, entry) drove the run is kept in the run's `nasoa_model.json`; the written
recipe also pins the sha256 (`model.schedule_sha256`), so config.yaml and the result's
config hash record it.

Without a choice the schedule is the recipe's: `trainer.lr`, `trainer.batch_size` and
`trainer.max_steps` (the nasoa-finetune benchmark's result.json lists every choice under
`provenance.choices`). The optimizer is NASOA's fine-tune optimizer (`finetune.py`: SGD,
momentum 0.9, weight decay from `trainer.weight_decay`, 1e-4 in the recipes) under the
engine's warm-up + cosine schedule, the same shape `finetune.lr_at` uses. Images are resized to the zoo's
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

    from refbench.baselines.nas.nasoa.choices import AppliedChoice
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
    #: a generator's choice file (module doc); sets the member, zoo and optimizer settings
    schedule: str | None = None
    #: which budget's choice of that file (None: the file's only budget)
    schedule_budget: str | None = None
    #: which seed's choice (None: the first listed)
    schedule_seed: int | None = None
    #: the choice file's expected sha256 (None: not pinned)
    schedule_sha256: str | None = None


def _check(cfg: NasoaConfig) -> None:
    from refbench.baselines.nas.nasoa.encoding import parse

    if cfg.schedule is not None:
        if cfg.member is not None:
            raise RefbenchError("the choice file names the member; drop model.member",
                                key="model.member")
    elif (cfg.schedule_budget, cfg.schedule_seed, cfg.schedule_sha256) != (None,) * 3:
        raise RefbenchError("schedule_budget / schedule_seed / schedule_sha256 need a choice "
                            "file (model.schedule: PATH)", key="model.schedule")
    elif cfg.zoo is None:
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


def _applied(cfg: NasoaConfig) -> tuple["AppliedChoice", Any]:
    """The choice of `model.schedule` and the (verified) zoo it runs on."""
    from refbench.baselines.nas.nasoa.choices import check_zoo, read_choice
    from refbench.baselines.nas.nasoa.zoo import load_zoo

    assert cfg.schedule is not None
    choice = read_choice(cfg.schedule, cfg.schedule_budget, cfg.schedule_seed,
                         cfg.schedule_sha256)
    zoo = load_zoo(cfg.zoo if cfg.zoo is not None else choice.zoo)
    check_zoo(choice, zoo)
    return choice, zoo


def check_trainer(choice: "AppliedChoice", batch_size: int, max_steps: int) -> None:
    """Refuse a run whose batch size or step count is not the choice's, naming the fix."""
    e = choice.entry
    if (batch_size, max_steps) != (e.batch_size, e.steps):
        raise RefbenchError(
            f"the choice ({e.model}, lr {e.lr:g}) was made for batch size {e.batch_size} and "
            f"{e.steps} steps, the trainer runs {batch_size} and {max_steps}: add --set "
            f"trainer.batch_size={e.batch_size} --set trainer.max_steps={e.steps} --set "
            f"trainer.epochs=null (or the recipe written beside the choice file, "
            f"{choice.path.with_suffix('')}@{e.budget}.yaml)",
            path=choice.path, key="trainer")


@BASELINES.register("nasoa", family="NASOA (Xu et al., ICCV 2021)")
class NasoaBaseline(Baseline):
    """A NASOA zoo member (or a DNet code from scratch) fine-tuned as a classifier."""

    Config = NasoaConfig

    def __init__(self, cfg: NasoaConfig, code: str, image_size: int, classes: list[str],
                 member: str | None = None) -> None:
        super().__init__()
        from refbench.baselines.nas.nasoa.network import DNet

        self.cfg, self.code, self.image_size, self.member = cfg, code, image_size, member
        self.choice: "AppliedChoice | None" = None
        self.classes = classes
        self.net = DNet(code, len(classes))

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> NasoaConfig:
        cfg = from_dict(NasoaConfig, dict(model_cfg), prefix="model")
        _check(cfg)
        if cfg.schedule is not None:
            _applied(cfg)  # file, entry, zoo and member checked before a run writes anything
        elif cfg.zoo is not None:
            from refbench.baselines.nas.nasoa.zoo import load_zoo

            zoo = load_zoo(cfg.zoo)  # a missing / tampered zoo fails here, before a run
            if cfg.member is not None:
                zoo.member(cfg.member)
        return cfg

    @classmethod
    def configure_trainer(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                          trainer: Any) -> list[str]:
        """A schedule decides the batch size and the step count it was chosen for."""
        cfg = from_dict(NasoaConfig, dict(model_cfg), prefix="model")
        if cfg.schedule is None:
            return []
        choice, _ = _applied(cfg)
        e, changed = choice.entry, []
        for key, value in (("batch_size", e.batch_size), ("max_steps", e.steps),
                           ("epochs", None)):
            if getattr(trainer, key) != value:
                changed.append(f"trainer.{key}={value} (was {getattr(trainer, key)}) from the "
                               f"schedule {choice.path.name} ({e.model}, budget {e.budget})")
                setattr(trainer, key, value)
        return changed

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "NasoaBaseline":
        cfg = cls.validate_config(model_cfg, spec)
        classes = _class_names(train_rows)
        zoo_path = cfg.zoo
        if cfg.schedule is not None:
            choice, zoo = _applied(cfg)
            model = cls(cfg, choice.entry.code, zoo.image_size, classes, choice.entry.model)
            model.choice = choice
            net = zoo.load_model(choice.entry.model)  # checksummed pretrained weights
            net.reset_head(len(classes))
            model.net = net
            zoo_path = str(zoo.folder)
        elif cfg.zoo is None:
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
                           "member": model.member, "zoo": zoo_path, "classes": classes,
                           "choice": model.choice.record() if model.choice else None})
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
        """NASOA's fine-tune optimizer: SGD with momentum on every parameter; with a choice
        file, the choice's learning rate, momentum and weight decay (the engine's warm-up +
        cosine scales that learning rate), after checking the trainer runs the choice's
        batch size and steps (module doc)."""
        lr, momentum, decay = config.lr, self.cfg.momentum, config.weight_decay
        if self.choice is not None:
            check_trainer(self.choice, config.batch_size, config.max_steps)
            e = self.choice.entry
            lr, momentum, decay = e.lr, e.momentum, e.weight_decay
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=lr,
                               momentum=momentum, weight_decay=decay)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return {"loss": F.cross_entropy(self.net(batch["images"]), batch["labels"])}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        """Class indices ranked best first (five or more give the format its top-5)."""
        logits = self.net(batch["images"])
        ranked = logits.argsort(dim=1, descending=True)[:, : min(5, logits.shape[1])].tolist()
        return [Prediction(i, r) for i, r in zip(batch["ids"], ranked)]
