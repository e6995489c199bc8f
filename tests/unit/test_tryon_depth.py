"""Try-on depth: the official viewport -> world conversion, the depth errors, back-projection,
Chamfer distance, the rgbd2pcd `.ply` export and the registered `tryon_depth` metric."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from refbench.errors import RefbenchError
from refbench.evaluation.tryon import depth, pointcloud
from refbench.evaluation.tryon.metrics import DepthPair, TryOnDepth
from refbench.registry import METRICS


def test_official_constants() -> None:
    assert depth.CAMERA_Z == 2.0 and depth.MPV3D_SHAPE == (512, 320) and depth.DELTA_BASE == 1.25
    assert (pointcloud.PIXELS_PER_UNIT, pointcloud.COLUMN_OFFSET, pointcloud.FRONT_OFFSET) == \
        (256.0, 95, 0.02)
    assert (pointcloud.DILATE_STEPS, pointcloud.DILATE_SHIFT, pointcloud.INPAINT_LABELS) == \
        (2, 3, (13, 10))
    assert pointcloud.LIP_LABELS == 20


def test_gt_conversion_as_the_loader() -> None:
    d = np.array([[0.0, 0.25, 0.5], [0.75, 0.0, 1.0]], dtype=np.float32)
    assert np.array_equal(depth.gt_front_to_world(d), [[0, 0.5, 0], [-0.5, 0, -1]])
    # back: mirrored left-right first, then 2d - 1, background stays 0
    assert np.array_equal(depth.gt_back_to_world(d), [[0, -0.5, 0], [1, 0, 0.5]])
    assert np.array_equal(depth.gt_mask(d, "back"), [[True, True, False], [True, False, True]])
    # distance to the side's camera is 1 + 2d for any rendered pixel (near 1, far 3)
    front = depth.camera_distance(depth.gt_front_to_world(d), "front")[d > 0]
    assert np.allclose(front, 1 + 2 * d[d > 0])
    back = depth.camera_distance(depth.gt_back_to_world(d), "back")[np.fliplr(d) > 0]
    assert np.allclose(back, 1 + 2 * np.fliplr(d)[np.fliplr(d) > 0])


def test_depth_errors_by_hand() -> None:
    gt_world = np.array([[0.0, 0.5]])  # distances 2.0, 1.5 (front)
    pred = np.array([[-0.5, 0.5]])  # distances 2.5, 1.5
    values, pixels, clipped = depth.depth_errors(pred, gt_world, np.array([[True, True]]), "front")
    assert (pixels, clipped) == (2, 0)
    assert values["RMSE"] == pytest.approx(math.sqrt(0.25 / 2))
    assert values["AbsRel"] == pytest.approx((0.5 / 2.0) / 2)
    assert values["SqRel"] == pytest.approx((0.25 / 2.0) / 2)
    assert values["RMSE_log"] == pytest.approx(math.sqrt(math.log(2.5 / 2.0) ** 2 / 2))
    # the first pixel's ratio is exactly 2.5 / 2 = 1.25: strict inequality, so it fails delta1
    assert values["delta1"] == 0.5
    assert depth.depth_errors(pred, gt_world, np.array([[True, False]]), "front")[0]["delta1"] == 0
    assert values["delta2"] == values["delta3"] == 1.0


def test_score_pair_perfect_and_bad_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gt_f = np.where(rng.random((16, 10)) > 0.3, rng.uniform(0.4, 0.6, (16, 10)), 0).astype(np.float32)
    gt_b = np.where(np.fliplr(gt_f) > 0, rng.uniform(0.4, 0.6, (16, 10)), 0).astype(np.float32)
    pred_f, pred_b = depth.gt_front_to_world(gt_f), depth.gt_back_to_world(gt_b)
    out = depth.score_pair(pred_f, pred_b, gt_f, gt_b)
    for side in depth.SIDES:
        assert out[side][0]["RMSE"] == 0 and out[side][0]["delta1"] == 1
    np.save(tmp_path / "nan.npy", np.full((16, 10), np.nan, np.float32))
    with pytest.raises(RefbenchError, match=r"nan\.npy: depth holds 160 NaN"):
        depth.score_pair(tmp_path / "nan.npy", pred_b, gt_f, gt_b)
    with pytest.raises(RefbenchError, match="expected 16x10"):
        depth.score_pair(np.zeros((16, 9)), pred_b, gt_f, gt_b)
    with pytest.raises(RefbenchError, match=r"gone\.npy: depth map not found"):
        depth.load_depth(tmp_path / "gone.npy")
    with pytest.raises(RefbenchError, match="found a folder"):
        depth.load_depth(tmp_path)
    np.save(tmp_path / "ok.npy", gt_f)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:100])
    with pytest.raises(RefbenchError, match=r"cut\.npy: cannot read"):
        depth.load_depth(tmp_path / "cut.npy")
    with pytest.raises(RefbenchError, match="no person pixel"):
        depth.score_pair(pred_f, pred_b, np.zeros_like(gt_f), gt_b)


def test_back_projection_and_chamfer() -> None:
    xs, ys = pointcloud.pixel_grid(512, 320)
    assert xs[0, 0] == 95 / 256 - 1 and ys[0, 0] == 511 / 256 - 1 and ys[511, 0] == -1.0
    front = np.zeros((512, 320))
    back = np.zeros((512, 320))
    front[10, 20], back[10, 20], back[0, 0] = 0.3, -0.2, 0.1
    pts = pointcloud.back_project(front, back)
    assert pts.shape == (3, 3)
    assert np.allclose(pts[0], [115 / 256 - 1, 501 / 256 - 1, 0.3])  # front first
    assert np.allclose(pts[1], [95 / 256 - 1, 511 / 256 - 1, 0.1])  # then back, row-major
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    b = np.array([[0.0, 0, 0.5]])
    # a -> b: 0.25 and 1.25 (mean 0.75); b -> a: 0.25
    assert pointcloud.chamfer(a, b) == pytest.approx(0.75 + 0.25)
    with pytest.raises(RefbenchError, match="empty"):
        pointcloud.chamfer(a, np.zeros((0, 3)))


def test_dilate_rgb_by_hand() -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    img[5, 5] = (10, 0, 30)
    out = pointcloud.dilate_rgb(img, steps=1)
    assert tuple(out[2, 5]) == (10, 0, 30)  # pulled up from 3 below
    assert tuple(out[8, 5]) == (10, 0, 30)  # pushed down 3
    assert tuple(out[2, 8]) == (10, 0, 30)  # then right/left see the earlier writes
    assert tuple(out[5, 4]) == (0, 0, 0)  # only 3-pixel shifts
    assert tuple(img[2, 5]) == (0, 0, 0)  # the input is not modified


def test_export_ply(tmp_path: Path) -> None:
    h, w = 12, 8
    rgb = np.full((h, w, 3), 200, np.uint8)
    parse = np.zeros((h, w), np.int64)
    parse[2:10, 2:6] = 5
    parse[2:4, 2:6] = 13  # face: inpainted on the back
    fd = np.where(parse > 0, 0.3, 0.0).astype(np.float32)
    bd = np.where(parse > 0, -0.2, 0.0).astype(np.float32)
    fd[9, 5] = bd[9, 5] = 0.01  # front - 0.02 < back: both dropped
    n = pointcloud.export_ply(tmp_path / "p.ply", rgb, fd, bd, parse, inpaint="nearest")
    lines = (tmp_path / "p.ply").read_text().splitlines()
    assert lines[0] == "ply" and lines[1] == "format ascii 1.0"
    assert f"element vertex {n}" in lines and n == 2 * (32 - 1)
    body = lines[lines.index("end_header") + 1:]
    assert len(body) == n
    x, y, z, r, g, b = body[0].split()
    assert (x, y) == ("%f" % ((2 + 95) / 256 - 1), "%f" % ((h - 1 - 2) / 256 - 1))
    assert z == "%f" % (np.float32(0.3) - np.float32(0.02)) and (r, g, b) == ("200",) * 3
    with pytest.raises(RefbenchError, match=r"unknown parse label\(s\) \[25\]"):
        pointcloud.export_ply(tmp_path / "q.ply", rgb, fd, bd, np.where(parse > 0, 25, 0))
    assert not (tmp_path / "q.ply").exists()


def test_tryon_depth_metric(tmp_path: Path) -> None:
    assert "tryon_depth" in METRICS
    rng = np.random.default_rng(1)
    gt_f = np.where(rng.random((16, 10)) > 0.3, rng.uniform(0.4, 0.6, (16, 10)), 0).astype(np.float32)
    gt_b = np.fliplr(gt_f) * 0.9
    pred = DepthPair(depth.gt_front_to_world(gt_f) + 0.01, depth.gt_back_to_world(gt_b) - 0.01)
    np.save(tmp_path / "f.npy", gt_f)
    ref = {"front": tmp_path / "f.npy", "back": gt_b, "name": "p1"}
    metric = TryOnDepth()
    metric.update([pred], [ref])
    out = metric.compute()
    assert set(out) == set(TryOnDepth.keys)
    assert out["front/RMSE"] == pytest.approx(0.01) and out["back/RMSE"] == pytest.approx(0.01)
    assert out["Chamfer"] > 0
    assert metric.higher_is_better("front/delta1") is True
    assert metric.higher_is_better("back/AbsRel") is False
    assert metric.counts()["front/pixels"] == int((gt_f > 0).sum())
    with pytest.raises(RefbenchError, match="expected a DepthPair"):
        metric.update([np.zeros(3)], [ref])
