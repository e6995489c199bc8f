"""Pyramid R-CNN second stage: grid geometry, soft radius mask, empty neighbourhoods, and a
tiny end-to-end training run of the head."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from refbench.baselines.det3d.ops import ball_query
from refbench.baselines.det3d.pyramid_rcnn import (
    PyramidGridPoolConfig,
    PyramidHeadConfig,
    PyramidRoIGridPool,
    PyramidRoIHead,
    RoIGridAttention,
    RoIGridPyramid,
    kitti_pv_config,
    padding_mask,
    soft_radius_weights,
    temperature_at,
    waymo_pv_config,
)
from refbench.baselines.det3d.roi_head import ProposalTargetConfig
from refbench.datasets.kitti.geometry import box_corners_lidar
from refbench.errors import RefbenchError

pytestmark = pytest.mark.usefixtures("one_thread")


# -- geometry -------------------------------------------------------------------------------

def test_grid_points_of_rotated_roi_match_hand_computation() -> None:
    roi = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, math.pi / 6]], dtype=torch.float64)
    pyr = RoIGridPyramid([2, 1, 3], [[1, 1, 1], [4, 4, 1], [1.5, 2, 1]])
    levels = pyr(roi)
    assert [t.shape for t in levels] == [(1, 8, 3), (1, 1, 3), (1, 27, 3)]

    # g = 2: the octant centres, i.e. halfway between the centre and each corner
    corners = box_corners_lidar(roi.numpy())[0]
    expected = (corners + roi[0, :3].numpy()) / 2
    got = levels[0][0].numpy()
    for c in expected:  # same set of points (order differs from the corner order)
        assert np.min(np.linalg.norm(got - c, axis=1)) < 1e-9
    # x index slowest, z fastest: point 0 is the (-x, -y, -z) octant, point 1 (-x, -y, +z)
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    lx, ly = -1.0, -0.5
    assert np.allclose(got[0], [1 + lx * c - ly * s, 2 + lx * s + ly * c, 0.5 - 0.375])
    assert np.allclose(got[1], [1 + lx * c - ly * s, 2 + lx * s + ly * c, 0.5 + 0.375])

    # g = 1: the centre, whatever the enlargement
    assert torch.allclose(levels[1][0, 0], roi[0, :3])

    # g = 3 on the RoI enlarged to (6, 4, 1.5): first cell centre at -size/2 + size/6
    enlarged = pyr.enlarged_rois(roi, 2)
    assert torch.allclose(enlarged[0, 3:6], torch.tensor([6.0, 4.0, 1.5], dtype=torch.float64))
    lx, ly, lz = -3 + 1.0, -2 + 4 / 6, -0.75 + 0.25
    assert np.allclose(levels[2][0, 0].numpy(),
                       [1 + lx * c - ly * s, 2 + lx * s + ly * c, 0.5 + lz])
    assert torch.allclose(levels[2][0, 13], roi[0, :3])  # the middle cell is the centre
    # the radius-by-RoI rule: ratio x 3D diagonal of the enlarged box
    assert float(pyr.radius_by_roi_size(roi, 2, 0.5)[0]) == pytest.approx(
        0.5 * math.sqrt(36 + 16 + 1.5 ** 2))


def test_padding_mask_marks_exactly_the_points_inside_the_ball() -> None:
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(60, 3, generator=g) * 4
    centers = torch.rand(10, 3, generator=g) * 4
    centers[-1] = 100.0  # an empty ball
    idx, empty = ball_query(1.0, 8, xyz, [60], centers, [10])
    valid = padding_mask(idx)
    inside = (torch.cdist(centers, xyz) < 1.0).sum(dim=1).clamp(max=8)
    assert torch.equal(valid.sum(dim=1), torch.where(empty, 1, inside))


# -- attention -------------------------------------------------------------------------------

def _grouped(m: int, ns: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rel = torch.randn(m, 3, ns, generator=g)
    feats = torch.cat([rel, torch.randn(m, c, ns, generator=g)], dim=1)
    return rel, feats


def test_masked_padding_equals_attention_over_the_real_neighbours_only() -> None:
    torch.manual_seed(0)
    att = RoIGridAttention(5, num_heads=2, head_dims=4).eval()
    rel, feats = _grouped(3, 3, 5)
    # pad to 8 slots the way ball_query does: repeat the first neighbour
    pad_rel = torch.cat([rel, rel[:, :, :1].expand(-1, -1, 5)], dim=2)
    pad_feats = torch.cat([feats, feats[:, :, :1].expand(-1, -1, 5)], dim=2)
    idx = torch.tensor([[4, 7, 9] + [4] * 5] * 3)
    ref = att(rel, feats)
    masked = att(pad_rel, pad_feats, valid=padding_mask(idx))
    unmasked = att(pad_rel, pad_feats)  # official: the repeats take part
    assert torch.allclose(masked, ref, atol=1e-6)
    assert not torch.allclose(unmasked, ref, atol=1e-4)


def test_attention_over_empty_neighbourhoods_is_finite() -> None:
    torch.manual_seed(0)
    att = RoIGridAttention(6, num_heads=4, head_dims=2)
    rel, feats = torch.zeros(4, 3, 8), torch.zeros(4, 9, 8)
    idx = torch.zeros(4, 8, dtype=torch.long)  # what ball_query gives an empty query
    for valid in (padding_mask(idx), None):
        out = att(rel, feats, valid=valid)
        assert out.shape == (4, 8) and torch.isfinite(out).all()
        out.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in att.parameters() if p.grad is not None)

    # the whole pooling with every RoI far from all keypoints, fixed and density-aware
    points = torch.cat([torch.zeros(50, 1), torch.rand(50, 3) * 5], dim=1)
    rois = torch.tensor([[[100.0, 100.0, 0.0, 4.0, 2.0, 1.5, 0.3]]])
    for cfg in (_tiny_grid(), _tiny_grid(density_aware=True, temperature=1e-4)):
        pool = PyramidRoIGridPool(4, cfg)
        cls_f, reg_f = pool(rois, points, torch.randn(50, 4), batch_size=1)
        assert cls_f.shape == (1, cfg.num_grid_points, cfg.out_dims)
        assert torch.isfinite(cls_f).all() and torch.isfinite(reg_f).all()


# -- density-aware radius ------------------------------------------------------------------

def test_soft_radius_weights_fall_with_distance() -> None:
    r, t = 1.0, 0.1
    dist = torch.linspace(0.0, 3.0, 301, dtype=torch.float64)
    w = soft_radius_weights(dist, torch.tensor(r, dtype=torch.float64), t)
    assert torch.all(w[1:] <= w[:-1])
    assert float(w[0]) > 0.9999 and float(w[100]) == pytest.approx(0.5)
    assert float(soft_radius_weights(torch.tensor(r + 5 * t), torch.tensor(r), t)) < 0.01


def test_variable_radius_ball_query_keeps_only_points_within_r_plus_5t() -> None:
    # radius clamped to exactly 1.0 (PRE_NORM min = max), T = 0.1: query radius 1.5
    cfg = PyramidGridPoolConfig(
        grid_sizes=(1,), enlarge_ratios=((1.0, 1.0, 1.0),), pool_radii=(1.0,), nsamples=(8,),
        num_heads=2, head_dims=4, transformer_heads=2, density_aware=True,
        predict_radii=(3.0,), predict_nsamples=(8,), predict_norm=((25.0, 1.0, 1.0),),
        temperature=0.1)
    torch.manual_seed(0)
    pool = PyramidRoIGridPool(4, cfg).eval()
    dists = [0.3, 0.9, 1.2, 1.45, 1.7, 2.5]
    points = torch.tensor([[0.0, d, 0.0, 0.0] for d in dists])
    feats = torch.randn(len(dists), 4)
    rois = torch.tensor([[[0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0]]])

    def run(f: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pool(rois, points, f, batch_size=1)[0]

    base = run(feats)
    for i, d in enumerate(dists):
        bumped = feats.clone()
        bumped[i] += 3.0
        changed = not torch.allclose(run(bumped), base, atol=0, rtol=0)
        assert changed == (d < 1.5), d


def test_predicted_radius_is_trained_through_the_soft_mask() -> None:
    cfg = _tiny_grid(density_aware=True, temperature=0.2)
    torch.manual_seed(0)
    pool = PyramidRoIGridPool(4, cfg)
    points = torch.cat([torch.zeros(200, 1), torch.rand(200, 3) * 6 - 3], dim=1)
    rois = torch.tensor([[[0.0, 0.0, 0.0, 3.0, 1.6, 1.5, 0.4],
                          [1.0, 0.5, 0.0, 3.0, 1.6, 1.5, 2.0]]])
    cls_f, reg_f = pool(rois, points, torch.randn(200, 4), batch_size=1)
    (cls_f.square().sum() + reg_f.sum()).backward()
    assert pool.density is not None
    for mlp in pool.density.radius_mlps:
        assert float(mlp[-1].weight.grad.abs().sum()) > 0


def test_temperature_schedule_decays_geometrically() -> None:
    assert temperature_at(0) == pytest.approx(0.02)
    assert temperature_at(30) == pytest.approx(1e-4)
    assert temperature_at(45) == pytest.approx(1e-4)
    assert temperature_at(15) == pytest.approx(math.sqrt(0.02 * 1e-4))
    with pytest.raises(RefbenchError):
        temperature_at(1, mode="cosine")


# -- configs ---------------------------------------------------------------------------------

def _tiny_grid(**kw: object) -> PyramidGridPoolConfig:
    base = PyramidGridPoolConfig(
        grid_sizes=(2, 1), enlarge_ratios=((1.0, 1.0, 1.0), (2.0, 2.0, 1.0)),
        pool_radii=(1.0, 2.0), nsamples=(8, 8), num_heads=2, head_dims=4, transformer_heads=2,
        predict_radii=(2.0,), predict_nsamples=(8,),
        predict_norm=((25.0, 0.5, 1.5), (25.0, 1.0, 3.0)), temperature=0.05)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_configs_validate_and_kitti_head_size() -> None:
    kitti, waymo = kitti_pv_config(), waymo_pv_config()
    g = kitti.roi_grid_pool
    assert (g.grid_sizes, g.pool_radii, g.nsamples) == (
        (6, 4, 4, 4, 1), (0.8, 1.6, 2.4, 3.2, 6.4), (16, 16, 16, 16, 32))
    assert g.pooled_channels == 409 * 64 and not g.density_aware
    assert kitti.shared_fc == () and kitti.cls_fc == kitti.reg_fc == (256, 256, 256)
    assert waymo.roi_grid_pool.density_aware and waymo.roi_grid_pool.nsamples[0] == 8
    with pytest.raises(RefbenchError, match="nsamples"):
        PyramidGridPoolConfig(nsamples=(16, 16))
    with pytest.raises(RefbenchError, match="shared FC"):
        PyramidHeadConfig(shared_fc=(256,))

    head = PyramidRoIHead(128, kitti)  # PV-RCNN keypoint features: 128 channels
    n_pool = sum(p.numel() for p in head.roi_grid_pool_layer.parameters())
    n_all = sum(p.numel() for p in head.parameters())
    print(f"KITTI Pyramid-PV head: {n_all} parameters ({n_pool} in the pyramid pooling)")
    # pooling: 5 x (attention 37952 + transformer 25216 + cls/reg weights 4226) + 409 x 64
    # FC: two stacks 26176 -> 256 -> 256 -> 256 -> 1 (cls) / 7 (reg), with BN
    assert n_pool == 363_146
    assert n_all == 14_032_530
    n_waymo = sum(p.numel() for p in PyramidRoIHead(128, waymo).parameters())
    assert n_waymo - n_all == 2 * (131 * 64 + 64 * 64 + 256) + 5 * (128 * 32 + 32)


# -- the head end to end -----------------------------------------------------------------------

def _scene(num_keypoints: int = 500, channels: int = 16) -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[[5.0, 5.0, 0.0, 3.9, 1.6, 1.5, 0.3, 1],
                        [12.0, 8.0, 0.0, 4.2, 1.7, 1.6, -1.0, 1]],
                       [[8.0, 3.0, 0.0, 3.8, 1.6, 1.5, 2.0, 1],
                        [0, 0, 0, 0, 0, 0, 0, 0]]])  # second sample: one gt, one padded row
    coords = []
    for b in range(2):
        xyz = torch.rand(num_keypoints, 3, generator=g) * torch.tensor([16.0, 12.0, 2.0]) \
            - torch.tensor([0.0, 0.0, 1.0])
        coords.append(torch.cat([torch.full((num_keypoints, 1), float(b)), xyz], dim=1))
    noise = torch.tensor([0.3, 0.3, 0.1, 0.2, 0.1, 0.1, 0.1])
    rois = gt[:, :, :7].repeat(1, 3, 1) + torch.randn(2, 6, 7, generator=g) * noise
    # the padded gt row of sample 1 gives no RoIs: jitter its real box instead
    rois[1, 1::2] = rois[1, 0] + torch.randn(3, 7, generator=g) * 0.5
    rois[..., 3:6] = rois[..., 3:6].abs()
    return {"batch_size": 2, "gt_boxes": gt, "point_coords": torch.cat(coords),
            "point_features": torch.randn(2 * num_keypoints, channels, generator=g),
            "point_cls_scores": torch.rand(2 * num_keypoints, generator=g),
            "rois": rois, "roi_scores": torch.rand(2, 6, generator=g),
            "roi_labels": torch.ones(2, 6, dtype=torch.long)}


@pytest.mark.parametrize("density_aware", [False, True])
def test_head_trains_on_a_fixed_tiny_batch(density_aware: bool) -> None:
    cfg = PyramidHeadConfig(cls_fc=(32,), reg_fc=(32,),
                            target=ProposalTargetConfig(roi_per_image=8),
                            roi_grid_pool=_tiny_grid(density_aware=density_aware))
    torch.manual_seed(0)
    head = PyramidRoIHead(16, cfg)
    batch = _scene()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    losses = []
    head.train()
    for _ in range(50):
        torch.manual_seed(1)  # same sampled RoIs and dropout masks: a fixed batch
        bd = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        bd["temperature"] = 0.05
        head(bd)
        loss, tb = head.get_loss()
        assert torch.isfinite(loss) and "rcnn_loss_corner" in tb
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], (losses[0], losses[-1])

    head.eval()
    bd = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.no_grad():
        out = head(bd)
    assert out["batch_box_preds"].shape == (2, 6, 7)
    assert out["batch_cls_preds"].shape == (2, 6, 1)
    assert torch.isfinite(out["batch_box_preds"]).all()
