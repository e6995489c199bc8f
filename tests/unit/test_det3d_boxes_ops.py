"""3D detection box maths and point ops against independent references.

The rotated overlaps are checked against `refbench.evaluation.kitti_iou` (numpy, camera
frame), points in boxes against `kitti_geometry.points_in_boxes`, and the point ops
against brute-force loops written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from refbench.baselines.det3d import boxes as bx
from refbench.baselines.det3d import ops
from refbench.datasets.kitti import geometry as geo
from refbench.evaluation import kitti_iou


def _random_boxes(gen: torch.Generator, n: int, extent: float = 6.0) -> torch.Tensor:
    centre = torch.rand(n, 3, generator=gen, dtype=torch.float64) * extent
    size = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 3 + 0.3
    heading = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 4 * math.pi - 2 * math.pi
    return torch.cat([centre, size, heading], dim=1)


def _to_camera(boxes: torch.Tensor) -> np.ndarray:
    """Lidar boxes -> kitti_iou's camera boxes (x, y, z, h, w, l, ry) through the pure axis
    swap lidar (x, y, z) -> camera (x, -z, y): camera y points down and is the bottom, and
    the BEV rotation of kitti_iou turns the other way, so ry = -heading."""
    b = boxes.detach().numpy()
    return np.stack([b[:, 0], -b[:, 2] + b[:, 5] / 2, b[:, 1], b[:, 5], b[:, 4], b[:, 3],
                     -b[:, 6]], axis=1)


def test_limit_period_and_corners() -> None:
    val = torch.tensor([0.0, math.pi, -math.pi, 3 * math.pi / 2, 7.0], dtype=torch.float64)
    out = bx.limit_period(val)
    assert torch.all(out >= -math.pi) and torch.all(out < math.pi)
    assert torch.allclose(torch.cos(out), torch.cos(val)) and torch.allclose(torch.sin(out),
                                                                              torch.sin(val))
    assert bx.limit_period(torch.tensor([math.pi])).item() == pytest.approx(-math.pi)
    boxes = _random_boxes(torch.Generator().manual_seed(0), 20)
    np.testing.assert_allclose(bx.boxes_to_corners_3d(boxes).numpy(),
                               geo.box_corners_lidar(boxes.numpy()), atol=1e-12)


@pytest.mark.parametrize("sincos", [False, True])
def test_residual_coder_round_trip(sincos: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    boxes = torch.cat([_random_boxes(gen, 64, 40.0), torch.randn(64, 2, generator=gen,
                                                                 dtype=torch.float64)], 1)
    anchors = torch.cat([_random_boxes(gen, 64, 40.0), torch.randn(64, 2, generator=gen,
                                                                   dtype=torch.float64)], 1)
    coder = bx.ResidualCoder(code_size=9, encode_angle_by_sincos=sincos)
    assert coder.code_size == (10 if sincos else 9)
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == (64, coder.code_size)
    back = coder.decode(deltas, anchors)
    np.testing.assert_allclose(back[:, :6].numpy(), boxes[:, :6].numpy(), atol=1e-5)
    np.testing.assert_allclose(back[:, 7:].numpy(), boxes[:, 7:].numpy(), atol=1e-5)
    if sincos:  # the heading comes back wrapped into (-pi, pi]
        np.testing.assert_allclose(back[:, 6].numpy(),
                                   bx.limit_period(boxes[:, 6]).numpy(), atol=1e-5)
    else:
        np.testing.assert_allclose(back[:, 6].numpy(), boxes[:, 6].numpy(), atol=1e-5)
    # hand-computed targets of one box
    anchor = torch.tensor([[0.0, 0.0, 0.0, 3.0, 4.0, 2.0, 0.5]])
    box = torch.tensor([[5.0, -10.0, 1.0, 6.0, 4.0, 1.0, 0.75]])
    want = [1.0, -2.0, 0.5, math.log(2.0), 0.0, math.log(0.5), 0.25]
    np.testing.assert_allclose(bx.ResidualCoder().encode(box, anchor)[0].numpy(), want,
                               atol=1e-6)


def test_bev_and_3d_iou_match_reference() -> None:
    gen = torch.Generator().manual_seed(2)
    a, b = _random_boxes(gen, 60), _random_boxes(gen, 70)
    ref_bev = kitti_iou.bev_iou(_to_camera(a)[:, [0, 2, 5, 4, 6]],
                                _to_camera(b)[:, [0, 2, 5, 4, 6]])
    ref_3d = kitti_iou.iou_3d(_to_camera(a), _to_camera(b))
    assert (ref_bev > 0).sum() > 200 and (ref_3d > 0).sum() > 100  # the test sees overlaps
    np.testing.assert_allclose(bx.boxes_bev_iou(a, b).numpy(), ref_bev, atol=1e-9)
    np.testing.assert_allclose(bx.boxes_iou3d(a, b).numpy(), ref_3d, atol=1e-9)
    shift = torch.tensor([60.0, -40.0, 2.0, 0, 0, 0, 0], dtype=torch.float64)
    got32 = bx.boxes_iou3d((a + shift).float(), (b + shift).float())  # far from the origin
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref_3d, atol=1e-5)


def test_iou_special_cases() -> None:
    box = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.7]], dtype=torch.float64)
    assert bx.boxes_bev_iou(box, box).item() == pytest.approx(1.0, abs=1e-12)
    assert bx.boxes_iou3d(box, box).item() == pytest.approx(1.0, abs=1e-12)
    far = box.clone()
    far[0, 0] += 10
    assert bx.boxes_iou3d(box, far).item() == 0.0
    above = box.clone()
    above[0, 2] += 1.5  # touching in z only
    assert bx.boxes_bev_iou(box, above).item() == pytest.approx(1.0)
    assert bx.boxes_iou3d(box, above).item() == 0.0
    inner = torch.tensor([[1.0, 2.0, 0.5, 1.0, 1.0, 0.5, 0.2]], dtype=torch.float64)
    assert bx.boxes_bev_iou(box, inner).item() == pytest.approx(1.0 / 8.0)
    assert bx.boxes_iou3d(box, inner).item() == pytest.approx(0.5 / 12.0)
    # a square turned by 45 degrees over the same square: intersection a regular octagon
    sq = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0],
                       [0.0, 0.0, 0.0, 2.0, 2.0, 1.0, math.pi / 4]], dtype=torch.float64)
    octagon = 8 * (math.sqrt(2) - 1)
    assert bx.boxes_bev_iou(sq[:1], sq[1:]).item() == pytest.approx(octagon / (8 - octagon))
    assert bx.boxes_bev_iou(box, box[:0]).shape == (1, 0)


def test_iou_gradient_is_finite() -> None:
    gen = torch.Generator().manual_seed(3)
    a = _random_boxes(gen, 10).requires_grad_(True)
    b = _random_boxes(gen, 12)
    iou = bx.boxes_iou3d(a, b)
    iou.sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_nearest_bev_iou_hand_example() -> None:
    a = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.0, math.pi / 2],   # swapped: 2 x 4
                      [1.0, 0.0, 0.0, 4.0, 2.0, 1.0, math.pi],       # aligned again
                      [0.0, 0.0, 0.0, 4.0, 2.0, 1.0, 0.3]])           # kept as is
    got = bx.boxes_nearest_bev_iou(a, b)[0]
    np.testing.assert_allclose(got.numpy(), [4.0 / 12.0, 6.0 / 10.0, 1.0], atol=1e-6)


def _greedy(iou: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(iou[i, k] <= thresh for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotated_nms_matches_greedy_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(8, 2, generator=gen, dtype=torch.float64) * 30
    boxes = _random_boxes(gen, 200, 1.5)
    boxes[:, :2] += centres[torch.randint(0, 8, (200,), generator=gen)]
    boxes[:, 6] = boxes[:, 6] * 0.1
    scores = torch.rand(200, generator=gen, dtype=torch.float64)
    ref_iou = kitti_iou.bev_iou(_to_camera(boxes)[:, [0, 2, 5, 4, 6]],
                                _to_camera(boxes)[:, [0, 2, 5, 4, 6]])
    for thresh in (0.01, 0.3, 0.7):
        keep = bx.rotated_nms(boxes, scores, thresh).tolist()
        assert keep == _greedy(ref_iou, scores.numpy(), thresh)
        assert keep == _greedy(bx.boxes_bev_iou(boxes, boxes).numpy(), scores.numpy(), thresh)
        assert 8 <= len(keep) < 200
    keep = bx.rotated_nms(boxes, scores, 0.3, pre_max=50, post_max=5)
    top50 = torch.argsort(scores, descending=True)[:50].numpy()
    ref = _greedy(ref_iou[np.ix_(top50, top50)], scores.numpy()[top50], 0.3)[:5]
    assert keep.tolist() == top50[ref].tolist()
    assert bx.rotated_nms(boxes[:0], scores[:0], 0.3).shape == (0,)


def test_points_in_boxes_matches_reference() -> None:
    gen = torch.Generator().manual_seed(4)
    boxes = _random_boxes(gen, 15)
    points = torch.rand(3000, 4, generator=gen, dtype=torch.float64) * 8 - 1
    inside = bx.points_in_boxes(points, boxes)
    ref = geo.points_in_boxes(points.numpy(), boxes.numpy())
    assert ref.sum() > 100
    np.testing.assert_array_equal(inside.numpy(), ref)
    idx = bx.points_in_boxes_indices(points, boxes).numpy()
    want = np.where(ref.any(axis=0), ref.argmax(axis=0), -1)
    np.testing.assert_array_equal(idx, want)
    grown = bx.enlarge_box(boxes, (1.0, 2.0, 3.0))
    np.testing.assert_allclose((grown - boxes).numpy()[:, 3:6], np.tile([1.0, 2.0, 3.0], (15, 1)))
    assert bx.points_in_boxes(points, grown).sum() > inside.sum()


def _ball_query_reference(radius: np.ndarray, nsample: int, xyz: np.ndarray,
                          xyz_cnt: list[int], new_xyz: np.ndarray,
                          new_cnt: list[int]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.zeros((len(new_xyz), nsample), np.int64)
    empty = np.zeros(len(new_xyz), bool)
    q = 0
    for b, n_q in enumerate(new_cnt):
        start = sum(xyz_cnt[:b])
        for _ in range(n_q):
            found = []
            for k in range(start, start + xyz_cnt[b]):
                if float(np.sum((xyz[k] - new_xyz[q]) ** 2)) < radius[q] ** 2:
                    found.append(k)
                    if len(found) == nsample:
                        break
            if found:
                idx[q] = found + [found[0]] * (nsample - len(found))
            else:
                empty[q] = True
            q += 1
    return idx, empty


@pytest.mark.parametrize("per_query", [False, True])
def test_ball_query_matches_brute_force(per_query: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    xyz_cnt, new_cnt = [120, 0, 200], [30, 5, 40]
    xyz = torch.rand(sum(xyz_cnt), 3, generator=gen, dtype=torch.float64) * 3
    new_xyz = torch.rand(sum(new_cnt), 3, generator=gen, dtype=torch.float64) * 4
    if per_query:
        radius = torch.rand(len(new_xyz), generator=gen, dtype=torch.float64) * 1.5
    else:
        radius = torch.full((len(new_xyz),), 1.0, dtype=torch.float64)
    arg = radius if per_query else 1.0
    idx, empty = ops.ball_query(arg, 8, xyz, torch.tensor(xyz_cnt), new_xyz,
                                torch.tensor(new_cnt))
    ref_idx, ref_empty = _ball_query_reference(radius.numpy(), 8, xyz.numpy(), xyz_cnt,
                                               new_xyz.numpy(), new_cnt)
    assert ref_empty[30:35].all() and not ref_empty.all()  # batch element 1 has no points
    full = ref_idx[:, -1] != ref_idx[:, 0]
    assert full.any() and (~full & ~ref_empty & (ref_idx[:, 1] != ref_idx[:, 0])).any()
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    np.testing.assert_array_equal(empty.numpy(), ref_empty)
    feats = torch.randn(len(xyz), 6, generator=gen, dtype=torch.float64)
    grouped = ops.grouping(feats, idx, empty)
    assert grouped.shape == (len(new_xyz), 6, 8)
    q = int(np.flatnonzero(~ref_empty)[0])
    np.testing.assert_allclose(grouped[q, :, 3].numpy(), feats[ref_idx[q, 3]].numpy())
    assert torch.all(grouped[torch.from_numpy(ref_empty)] == 0)
    rel = ops.group_points_relative(xyz, idx, new_xyz, empty)
    np.testing.assert_allclose(rel[q, :, 3].numpy(), (xyz[ref_idx[q, 3]] - new_xyz[q]).numpy())
    ok = ~torch.from_numpy(ref_empty)
    assert torch.all(rel[ok].norm(dim=1) < radius[ok, None])


def _fps_reference(xyz: np.ndarray, npoint: int) -> list[int]:
    dist = np.full(len(xyz), 1e10)
    out = [0]
    for _ in range(npoint - 1):
        dist = np.minimum(dist, ((xyz - xyz[out[-1]]) ** 2).sum(axis=1))
        out.append(int(np.argmax(dist)))
    return out


def test_farthest_point_sample() -> None:
    gen = torch.Generator().manual_seed(6)
    xyz = torch.rand(500, 3, generator=gen, dtype=torch.float64) * 10
    idx = ops.farthest_point_sample(xyz, 64)
    assert idx[0].item() == 0 and len(set(idx.tolist())) == 64
    assert idx.tolist() == _fps_reference(xyz.numpy(), 64)
    # batched: element 1 has fewer points than asked and repeats them in FPS order
    points = torch.cat([torch.cat([torch.zeros(500, 1, dtype=torch.float64), xyz], 1),
                        torch.cat([torch.ones(5, 1, dtype=torch.float64), xyz[:5]], 1)])
    perm = torch.randperm(len(points), generator=gen)
    shuffled = points[perm]
    sel = ops.farthest_point_sample_batched(shuffled, 64)
    assert sel.shape == (2, 64)
    assert torch.all(shuffled[sel[0], 0] == 0) and torch.all(shuffled[sel[1], 0] == 1)
    rows0 = torch.nonzero(shuffled[:, 0] == 0).squeeze(1)
    want0 = rows0[torch.tensor(_fps_reference(shuffled[rows0, 1:4].numpy(), 64))]
    assert sel[0].tolist() == want0.tolist()
    rows1 = torch.nonzero(shuffled[:, 0] == 1).squeeze(1)
    first5 = rows1[torch.tensor(_fps_reference(shuffled[rows1, 1:4].numpy(), 5))]
    assert sel[1].tolist() == first5.repeat(13)[:64].tolist()
