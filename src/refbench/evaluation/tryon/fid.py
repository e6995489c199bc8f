"""FID and KID from Inception pool3 features, and pytorch-fid's statistics files.

FID (pytorch-fid `calculate_frechet_distance`): `|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))`
with mu the feature mean and S `np.cov(features, rowvar=False)` (N - 1 normalisation);
`scipy.linalg.sqrtm`; when the product is singular (non-finite root) `eps = 1e-6` is added
to both diagonals; an imaginary part above 1e-3 on the diagonal is an error, a smaller one
is dropped. A statistics file is pytorch-fid's `--save-stats` archive: `np.savez_compressed`
with arrays `mu` (2048,) and `sigma` (2048, 2048), so files written by either tool are read
by both.

KID (Binkowski et al. 2018), as torch-fidelity computes it (also StyleGAN2-ADA / clean-fid):
the unbiased MMD^2 with the polynomial kernel `k(x, y) = (x.y / d + 1)^3`, d = 2048, over
`KID_SUBSETS = 100` random subsets of `KID_SUBSET_SIZE = 1000` images drawn without
replacement from each set (`np.random.RandomState(KID_SEED = 2020)`, generated set first,
then the real set, for every subset); the value is the mean over subsets and `KID_std` their
standard deviation (ddof 0). The scale is RAW (papers often print KID x 100 or x 1000).
torch-fidelity refuses a set smaller than the subset size; refbench uses
`min(1000, n_generated, n_real)` instead (clean-fid's rule) and reports the size it used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from refbench.errors import RefbenchError
from refbench.evaluation.tryon.images import ImageLike, describe, load_rgb
from refbench.evaluation.tryon.inception import FEATURE_DIM, FIDInceptionV3
from refbench.io import atomic_open

FID_EPS = 1e-6
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE = 3
KID_COEF0 = 1.0
KID_SEED = 2020
#: pytorch-fid's default batch size
BATCH_SIZE = 50


# -- features ----------------------------------------------------------------------------------
@torch.no_grad()
def extract_features(model: FIDInceptionV3, images: Iterable[ImageLike],
                     batch_size: int = BATCH_SIZE, device: str | torch.device = "cpu",
                     what: str = "image", dims: int = FEATURE_DIM) -> np.ndarray:
    """N x `dims` (2048: pool3) float64 features of images (paths or uint8 RGB arrays), read and fed as
    pytorch-fid does (PIL RGB -> [0, 1] -> the network's resize). Consecutive images of one
    size are batched; images of different sizes go in different batches, which gives the
    same features since the resize is per image."""
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            x = torch.from_numpy(np.stack(batch)).to(device).permute(0, 3, 1, 2).float() / 255.0
            out.append(model(x, dims).double().cpu().numpy())
            batch.clear()

    for position, image in enumerate(images):
        rgb = load_rgb(image, describe(image, f"{what} {position}"))
        if batch and (rgb.shape != batch[0].shape or len(batch) >= batch_size):
            flush()
        batch.append(rgb)
    flush()
    if not out:
        return np.zeros((0, dims), dtype=np.float64)
    return np.concatenate(out)


# -- statistics ----------------------------------------------------------------------------------
def feature_statistics(features: np.ndarray, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) as pytorch-fid: mean and `np.cov(rowvar=False)`; at least 2 images."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise RefbenchError(f"{what}: expected an N x D feature matrix, got shape "
                            f"{features.shape}")
    if features.shape[0] < 2:
        raise RefbenchError(f"{what}: FID needs at least 2 images, got {features.shape[0]}")
    if not np.isfinite(features).all():
        raise RefbenchError(f"{what}: features contain NaN or infinity")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def save_statistics(path: str | Path, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write pytorch-fid's `--save-stats` archive (`mu`, `sigma`), atomically."""
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    _check_stats(mu, sigma, Path(path))
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, mu=mu, sigma=sigma)


def load_statistics(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of a pytorch-fid statistics `.npz`; a one-line error naming the file."""
    path = Path(path)
    if not path.exists():
        raise RefbenchError("FID statistics file not found", path=path)
    if path.is_dir():
        raise RefbenchError("expected a FID statistics .npz file, found a folder", path=path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "mu" not in archive.files or "sigma" not in archive.files:
                raise RefbenchError(f"FID statistics need arrays 'mu' and 'sigma', found "
                                    f"{sorted(archive.files)}", path=path)
            mu, sigma = archive["mu"][:], archive["sigma"][:]
    except RefbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/numpy errors of a cut or foreign file
        raise RefbenchError(f"cannot read FID statistics: {' '.join(str(exc).split())[:160]}",
                            path=path) from None
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    _check_stats(mu, sigma, path)
    return mu, sigma


def _check_stats(mu: np.ndarray, sigma: np.ndarray, path: Path | None = None) -> None:
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise RefbenchError(f"FID statistics: mu {mu.shape} and sigma {sigma.shape} do not "
                            f"match (want (D,) and (D, D))", path=path)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise RefbenchError("FID statistics contain NaN or infinity", path=path)


# -- FID -----------------------------------------------------------------------------------------
FID_METHODS: tuple[str, ...] = ("sqrtm", "eigh")


def _trace_sqrt_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2 as the sum of the square roots of the
    eigenvalues of sqrt(S1) S2 sqrt(S1) (similar to S1 S2): two symmetric eigendecompositions
    instead of a general matrix square root."""
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root @ sigma2 @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = FID_EPS, method: str = "sqrtm") -> float:
    """pytorch-fid's `calculate_frechet_distance` (module docstring). `method="eigh"`
    computes the same trace from symmetric eigendecompositions (exact for covariance
    matrices, about 20x faster at 2048-d; it differs from `sqrtm` only by rounding, which
    for rank-deficient covariances -- fewer images than 2048 -- can reach ~1e-6 relative)."""
    from scipy import linalg

    if method not in FID_METHODS:
        raise RefbenchError(f"unknown FID method {method!r}; choose sqrtm or eigh",
                            key="fid_method")

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise RefbenchError(f"FID of statistics of different sizes: mu {mu1.shape} vs "
                            f"{mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    if method == "eigh":
        return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2)
                     - 2 * _trace_sqrt_eigh(sigma1, sigma2))
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise RefbenchError(f"FID: the covariance product has an imaginary square root "
                                f"(max {np.max(np.abs(covmean.imag)):.3g})")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(generated: np.ndarray, real: np.ndarray, method: str = "sqrtm") -> float:
    mu1, s1 = feature_statistics(generated, "generated images")
    mu2, s2 = feature_statistics(real, "real images")
    return frechet_distance(mu1, s1, mu2, s2, method=method)


# -- KID -----------------------------------------------------------------------------------------
def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = KID_DEGREE,
                      coef0: float = KID_COEF0) -> np.ndarray:
    """`(x y^T / d + coef0)^degree`, gamma = 1 / d."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
    """Unbiased MMD^2: off-diagonal means of Kxx and Kyy minus twice the mean of Kxy."""
    m = kxx.shape[0]
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(xx + yy - 2.0 * kxy.sum() / (m * m))


def kid_from_features(generated: np.ndarray, real: np.ndarray, subsets: int = KID_SUBSETS,
                      subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED
                      ) -> tuple[float, float, int]:
    """(KID mean, KID std, subset size used) over `subsets` random subsets (module
    docstring); raw scale."""
    generated = np.asarray(generated, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    if generated.ndim != 2 or real.ndim != 2 or generated.shape[1] != real.shape[1]:
        raise RefbenchError(f"KID needs two N x D feature matrices of one D, got "
                            f"{generated.shape} and {real.shape}")
    m = min(int(subset_size), generated.shape[0], real.shape[0])
    if m < 2:
        raise RefbenchError(f"KID needs at least 2 images in each set, got {generated.shape[0]} "
                            f"generated and {real.shape[0]} real")
    if subsets < 1:
        raise RefbenchError(f"KID needs at least one subset, got {subsets}", key="kid_subsets")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        x = generated[rng.choice(generated.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y),
                                  polynomial_kernel(y, y))
    return float(values.mean()), float(values.std()), m


def image_set_statistics(model: FIDInceptionV3, images: Sequence[ImageLike], out: str | Path,
                         batch_size: int = BATCH_SIZE, device: str | torch.device = "cpu") -> int:
    """pytorch-fid `--save-stats` for a list of images: features, (mu, sigma), the `.npz`
    written atomically (an existing file is refused, as pytorch-fid does). The count."""
    out = Path(out)
    if out.exists():
        raise RefbenchError("FID statistics file exists already", path=out)
    features = extract_features(model, images, batch_size=batch_size, device=device)
    mu, sigma = feature_statistics(features, "images")
    save_statistics(out, mu, sigma)
    return int(features.shape[0])
