"""Try-on image metrics: SSIM (both conventions), PSNR, the FID Inception, FID/KID maths and
statistics files, LPIPS, and the registered `tryon_image` metric (no real weights needed:
architecture tests use random weights saved under the official key names)."""

from __future__ import annotations

import math
from math import exp
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from refbench.errors import RefbenchError
from refbench.evaluation.tryon import fid, images, inception, lpips, ssim
from refbench.evaluation.tryon.metrics import TryOnImage
from refbench.registry import METRICS


def _pair(seed: int = 0, shape: tuple[int, int] = (40, 32)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


# -- the limits the references name -----------------------------------------------------------
def test_official_constants() -> None:
    assert (ssim.SIGMA, ssim.RADIUS, ssim.TRUNCATE, ssim.K1, ssim.K2) == (1.5, 5, 3.5, 0.01, 0.03)
    assert len(ssim.gaussian_1d()) == 11 and ssim.DATA_RANGE == 255.0
    assert (fid.KID_SUBSETS, fid.KID_SUBSET_SIZE, fid.KID_DEGREE, fid.KID_COEF0, fid.KID_SEED) \
        == (100, 1000, 3, 1.0, 2020)
    assert fid.FID_EPS == 1e-6 and fid.BATCH_SIZE == 50
    assert (inception.INPUT_SIZE, inception.FEATURE_DIM, inception.NUM_CLASSES) == (299, 2048, 1008)
    assert lpips.SIZE == 128 and lpips.CHANNELS == (64, 192, 384, 256, 256)
    assert lpips.SHIFT == (-0.030, -0.088, -0.188) and lpips.SCALE == (0.458, 0.448, 0.450)


def test_gray_is_pil_convert_L() -> None:
    a, _ = _pair(1, (17, 23))
    fixed_point = (a.astype(np.uint32) @ np.array([19595, 38470, 7471], np.uint32) + 0x8000) >> 16
    assert np.array_equal(images.to_gray(a), fixed_point.astype(np.uint8))


# -- SSIM ----------------------------------------------------------------------------------------
def _direct_skimage_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """scikit-image's recipe written out with a full 2-D window and explicit crop."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    g = ssim.gaussian_1d()
    w = np.outer(g, g)
    h, wd = x.shape
    vals = []
    for i in range(5, h - 5):
        for j in range(5, wd - 5):
            px, py = x[i - 5:i + 6, j - 5:j + 6], y[i - 5:i + 6, j - 5:j + 6]
            ux, uy = (w * px).sum(), (w * py).sum()
            vx = (w * px * px).sum() - ux * ux
            vy = (w * py * py).sum() - uy * uy
            vxy = (w * px * py).sum() - ux * uy
            c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
            vals.append((2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def _pytorch_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Po-Hsun-Su/pytorch-ssim's algorithm: float32 2-D window, zero padding, whole-map mean."""
    g = torch.Tensor([exp(-(x - 5) ** 2 / float(2 * 1.5 ** 2)) for x in range(11)])
    g = g / g.sum()
    w = g.unsqueeze(1).mm(g.unsqueeze(1).t()).float()[None, None].expand(3, 1, 11, 11).contiguous()
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    y = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 255
    mu1, mu2 = F.conv2d(x, w, padding=5, groups=3), F.conv2d(y, w, padding=5, groups=3)
    s1 = F.conv2d(x * x, w, padding=5, groups=3) - mu1 ** 2
    s2 = F.conv2d(y * y, w, padding=5, groups=3) - mu2 ** 2
    s12 = F.conv2d(x * y, w, padding=5, groups=3) - mu1 * mu2
    m = ((2 * mu1 * mu2 + 0.01 ** 2) * (2 * s12 + 0.03 ** 2)) / \
        ((mu1 ** 2 + mu2 ** 2 + 0.01 ** 2) * (s1 + s2 + 0.03 ** 2))
    return float(m.mean())


def test_ssim_hrviton_equals_direct_and_pinned() -> None:
    a, b = _pair()
    value = ssim.ssim_hrviton(a, b)
    assert value == pytest.approx(_direct_skimage_ssim(images.to_gray(a), images.to_gray(b)),
                                  abs=1e-13)
    assert value == pytest.approx(0.9503462523660093, abs=1e-12)  # scikit-image 0.26


def test_ssim_hrviton_equals_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image not installed")
    for seed in range(3):
        a, b = _pair(seed, (33, 27))
        ga, gb = images.to_gray(a), images.to_gray(b)
        ref = metrics.structural_similarity(ga, gb, data_range=255, gaussian_weights=True,
                                            use_sample_covariance=False)
        assert ssim.ssim_hrviton(a, b) == pytest.approx(ref, abs=1e-13)


def test_ssim_pytorch_equals_reference_and_pinned() -> None:
    a, b = _pair()
    value = ssim.ssim_pytorch(a, b)
    assert value == pytest.approx(_pytorch_ssim_reference(a, b), abs=2e-6)
    assert value == pytest.approx(0.9586912393569946, abs=2e-7)  # pytorch-ssim, float32


def test_ssim_identical_and_batch_threads() -> None:
    a, b = _pair(3)
    assert ssim.ssim_hrviton(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim.ssim_pytorch(a, a) == pytest.approx(1.0, abs=1e-12)
    pairs = [_pair(s) for s in range(4)]
    gts, preds = [p[0] for p in pairs], [p[1] for p in pairs]
    for convention in ssim.CONVENTIONS:
        serial = ssim.ssim_batch(gts, preds, convention, threads=1)
        assert np.array_equal(serial, ssim.ssim_batch(gts, preds, convention, threads=2))
    with pytest.raises(RefbenchError, match="unknown SSIM convention"):
        ssim.ssim_batch(gts, preds, "acgpn")


def test_ssim_refuses_tiny_or_mismatched() -> None:
    a, _ = _pair(0, (10, 40))
    with pytest.raises(RefbenchError, match="11 pixels"):
        ssim.ssim_hrviton(a, a)
    b, c = _pair(0, (20, 20))[0], _pair(0, (20, 21))[0]
    with pytest.raises(RefbenchError, match="one size"):
        ssim.ssim_pytorch(b, c)


def test_psnr_hand_values() -> None:
    a = np.full((12, 12, 3), 100, np.uint8)
    b = a + np.uint8(10)  # MSE 100
    assert ssim.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert ssim.psnr(a, a) == ssim.PSNR_CAP == 100.0


# -- the FID Inception ---------------------------------------------------------------------------
def test_inception_state_dict_matches_pytorch_fid_names() -> None:
    keys = inception.expected_keys()
    assert len(keys) == 94 * 5 + 2  # 94 BasicConv2d (conv + 4 BN tensors) + fc
    shapes = {k: tuple(v.shape) for k, v in inception.FIDInceptionV3().state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert shapes["Mixed_7c.branch_pool.bn.running_var"] == (192,)
    assert shapes["fc.weight"] == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in keys)


def test_inception_loads_file_and_gives_pool3(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = inception.FIDInceptionV3()
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / inception.WEIGHTS_FILE
    torch.save(state, path)
    model = inception.load_fid_inception(path)
    x = torch.rand(1, 3, 40, 30)
    features = model(x)
    assert features.shape == (1, 2048) and torch.equal(features, source(x))
    assert [model(x, d).shape[1] for d in (64, 192)] == [64, 192]
    torch.save({k: state[k] for k in list(state)[:5]}, tmp_path / "cut.pth")
    with pytest.raises(RefbenchError, match=r"cut\.pth.*467 key\(s\) missing"):
        inception.load_fid_inception(tmp_path / "cut.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RefbenchError, match=r"junk\.pth: cannot read"):
        inception.load_fid_inception(tmp_path / "junk.pth")
    with pytest.raises(RefbenchError, match="not found"):
        inception.load_fid_inception(tmp_path / "absent.pth")


def test_inception_patches_and_preprocessing() -> None:
    ones = torch.ones(1, 2, 5, 5)
    assert torch.equal(inception._avg3(ones), ones)  # TF pool: padding does not count
    x = torch.full((1, 3, 10, 8), 0.5)
    # bilinear resizing of a constant in float32 may round in the last bit (ISA-dependent)
    scaled = inception.FIDInceptionV3.preprocess(x)
    assert scaled.shape == (1, 3, 299, 299)
    assert torch.allclose(scaled, torch.zeros(1, 3, 299, 299), atol=1e-6)
    model = inception.FIDInceptionV3()
    assert model.Mixed_7c.max_pool and not model.Mixed_7b.max_pool


# -- FID / KID -----------------------------------------------------------------------------------
def test_frechet_distance_against_sqrtm() -> None:
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(0.3, 1.2, size=(50, 6))
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
    assert fid.fid_from_features(a, b) == pytest.approx(ref, rel=1e-10)
    assert fid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_fid_eigh_equals_sqrtm() -> None:
    rng = np.random.default_rng(3)
    for n, d in ((200, 16), (10, 16)):  # full rank and rank-deficient covariances
        a, b = rng.normal(size=(n, d)), rng.normal(0.2, 0.9, size=(n + 5, d))
        assert fid.fid_from_features(a, b, "eigh") == pytest.approx(
            fid.fid_from_features(a, b, "sqrtm"), rel=1e-7)
    with pytest.raises(RefbenchError, match="unknown FID method"):
        fid.fid_from_features(a, b, "svd")


def test_statistics_file_roundtrip_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    mu, sigma = fid.feature_statistics(rng.normal(size=(10, 4)))
    path = tmp_path / "stats.npz"
    fid.save_statistics(path, mu, sigma)
    with np.load(path) as f:  # what pytorch-fid reads
        assert np.array_equal(f["mu"], mu) and np.array_equal(f["sigma"], sigma)
    back = fid.load_statistics(path)
    assert np.array_equal(back[0], mu) and np.array_equal(back[1], sigma)
    np.savez(tmp_path / "nosigma.npz", mu=mu)
    with pytest.raises(RefbenchError, match=r"nosigma\.npz.*'mu' and 'sigma'"):
        fid.load_statistics(tmp_path / "nosigma.npz")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:50])
    with pytest.raises(RefbenchError, match=r"cut\.npz: cannot read"):
        fid.load_statistics(tmp_path / "cut.npz")
    np.savez(tmp_path / "nan.npz", mu=mu * np.nan, sigma=sigma)
    with pytest.raises(RefbenchError, match="NaN"):
        fid.load_statistics(tmp_path / "nan.npz")
    with pytest.raises(RefbenchError, match="at least 2 images"):
        fid.feature_statistics(np.zeros((1, 4)))


def test_kid_unbiased_mmd_by_hand() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 5)), rng.normal(0.5, 1, size=(6, 5))
    k = lambda u, v: (u @ v / 5 + 1) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    value, std, size = fid.kid_from_features(x, y, subsets=3, subset_size=1000)
    assert size == 6 and std == pytest.approx(0.0, abs=1e-12)  # every subset is the whole set
    assert value == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


# -- LPIPS ---------------------------------------------------------------------------------------
def _lpips_files(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    alex = {f"features.{i}.{kind}": torch.randn(shape) * 0.05
            for i, (cout, cin, ks) in zip(lpips.CONV_INDICES,
                                          [(64, 3, 11), (192, 64, 5), (384, 192, 3),
                                           (256, 384, 3), (256, 256, 3)])
            for kind, shape in (("weight", (cout, cin, ks, ks)), ("bias", (cout,)))}
    alex["classifier.1.weight"] = torch.zeros(2, 2)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(lpips.CHANNELS)}
    torch.save(alex, tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(heads, tmp_path / "alex.pth")
    return tmp_path / "alexnet-owt-7be5be79.pth", tmp_path / "alex.pth"


def test_lpips_from_official_key_names(tmp_path: Path) -> None:
    alex, heads = _lpips_files(tmp_path)
    model = lpips.load_lpips(alex, heads)
    a, b = _pair(0, (150, 100))
    d = lpips.lpips_pairs(model, [a, a], [a, b])
    assert d[0] == pytest.approx(0.0, abs=1e-7) and d[1] > 0
    assert lpips.lpips_pairs(model, [b], [a])[0] == pytest.approx(d[1], rel=1e-5)
    x = lpips.to_input(a)
    assert x.shape == (1, 3, 128, 128) and -1 <= float(x.min()) and float(x.max()) <= 1
    bad = torch.load(heads)
    bad["lin2.model.1.weight"] = torch.rand(1, 3, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(RefbenchError, match=r"bad\.pth.*lins\.2\.weight"):
        lpips.load_lpips(alex, tmp_path / "bad.pth")


# -- the registered metric -----------------------------------------------------------------------
def _write(tmp_path: Path, name: str, rgb: np.ndarray) -> Path:
    path = tmp_path / name
    Image.fromarray(rgb).save(path)
    return path


def test_tryon_image_without_weights(tmp_path: Path) -> None:
    assert "tryon_image" in METRICS
    pairs = [_pair(s, (24, 16)) for s in range(3)]
    refs = [_write(tmp_path, f"gt{i}.png", a) for i, (a, _) in enumerate(pairs)]
    preds = [_write(tmp_path, f"res{i}.png", b) for i, (_, b) in enumerate(pairs)]
    metric = TryOnImage(ssim_convention="pytorch_ssim")
    metric.update(preds, refs)
    out = metric.compute()
    assert set(out) == {"SSIM", "PSNR"} == set(metric.output_keys())
    expected = np.mean([ssim.ssim_pytorch(a, b) for a, b in pairs])
    assert out["SSIM"] == pytest.approx(expected, abs=1e-12)
    counts = metric.counts()
    assert counts["ssim_convention/pytorch_ssim"] == 1
    assert (counts["resolution/height"], counts["resolution/width"]) == (24, 16)
    text = " ".join(metric.warnings())
    assert "FID, KID absent" in text and "LPIPS absent" in text


def test_tryon_image_resolution_and_bad_input(tmp_path: Path) -> None:
    big, _ = _pair(0, (48, 32))
    small = images.resize_bilinear(big, 24, 16)
    metric = TryOnImage(resolution=[24, 16])
    metric.update([_write(tmp_path, "r.png", small)], [_write(tmp_path, "g.png", big)])
    assert metric.compute()["SSIM"] == pytest.approx(1.0)
    with pytest.raises(RefbenchError, match=r"r\.png: result is 16x24"):
        TryOnImage().update([tmp_path / "r.png"], [tmp_path / "g.png"])
    with pytest.raises(RefbenchError, match=r"nope\.png: image not found"):
        TryOnImage().update([tmp_path / "nope.png"], [tmp_path / "g.png"])
    with pytest.raises(RefbenchError, match="found a folder"):
        TryOnImage().update([tmp_path], [tmp_path / "g.png"])
    jpg = tmp_path / "cut.jpg"
    Image.fromarray(big).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:200])
    with pytest.raises(RefbenchError, match=r"cut\.jpg: cannot decode"):
        TryOnImage().update([jpg], [tmp_path / "g.png"])
    with pytest.raises(RefbenchError, match="resolution"):
        TryOnImage(resolution="abc")


def _metric_with_weights(tmp_path: Path, dims: int, method: str) -> None:
    torch.manual_seed(0)
    state = {k: v for k, v in inception.FIDInceptionV3().state_dict().items()
             if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "inc.pth")
    alex, heads = _lpips_files(tmp_path)
    pairs = [_pair(s, (32, 24)) for s in range(4)]
    metric = TryOnImage(inception_weights=tmp_path / "inc.pth", lpips_alexnet_weights=alex,
                        lpips_weights=heads, kid_subsets=5, fid_dims=dims, fid_method=method)
    metric.update([b for _, b in pairs], [a for a, _ in pairs])
    out = metric.compute()
    assert set(out) == {"SSIM", "PSNR", "LPIPS", "FID", "KID", "KID_std"}
    fake = fid.extract_features(metric.inception, [b for _, b in pairs], dims=dims)
    real = fid.extract_features(metric.inception, [a for a, _ in pairs], dims=dims)
    assert out["FID"] == pytest.approx(fid.fid_from_features(fake, real), rel=1e-6)
    assert metric.counts()["kid/subset_size"] == 4 and metric.counts()["fid/dims"] == dims
    mu, sigma = fid.feature_statistics(real)
    fid.save_statistics(tmp_path / "real.npz", mu, sigma)
    from_stats = TryOnImage(inception_weights=tmp_path / "inc.pth", fid_dims=dims,
                            fid_reference_stats=tmp_path / "real.npz", fid_method=method)
    from_stats.update([b for _, b in pairs], [a for a, _ in pairs])
    assert from_stats.compute()["FID"] == pytest.approx(out["FID"], rel=1e-6)
    assert "KID" not in from_stats.output_keys()


def test_tryon_image_with_weights_has_fid_kid_lpips(tmp_path: Path) -> None:
    """The whole path at pytorch-fid's --dims 64 (a 64 x 64 matrix root)."""
    _metric_with_weights(tmp_path, 64, "sqrtm")


@pytest.mark.slow
def test_tryon_image_with_weights_at_2048(tmp_path: Path) -> None:
    """The standard 2048-d pool3 FID (a 2048 x 2048 eigendecomposition: tens of seconds)."""
    _metric_with_weights(tmp_path, 2048, "eigh")
