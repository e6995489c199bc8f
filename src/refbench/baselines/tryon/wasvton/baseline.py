"""The registered WAS-VTON baselines on VITON (`viton-tryon`): `was-vton-supernet`, the
one-shot supernet trained with uniform single-path sampling (then `refbench search
was-vton` picks the architectures), and `was-vton`, the network of one architecture
(`model.arch`, the encoding of `space.py`) trained from scratch as an ordinary baseline.

Inputs per pair: the person representation of CP-VTON (body shape: the parse's foreground
through a 1/16 bilinear round trip; 18 COCO pose maps, squares of radius 5 at 256 px
height, scaled) with, in place of CP-VTON's head-only image, the cloth-agnostic person
image of VITON-HD / HR-VITON (the person, -1 where the parse is upper clothes, dress,
coat, neck or arms: labels 5, 6, 7, 10, 14, 15; refbench's choice, which the paper does
not state), the in-shop garment and
its mask, the garment's category (`space.garment_category`, from its mask). Targets: the
person (paired setting) and its upper clothes (`person x pcm + (1 - pcm)`, label 5).

Losses (refbench's, after CP-VTON's GMM and TOM, trained jointly with the fusion fed the
detached warp): L1 of warped garment and mask to the worn garment and its mask, plus
`lambda_tv` x total variation of the flow; L1 + `lambda_vgg` x perceptual (`losses.py`:
VGG19 with user weights, else the weights-free pyramid) of the try-on to the person, plus
`lambda_mask` x L1 of the composition mask to the warped mask. Predictions: the try-on
image (uint8, `tryon_results`); the supernet predicts with its largest path.
"""

from __future__ import annotations

import io
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
from refbench.baselines.tryon.m3dvton.inputs import body_shape, pose_maps
from refbench.baselines.tryon.wasvton import space
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
#: LIP labels hidden from the cloth-agnostic person image
MASKED_LABELS = (5, 6, 7, 10, 14, 15)
UPPER_CLOTHES = 5
POSE_RADIUS, POSE_HEIGHT = 5, 256
COLUMNS = ["pair_id", "person", "cloth", "cloth_mask", "parse", "pose"]


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


def _image(row: Mapping[str, Any], column: str, mode: str) -> np.ndarray:
    from PIL import Image

    value = row.get(column)
    if value is None:
        raise RefbenchError(f"pair {row.get('pair_id')}: no {column!r} (WAS-VTON needs the "
                            f"person, garment, garment mask, parse and pose)", key=column)
    try:
        with Image.open(io.BytesIO(value["bytes"])) as handle:
            return np.asarray(handle.convert(mode))
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"pair {row.get('pair_id')}: cannot decode {column!r}: "
                            f"{' '.join(str(exc).split())}", key=column) from None


def decode_pair(row: Mapping[str, Any], height: int, width: int) -> dict[str, Any]:
    """One row -> arrays (module docstring); one-line errors name the pair and column."""
    pid = row.get("pair_id")
    out: dict[str, Any] = {"id": pid}
    for key, column, mode in (("person", "person", "RGB"), ("cloth", "cloth", "RGB"),
                              ("cloth_mask", "cloth_mask", "L"), ("parse", "parse", "L")):
        out[key] = _image(row, column, mode)
        if out[key].shape[:2] != (height, width):
            raise RefbenchError(f"pair {pid}: {column} is {out[key].shape[1]}x{out[key].shape[0]}"
                                f" (WxH), the model takes {width}x{height} (model.height / "
                                f"model.width)", key=column)
    out["cloth_mask"] = out["cloth_mask"] >= 128
    if int(out["parse"].max()) >= 20:
        raise RefbenchError(f"pair {pid}: parse label {int(out['parse'].max())} is not a LIP "
                            f"label (0..19)", key="parse")
    if row.get("pose") is None:
        raise RefbenchError(f"pair {pid}: no pose", key="pose")
    pose = np.asarray(row["pose"], dtype=np.float32)
    if pose.shape != (18, 3):
        raise RefbenchError(f"pair {pid}: pose is {pose.shape}, WAS-VTON takes VITON's COCO-18 "
                            f"(18, 3)", key="pose")
    out["pose"] = pose_maps(pose, height, width, max(1, round(POSE_RADIUS * height / POSE_HEIGHT)))
    out["shape"] = body_shape(out["parse"])
    out["category"] = space.garment_category(out["cloth_mask"])
    return out


class PairRows(Sequence):
    """The split's rows decoded one pair at a time, as the batches ask for them."""

    def __init__(self, rows: "hf_datasets.Dataset", height: int, width: int) -> None:
        self.rows, self.height, self.width = rows.select_columns(COLUMNS), height, width

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return decode_pair(self.rows[int(index)], self.height, self.width)


def _unit(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32)).div(127.5).sub(1.0)


def collate_pairs(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Decoded pairs -> a batch: `agnostic` (22 ch), `cloth`, `cloth_mask`, `person`,
    `parse_cloth` and its mask, `ids`, `categories`."""
    if not samples:
        raise RefbenchError("an empty batch of try-on pairs")
    person = torch.stack([_unit(s["person"]).permute(2, 0, 1) for s in samples])
    parse = torch.stack([torch.from_numpy(s["parse"].astype(np.int64)) for s in samples])
    keep = 1 - sum((parse == label).float() for label in MASKED_LABELS).unsqueeze(1)
    pcm = (parse == UPPER_CLOTHES).float().unsqueeze(1)
    shape = torch.stack([_unit(s["shape"])[None] for s in samples])
    pose = torch.stack([torch.from_numpy(s["pose"]).float() * 2 - 1 for s in samples])
    return {"ids": [s["id"] for s in samples], "categories": [s["category"] for s in samples],
            "agnostic": torch.cat([shape, person * keep - (1 - keep), pose], 1),
            "cloth": torch.stack([_unit(s["cloth"]).permute(2, 0, 1) for s in samples]),
            "cloth_mask": torch.stack([torch.from_numpy(s["cloth_mask"]).float()[None]
                                       for s in samples]),
            "person": person, "parse_cloth": person * pcm + (1 - pcm), "parse_cloth_mask": pcm}


def to_uint8(image: Tensor) -> np.ndarray:
    """`(B, 3, H, W)` in [-1, 1] -> `(B, H, W, 3)` uint8, as `tensor2im` saves it."""
    return ((image.detach().float() + 1) / 2 * 255).clamp(0, 255).to(torch.uint8) \
        .permute(0, 2, 3, 1).cpu().numpy()


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
        if cfg.height % 16 or cfg.width % 16 or cfg.height < 32 or cfg.width < 32:
            raise RefbenchError(f"height and width must be multiples of 16 and at least 32, got "
                                f"{cfg.height}x{cfg.width}", key="model.height")
        if not 1 <= cfg.max_cells <= space.MAX_CELLS:
            raise RefbenchError(f"must be 1..{space.MAX_CELLS}, got {cfg.max_cells}",
                                key="model.max_cells")
        if cfg.channels < 1:
            raise RefbenchError(f"must be >= 1, got {cfg.channels}", key="model.channels")
        if spec.dataset.name != "viton" or spec.metric.name != "tryon_image":
            raise RefbenchError(f"WAS-VTON is a VITON try-on model (COCO-18 pose); score it on "
                                f"viton-tryon, not {spec.name}", key="benchmark")
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
        images = self.tryon(batch)
        return [Prediction(pid, np.ascontiguousarray(images[i]))
                for i, pid in enumerate(batch["ids"])]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


@BASELINES.register("was-vton-supernet", family=FAMILY, tasks="viton")
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


@BASELINES.register("was-vton", family=FAMILY, tasks="viton")
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
    """`floors.paste_image` for VITON, whose rows hold no pre-aligned garment: the garment is
    aligned on the fly with M3D-VTON's box alignment (`preprocess.prealign_cloth`)."""
    from PIL import Image

    from refbench.baselines.tryon.floors import paste_image
    from refbench.datasets.tryon.preprocess import prealign_cloth

    out = {}
    for row in rows.select_columns(["pair_id", "person", "cloth", "cloth_mask", "parse"]):
        person, parse = _image(row, "person", "RGB"), _image(row, "parse", "L")
        cloth, mask = _image(row, "cloth", "RGB"), _image(row, "cloth_mask", "L")
        aligned, aligned_mask = prealign_cloth(Image.fromarray(cloth),
                                               Image.fromarray(((mask >= 128) * 255).astype(np.uint8)),
                                               parse, name=str(row["pair_id"]))
        out[row["pair_id"]] = paste_image(person, parse, np.asarray(aligned),
                                          np.asarray(aligned_mask) >= 128)
    return out
