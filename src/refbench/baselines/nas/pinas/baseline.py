"""The registered Pi-NAS baselines, trained through the common runner on any
`image-classification` benchmark (rows: `id`, `image` bytes or path, `label`):

- `pinas-supernet`: the weight-sharing supernet, trained with cross-path MoCo v2 and the
  path-wise mean teacher (`model.method: pinas`) or as the single-path one-shot
  comparison (`spos-moco`, `spos-supervised`); see `moco.py`. Its predictions come from
  the path `model.eval_arch` and the online linear classifier, so a supernet run is
  scored like any classifier; `refbench search pinas --supernet RUN` searches it.
- `pinas`: one architecture (`model.arch`, a code or `pinas-cls` / `pinas-trans`) as an
  ordinary supervised ResNeSt-D classifier, e.g. the searched architecture retrained
  (`model.inherit`: start from a supernet run's weights of that path).

Both use SGD with momentum as the paper does (`model.optimizer`; the engine's AdamW with
`adamw`) and tell DDP that unused candidates are expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.nas.pinas.augment import (MocoAugment, decode_image, eval_view,
                                                  moco_views, train_view)
from refbench.baselines.nas.pinas.model import SubNet, SupernetConfig, convert_sync_bn
from refbench.baselines.nas.pinas.moco import (VIEWS, Method, MocoConfig, SupernetLearner,
                                               check_moco, numpy_rng)
from refbench.config import from_dict
from refbench.errors import RefbenchError
from refbench.evaluation.image_classification import TOP_K
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec
    from refbench.config import TrainerConfig

LABELS_FILE = "pinas_labels.json"


@dataclass
class AugmentConfig:
    """MoCo v2 view augmentation (official values; `augment.py`)."""

    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.4])
    jitter_p: float = 0.8
    grey_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])

    def view(self, size: int) -> MocoAugment:
        return MocoAugment(size=size, scale=(self.crop_scale[0], self.crop_scale[1]),
                           jitter=tuple(self.jitter), jitter_p=self.jitter_p,  # type: ignore[arg-type]
                           grey_p=self.grey_p, blur_p=self.blur_p,
                           sigma=(self.blur_sigma[0], self.blur_sigma[1]))


@dataclass
class ImageInput:
    """Image size fed to the network; evaluation resizes the shorter side to `eval_resize`
    (None: to `size`) then centre-crops `size` (official: 224 / 256)."""

    size: int = 224
    eval_resize: int | None = 256


@dataclass
class SupernetBaselineConfig:
    method: Method = "pinas"
    net: SupernetConfig = field(default_factory=SupernetConfig)
    moco: MocoConfig = field(default_factory=MocoConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    input: ImageInput = field(default_factory=ImageInput)
    #: the path that predicts (a code or a published name); None: choice 1 everywhere
    eval_arch: str | None = None
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9


@dataclass
class ClassifierConfig:
    arch: str = "pinas-cls"
    net: SupernetConfig = field(default_factory=SupernetConfig)
    input: ImageInput = field(default_factory=ImageInput)
    #: a `pinas-supernet` run folder whose weights of this path start the training
    inherit: str | None = None
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9


def _check_common(net: SupernetConfig, image: ImageInput, momentum: float) -> None:
    net.check()
    if image.size < 8:
        raise RefbenchError(f"must be >= 8, got {image.size}", key="model.input.size")
    if image.eval_resize is not None and image.eval_resize < image.size:
        raise RefbenchError(f"must be >= input.size ({image.size})", key="model.input.eval_resize")
    if not 0 <= momentum < 1:
        raise RefbenchError(f"must be in [0, 1), got {momentum}", key="model.momentum")


def _labels(rows: "hf_datasets.Dataset") -> list[str]:
    feature = rows.features.get("label") if rows.features else None
    names = getattr(feature, "names", None)
    if not names:
        raise RefbenchError("the training split has no ClassLabel `label` column (an "
                            "image-classification dataset is needed)", key="label")
    return list(names)


class _ImageBaseline(Baseline):
    """Encoding, decoding, batching, prediction and the optimizer shared by both."""

    #: the engine passes this to DDP: the candidates off the sampled path get no gradient
    ddp_find_unused_parameters = True
    image: ImageInput
    optimizer_name: str
    sgd_momentum: float

    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        data = rows.cast_column("image", _undecoded()) if getattr(
            rows.features.get("image"), "decode", False) else rows
        return [{"id": str(r["id"]), "image": r["image"], "label": int(r["label"])} for r in data]

    def _decode(self, features: Sequence[Mapping[str, Any]]) -> list[Tensor]:
        out = []
        for f in features:
            try:
                out.append(decode_image(f["image"]))
            except (OSError, SyntaxError, ValueError) as exc:
                where = f["image"].get("path") or f["id"]
                raise RefbenchError(f"cannot decode image {f['id']}: {' '.join(str(exc).split())}",
                                    path=where) from None
        return out

    def _eval_batch(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        images = [eval_view(x, self.image.size, self.image.eval_resize) for x in self._decode(features)]
        return {"images": torch.stack(images), "labels": _label_tensor(features),
                "ids": [f["id"] for f in features]}

    def configure_optimizer(self, config: "TrainerConfig") -> torch.optim.Optimizer:
        """SGD with momentum and weight decay on every parameter (mmcv's SGD, as in the
        official configs), or the engine's AdamW."""
        from refbench.engine.schedules import build_optimizer

        if self.optimizer_name == "adamw":
            return build_optimizer(self, config)
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=config.lr, momentum=self.sgd_momentum,
                               weight_decay=config.weight_decay)

    def _save_labels(self, run_dir: Path, names: list[str]) -> None:
        atomic_write_json(Path(run_dir) / LABELS_FILE, {"names": names})

    @staticmethod
    def _read_labels(run_dir: Path) -> list[str]:
        path = Path(run_dir) / LABELS_FILE
        try:
            return list(json.loads(path.read_text(encoding="utf-8"))["names"])
        except (OSError, ValueError, KeyError, TypeError):
            raise RefbenchError("missing or malformed class list of a pinas run", path=path) from None

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        """The classes ranked best first, at most `TOP_K` of them (the image_classification
        format's ranked labels: top-1 from the first, top-5 from all five)."""
        logits = self.logits(batch["images"])
        ranked = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices.tolist()
        return [Prediction(i, [int(c) for c in r]) for i, r in zip(batch["ids"], ranked)]

    def logits(self, images: Tensor) -> Tensor:
        raise NotImplementedError


def _label_tensor(features: Sequence[Mapping[str, Any]]) -> Tensor:
    return torch.tensor([int(f["label"]) for f in features], dtype=torch.long)


def _undecoded() -> Any:
    import datasets as hf

    return hf.Image(decode=False)


@BASELINES.register("pinas-supernet", family="Pi-NAS (Peng et al., ICCV 2021)")
class PinasSupernet(_ImageBaseline):
    """The Pi-NAS supernet (cross-path MoCo v2, path-wise mean teacher) or SPOS."""

    Config = SupernetBaselineConfig

    def __init__(self, cfg: SupernetBaselineConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg, self.image = cfg, cfg.input
        self.optimizer_name, self.sgd_momentum = cfg.optimizer, cfg.momentum
        self.learner = convert_sync_bn(SupernetLearner(cfg.net, cfg.moco, cfg.method, num_classes))
        space = self.learner.space
        self.eval_arch = space.parse(cfg.eval_arch, key="model.eval_arch") \
            if cfg.eval_arch is not None else (1,) * space.num_blocks
        self.views = cfg.augment.view(cfg.input.size)

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> SupernetBaselineConfig:
        cfg = from_dict(SupernetBaselineConfig, dict(model_cfg), prefix="model")
        _check_common(cfg.net, cfg.input, cfg.momentum)
        check_moco(cfg.moco)
        if cfg.eval_arch is not None:
            cfg.net.space().parse(cfg.eval_arch, key="model.eval_arch")
        a = cfg.augment
        if len(a.crop_scale) != 2 or len(a.blur_sigma) != 2 or len(a.jitter) != 4:
            raise RefbenchError("crop_scale and blur_sigma take 2 values, jitter 4",
                                key="model.augment")
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "PinasSupernet":
        cfg = cls.validate_config(model_cfg, spec)
        names = _labels(train_rows)
        model = cls(cfg, len(names))
        model._save_labels(run_dir, names)
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "PinasSupernet":
        return cls(cls.validate_config(model_cfg, spec), len(cls._read_labels(run_dir)))

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not self.training:
            return self._eval_batch(features)
        rng = numpy_rng()
        images = self._decode(features)
        count = VIEWS[self.cfg.method]
        if self.cfg.method == "spos-supervised":
            views = torch.stack([train_view(x, self.image.size, rng) for x in images]).unsqueeze(1)
        else:
            views = moco_views(images, count, self.views, rng)
        return {"views": views, "labels": _label_tensor(features)}

    def training_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return self.learner.loss(batch["views"], batch["labels"])

    def logits(self, images: Tensor) -> Tensor:
        return self.learner.logits(images, self.eval_arch)


@BASELINES.register("pinas", family="Pi-NAS (Peng et al., ICCV 2021)")
class PinasClassifier(_ImageBaseline):
    """One Pi-NAS architecture as an ordinary supervised ResNeSt-D classifier."""

    Config = ClassifierConfig

    def __init__(self, cfg: ClassifierConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg, self.image = cfg, cfg.input
        self.optimizer_name, self.sgd_momentum = cfg.optimizer, cfg.momentum
        arch = cfg.net.space().parse(cfg.arch, key="model.arch")
        self.net = convert_sync_bn(SubNet(cfg.net, arch))
        self.fc = nn.Linear(cfg.net.out_channels, num_classes)

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> ClassifierConfig:
        cfg = from_dict(ClassifierConfig, dict(model_cfg), prefix="model")
        _check_common(cfg.net, cfg.input, cfg.momentum)
        cfg.net.space().parse(cfg.arch, key="model.arch")
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "PinasClassifier":
        cfg = cls.validate_config(model_cfg, spec)
        names = _labels(train_rows)
        model = cls(cfg, len(names))
        if cfg.inherit:
            model.inherit_from(Path(cfg.inherit), spec)
        model._save_labels(run_dir, names)
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "PinasClassifier":
        return cls(cls.validate_config(model_cfg, spec), len(cls._read_labels(run_dir)))

    def inherit_from(self, supernet_run: Path, spec: "BenchmarkSpec") -> None:
        """Start from a trained supernet's weights of this path (its stem, candidates and
        shortcuts); the classifier head starts fresh."""
        supernet = load_supernet(supernet_run)
        if supernet.cfg.net != self.cfg.net:
            raise RefbenchError("the supernet run has another shape (model.net) than this "
                                "classifier", path=supernet_run, key="model.inherit")
        sub = SubNet.from_supernet(supernet.learner.supernet, self.net.arch)
        self.net.load_state_dict(sub.state_dict())

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not self.training:
            return self._eval_batch(features)
        rng = numpy_rng()
        images = [train_view(x, self.image.size, rng) for x in self._decode(features)]
        return {"images": torch.stack(images), "labels": _label_tensor(features)}

    def training_step(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        loss = F.cross_entropy(self.logits(batch["images"]), batch["labels"])
        return {"loss": loss}

    def logits(self, images: Tensor) -> Tensor:
        return self.fc(self.net(images))


def load_supernet(run_dir: Path, which: str = "last") -> PinasSupernet:
    """A trained `pinas-supernet` run (its config and checkpoint), in eval mode."""
    from refbench.engine import find_checkpoint, load_model_weights
    from refbench.registry import get_spec
    from refbench.runner import load_run_config

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if config.baseline != "pinas-supernet":
        raise RefbenchError(f"not a pinas-supernet run (baseline {config.baseline!r})",
                            path=run_dir)
    model = PinasSupernet.restore(config.model, get_spec(config.benchmark), run_dir)
    load_model_weights(model, find_checkpoint(run_dir, which))  # type: ignore[arg-type]
    model.eval()
    return model
