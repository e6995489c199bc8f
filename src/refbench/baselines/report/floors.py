"""The floors every report-generation table needs, as registered baselines so that they run
through the common runner and land in the same result tables as the models:

- `most-frequent-report`: every study gets the training split's most frequent report
  (counted after collapsing whitespace and case, written as first spelled), and the term
  set most often attached to it. On radiology data this is the "normal study" report,
  and a model that does not beat it has learnt the prior, not the images.
- `nn-report`: the report (and terms) of the training study whose images are nearest by
  cosine similarity of image features: down-sampled pixels (`features: pixels`, no
  weights needed), or the pooled features of an ImageNet ResNet (`features: cnn`, which
  needs the user's standard weight file in `backbone.weights`: a random network's
  features would be a number nobody can reproduce or interpret, so there is no default).
  With `k` > 1 the k nearest studies give term scores (their similarity-weighted share
  of each term), the report is still the nearest one's.

Both are fitted in closed form when the runner creates them (`create` reads the training
split); the runner's loop then runs their single recipe step with a zero loss and an
empty optimizer, so that checkpoints, best-checkpoint selection on the validation split,
`refbench predict` and result.json work as for any model. What a floor memorised lives in
the run folder (`floor.json`: the chosen report, or the training studies' reports and
terms) and, for `nn-report`, the training features as a buffer of the checkpoint.
Recipes set `trainer.amp: false` (an empty optimizer has nothing for a GPU grad scaler).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.report.inputs import (StudyFeatures, check_task, collate_images,
                                              require_columns, term_vocabulary)
from refbench.baselines.report.vision import (BackboneConfig, RegionEncoder, check_backbone,
                                              load_backbone_weights)
from refbench.config import TrainerConfig, from_dict
from refbench.errors import RefbenchError
from refbench.evaluation.captions.metric import ReportPrediction
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

FLOOR_FILE = "floor.json"
EMBED_BATCH = 32


def _key(report: str, normalize: bool) -> str:
    return " ".join(report.lower().split()) if normalize else report


def _read_floor(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / FLOOR_FILE
    if not path.is_file():
        raise RefbenchError("run folder is incomplete (was the floor fitted?)", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"corrupt floor file: {exc}", path=path) from None


class _Floor(Baseline):
    """Shared by the floors: a fit in `create`, a zero-loss step and an empty optimizer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def configure_optimizer(self, cfg: TrainerConfig) -> torch.optim.Optimizer:
        """Nothing to optimise: an SGD over an empty parameter group keeps the loop's
        schedule and checkpoint machinery working unchanged."""
        return torch.optim.SGD([{"params": []}], lr=cfg.lr)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return {"loss": torch.zeros((), device=self.anchor.device, requires_grad=True)}


@dataclass
class MostFrequentConfig:
    """`model:` of `most-frequent-report`."""

    #: count reports after collapsing whitespace and lower-casing
    normalize: bool = True


def most_frequent(reports: Sequence[str], term_sets: Sequence[Sequence[str]],
                  normalize: bool = True) -> tuple[str, list[str], dict[str, float]]:
    """(the most frequent report as first spelled, its most frequent term set, each term's
    share among the studies with that report). Ties go to the report seen first."""
    if not reports:
        raise RefbenchError("the training split holds no report")
    counts = Counter(_key(r, normalize) for r in reports)
    best = max(counts.items(), key=lambda kv: kv[1])[0]  # max keeps the first of equals
    chosen = [i for i, r in enumerate(reports) if _key(r, normalize) == best]
    sets = Counter(tuple(sorted(term_sets[i])) for i in chosen) if term_sets else Counter()
    terms = list(max(sets.items(), key=lambda kv: kv[1])[0]) if sets else []
    shares = Counter(t for i in chosen for t in set(term_sets[i])) if term_sets else Counter()
    return reports[chosen[0]], terms, {t: c / len(chosen) for t, c in sorted(shares.items())}


@BASELINES.register("most-frequent-report", family="report-generation floor",
                    tasks="iu_xray, covid19_ct, cx_chr")
class MostFrequentReport(_Floor):
    """Every study gets the most frequent training report (module docstring)."""

    Config = MostFrequentConfig

    def __init__(self, floor: Mapping[str, Any]) -> None:
        super().__init__()
        self.report = str(floor["report"])
        self.terms = tuple(floor.get("terms") or ())
        self.vocabulary = list(floor.get("vocabulary") or [])
        shares = dict(floor.get("term_scores") or {})
        self.term_scores = tuple((t, float(shares.get(t, 0.0))) for t in self.vocabulary)

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        cfg = from_dict(MostFrequentConfig, dict(model_cfg), prefix="model")
        check_task(spec, "most-frequent-report")
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "MostFrequentReport":
        cfg = cls.validate_config(model_cfg, spec)
        if init_from is not None:
            raise RefbenchError("a floor is fitted on the training split; it starts from "
                                "nothing", key="init_from")
        require_columns(train_rows, "report")
        terms = [list(t or []) for t in train_rows["terms"]] \
            if "terms" in train_rows.column_names else []
        report, chosen, shares = most_frequent(list(train_rows["report"]), terms, cfg.normalize)
        floor = {"report": report, "terms": chosen, "term_scores": shares,
                 "vocabulary": term_vocabulary(train_rows, 1) if terms else [],
                 "config": asdict(cfg)}
        atomic_write_json(Path(run_dir) / FLOOR_FILE, floor)
        return cls(floor)

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "MostFrequentReport":
        return cls(_read_floor(run_dir))

    def encode(self, rows: "hf_datasets.Dataset") -> list[dict[str, Any]]:
        require_columns(rows, "study_id")
        return [{"id": str(s)} for s in rows["study_id"]]

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"ids": [f["id"] for f in features]}

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        value = ReportPrediction(self.report, self.terms if self.vocabulary else None,
                                 self.term_scores if self.vocabulary else None)
        return [Prediction(sid, value) for sid in batch["ids"]]


@dataclass
class NearestNeighbourConfig:
    """`model:` of `nn-report`."""

    features: Literal["pixels", "cnn"] = "pixels"
    #: images per study (X-ray views in stored order, or CT slices spread evenly)
    num_images: int = 2
    #: `pixels`: every image down-sampled to this square size
    pixel_size: int = 32
    #: neighbours whose terms give the term scores (the report is the nearest one's)
    k: int = 1
    #: `cnn`: an ImageNet ResNet (a standard weight file is required)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)


def check_nn_config(cfg: NearestNeighbourConfig) -> None:
    if cfg.num_images < 1 or cfg.k < 1 or cfg.pixel_size < 4:
        raise RefbenchError("num_images and k must be >= 1, pixel_size >= 4",
                            key="model.num_images")
    if cfg.features == "cnn":
        check_backbone(cfg.backbone)
        if not cfg.backbone.weights:
            raise RefbenchError("features: cnn needs a standard ImageNet ResNet weight file "
                                "(torchvision names) in model.backbone.weights; nothing is "
                                "downloaded, and random features are not a floor. Use "
                                "features: pixels without one", key="model.backbone.weights")


@BASELINES.register("nn-report", family="report-generation floor",
                    tasks="iu_xray, covid19_ct, cx_chr")
class NearestNeighbourReport(_Floor):
    """The nearest training study's report by image features (module docstring)."""

    Config = NearestNeighbourConfig

    def __init__(self, cfg: NearestNeighbourConfig, floor: Mapping[str, Any],
                 gallery_size: int, feature_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.reports = list(floor["reports"])
        self.vocabulary = list(floor.get("vocabulary") or [])
        index = {t: i for i, t in enumerate(self.vocabulary)}
        targets = torch.zeros(len(self.reports), len(self.vocabulary))
        for i, terms in enumerate(floor.get("terms") or []):
            for t in terms:
                targets[i, index[t]] = 1.0
        self.register_buffer("term_targets", targets, persistent=False)
        self.register_buffer("gallery", torch.zeros(gallery_size, feature_size))
        self.encoder = None
        if cfg.features == "cnn":
            self.encoder = RegionEncoder(cfg.backbone)
            self.encoder.requires_grad_(False)

    @property
    def image_size(self) -> int:
        return self.cfg.pixel_size if self.cfg.features == "pixels" else self.cfg.backbone.image_size

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        cfg = from_dict(NearestNeighbourConfig, dict(model_cfg), prefix="model")
        check_nn_config(cfg)
        check_task(spec, "nn-report")
        return cfg

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "NearestNeighbourReport":
        cfg = cls.validate_config(model_cfg, spec)
        if init_from is not None:
            raise RefbenchError("a floor is fitted on the training split; it starts from "
                                "nothing", key="init_from")
        require_columns(train_rows, "report")
        has_terms = "terms" in train_rows.column_names
        vocabulary = term_vocabulary(train_rows, 1) if has_terms else []
        floor = {"reports": list(train_rows["report"]), "vocabulary": vocabulary,
                 "terms": [list(t or []) for t in train_rows["terms"]] if has_terms else [],
                 "config": asdict(cfg)}
        model = cls(cfg, floor, 0, 0)
        if model.encoder is not None:
            load_backbone_weights(model.encoder.backbone, Path(str(cfg.backbone.weights)))
        gallery = model.embed_features(model.encode(train_rows))
        model.gallery = gallery
        floor["gallery_shape"] = list(gallery.shape)
        atomic_write_json(Path(run_dir) / FLOOR_FILE, floor)
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "NearestNeighbourReport":
        floor = _read_floor(run_dir)
        cfg = from_dict(NearestNeighbourConfig, dict(floor["config"]), prefix="model")
        rows, size = floor.get("gallery_shape") or [0, 0]
        return cls(cfg, floor, int(rows), int(size))

    def encode(self, rows: "hf_datasets.Dataset") -> StudyFeatures:
        return StudyFeatures(rows, self.cfg.num_images, self.image_size)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {**collate_images(features), "ids": [f["id"] for f in features]}

    def embed(self, batch: Mapping[str, Any]) -> Tensor:
        """L2-normalised study features `(B, D)`: the images' pixels (standardised per
        image) or their pooled CNN features, views in order, masked views zero."""
        images, mask = batch["images"], batch["image_mask"].to(batch["images"].dtype)
        if self.encoder is None:
            flat = images.flatten(2)
            flat = (flat - flat.mean(-1, keepdim=True)) / flat.std(-1, keepdim=True).clamp(min=1e-6)
        else:
            regions, _, _, _ = self.encoder(images, batch["image_mask"])
            flat = regions.view(images.size(0), images.size(1), -1, regions.size(-1)).mean(2)
        return F.normalize((flat * mask[..., None]).flatten(1), dim=-1)

    @torch.no_grad()
    def embed_features(self, features: Sequence[Mapping[str, Any]]) -> Tensor:
        was = self.training
        self.eval()
        out = [self.embed(self.collate(features[s:s + EMBED_BATCH]))
               for s in range(0, len(features), EMBED_BATCH)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, 0)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        if len(self.gallery) == 0:
            raise RefbenchError("the floor holds no training study")
        sims = self.embed(batch) @ self.gallery.to(batch["images"].device).T
        k = min(self.cfg.k, sims.size(1))
        top, idx = sims.topk(k, dim=1)
        weights = top.clamp(min=0) + 1e-6
        out = []
        for i, sid in enumerate(batch["ids"]):
            nearest = int(idx[i, 0])
            if self.vocabulary:
                scores = (weights[i, :, None] * self.term_targets[idx[i]].to(weights)).sum(0) / \
                    weights[i].sum()
                pairs = tuple((t, float(s)) for t, s in zip(self.vocabulary, scores.tolist()))
                terms = tuple(t for t, flag in zip(self.vocabulary, self.term_targets[nearest])
                              if flag > 0)
                out.append(Prediction(sid, ReportPrediction(self.reports[nearest], terms, pairs)))
            else:
                out.append(Prediction(sid, ReportPrediction(self.reports[nearest])))
        return out

