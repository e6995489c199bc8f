"""The registered WAS-VTON baselines: `was-vton-supernet`, the one-shot supernet trained
with uniform single-path sampling (then `refbench search was-vton` picks the
architectures), and `was-vton`, the network of one architecture (`model.arch`, the encoding
of `space.py`) trained from scratch as an ordinary baseline. Both train and predict on the
image try-on benchmarks of every release refbench reads: VITON (`viton-tryon`, COCO-18
pose), VITON-HD (`vitonhd-tryon`) and MPV3D (`mpv3d-tryon`), whose BODY_25 poses are mapped
onto COCO-18 (`inputs.py`); the model works at its own size and predicts at the release's.

Inputs per pair (`inputs.py`): the person representation of CP-VTON (body shape: the
parse's foreground through a 1/16 bilinear round trip; 18 COCO pose maps, squares of
radius 5 at 256 px height, scaled) with, in place of CP-VTON's head-only image, the
cloth-agnostic person image of VITON-HD / HR-VITON (the person, -1 where the parse is upper
clothes, dress, coat, neck or arms: labels 5, 6, 7, 10, 14, 15; refbench's choice, which
the paper does not state), the in-shop garment and its mask, the garment's category
(`space.garment_category`, from its mask). Targets: the person (paired setting) and its
upper clothes (`person x pcm + (1 - pcm)`, label 5).

Losses (refbench's, after CP-VTON's GMM and TOM, trained jointly with the fusion fed the
detached warp): L1 of warped garment and mask to the worn garment and its mask, plus
`lambda_tv` x total variation of the flow; L1 + `lambda_vgg` x perceptual (`losses.py`:
VGG19 with user weights, else the weights-free pyramid) of the try-on to the person, plus
`lambda_mask` x L1 of the composition mask to the warped mask. Predictions: the try-on
image (uint8, `tryon_results`) at the release's size; the supernet predicts with its
largest path.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.tryon.losses import PerceptualLoss, total_variation
from refbench.baselines.tryon.wasvton import space
from refbench.baselines.tryon.wasvton.inputs import (  # noqa: F401  (re-exported)
    COCO18_FROM_BODY25, LABELS, PairRows, _image, at_release_size, collate_pairs, decode_pair, to_coco18,
    to_uint8)
from refbench.baselines.tryon.wasvton.supernet import WasVtonNet, check_supernet_path
from refbench.config import from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

MODEL_CONFIG = "model_config.json"
FAMILY = "WAS-VTON (Xie et al., ACM MM 2021), re-implementation"
#: the releases whose image try-on benchmarks WAS-VTON trains on (pose: COCO-18 / BODY_25)
DATASETS = ("viton", "viton_hd", "mpv3d")
#: the fusion encoder's two stride-2 levels and its stride-2 bottleneck: 2 ** 3
SIZE_MULTIPLE = 2 ** space.FUSION_LEVELS
#: LIP labels hidden from the cloth-agnostic person image


@dataclass
class SupernetConfig:
    """`model:` of `was-vton-supernet` (VITON 256 x 192 by default)."""

    height: int = 256
    width: int = 192
    channels: int = 32
    max_cells: int = space.MAX_CELLS
    perceptual: Literal["auto", "vgg19", "pyramid", "none"] = "auto"
    vgg_weights: str | None = None
    lambda_warp: float = 1.0
    lambda_tv: float = 0.1
    lambda_l1: float = 1.0
    lambda_vgg: float = 1.0
    lambda_mask: float = 1.0


@dataclass
class WasVtonConfig(SupernetConfig):
    """`model:` of `was-vton`: the supernet's keys plus the architecture."""

    arch: str = space.format_arch(space.largest_arch())


class _WasVton(Baseline):
    """What the supernet and the fixed network share."""

    Config: ClassVar[type]

    def __init__(self, cfg: Any, arch: space.Arch | None) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = WasVtonNet(cfg.channels, arch, max_cells=cfg.max_cells)
        self.perceptual = PerceptualLoss(cfg.perceptual if cfg.perceptual != "auto" else
                                         ("vgg19" if cfg.vgg_weights else "pyramid"),
                                         cfg.vgg_weights)

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        cfg = from_dict(cls.Config, dict(model_cfg), prefix="model")
        if cfg.height % SIZE_MULTIPLE or cfg.width % SIZE_MULTIPLE or min(cfg.height, cfg.width) < 32:
            raise RefbenchError(f"the fusion U-Net halves the image {space.FUSION_LEVELS} times: "
                                f"height and width must be multiples of {SIZE_MULTIPLE} and at "
                                f"least 32, got {cfg.height}x{cfg.width}", key="model.height")
        if not 1 <= cfg.max_cells <= space.MAX_CELLS:
            raise RefbenchError(f"must be 1..{space.MAX_CELLS}, got {cfg.max_cells}",
                                key="model.max_cells")
        if cfg.channels < 1:
            raise RefbenchError(f"must be >= 1, got {cfg.channels}", key="model.channels")
        if spec.dataset.name not in DATASETS or spec.metric.name != "tryon_image":
            raise RefbenchError(f"WAS-VTON is an image try-on model of {', '.join(DATASETS)}; "
                                f"{spec.name} scores {spec.metric.name} on {spec.dataset.name}",
                                key="benchmark")
        if cfg.perceptual == "auto":
            cfg.perceptual = "vgg19" if cfg.vgg_weights else "pyramid"
        return cfg

    @classmethod
    def _arch(cls, cfg: Any) -> space.Arch | None:
        return None

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "_WasVton":
        if init_from is not None:
            raise NotImplementedError("WAS-VTON networks train from scratch (a searched "
                                      "network is retrained, as one-shot NAS does); no "
                                      "released weights exist to start from")
        cfg = cls.validate_config(model_cfg, spec)
        model = cls(cfg, cls._arch(cfg))
        atomic_write_json(Path(run_dir) / MODEL_CONFIG, asdict(cfg))
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "_WasVton":
        path = Path(run_dir) / MODEL_CONFIG
        if not path.is_file():
            raise RefbenchError("run folder is incomplete (was it trained?)", path=path)
        cfg = from_dict(cls.Config, json.loads(path.read_text(encoding="utf-8")), prefix="model")
        if cfg.perceptual == "vgg19":
            cfg.perceptual = "none"  # not needed to predict; the weights file may be gone
        return cls(cfg, cls._arch(cfg))

    def encode(self, rows: "hf_datasets.Dataset") -> Sequence[Mapping[str, Any]]:
        return PairRows(rows, self.cfg.height, self.cfg.width)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return collate_pairs(features)

    def path_for_step(self) -> space.Arch:
        raise NotImplementedError

    def default_path(self) -> space.Arch:
        raise NotImplementedError

    def losses(self, batch: Mapping[str, Any], arch: space.Arch) -> dict[str, Tensor]:
        out = self.net(batch, batch["categories"], arch)
        cfg = self.cfg
        warp = F.l1_loss(out["warped_cloth"], batch["parse_cloth"]) + \
            F.l1_loss(out["warped_mask"], batch["parse_cloth_mask"])
        tv = total_variation(out["flow"])
        l1 = F.l1_loss(out["tryon"], batch["person"])
        vgg = self.perceptual(out["tryon"], batch["person"])
        mask = F.l1_loss(out["composition_mask"], out["warped_mask"].detach())
        loss = cfg.lambda_warp * warp + cfg.lambda_tv * tv + cfg.lambda_l1 * l1 + \
            cfg.lambda_vgg * vgg + cfg.lambda_mask * mask
        return {"loss": loss, "warp": warp.detach(), "l1": l1.detach(), "vgg": vgg.detach()}

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        return self.losses(batch, self.path_for_step())

    @torch.no_grad()
    def tryon(self, batch: Mapping[str, Any], arch: space.Arch | None = None) -> np.ndarray:
        """uint8 try-on images of a batch under `arch` (default: the model's own path)."""
        out = self.net(batch, batch["categories"], arch or self.default_path())
        return to_uint8(out["tryon"])

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        """Try-on images at the release's size (the benchmark scores them there)."""
        out = self.net(batch, batch["categories"], self.default_path())["tryon"]
        sizes = batch.get("sizes") or [tuple(out.shape[-2:])] * len(batch["ids"])
        return [Prediction(pid, at_release_size(out[i], sizes[i]))
                for i, pid in enumerate(batch["ids"])]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


@BASELINES.register("was-vton-supernet", family=FAMILY, tasks="viton, viton_hd, mpv3d")
class WasVtonSupernet(_WasVton):
    """The one-shot supernet: every step runs one uniformly sampled path (per category a cell
    count and operations, one fusion code); `refbench search was-vton` searches it."""

    Config = SupernetConfig

    def path_for_step(self) -> space.Arch:
        # drawn from torch's generator so the engine's seed (and --resume) fixes the sequence
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,)).item())
        rng = random.Random(seed)
        return space.Arch({c: space.sample_warp(rng, self.cfg.max_cells) for c in space.CATEGORIES},
                          space.sample_fusion(rng))

    def default_path(self) -> space.Arch:
        return space.largest_arch(self.cfg.max_cells)


@BASELINES.register("was-vton", family=FAMILY, tasks="viton, viton_hd, mpv3d")
class WasVton(_WasVton):
    """The network of one architecture (`model.arch`, e.g. the search's choice): one warping
    stack per clothing category and the fusion of its code, trained from scratch."""

    Config = WasVtonConfig

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        cfg = super().validate_config(model_cfg, spec)
        check_supernet_path(space.parse_arch(cfg.arch, max_cells=cfg.max_cells),
                            cfg.max_cells, space.FUSION_LEVELS)
        return cfg

    @classmethod
    def _arch(cls, cfg: Any) -> space.Arch:
        return space.parse_arch(cfg.arch, max_cells=cfg.max_cells)

    def path_for_step(self) -> space.Arch:
        return self.default_path()

    def default_path(self) -> space.Arch:
        assert self.net.arch is not None
        return self.net.arch


def paste_floor(rows: "hf_datasets.Dataset") -> dict[str, np.ndarray]:
    """`floors.paste_image` for any release whose rows carry the garment, its mask and the
    parse (VITON, VITON-HD; MPV3D too, ignoring its offline pre-alignment): the garment is
    aligned on the fly with M3D-VTON's box alignment (`preprocess.prealign_cloth`), at the
    release's size. The rival a WAS-VTON run must beat."""
    from PIL import Image

    from refbench.baselines.tryon.floors import paste_image
    from refbench.datasets.tryon.preprocess import prealign_cloth

    out = {}
    for row in rows.select_columns(["pair_id", "person", "cloth", "cloth_mask", "parse"]):
        person, parse = _image(row, "person", "RGB"), _image(row, "parse", LABELS)
        cloth, mask = _image(row, "cloth", "RGB"), _image(row, "cloth_mask", "L")
        aligned, aligned_mask = prealign_cloth(Image.fromarray(cloth),
                                               Image.fromarray(((mask >= 128) * 255).astype(np.uint8)),
                                               parse, name=str(row["pair_id"]))
        out[row["pair_id"]] = paste_image(person, parse, np.asarray(aligned),
                                          np.asarray(aligned_mask) >= 128)
    return out
