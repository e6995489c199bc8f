"""Shared try-on parts: TPS warping (`tps.py`), losses (`losses.py`) and the U-Net
(`unet.py`), against hand-computed values and the official code's conventions."""

from __future__ import annotations

import math

import pytest
import torch

from refbench.baselines.tryon import losses, tps
from refbench.baselines.tryon.unet import UnetGenerator, check_unet_size, init_weights
from refbench.errors import RefbenchError


def test_control_points_are_x_major_as_the_official_grid() -> None:
    points = tps.control_points(3)
    assert points.shape == (9, 2)
    # k = i * n + j sits at x = a[i], y = a[j] (official `P_Y, P_X = meshgrid(a, a)`)
    assert points[1].tolist() == [-1.0, 0.0]
    assert points[3].tolist() == [0.0, -1.0]
    with pytest.raises(RefbenchError, match="at least 2 x 2"):
        tps.control_points(1)


def test_kernel_is_r2_log_r2_and_zero_at_zero() -> None:
    d2 = torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64)
    assert tps.tps_kernel(d2).tolist() == pytest.approx([0.0, 0.0, 4 * math.log(4)])


def test_zero_theta_is_the_identity_grid() -> None:
    gen = tps.TpsGridGen(16, 10, grid_size=3)
    grid = gen(torch.zeros(2, 18))
    xs = torch.linspace(-1, 1, 10)
    ys = torch.linspace(-1, 1, 16)
    assert torch.allclose(grid[0, 3, :, 0], xs, atol=1e-5)
    assert torch.allclose(grid[1, :, 4, 1], ys, atol=1e-5)


def test_spline_interpolates_the_target_points_and_reproduces_affine_maps() -> None:
    torch.manual_seed(0)
    gen = tps.TpsGridGen(9, 9, grid_size=3)  # pixels at -1, -0.75, ..., 1 include the points
    theta = torch.rand(1, 18) * 0.4 - 0.2
    grid = gen(theta)
    target = torch.stack([theta[0, :9], theta[0, 9:]], 1) + tps.control_points(3).float()
    for k, (x, y) in enumerate(tps.control_points(3).tolist()):
        row, col = round((y + 1) * 4), round((x + 1) * 4)
        assert torch.allclose(grid[0, row, col], target[k], atol=1e-4)
    # an affine target (scale 0.5, shift 0.1) is reproduced exactly everywhere
    points = tps.control_points(3).float()
    affine = points * 0.5 + 0.1
    theta = torch.cat([affine[:, 0] - points[:, 0], affine[:, 1] - points[:, 1]])[None]
    grid = gen(theta)
    pixels = tps.pixel_grid(9, 9).float().view(9, 9, 2)
    assert torch.allclose(grid[0], pixels * 0.5 + 0.1, atol=1e-5)


def test_wrong_theta_shape_is_an_error() -> None:
    with pytest.raises(RefbenchError, match=r"\(batch, 18\)"):
        tps.TpsGridGen(8, 8, 3)(torch.zeros(1, 10))


def test_warp_uses_align_corners_false_like_the_official_call() -> None:
    image = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4).contiguous()
    grid = tps.TpsGridGen(4, 4, 3)(torch.zeros(1, 18))
    out = tps.warp(image, grid, "border")
    # x = -1 lands on the left edge of pixel 0 (half a pixel outside its centre): border
    # padding keeps pixel 0's value; interior samples shrink towards the centre
    assert out[0, 0, 0, 0].item() == pytest.approx(0.0)
    # x = -1/3 -> pixel coordinate ((x + 1) * W - 1) / 2 = 5/6
    assert out[0, 0, 0, 1].item() == pytest.approx(5 / 6, abs=1e-5)
    assert out[0, 0, 0, 3].item() == pytest.approx(3.0)


def test_log_l1_and_gradient_losses() -> None:
    pred, gt = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 3.0]]]])
    assert losses.log_l1(pred, gt).item() == pytest.approx((math.log(2) + math.log(4)) / 4)
    ramp = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5).contiguous()
    grad = losses.sobel(ramp)
    # kx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]] (cross-correlation): -8 per unit step
    assert grad[0, 0, 2, 2].item() == pytest.approx(-8.0)
    assert grad[0, 1, 2, 2].item() == pytest.approx(0.0)
    assert losses.depth_grad_loss(grad, grad).item() == 0.0


def test_normals_of_a_flat_map_point_at_the_camera() -> None:
    normal = losses.depth_to_normal_ortho(torch.full((1, 1, 8, 6), 0.3))
    assert normal.shape == (1, 3, 8, 6)
    assert normal[0, :, 3, 3].tolist() == [0.0, 0.0, 1.0]
    assert normal[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]  # zero border, as the official pad
    # the zero border has no direction: 1 - cos = 1 there (24 of 48 pixels), as officially
    assert losses.normal_loss(normal, normal).item() == pytest.approx(24 / 48)
    bowl = torch.linspace(-1, 1, 8).view(1, 1, 8, 1) ** 2 + torch.linspace(-1, 1, 6) ** 2
    normal = losses.depth_to_normal_ortho(bowl.view(1, 1, 8, 6))
    inner = normal[0, :, 1:-1, 1:-1]
    assert torch.allclose(inner.norm(dim=0)[inner.norm(dim=0) > 0].max(), inner.norm(dim=0).max())
    assert torch.isfinite(normal).all()


def test_total_variation() -> None:
    assert losses.total_variation(torch.ones(1, 1, 4, 4)).item() == 0.0
    checker = (torch.arange(4).view(4, 1) + torch.arange(4)) % 2
    assert losses.total_variation(checker.float().view(1, 1, 4, 4)).item() == pytest.approx(2.0)


def test_perceptual_weights_and_substitute() -> None:
    assert losses.PERCEPTUAL_WEIGHTS == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    loss = losses.PerceptualLoss("pyramid")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    assert loss(x, x.flip(-1)).item() > 0
    assert losses.PerceptualLoss("none")(x, -x).item() == 0.0
    with pytest.raises(RefbenchError, match="vgg_weights"):
        losses.PerceptualLoss("vgg19")


def test_vgg19_reads_a_torchvision_state_dict(tmp_path) -> None:
    vgg = losses.VGG19Features()
    state = {f"features.{k.split('.', 1)[1]}": v for k, v in vgg.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored, as in a real vgg19 file
    path = tmp_path / "vgg19-dcbac2ef.pth"
    torch.save(state, path)
    loss = losses.PerceptualLoss("vgg19", str(path))
    feats = loss.features(torch.zeros(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    del state["features.28.weight"]
    torch.save(state, path)
    with pytest.raises(RefbenchError, match=r"vgg19-dcbac2ef\.pth.*features\.28\.weight"):
        losses.PerceptualLoss("vgg19", str(path))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RefbenchError, match="cannot read VGG19 weights"):
        losses.PerceptualLoss("vgg19", str(path))
    with pytest.raises(RefbenchError, match="not found"):
        losses.PerceptualLoss("vgg19", str(tmp_path / "absent.pth"))


def test_unet_levels_and_sizes() -> None:
    net = init_weights(UnetGenerator(9, 4, num_downs=4, ngf=8))
    assert net(torch.zeros(1, 9, 32, 16)).shape == (1, 4, 32, 16)
    official = UnetGenerator(9, 4, num_downs=6, ngf=4)
    assert official(torch.zeros(1, 9, 128, 64)).shape == (1, 4, 128, 64)
    with pytest.raises(RefbenchError, match="multiples of 64"):
        official(torch.zeros(1, 9, 128, 80))
    check_unet_size(512, 320, 6)  # the paper's size fits the official 6 levels
    with pytest.raises(RefbenchError, match="2\\^6"):
        check_unet_size(128, 80, 6)
