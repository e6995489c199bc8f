"""The registered try-on metrics: `tryon_image` (SSIM, PSNR, LPIPS, FID, KID) and
`tryon_depth` (depth errors of both sides, Chamfer distance).

`tryon_image`. Predictions are try-on results and references the ground-truth person
images, aligned pair by pair; each is a path or a uint8 H x W x 3 RGB array.
- `SSIM` in the convention the spec names (`ssim_convention`: `hrviton` or `pytorch_ssim`,
  see `ssim.py`) and `PSNR` (dB, data range 255, RGB), per pair at the result's resolution,
  averaged over pairs. With `resolution: [H, W]`, references of another size are first
  resized with PIL bilinear (HR-VITON's `--resolution` 512 / 256); a result whose size is
  not the reference's (or `resolution`) is an error naming its file.
- `LPIPS` (AlexNet v0.1, HR-VITON's 128 x 128 / [-1, 1] inputs), averaged over pairs, only
  with `lpips_alexnet_weights` + `lpips_weights`.
- `FID` and `KID` (raw scale; `KID_std` beside it) between the set of results and the set of
  reference images as files (pytorch-fid reads the folder of real images as they are), or
  the statistics in `fid_reference_stats` (pytorch-fid `--save-stats` `.npz`; KID then needs
  the images and is left out). Only with `inception_weights`.
A component without its weights is absent from the result with a one-line reason (a
warning); nothing is substituted. `weight_dependent_keys` declares which keys need which
weights option, so a benchmark whose primary key is one of them (the unpaired specs' `FID`)
is known to need the user's file.

`pairwise: false` (the unpaired setting: a person wearing another garment has no ground
truth) scores only the sets: FID/KID between the results and the distinct reference person
images (each counted once however many pairs name it); SSIM/PSNR/LPIPS are not computed.
Without `inception_weights` there is then nothing to score and `compute` is a one-line error
naming the option, never a number. The convention and the resolution are recorded as counts
(`ssim_convention/<name>` = 1, `resolution/height`, `resolution/width`).

`tryon_depth`. Predictions are `DepthPair(front, back)` of world-z maps (`.npy` paths or
arrays, back aligned with front, as M3D-VTON's DRM writes them); references are
`DepthPair(front, back, mask)` of MPV3D viewport ground truth, converted as the official
loader does (`depth.py`). Keys `front/<k>` and `back/<k>` for k in AbsRel, SqRel, RMSE,
RMSE_log, delta1..3 (per image, averaged), and `Chamfer` of the back-projected clouds of the
scored pixels (`pointcloud.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.evaluation.tryon import depth as depth_mod
from refbench.evaluation.tryon.images import ImageLike, describe, load_rgb, resize_bilinear, same_size
from refbench.evaluation.tryon.pointcloud import back_project, chamfer
from refbench.evaluation.tryon.ssim import PSNR_CAP, check_convention, psnr, ssim_batch
from refbench.options import Option
from refbench.registry import METRICS

#: fewer images than the feature dimension: FID's covariance is rank-deficient and biased
FID_FEW = 2048
FEW_PAIRS = 100


def _resolution(value: Any) -> tuple[int, int] | None:
    """`[H, W]`, `(H, W)`, `"HxW"` or None."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
    else:
        parts = list(value)
    try:
        height, width = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise RefbenchError(f"resolution must be [height, width] or 'HxW', got {value!r}",
                            key="resolution") from None
    if height < 11 or width < 11:
        raise RefbenchError(f"resolution {height}x{width} is below SSIM's 11-pixel window",
                            key="resolution")
    return height, width


@METRICS.register("tryon_image", higher_is_better=True, version="1")
class TryOnImage(Metric):
    """SSIM (named convention), PSNR, LPIPS, FID, KID of try-on results (module docstring)."""

    keys: ClassVar[dict[str, str]] = {
        "SSIM": "mean SSIM over pairs, in the spec's ssim_convention (hrviton | pytorch_ssim)",
        "PSNR": f"mean PSNR over pairs, dB, data range 255, RGB (identical pair = {PSNR_CAP:g})",
        "LPIPS": "mean LPIPS (AlexNet v0.1, 128x128, [-1,1]) over pairs; needs user weights",
        "FID": "Frechet Inception distance, pytorch-fid pool3; needs user Inception weights",
        "KID": "kernel Inception distance, raw scale (not x1000), mean over subsets",
        "KID_std": "standard deviation of KID over its subsets",
    }
    directions: ClassVar[dict[str, bool | None]] = {
        "SSIM": True, "PSNR": True, "LPIPS": False, "FID": False, "KID": False, "KID_std": None}
    #: key -> the option naming the user-supplied weights it cannot be computed without
    weight_dependent_keys: ClassVar[dict[str, str]] = {
        "FID": "inception_weights", "KID": "inception_weights", "KID_std": "inception_weights",
        "LPIPS": "lpips_weights"}
    options: ClassVar[tuple[Option, ...]] = (
        Option("inception_weights", "path", "pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
               "(FID/KID are left out without it)"),
        Option("fid_reference_stats", "path", "pytorch-fid --save-stats .npz of the real images "
               "(used instead of the reference images for FID)"),
        Option("lpips_alexnet_weights", "path", "torchvision AlexNet checkpoint "
               "(alexnet-owt-7be5be79.pth) for LPIPS"),
        Option("lpips_weights", "path", "LPIPS v0.1 linear heads alex.pth"),
        Option("device", "str", "torch device for Inception/LPIPS", "cpu"),
        Option("fid_method", "str", "sqrtm (pytorch-fid's scipy sqrtm) or eigh (same trace from "
               "symmetric eigendecompositions, faster)", "sqrtm"),
    )

    def __init__(self, ssim_convention: str = "hrviton", resolution: Any = None,
                 inception_weights: str | Path | None = None,
                 fid_reference_stats: str | Path | None = None,
                 lpips_alexnet_weights: str | Path | None = None,
                 lpips_weights: str | Path | None = None, fid: bool = True,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, kid_seed: int = 2020,
                 device: str = "cpu", batch_size: int = 50, fid_method: str = "sqrtm",
                 fid_dims: int = 2048, pairwise: bool = True) -> None:
        super().__init__(ssim_convention=ssim_convention, resolution=resolution,
                         pairwise=pairwise)
        self.pairwise = bool(pairwise)
        self._pairs = 0
        self._seen_real: set[str] = set()
        self.convention = check_convention(ssim_convention)
        self.resolution = _resolution(resolution)
        self.device = device
        self.batch_size = int(batch_size)
        self.fid_method = fid_method
        self.fid_dims = int(fid_dims)
        self.kid = (int(kid_subsets), int(kid_subset_size), int(kid_seed))
        self.reasons: list[str] = []
        self._ssim: list[np.ndarray] = []
        self._psnr: list[np.ndarray] = []
        self._lpips: list[np.ndarray] = []
        self._fake: list[np.ndarray] = []
        self._real: list[np.ndarray] = []
        self._shape: tuple[int, int] | None = None
        self._stats = None
        self.inception = self.lpips = None
        if not fid:
            self.reasons.append("FID, KID: not computed for this benchmark (fid: false)")
        elif inception_weights is None:
            self.reasons.append("FID, KID absent: no Inception weights file was given "
                                "(inception_weights = pytorch-fid's "
                                "pt_inception-2015-12-05-6726825d.pth)")
        else:
            from refbench.evaluation.tryon.inception import load_fid_inception

            self.inception = load_fid_inception(inception_weights, device)
            if fid_reference_stats is not None:
                from refbench.evaluation.tryon.fid import load_statistics

                self._stats = load_statistics(fid_reference_stats)
                self.reasons.append("KID absent: the real set is given as FID statistics "
                                    "(fid_reference_stats), KID needs its images")
        if not self.pairwise:
            self.reasons.append("SSIM, PSNR, LPIPS: not computed in the unpaired setting "
                                "(pairwise: false; a result has no ground-truth image)")
        elif lpips_alexnet_weights is None or lpips_weights is None:
            self.reasons.append("LPIPS absent: it needs both lpips_alexnet_weights (torchvision "
                                "AlexNet) and lpips_weights (LPIPS v0.1 alex.pth)")
        else:
            from refbench.evaluation.tryon.lpips import load_lpips

            self.lpips = load_lpips(lpips_alexnet_weights, lpips_weights).to(device)

    def update(self, predictions: Sequence[ImageLike], references: Sequence[ImageLike]) -> None:
        """Score pairs `batch_size` at a time, so only one chunk is ever held decoded (a
        VITON-HD test split decoded at once would be 4.8 GB per side)."""
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} results for {len(references)} references")
        step = max(1, int(self.batch_size))
        for start in range(0, len(predictions), step):
            self._update_chunk(predictions[start:start + step], references[start:start + step],
                               start)

    def _update_chunk(self, predictions: Sequence[ImageLike], references: Sequence[ImageLike],
                      offset: int) -> None:
        preds, refs, originals = [], [], []
        for i, (pred, ref) in enumerate(zip(predictions, references), offset):
            p_name, r_name = describe(pred, f"result {i}"), describe(ref, f"reference {i}")
            p, r = load_rgb(pred, p_name), load_rgb(ref, r_name)
            originals.append(r)
            if self.resolution is not None:
                r = resize_bilinear(r, *self.resolution)
            same_size(p, r, p_name, r_name)
            if self._shape is None:
                self._shape = p.shape[:2]
            elif p.shape[:2] != self._shape:
                raise RefbenchError(f"{p_name}: result is {p.shape[1]}x{p.shape[0]} (WxH) but "
                                    f"earlier results are {self._shape[1]}x{self._shape[0]}")
            preds.append(p)
            refs.append(r)
        self._pairs += len(preds)
        if not self.pairwise:
            originals = self._distinct(originals)
        else:
            self._ssim.append(ssim_batch(refs, preds, self.convention))
            self._psnr.append(np.array([psnr(r, p) for r, p in zip(refs, preds)]))
        if self.lpips is not None and self.pairwise:
            from refbench.evaluation.tryon.lpips import lpips_pairs

            self._lpips.append(lpips_pairs(self.lpips, refs, preds))
        if self.inception is not None:
            from refbench.evaluation.tryon.fid import extract_features

            self._fake.append(extract_features(self.inception, preds, self.batch_size,
                                               self.device, "result", self.fid_dims))
            if self._stats is None:
                self._real.append(extract_features(self.inception, originals, self.batch_size,
                                                   self.device, "reference", self.fid_dims))

    def _distinct(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The images not seen before (by content): the unpaired real set counts each
        person image once."""
        import hashlib

        out = []
        for image in images:
            key = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
            key += str(image.shape)
            if key not in self._seen_real:
                self._seen_real.add(key)
                out.append(image)
        return out

    def merge(self, other: Metric) -> None:
        if not isinstance(other, TryOnImage):
            raise TypeError(f"cannot merge {type(other).__name__} into TryOnImage")
        if other._shape is not None and self._shape not in (None, other._shape):
            raise RefbenchError(f"cannot merge results of {other._shape} into {self._shape}")
        self._shape = self._shape or other._shape
        self._pairs += other._pairs
        self._seen_real |= other._seen_real
        for name in ("_ssim", "_psnr", "_lpips", "_fake", "_real"):
            getattr(self, name).extend(getattr(other, name))

    @staticmethod
    def _cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    def compute(self) -> dict[str, float]:
        if self._pairs == 0:
            raise RefbenchError("no try-on result was scored")
        out: dict[str, float] = {}
        if self.pairwise:
            out = {"SSIM": float(self._cat(self._ssim).mean()),
                   "PSNR": float(self._cat(self._psnr).mean())}
        elif self.inception is None:
            raise RefbenchError("unpaired try-on is scored by FID/KID only, which need the "
                                "Inception weights file: pass inception_weights (pytorch-fid's "
                                "pt_inception-2015-12-05-6726825d.pth), e.g. refbench evaluate "
                                "... --option inception_weights=PATH", key="inception_weights")
        if self.lpips is not None:
            out["LPIPS"] = float(self._cat(self._lpips).mean())
        if self.inception is not None:
            from refbench.evaluation.tryon.fid import (
                feature_statistics, fid_from_features, frechet_distance, kid_from_features)

            fake = np.concatenate(self._fake)
            if self._stats is not None:
                out["FID"] = frechet_distance(*feature_statistics(fake, "results"), *self._stats,
                                              method=self.fid_method)
            else:
                real = np.concatenate(self._real)
                out["FID"] = fid_from_features(fake, real, self.fid_method)
                subsets, size, seed = self.kid
                kid, kid_std, self._kid_size = kid_from_features(fake, real, subsets, size, seed)
                out.update({"KID": kid, "KID_std": kid_std})
        return out

    def output_keys(self) -> list[str]:
        absent = set() if self.pairwise else {"SSIM", "PSNR", "LPIPS"}
        if self.lpips is None:
            absent.add("LPIPS")
        if self.inception is None:
            absent |= {"FID", "KID", "KID_std"}
        elif self._stats is not None:
            absent |= {"KID", "KID_std"}
        return [k for k in self.keys if k not in absent]

    def counts(self) -> dict[str, int]:
        out = {"pairs/scored": int(self._pairs)}
        if self.pairwise:
            out.update({f"ssim_convention/{self.convention}": 1,
                        "psnr/identical_pairs": int((self._cat(self._psnr) >= PSNR_CAP).sum())})
        if self._shape is not None:
            out.update({"resolution/height": int(self._shape[0]),
                        "resolution/width": int(self._shape[1])})
        if self.inception is not None:
            out["fid/generated_images"] = int(sum(len(f) for f in self._fake))
            out["fid/dims"] = self.fid_dims
            if self._stats is None:
                out["fid/real_images"] = int(sum(len(f) for f in self._real))
            if hasattr(self, "_kid_size"):
                out.update({"kid/subset_size": int(self._kid_size), "kid/subsets": self.kid[0]})
        return out

    def warnings(self) -> list[str]:
        out = list(self.reasons)
        pairs = int(self._cat(self._ssim).size)
        if self.pairwise and 0 < pairs < FEW_PAIRS:
            out.append(f"only {pairs} pair(s) were scored: SSIM/PSNR/LPIPS are means over few "
                       f"images")
        if self.inception is not None:
            n = int(sum(len(f) for f in self._fake))
            if self.fid_dims != 2048:
                out.append(f"FID/KID from {self.fid_dims}-d Inception features (pytorch-fid "
                           f"--dims {self.fid_dims}), not the standard 2048-d pool3")
            if n < FID_FEW:
                out.append(f"FID from {n} result image(s), fewer than the 2048 feature dimensions: "
                           f"the covariance is rank-deficient and FID is biased upwards; compare "
                           f"only at equal image counts")
            size = getattr(self, "_kid_size", None)
            if size is not None and size < self.kid[1]:
                out.append(f"KID subsets hold {size} images (fewer than {self.kid[1]} available)")
        return out


@dataclass(frozen=True)
class DepthPair:
    """Front and back depth of one person (`.npy` paths or arrays); `mask`, on a reference,
    restricts the scored pixels (H x W bool, front layout); `name` labels errors."""

    front: Any
    back: Any
    mask: Any = None
    name: str = ""


@METRICS.register("tryon_depth", higher_is_better=False, version="1")
class TryOnDepth(Metric):
    """Front/back depth errors and Chamfer distance against MPV3D ground truth (module
    docstring)."""

    keys: ClassVar[dict[str, str]] = {
        **{f"{side}/{k}": f"{side} depth {k} inside the person mask, mean over images"
           for side in depth_mod.SIDES for k in depth_mod.DEPTH_KEYS},
        "Chamfer": "Chamfer distance (squared, both directions) of the back-projected clouds",
    }
    directions: ClassVar[dict[str, bool | None]] = {
        k: (k.split("/")[-1].startswith("delta")) for k in keys}

    def __init__(self, shape: Any = None) -> None:
        super().__init__(shape=shape)
        self.shape = _resolution(shape) if shape is not None else None
        self._values: dict[str, list[float]] = {k: [] for k in self.keys}
        self._pixels = {side: 0 for side in depth_mod.SIDES}
        self._clipped = 0

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            pred, ref = _depth_pair(pred, f"prediction {i}"), _depth_pair(ref, f"reference {i}")
            name = ref.name or pred.name or f"pair {i}"
            mask = None if ref.mask is None else np.asarray(ref.mask, dtype=bool)
            gt_f = depth_mod.load_depth(ref.front, f"{name} ground-truth front depth", self.shape)
            gt_b = depth_mod.load_depth(ref.back, f"{name} ground-truth back depth", self.shape)
            scored = depth_mod.score_pair(pred.front, pred.back, gt_f, gt_b, mask, name)
            worlds, preds = {}, {}
            for side in depth_mod.SIDES:
                values, pixels, clipped = scored[side]
                for key, value in values.items():
                    self._values[f"{side}/{key}"].append(value)
                self._pixels[side] += pixels
                self._clipped += clipped
                gt = gt_f if side == "front" else gt_b
                keep = depth_mod.gt_mask(gt, side) if mask is None else \
                    depth_mod.gt_mask(gt, side) & mask
                worlds[side] = depth_mod.gt_to_world(gt, side) * keep
                raw = pred.front if side == "front" else pred.back
                preds[side] = depth_mod.load_depth(raw, f"{name} predicted {side} depth",
                                                   gt.shape) * keep
            self._values["Chamfer"].append(chamfer(back_project(preds["front"], preds["back"]),
                                                   back_project(worlds["front"], worlds["back"])))

    def merge(self, other: Metric) -> None:
        if not isinstance(other, TryOnDepth):
            raise TypeError(f"cannot merge {type(other).__name__} into TryOnDepth")
        for key, values in other._values.items():
            self._values[key].extend(values)
        for side in depth_mod.SIDES:
            self._pixels[side] += other._pixels[side]
        self._clipped += other._clipped

    def compute(self) -> dict[str, float]:
        if not self._values["Chamfer"]:
            raise RefbenchError("no depth pair was scored")
        return {key: float(np.mean(values)) for key, values in self._values.items()}

    def counts(self) -> dict[str, int]:
        return {"pairs/scored": len(self._values["Chamfer"]),
                "front/pixels": self._pixels["front"], "back/pixels": self._pixels["back"],
                "depth/clipped_predictions": self._clipped}

    def warnings(self) -> list[str]:
        out = []
        if self._clipped:
            out.append(f"{self._clipped} predicted pixel(s) lie at or behind their camera: "
                       f"clipped to a distance of {depth_mod.MIN_DISTANCE:g} for AbsRel/SqRel/"
                       f"RMSE_log/delta")
        return out


def _depth_pair(value: Any, what: str) -> DepthPair:
    if isinstance(value, DepthPair):
        return value
    if isinstance(value, dict) and "front" in value and "back" in value:
        return DepthPair(value["front"], value["back"], value.get("mask"),
                         str(value.get("name", "")))
    raise RefbenchError(f"{what}: expected a DepthPair or a dict with 'front' and 'back', got "
                        f"{type(value).__name__}")
