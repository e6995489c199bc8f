"""Try-on evaluation speed, ratios measured in one process.

(a) SSIM, HR-VITON convention, on a batch of 512 x 320 RGB pairs (MPV3D's size; person-like
    smooth images with noise, so the values are not trivial): refbench's `ssim_batch`
    (PIL luma, separable float64 filtering, pairs over threads) against HR-VITON's own
    recipe, one pair at a time: PIL `convert("L")` + scikit-image `structural_similarity(...,
    data_range=255, gaussian_weights=True, use_sample_covariance=False)`. The values must be
    equal (max |diff| printed); target: refbench at least as fast (ratio >= 1).
    The pytorch-ssim convention is timed the same way against pytorch-ssim's algorithm
    (float32 11 x 11 `F.conv2d`, zero padding) when asked (`--pytorch-ssim`).
(b) FID feature extraction: `extract_features` (uint8 images -> [0, 1] tensors -> 299
    resize -> network -> float64 numpy) against a plain forward of the same network
    (`FIDInceptionV3.features`) on already preprocessed 299 x 299 tensors, images/s of each.
    Random weights: the speed does not depend on the values.

Run: `.venv/bin/python perf/tryon.py [--pairs 64 --fid-images 32 --batch 16 --device cpu]`.
Needs scikit-image for (a) (`pip install -c constraints.txt scikit-image`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np
import torch

from refbench.evaluation.tryon import ssim
from refbench.evaluation.tryon.fid import extract_features
from refbench.evaluation.tryon.inception import FIDInceptionV3

H, W = 512, 320


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def person_like(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Smooth blobs on a light background, and a shifted, noisier copy of each."""
    yy, xx = np.mgrid[0:H, 0:W]
    gts, preds = [], []
    for _ in range(n):
        img = np.full((H, W, 3), 235.0)
        for _ in range(6):
            cy, cx = rng.uniform(0, H), rng.uniform(0, W)
            r = rng.uniform(20, 120)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            img = img * (1 - blob[..., None]) + rng.uniform(0, 255, 3) * blob[..., None]
        gt = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
        pred = np.clip(np.roll(img, 2, axis=1) + rng.normal(0, 10, img.shape), 0, 255)
        gts.append(gt)
        preds.append(pred.astype(np.uint8))
    return gts, preds


def ssim_speed(pairs: int, repeat: int, with_pytorch: bool) -> None:
    from PIL import Image
    from skimage.metrics import structural_similarity

    gts, preds = person_like(np.random.default_rng(0), pairs)

    def reference() -> np.ndarray:
        out = []
        for g, p in zip(gts, preds):
            ga = np.asarray(Image.fromarray(g).convert("L"))
            pa = np.asarray(Image.fromarray(p).convert("L"))
            out.append(structural_similarity(ga, pa, data_range=255, gaussian_weights=True,
                                             use_sample_covariance=False))
        return np.array(out)

    t_ref, ref = best_of(repeat, reference)
    t_ours, ours = best_of(repeat, lambda: ssim.ssim_batch(gts, preds, "hrviton"))
    t_one, one = best_of(repeat, lambda: ssim.ssim_batch(gts, preds, "hrviton", threads=1))
    print(f"(a) SSIM hrviton, {pairs} pairs of {H}x{W}: scikit-image {pairs / t_ref:.1f} pairs/s, "
          f"refbench {pairs / t_ours:.1f} pairs/s (1 thread: {pairs / t_one:.1f}); "
          f"ratio {t_ref / t_ours:.2f}x (1 thread {t_ref / t_one:.2f}x); "
          f"max |diff| {np.abs(ours - ref).max():.2e}, mean SSIM {ours.mean():.4f}")
    if with_pytorch:
        import torch.nn.functional as F

        g1 = torch.exp(-((torch.arange(11.0) - 5) ** 2) / (2 * 1.5 ** 2))
        g1 = g1 / g1.sum()
        win = torch.outer(g1, g1)[None, None].expand(3, 1, 11, 11).contiguous()

        def torch_ref() -> np.ndarray:
            out = []
            for g, p in zip(gts, preds):
                x = torch.from_numpy(g).permute(2, 0, 1)[None].float() / 255
                y = torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255
                mu1, mu2 = F.conv2d(x, win, padding=5, groups=3), F.conv2d(y, win, padding=5, groups=3)
                s1 = F.conv2d(x * x, win, padding=5, groups=3) - mu1 ** 2
                s2 = F.conv2d(y * y, win, padding=5, groups=3) - mu2 ** 2
                s12 = F.conv2d(x * y, win, padding=5, groups=3) - mu1 * mu2
                m = ((2 * mu1 * mu2 + 1e-4) * (2 * s12 + 9e-4)) / \
                    ((mu1 ** 2 + mu2 ** 2 + 1e-4) * (s1 + s2 + 9e-4))
                out.append(float(m.mean()))
            return np.array(out)

        t_ref, ref = best_of(repeat, torch_ref)
        t_ours, ours = best_of(repeat, lambda: ssim.ssim_batch(gts, preds, "pytorch_ssim"))
        print(f"    SSIM pytorch_ssim: pytorch-ssim algorithm (float32) {pairs / t_ref:.1f} pairs/s, "
              f"refbench (float64) {pairs / t_ours:.1f} pairs/s; ratio {t_ref / t_ours:.2f}x; "
              f"max |diff| {np.abs(ours - ref).max():.2e}")


@torch.no_grad()
def fid_speed(n: int, batch: int, repeat: int, device: str) -> None:
    model = FIDInceptionV3().to(device)
    gts, _ = person_like(np.random.default_rng(1), n)
    x = torch.stack([torch.from_numpy(g).permute(2, 0, 1).float() / 255 for g in gts])
    pre = FIDInceptionV3.preprocess(x).to(device)

    def plain() -> None:
        for start in range(0, n, batch):
            model.features(pre[start:start + batch])
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def ours() -> np.ndarray:
        return extract_features(model, gts, batch, device)

    plain()  # warm-up of both paths at the timed batch size
    feats = ours()
    t_plain = t_ours = float("inf")
    for _ in range(repeat):  # interleaved, so a busy machine slows both alike
        t_plain = min(t_plain, best_of(1, plain)[0])
        t_ours = min(t_ours, best_of(1, ours)[0])
    print(f"(b) FID features on {device}, {n} images of {H}x{W}, batch {batch}: plain forward "
          f"{n / t_plain:.1f} img/s, extract_features {n / t_ours:.1f} img/s "
          f"(ratio {t_plain / t_ours:.2f}x of the plain forward); features {feats.shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--fid-images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pytorch-ssim", action="store_true")
    parser.add_argument("--skip-ssim", action="store_true")
    args = parser.parse_args()
    if not args.skip_ssim:
        ssim_speed(args.pairs, args.repeat, args.pytorch_ssim)
    fid_speed(args.fid_images, args.batch, args.repeat, args.device)


if __name__ == "__main__":
    main()
