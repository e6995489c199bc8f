"""The registered M3D-VTON baselines: `m3dvton-mtm`, `m3dvton-drm`, `m3dvton-tfm`, one per
module, trained in the official order (MTM, then DRM and TFM on MTM's outputs).

Three baselines rather than one with a `stage` key: each stage has its own network, loss,
config and benchmark (MTM's initial depth and DRM's final depth are scored on
`mpv3d-tryon-depth`, TFM's try-on images on `mpv3d-tryon`), and each run folder holds one
trained module. DRM and TFM name the MTM run they build on in `model.mtm_run` (its folder;
`model.mtm_checkpoint` best | last): at `create` the MTM is rebuilt from that run, frozen,
and kept as a submodule whose weights travel in the DRM/TFM checkpoints (a trained DRM/TFM
run predicts without the MTM run folder; the parameter count in result.json includes the
frozen MTM). The named run is checked with the config, before the DRM/TFM run folder is
written (`check_mtm_run`): a missing folder, a folder that is no run, another baseline's
run, an MTM run never trained (no checkpoint) or one at another image size is a one-line
error. Where the official pipeline writes MTM's test outputs to a `--warproot` and
reads them back, here MTM runs on each batch: the warped garment quantised to uint8 as the
saved image is (JPEG compression is not imitated), its mask thresholded as re-read, the
argmax segmentation, the tanh initial depth, and the warped garment's Sobel images.

Without `mtm_run`, DRM and TFM train on the release's stand-ins instead (not the paper's
setting; the demo's): the pre-aligned garment and mask for MTM's warp, the release's parse
for MTM's segmentation, and zero initial depth.

Outputs as the official test script writes them: TFM `tryon/<person>.png` (the pair id),
DRM `final-depth/` and MTM `initial-depth/` as `<pair>_depth.npy` and its back twin (world
z, back aligned with front) through the `tryon_results` format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from refbench.baselines.base import Baseline, Prediction
from refbench.baselines.tryon.losses import PerceptualLoss
from refbench.baselines.tryon.m3dvton import inputs
from refbench.baselines.tryon.m3dvton.drm import DRMNet, DRMWeights, drm_depth, drm_input, drm_losses
from refbench.baselines.tryon.m3dvton.mtm import MTMNet, MTMWeights, mtm_losses, mtm_outputs
from refbench.baselines.tryon.m3dvton.tfm import (TFM_INPUT_NC, TFM_OUTPUT_NC, TFMWeights,
                                                  tfm_input, tfm_losses, tfm_tryon)
from refbench.baselines.tryon.unet import NormKind, UnetGenerator, check_unet_size, init_weights
from refbench.config import from_dict
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import BASELINES

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

MODEL_CONFIG = "model_config.json"
MTM_CONFIG = "mtm_config.json"
DATASET = "mpv3d"
DEPTH_METRIC, IMAGE_METRIC = "tryon_depth", "tryon_image"
FAMILY = "M3D-VTON (Zhao et al., ICCV 2021)"


@dataclass
class MTMConfig:
    """`model:` of `m3dvton-mtm` (official defaults at 512 x 320)."""

    height: int = 512
    width: int = 320
    ngf: int = 64
    grid_size: int = 3
    dec_width: int = 512
    reg_width: int = 512
    norm: NormKind = "instance"
    init_gain: float = 0.02
    lambda_warp: float = 1.0
    lambda_depth: float = 1.0
    lambda_segmt: float = 1.0
    add_theta_loss: bool = False
    add_grid_loss: bool = False
    lambda_theta: float = 0.1
    lambda_grid: float = 1.0
    grid_distance: Literal["l1", "l2"] = "l1"


@dataclass
class DRMConfig:
    """`model:` of `m3dvton-drm`."""

    mtm_run: str | None = None
    mtm_checkpoint: Literal["best", "last"] = "best"
    height: int = 512
    width: int = 320
    ngf: int = 64
    norm: NormKind = "instance"
    init_gain: float = 0.02
    lambda_depth: float = 1.0
    lambda_grad: float = 1.0
    lambda_normal: float = 1.5
    add_grad_loss: bool = True
    add_normal_loss: bool = False


@dataclass
class TFMConfig:
    """`model:` of `m3dvton-tfm`; `perceptual: auto` is VGG19 with `vgg_weights`, else the
    weights-free `pyramid` substitute (`losses.py`)."""

    mtm_run: str | None = None
    mtm_checkpoint: Literal["best", "last"] = "best"
    height: int = 512
    width: int = 320
    ngf: int = 64
    num_downs: int = 6
    norm: NormKind = "instance"
    use_dropout: bool = False
    init_gain: float = 0.02
    perceptual: Literal["auto", "vgg19", "pyramid", "none"] = "auto"
    vgg_weights: str | None = None
    lambda_l1: float = 1.0
    lambda_vgg: float = 1.0
    lambda_mask: float = 1.0


def _check_size(height: int, width: int) -> None:
    if height % 16 or width % 16 or height < 64 or width < 64:
        raise RefbenchError(f"M3D-VTON halves the image 4 times: height and width must be "
                            f"multiples of 16 and at least 64, got {height}x{width}",
                            key="model.height")


def check_mtm_run(run_dir: str | Path, checkpoint: str = "best") -> tuple[MTMConfig, Path]:
    """The MTM config and checkpoint folder of an `m3dvton-mtm` run, checked without
    building anything (DRM/TFM configs are checked before a run folder is written): a
    one-line error when the folder is missing, is not a run, is another baseline's run,
    was never trained or lacks the named checkpoint."""
    from refbench.engine import find_checkpoint
    from refbench.runner import load_run_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RefbenchError("MTM run folder not found", path=run_dir, key="model.mtm_run")
    try:
        config = load_run_config(run_dir)
    except RefbenchError as exc:
        raise RefbenchError(f"model.mtm_run is not a usable run: {exc.message}",
                            path=exc.path or run_dir, key="model.mtm_run") from None
    if config.baseline != "m3dvton-mtm":
        raise RefbenchError(f"model.mtm_run must be an m3dvton-mtm run, this one is "
                            f"{config.baseline!r}", path=run_dir, key="model.mtm_run")
    path = run_dir / MODEL_CONFIG
    if not path.is_file():
        raise RefbenchError("MTM run folder is incomplete (was it trained?)", path=path,
                            key="model.mtm_run")
    try:
        cfg = from_dict(MTMConfig, json.loads(path.read_text(encoding="utf-8")), prefix="mtm")
    except ValueError as exc:  # JSONDecodeError
        raise RefbenchError(f"unreadable MTM config: {exc}", path=path) from None
    try:
        found = find_checkpoint(run_dir, checkpoint)  # type: ignore[arg-type]
    except RefbenchError as exc:
        raise RefbenchError(f"model.mtm_run has no usable {checkpoint} checkpoint: "
                            f"{exc.message}", path=exc.path or run_dir,
                            key="model.mtm_checkpoint") from None
    return cfg, found


def load_mtm(run_dir: str | Path, checkpoint: str = "best") -> tuple[MTMNet, MTMConfig]:
    """The frozen MTM network of an `m3dvton-mtm` run (its config and weights)."""
    from refbench.engine import load_model_weights
    from refbench.registry import get_spec
    from refbench.runner import load_run_config

    _, found = check_mtm_run(run_dir, checkpoint)
    config = load_run_config(Path(run_dir))
    stage = M3DVTONMTM.restore(config.model, get_spec(config.benchmark), Path(run_dir))
    load_model_weights(stage, found)  # type: ignore[arg-type]
    net = stage.net
    net.requires_grad_(False).eval()
    return net, stage.cfg


class M3DVTONStage(Baseline):
    """What the three stages share: config files, rows -> batches, predictions' shape."""

    Config: ClassVar[type]
    stage: ClassVar[str]
    metric: ClassVar[str]

    def __init__(self, cfg: Any, spec: "BenchmarkSpec") -> None:
        super().__init__()
        self.cfg, self.spec = cfg, spec

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        cfg = from_dict(cls.Config, dict(model_cfg), prefix="model")
        _check_size(cfg.height, cfg.width)
        if spec.dataset.name != DATASET:
            raise RefbenchError(f"M3D-VTON trains on MPV3D (depth, BODY_25 pose); benchmark "
                                f"{spec.name} is on {spec.dataset.name}", key="benchmark")
        if spec.metric.name != cls.metric:
            want = "mpv3d-tryon-depth" if cls.metric == DEPTH_METRIC else "mpv3d-tryon"
            raise RefbenchError(f"{cls.stage} predicts {'depth' if cls.metric == DEPTH_METRIC else 'try-on images'}"
                                f"; score it on {want}, not {spec.name}", key="benchmark")
        return cfg

    @classmethod
    def _build(cls, cfg: Any, spec: "BenchmarkSpec", run_dir: Path,
               fresh: bool) -> "M3DVTONStage":
        raise NotImplementedError

    @classmethod
    def create(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
               train_rows: "hf_datasets.Dataset", run_dir: Path,
               init_from: str | None = None) -> "M3DVTONStage":
        if init_from is not None:
            raise NotImplementedError(
                "M3D-VTON stages train from scratch as the official train.py does; DRM and TFM "
                "take the MTM run in model.mtm_run, and the released pickled checkpoints have no "
                "converter to these modules")
        cfg = cls.validate_config(model_cfg, spec)
        if len(train_rows):
            first = train_rows.select_columns(["pair_id", "height", "width"])[0]
            if (first["height"], first["width"]) != (cfg.height, cfg.width):
                raise RefbenchError(f"pair {first['pair_id']} is {first['width']}x{first['height']}"
                                    f" (WxH); the recipe is for {cfg.width}x{cfg.height} "
                                    f"(set model.height / model.width)", key="model.height")
        run_dir = Path(run_dir)
        model = cls._build(cfg, spec, run_dir, fresh=True)
        atomic_write_json(run_dir / MODEL_CONFIG, asdict(model.cfg))
        return model

    @classmethod
    def restore(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec",
                run_dir: Path) -> "M3DVTONStage":
        path = Path(run_dir) / MODEL_CONFIG
        if not path.is_file():
            raise RefbenchError("run folder is incomplete (was it trained?)", path=path)
        cfg = from_dict(cls.Config, json.loads(path.read_text(encoding="utf-8")), prefix="model")
        return cls._build(cfg, spec, Path(run_dir), fresh=False)

    # -- data -------------------------------------------------------------------------------
    def encode(self, rows: "hf_datasets.Dataset") -> Sequence[Mapping[str, Any]]:
        """Rows decoded lazily, one pair per access (`inputs.PairRows`)."""
        return inputs.PairRows(rows, self.cfg.height, self.cfg.width, need_depth=False,
                               need_pose=getattr(self, "mtm", True) is not None)

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return inputs.collate_pairs(features)  # type: ignore[arg-type]

    @staticmethod
    def _depth_targets(batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        if "front" not in batch:
            raise RefbenchError("training M3D-VTON's depth needs MPV3D depth maps; these rows "
                                "have none")
        return batch["front"], batch["back"]

    @staticmethod
    def _depth_predictions(ids: Sequence[str], front: Tensor, back: Tensor) -> list[Prediction]:
        from refbench.evaluation.tryon.metrics import DepthPair

        f = front[:, 0].float().cpu().numpy()
        b = back[:, 0].float().cpu().numpy()
        return [Prediction(pid, DepthPair(f[i], b[i], name=pid)) for i, pid in enumerate(ids)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


@BASELINES.register("m3dvton-mtm", family=FAMILY, tasks="mpv3d")
class M3DVTONMTM(M3DVTONStage):
    """MTM: TPS warp, initial double depth, segmentation; predicts the initial depth."""

    Config = MTMConfig
    stage, metric = "m3dvton-mtm", DEPTH_METRIC

    def __init__(self, cfg: MTMConfig, spec: "BenchmarkSpec") -> None:
        super().__init__(cfg, spec)
        self.net = MTMNet(cfg.height, cfg.width, ngf=cfg.ngf, grid_size=cfg.grid_size,
                          norm=cfg.norm, dec_width=cfg.dec_width, reg_width=cfg.reg_width)
        init_weights(self.net, cfg.init_gain)
        self.weights = MTMWeights(cfg.lambda_warp, cfg.lambda_depth, cfg.lambda_segmt,
                                  cfg.lambda_theta, cfg.lambda_grid, cfg.add_theta_loss,
                                  cfg.add_grid_loss, cfg.grid_size, cfg.grid_distance)

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> MTMConfig:
        cfg = super().validate_config(model_cfg, spec)
        if cfg.grid_size < (3 if cfg.add_theta_loss else 2):
            raise RefbenchError(f"model.grid_size {cfg.grid_size} is too small (a TPS grid needs "
                                f"2 x 2 points, the theta regulariser 3 x 3)", key="model.grid_size")
        return cfg

    @classmethod
    def _build(cls, cfg: Any, spec: "BenchmarkSpec", run_dir: Path, fresh: bool) -> "M3DVTONMTM":
        return cls(cfg, spec)

    def forward_batch(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        parts = inputs.person_parts(batch["person"], batch["parse"], batch["palm"])
        out = mtm_outputs(self.net, inputs.mtm_agnostic(dict(batch), parts["hhl"]),
                          batch["cloth"], batch["cloth_mask"])
        out["parse_cloth"] = parts["parse_cloth"]
        return out

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        front, back = self._depth_targets(batch)
        out = self.forward_batch(batch)
        return mtm_losses(out, out["parse_cloth"], front, back, batch["parse"], self.weights)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        out = self.forward_batch(batch)
        return self._depth_predictions(batch["ids"], out["front"], out["back"])


class _AfterMTM(M3DVTONStage):
    """DRM and TFM: a frozen MTM submodule (or the release's stand-ins) feeds them."""

    def __init__(self, cfg: Any, spec: "BenchmarkSpec", mtm: MTMNet | None) -> None:
        super().__init__(cfg, spec)
        self.mtm = mtm
        if mtm is not None:
            mtm.requires_grad_(False).eval()

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> Any:
        cfg = super().validate_config(model_cfg, spec)
        if cfg.mtm_run is not None:  # before the runner writes this run's folder
            mtm_cfg, _ = check_mtm_run(cfg.mtm_run, cfg.mtm_checkpoint)
            if (mtm_cfg.height, mtm_cfg.width) != (cfg.height, cfg.width):
                raise RefbenchError(f"the MTM run works at {mtm_cfg.width}x{mtm_cfg.height}, this "
                                    f"recipe at {cfg.width}x{cfg.height}", key="model.mtm_run")
        return cfg

    @classmethod
    def _mtm_for(cls, cfg: Any, run_dir: Path, fresh: bool) -> MTMNet | None:
        """Fresh: load the named MTM run and keep its config beside ours; restored: rebuild
        the same architecture from that copy (the weights come with our checkpoint)."""
        if cfg.mtm_run is None:
            return None
        if fresh:
            net, mtm_cfg = load_mtm(cfg.mtm_run, cfg.mtm_checkpoint)
            if (mtm_cfg.height, mtm_cfg.width) != (cfg.height, cfg.width):
                raise RefbenchError(f"the MTM run works at {mtm_cfg.width}x{mtm_cfg.height}, this "
                                    f"recipe at {cfg.width}x{cfg.height}", key="model.mtm_run")
            atomic_write_json(Path(run_dir) / MTM_CONFIG, asdict(mtm_cfg))
            return net
        path = Path(run_dir) / MTM_CONFIG
        if not path.is_file():
            raise RefbenchError("run folder lacks the MTM's config (was it trained?)", path=path)
        mtm_cfg = from_dict(MTMConfig, json.loads(path.read_text(encoding="utf-8")), prefix="mtm")
        return MTMNet(mtm_cfg.height, mtm_cfg.width, ngf=mtm_cfg.ngf, grid_size=mtm_cfg.grid_size,
                      norm=mtm_cfg.norm, dec_width=mtm_cfg.dec_width, reg_width=mtm_cfg.reg_width)

    def train(self, mode: bool = True) -> "_AfterMTM":
        super().train(mode)
        if self.mtm is not None:
            self.mtm.eval()  # frozen: always in inference mode
        return self

    @torch.no_grad()
    def stage_inputs(self, batch: Mapping[str, Any], sobel: bool) -> dict[str, Tensor]:
        """MTM's outputs as the next stage reads them (module docstring), and the parts of
        the person cut with MTM's segmentation."""
        person, cloth = batch["person"], batch["cloth"]
        if self.mtm is None:
            warped, mask, parse = cloth, batch["cloth_mask"], batch["parse"]
            front = back = torch.zeros_like(batch["cloth_mask"])
            _, warped_uint8 = inputs.quantize_image(cloth) if sobel else (None, None)
        else:
            given = inputs.person_parts(person, batch["parse"], batch["palm"])
            out = mtm_outputs(self.mtm, inputs.mtm_agnostic(dict(batch), given["hhl"]), cloth,
                              batch["cloth_mask"])
            warped, warped_uint8 = inputs.quantize_image(out["warped_cloth"])
            mask = inputs.quantize_mask(out["warped_mask"])
            parse, front, back = out["parse"], out["front"], out["back"]
        parts = inputs.person_parts(person, parse, batch["palm"])
        got = {"warped_cloth": warped, "warped_mask": mask, "parse": parse, "front": front,
               "back": back, **parts}
        if sobel:
            got["cloth_sobel"] = inputs.cloth_sobel(warped_uint8, person)
        return got


@BASELINES.register("m3dvton-drm", family=FAMILY, tasks="mpv3d")
class M3DVTONDRM(_AfterMTM):
    """DRM: refines MTM's initial double depth; predicts the final depth."""

    Config = DRMConfig
    stage, metric = "m3dvton-drm", DEPTH_METRIC

    def __init__(self, cfg: DRMConfig, spec: "BenchmarkSpec", mtm: MTMNet | None) -> None:
        super().__init__(cfg, spec, mtm)
        self.net = init_weights(DRMNet(ngf=cfg.ngf, norm=cfg.norm), cfg.init_gain)
        self.weights = DRMWeights(cfg.lambda_depth, cfg.lambda_grad, cfg.lambda_normal,
                                  cfg.add_grad_loss, cfg.add_normal_loss)

    @classmethod
    def _build(cls, cfg: Any, spec: "BenchmarkSpec", run_dir: Path, fresh: bool) -> "M3DVTONDRM":
        return cls(cfg, spec, cls._mtm_for(cfg, run_dir, fresh))

    def depth(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        got = self.stage_inputs(batch, sobel=True)
        cloth_sobel = got["cloth_sobel"] * got["arm_cloth"] - (1 - got["arm_cloth"])
        hal = got["head_arm_lower"]
        person_sobel = batch["person_sobel"] * hal - (1 - hal)
        x = drm_input(got["front"], got["back"], got["warped_cloth"], got["hhl"], cloth_sobel,
                      person_sobel)
        return drm_depth(self.net, x)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        front_gt, back_gt = self._depth_targets(batch)
        front, back = self.depth(batch)
        return drm_losses(front, back, front_gt, back_gt, self.weights)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        front, back = self.depth(batch)
        return self._depth_predictions(batch["ids"], front, back)


@BASELINES.register("m3dvton-tfm", family=FAMILY, tasks="mpv3d")
class M3DVTONTFM(_AfterMTM):
    """TFM: fuses the warped garment and the person; predicts the try-on image."""

    Config = TFMConfig
    stage, metric = "m3dvton-tfm", IMAGE_METRIC

    def __init__(self, cfg: TFMConfig, spec: "BenchmarkSpec", mtm: MTMNet | None) -> None:
        super().__init__(cfg, spec, mtm)
        self.net = init_weights(UnetGenerator(TFM_INPUT_NC, TFM_OUTPUT_NC, cfg.num_downs, cfg.ngf,
                                              cfg.norm, cfg.use_dropout), cfg.init_gain)
        self.perceptual = PerceptualLoss(cfg.perceptual, cfg.vgg_weights)
        self.weights = TFMWeights(cfg.lambda_l1, cfg.lambda_vgg, cfg.lambda_mask)

    @classmethod
    def validate_config(cls, model_cfg: Mapping[str, Any], spec: "BenchmarkSpec") -> TFMConfig:
        cfg = super().validate_config(model_cfg, spec)
        check_unet_size(cfg.height, cfg.width, cfg.num_downs)
        if cfg.perceptual == "auto":  # resolved once, and recorded in model_config.json
            cfg.perceptual = "vgg19" if cfg.vgg_weights else "pyramid"
        if cfg.perceptual == "vgg19" and cfg.vgg_weights and not Path(cfg.vgg_weights).is_file():
            raise RefbenchError("VGG19 weights file not found", path=cfg.vgg_weights,
                                key="model.vgg_weights")
        return cfg

    @classmethod
    def _build(cls, cfg: Any, spec: "BenchmarkSpec", run_dir: Path, fresh: bool) -> "M3DVTONTFM":
        if not fresh and cfg.perceptual == "vgg19":
            cfg.perceptual = "none"  # the loss is not needed to predict; the file may be gone
        return cls(cfg, spec, cls._mtm_for(cfg, run_dir, fresh))

    def tryon(self, batch: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        got = self.stage_inputs(batch, sobel=False)
        x = tfm_input(got["warped_cloth"], got["warped_mask"], got["hhl"], got["parse"],
                      got["front"])
        return tfm_tryon(self.net, x, got["warped_cloth"]), got

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        out, got = self.tryon(batch)
        return tfm_losses(out, batch["person"], got["parse_cloth_mask"], self.perceptual,
                          self.weights)

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        out, _ = self.tryon(batch)
        _, images = inputs.quantize_image(out["tryon"])
        return [Prediction(pid, np.ascontiguousarray(images[i]))
                for i, pid in enumerate(batch["ids"])]

