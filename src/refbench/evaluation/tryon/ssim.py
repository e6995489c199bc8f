"""SSIM in the two conventions of the try-on literature, and PSNR.

The same pair of images scores differently under the two SSIMs that try-on papers print
(by more than 0.1 on real VITON-HD / MPV3D pairs, see the golden tests), so a result
always names its convention:

`hrviton` -- HR-VITON's `evaluate.py` (sangyun884/HR-VITON): both images converted with
    PIL `convert("L")` (8-bit luma, not scikit-image's float `rgb2gray`), then
    scikit-image `structural_similarity(gt, pred, data_range=255, gaussian_weights=True,
    use_sample_covariance=False)`: a Gaussian window of sigma 1.5 truncated at 3.5 sigma
    (11 taps), population (co)variances, K1 = 0.01, K2 = 0.03, and the mean of the SSIM
    map over the pixels at least 5 away from the border (scikit-image crops the padded
    border before averaging, so the padding mode never reaches the value). Computed at the
    output resolution; HR-VITON first resizes the ground truth with PIL bilinear.
`pytorch_ssim` -- ACGPN and the pytorch-ssim package (Po-Hsun-Su/pytorch-ssim): RGB scaled
    to [0, 1], each channel filtered by the 11 x 11 Gaussian window (sigma 1.5, weights
    normalised over the 11 taps) with zero padding (`F.conv2d(padding=5)`), C1 = 0.01^2,
    C2 = 0.03^2, mean over the whole map (every pixel and channel, border included).

Both are computed in float64 with separable filtering (the 2-D windows are outer products
of the 1-D one), which equals the references to ~1e-15 (`hrviton`, float64 like
scikit-image) and ~1e-6 (`pytorch_ssim`, whose float32 arithmetic is the reference's own
rounding). Pairs are spread over threads: SciPy's filters and NumPy release the GIL.

PSNR: per pair on the 8-bit RGB pixels, data range 255, `10 log10(255^2 / MSE)` with the
MSE over every pixel and channel (scikit-image's `peak_signal_noise_ratio`); an identical
pair (MSE 0) is capped at `PSNR_CAP` dB so a set's mean stays finite, and is counted.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from refbench.errors import RefbenchError
from refbench.evaluation.tryon.images import check_rgb, to_gray

CONVENTIONS: tuple[str, ...] = ("hrviton", "pytorch_ssim")
#: both conventions: Gaussian sigma and the 11-tap window (radius 5)
SIGMA = 1.5
RADIUS = 5
#: scikit-image's truncation: radius = int(truncate * sigma + 0.5) = 5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03
#: PSNR's data range (8-bit pixels) and the value of an identical pair
DATA_RANGE = 255.0
PSNR_CAP = 100.0


def gaussian_1d(radius: int = RADIUS, sigma: float = SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian both conventions use (2 * radius + 1 taps)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


_WINDOW = gaussian_1d()
assert int(TRUNCATE * SIGMA + 0.5) == RADIUS


def _ssim_map(stack: np.ndarray, c1: float, c2: float, valid: bool) -> np.ndarray:
    """SSIM map from the five stacked planes (x, y, x^2, y^2, xy) of one channel or more
    (`stack`: 5 x C x H x W). `valid`: keep only the pixels whose window lies inside the
    image (scikit-image's crop); else zero padding (pytorch-ssim)."""
    if valid:
        filtered = ndimage.correlate1d(stack, _WINDOW, axis=-2, mode="nearest")
        filtered = filtered[..., RADIUS:-RADIUS, :]
        filtered = ndimage.correlate1d(filtered, _WINDOW, axis=-1, mode="nearest")
        filtered = filtered[..., RADIUS:-RADIUS]
    else:
        filtered = ndimage.correlate1d(stack, _WINDOW, axis=-2, mode="constant", cval=0.0)
        filtered = ndimage.correlate1d(filtered, _WINDOW, axis=-1, mode="constant", cval=0.0)
    ux, uy, uxx, uyy, uxy = filtered
    uxuy, ux2, uy2 = ux * uy, ux * ux, uy * uy
    numerator = (2.0 * uxuy + c1) * (2.0 * (uxy - uxuy) + c2)
    denominator = (ux2 + uy2 + c1) * ((uxx - ux2) + (uyy - uy2) + c2)
    return numerator / denominator


def _planes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    stack = np.empty((5, *x.shape), dtype=np.float64)
    stack[0], stack[1] = x, y
    np.multiply(x, x, out=stack[2])
    np.multiply(y, y, out=stack[3])
    np.multiply(x, y, out=stack[4])
    return stack


def ssim_hrviton_gray(gt: np.ndarray, pred: np.ndarray) -> float:
    """HR-VITON's SSIM of two uint8 grayscale images (PIL `L`) of the same size."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise RefbenchError(f"SSIM needs two grayscale images of one size, got {gt.shape} and "
                            f"{pred.shape}")
    if min(gt.shape) < 2 * RADIUS + 1:
        raise RefbenchError(f"SSIM needs images of at least {2 * RADIUS + 1} pixels a side, got "
                            f"{gt.shape[1]}x{gt.shape[0]}")
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    stack = _planes(gt.astype(np.float64), pred.astype(np.float64))
    return float(_ssim_map(stack, c1, c2, valid=True).mean(dtype=np.float64))


def ssim_hrviton(gt_rgb: np.ndarray, pred_rgb: np.ndarray) -> float:
    """HR-VITON's SSIM of two uint8 RGB images: PIL luma of each, then `ssim_hrviton_gray`."""
    return ssim_hrviton_gray(to_gray(gt_rgb), to_gray(pred_rgb))


def ssim_pytorch(gt_rgb: np.ndarray, pred_rgb: np.ndarray) -> float:
    """pytorch-ssim's SSIM (ACGPN) of two uint8 RGB images scaled to [0, 1]."""
    gt_rgb, pred_rgb = check_rgb(gt_rgb, "reference"), check_rgb(pred_rgb, "result")
    if gt_rgb.shape != pred_rgb.shape:
        raise RefbenchError(f"SSIM needs two images of one size, got {gt_rgb.shape} and "
                            f"{pred_rgb.shape}")
    x = np.moveaxis(gt_rgb, 2, 0).astype(np.float64) / 255.0
    y = np.moveaxis(pred_rgb, 2, 0).astype(np.float64) / 255.0
    return float(_ssim_map(_planes(x, y), K1 ** 2, K2 ** 2, valid=False).mean(dtype=np.float64))


SSIM_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "hrviton": ssim_hrviton, "pytorch_ssim": ssim_pytorch}


def check_convention(name: str) -> str:
    if name not in SSIM_FUNCTIONS:
        raise RefbenchError(f"unknown SSIM convention {name!r}; choose one of "
                            f"{', '.join(CONVENTIONS)}", key="ssim_convention")
    return name


def psnr(gt_rgb: np.ndarray, pred_rgb: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (data range 255), `PSNR_CAP` for an identical pair."""
    gt, pred = np.asarray(gt_rgb), np.asarray(pred_rgb)
    if gt.shape != pred.shape:
        raise RefbenchError(f"PSNR needs two images of one size, got {gt.shape} and {pred.shape}")
    mse = float(np.mean((gt.astype(np.float64) - pred.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(DATA_RANGE ** 2 / mse))


def _threads() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))


def ssim_batch(gts: Sequence[np.ndarray], preds: Sequence[np.ndarray], convention: str = "hrviton",
               threads: int | None = None) -> np.ndarray:
    """Per-pair SSIM of aligned uint8 RGB images in one convention, pairs spread over
    `threads` (default: the usable CPUs, at most 8)."""
    fn = SSIM_FUNCTIONS[check_convention(convention)]
    if len(gts) != len(preds):
        raise RefbenchError(f"{len(preds)} results for {len(gts)} references")
    workers = threads or _threads()
    if workers == 1 or len(gts) < 2:
        return np.array([fn(g, p) for g, p in zip(gts, preds)], dtype=np.float64)
    with ThreadPoolExecutor(min(workers, len(gts))) as pool:
        return np.array(list(pool.map(fn, gts, preds)), dtype=np.float64)
