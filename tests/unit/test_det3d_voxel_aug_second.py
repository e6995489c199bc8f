"""Voxelization, augmentation and SECOND's backbones (det3d)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from refbench.baselines.det3d import augment as aug
from refbench.baselines.det3d.bev import BaseBEVBackbone, HeightCompression
from refbench.baselines.det3d.spconv_utils import PATCH_MARK, import_spconv
from refbench.baselines.det3d.voxelize import (
    MeanVFE,
    VoxelGrid,
    batch_voxelize,
    voxelize,
)
from refbench.datasets.kitti.geometry import points_in_boxes
from refbench.errors import RefbenchError
from refbench.evaluation.kitti_iou import bev_intersection

pytestmark = pytest.mark.usefixtures("one_thread")

KITTI_VOXEL = (0.05, 0.05, 0.1)
KITTI_RANGE = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)


def _kitti_frames(root: Path) -> list[dict]:
    from refbench.datasets.kitti.builder import read_frame

    frames = []
    for split, fid in (("train", "000000"), ("val", "000001"), ("val", "000002")):
        row, _ = read_frame(root / "kitti", split, fid)
        care = np.asarray(row["name"]) != "DontCare"
        frames.append({"points": np.asarray(row["points"], np.float32),
                       "gt_boxes": np.asarray(row["boxes_lidar"], np.float64)[care],
                       "gt_names": np.asarray(row["name"])[care],
                       "difficulty": np.asarray(row["difficulty"], int)[care],
                       "num_points": np.asarray(row["num_points"], int)[care]})
    return frames


def _cloud(n: int, seed: int) -> torch.Tensor:
    """Random points around (and beyond) the KITTI range, with duplicates so that some
    voxels overflow `max_points_per_voxel`, and points on the range bounds."""
    gen = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 4, generator=gen) * torch.tensor([80.0, 90, 5, 1]) \
        + torch.tensor([-5.0, -45, -3.5, 0])
    near = pts[: n // 10].repeat(4, 1) + torch.rand(4 * (n // 10), 4, generator=gen) * 0.01
    edges = torch.tensor([[70.4, 0, 0, 1], [0, -40, -3, 1], [0, 40, 1, 1], [0, 39.99, 0.99, 1]])
    return torch.cat([near, pts, edges])


# -- spconv -----------------------------------------------------------------------------
def test_import_spconv_patches_once_and_returns_zero_without_cuda(monkeypatch):
    from spconv.pytorch import ops

    sp = import_spconv()
    first = ops.get_current_stream
    assert getattr(first, PATCH_MARK)
    assert import_spconv() is sp and ops.get_current_stream is first  # not stacked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ops.get_current_stream() == 0


def test_import_spconv_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "spconv.pytorch", None)
    with pytest.raises(RefbenchError, match=r"refbench\[3d\]"):
        import_spconv()


# -- voxelization -------------------------------------------------------------------------
def test_voxel_grid_kitti_and_bad_size():
    grid = VoxelGrid(KITTI_VOXEL, KITTI_RANGE)
    assert grid.grid_size == (1408, 1600, 40)
    assert grid.spatial_shape == (40, 1600, 1408)
    with pytest.raises(RefbenchError) as err:
        VoxelGrid((0.07, 0.05, 0.1), KITTI_RANGE)
    assert err.value.key == "model.voxel_size"


def _spconv_voxels(points: torch.Tensor, p: int, m: int):
    import_spconv()
    from spconv.pytorch.utils import PointToVoxel

    gen = PointToVoxel(vsize_xyz=list(KITTI_VOXEL), coors_range_xyz=list(KITTI_RANGE),
                       num_point_features=points.shape[1], max_num_voxels=m,
                       max_num_points_per_voxel=p)
    return gen(points)


@pytest.mark.parametrize("p,m", [(5, 16000), (5, 10 ** 6), (1, 300), (3, 40000)])
def test_voxelize_matches_spconv_point_to_voxel(p, m):
    pts = _cloud(20000, seed=p + m)
    ours = voxelize(pts, VoxelGrid(KITTI_VOXEL, KITTI_RANGE), p, m)
    ref = _spconv_voxels(pts, p, m)
    assert ours[0].shape == ref[0].shape
    assert (ours[2] == p).any()  # truncation is exercised
    for mine, theirs in zip(ours, ref):
        assert mine.dtype == theirs.dtype
        assert torch.equal(mine, theirs)


def test_voxelize_matches_spconv_on_real_kitti(shared_data):
    for frame in _kitti_frames(shared_data):
        pts = torch.from_numpy(frame["points"])
        ours = voxelize(pts, VoxelGrid(KITTI_VOXEL, KITTI_RANGE), 5, 16000)
        ref = _spconv_voxels(pts, 5, 16000)
        assert all(torch.equal(a, b) for a, b in zip(ours, ref))


def test_voxelize_rules_by_hand():
    grid = VoxelGrid((1.0, 1.0, 1.0), (0, 0, 0, 4, 4, 2))
    pts = torch.tensor([[3.5, 0.5, 0.5, 1], [0.2, 0.2, 0.2, 2], [3.1, 0.9, 0.1, 3],
                        [4.0, 0.5, 0.5, 9], [-0.1, 1, 1, 9], [3.9, 0.1, 0.9, 4],
                        [0.5, 3.5, 1.5, 5]])
    vox, coords, num = voxelize(pts, grid, max_points_per_voxel=2, max_voxels=2)
    assert coords.tolist() == [[0, 0, 3], [0, 0, 0]]  # order of first point, [z, y, x]
    assert num.tolist() == [2, 1]
    assert vox[0, :, 3].tolist() == [1, 3] and vox[1, :, 3].tolist() == [2, 0]
    again = voxelize(pts, grid, 2, 2)
    assert all(torch.equal(a, b) for a, b in zip((vox, coords, num), again))


def test_batch_voxelize_and_mean_vfe():
    grid = VoxelGrid(KITTI_VOXEL, KITTI_RANGE)
    frames = [_cloud(2000, 1), _cloud(1500, 2)]
    vox, coords, num = batch_voxelize(frames, grid, 5, 16000)
    single = [voxelize(f, grid, 5, 16000) for f in frames]
    assert coords.shape[1] == 4 and coords.dtype == torch.int32
    assert (coords[:, 0] == 0).sum() == len(single[0][1])
    assert torch.equal(coords[coords[:, 0] == 1, 1:], single[1][1])
    out = MeanVFE(4)({"voxels": vox, "voxel_num_points": num})["voxel_features"]
    i = int(torch.argmax(num))
    assert torch.allclose(out[i], vox[i, : num[i]].mean(dim=0))
    assert MeanVFE(4).get_output_feature_dim() == 4


# -- augmentation --------------------------------------------------------------------------
def _scene(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    boxes = np.array([[10, 5, -1, 4, 1.8, 1.5, 0.3], [20, -8, -1, 4.2, 1.7, 1.6, -1.2],
                      [15, 12, -0.8, 0.8, 0.6, 1.7, 2.0], [30, 0, -1, 1.8, 0.6, 1.7, 0.7]])
    names = np.array(["Car", "Car", "Pedestrian", "Cyclist"])
    pts = [rng.uniform([0, -40, -2.5, 0], [70, 40, 0.5, 1], (3000, 4))]
    for b in boxes:  # make every object visible
        local = rng.uniform(-0.45, 0.45, (60, 3)) * b[3:6]
        c, s = np.cos(b[6]), np.sin(b[6])
        xyz = np.stack([local[:, 0] * c - local[:, 1] * s, local[:, 0] * s + local[:, 1] * c,
                        local[:, 2]], 1) + b[:3]
        pts.append(np.column_stack([xyz, rng.uniform(0, 1, 60)]))
    points = np.concatenate(pts).astype(np.float32)
    return {"points": points, "gt_boxes": boxes, "gt_names": names,
            "difficulty": np.zeros(4, int), "num_points": points_in_boxes(points, boxes).sum(1)}


def _moved_scene(seed: int) -> dict:
    """Another scene whose objects sit elsewhere (the database's source)."""
    frame = _scene(seed)
    rng = np.random.default_rng(seed + 100)
    shift = np.column_stack([rng.uniform(-5, 40, 4), rng.uniform(-30, 30, 4), np.zeros(4)])
    boxes = frame["gt_boxes"].copy()
    inside = points_in_boxes(frame["points"], boxes)
    pts = frame["points"].copy()
    keep = ~inside.any(0)
    moved = [pts[inside[i]] + np.r_[shift[i], 0].astype(np.float32) for i in range(4)]
    boxes[:, :3] += shift
    frame.update(points=np.concatenate([pts[keep], *moved]), gt_boxes=boxes)
    return frame


def _membership(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return points_in_boxes(points, boxes)


def _safe(frame: dict) -> np.ndarray:
    """Points that are clearly inside or clearly outside every box (rotation/scaling are
    float operations, so points within 1e-4 of a face may switch)."""
    big = frame["gt_boxes"].copy()
    small = big.copy()
    big[:, 3:6] += 2e-4
    small[:, 3:6] -= 2e-4
    return ~(points_in_boxes(frame["points"], big) ^ points_in_boxes(frame["points"], small)
             ).any(0)


@pytest.mark.parametrize("op", [aug.random_flip_x, aug.global_rotation, aug.global_scaling])
def test_global_augmentations_keep_points_in_their_boxes(op):
    frame = _scene(0)
    safe = _safe(frame)
    before = _membership(frame["points"], frame["gt_boxes"])
    changed = 0
    for seed in range(6):
        pts, boxes = op(frame["points"], frame["gt_boxes"], np.random.default_rng(seed))
        assert np.array_equal(_membership(pts, boxes)[:, safe], before[:, safe])
        changed += not np.allclose(pts, frame["points"])
    assert changed >= 2  # the op does something


def test_global_rotation_and_scaling_values():
    pts = np.array([[1.0, 0.0, 0.5, 0.3]], np.float32)
    box = np.array([[1.0, 0.0, 0.5, 2, 1, 1, 0.1]])
    p, b = aug.global_rotation(pts, box, np.random.default_rng(0), (np.pi / 2, np.pi / 2))
    assert np.allclose(p[0, :3], [0, 1, 0.5], atol=1e-6) and np.isclose(b[0, 6], 0.1 + np.pi / 2)
    p, b = aug.global_scaling(pts, box, np.random.default_rng(0), (2.0, 2.0 + 1e-2))
    s = p[0, 0]
    assert 2.0 <= s <= 2.01 and np.allclose(b[0, :6], [s, 0, 0.5 * s, 2 * s, s, s], rtol=1e-6)
    assert p[0, 3] == np.float32(0.3) and b[0, 6] == 0.1


def _no_bev_overlap(boxes: np.ndarray) -> bool:
    bev = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], -boxes[:, 6]])
    inter = bev_intersection(bev, bev)
    np.fill_diagonal(inter, 0)
    return bool((inter <= 1e-9).all())


def test_gt_database_build_and_filter():
    frames = [_moved_scene(s) for s in range(3)]
    db = aug.GTDatabase.build(frames)
    assert len(db) == 12 and list(db.names[:4]) == ["Car", "Car", "Pedestrian", "Cyclist"]
    f = frames[0]
    inside = points_in_boxes(f["points"], f["gt_boxes"][:1])[0]
    assert np.allclose(db.points[0][:, :3] + db.boxes[0, :3], f["points"][inside, :3], atol=1e-5)
    assert db.num_points[0] == inside.sum()
    hard = aug.GTDatabase(db.points, db.boxes, db.names, np.r_[-1, np.zeros(11, int)],
                          np.r_[db.num_points[:1], 3, db.num_points[2:]])
    kept = hard.filter({"Car": 5}, [-1])
    assert len(kept) == 10 and kept.boxes[0].tolist() == db.boxes[2].tolist()


def test_gt_sampling_pastes_objects_without_overlap():
    db = aug.GTDatabase.build([_moved_scene(s) for s in range(1, 12)])
    frame = _scene(0)
    groups = {"Car": 6, "Pedestrian": 3, "Cyclist": 3}
    out = aug.gt_sampling(frame, db, groups, np.random.default_rng(5))
    n_new = int(out["gt_sampled"].sum())
    assert n_new > 0 and not out["gt_sampled"][:4].any()
    assert len(out["gt_boxes"]) == len(out["gt_names"]) == len(out["difficulty"]) == 4 + n_new
    assert _no_bev_overlap(out["gt_boxes"])
    counts = {name: int((out["gt_names"] == name).sum()) for name in groups}
    assert all(counts[name] <= groups[name] for name in groups)
    new_boxes = out["gt_boxes"][4:]
    # the pasted points come first and lie in their (slightly enlarged) boxes
    grown = new_boxes.copy()
    grown[:, 3:6] += 1e-3
    n_pasted = int(sum(len(db.points[i]) for i in range(len(db))
                       if any(np.array_equal(db.boxes[i], b) for b in new_boxes)))
    pasted = out["points"][:n_pasted]
    assert points_in_boxes(pasted, grown).any(0).all()
    # no old scene point survives inside a pasted box
    rest = out["points"][n_pasted:]
    assert not points_in_boxes(rest, new_boxes).any()
    old_inside = points_in_boxes(frame["points"], new_boxes).any(0)
    assert len(rest) == len(frame["points"]) - old_inside.sum()
    # deterministic for a seed, different for another
    again = aug.gt_sampling(frame, db, groups, np.random.default_rng(5))
    assert np.array_equal(again["points"], out["points"])
    assert np.array_equal(again["gt_boxes"], out["gt_boxes"])
    other = [aug.gt_sampling(frame, db, groups, np.random.default_rng(s))["gt_boxes"]
             for s in range(6, 9)]
    assert any(not np.array_equal(o, out["gt_boxes"]) for o in other)
    assert frame["gt_boxes"].shape == (4, 7)  # input untouched


def test_gt_sampling_respects_existing_counts():
    db = aug.GTDatabase.build([_moved_scene(s) for s in range(1, 6)])
    out = aug.gt_sampling(_scene(0), db, {"Car": 2}, np.random.default_rng(0))
    assert not out["gt_sampled"].any()  # the scene already has 2 cars
    assert np.array_equal(out["points"], _scene(0)["points"])


def test_apply_defaults_deterministic_and_real_kitti(shared_data):
    frames = _kitti_frames(shared_data)
    cfg = aug.AugmentConfig()
    assert cfg.sample_groups == {"Car": 20, "Pedestrian": 15, "Cyclist": 15}
    assert cfg.min_points == {"Car": 5, "Pedestrian": 5, "Cyclist": 5}
    db = cfg.prepare(aug.GTDatabase.build(frames))
    assert set(db.names) <= {"Car", "Pedestrian", "Cyclist", "Truck", "Misc"}
    assert (db.difficulty != -1).all()
    a = aug.apply(frames[1], db, cfg, np.random.default_rng(3))
    b = aug.apply(frames[1], db, cfg, np.random.default_rng(3))
    assert np.array_equal(a["points"], b["points"]) and np.array_equal(a["gt_boxes"], b["gt_boxes"])
    assert a["gt_sampled"].sum() > 0 and _no_bev_overlap(a["gt_boxes"])


def test_range_masks():
    pts = np.array([[0, 0, 5, 1], [70.4, 40, 0, 1], [-0.1, 0, 0, 1], [10, 40.1, 0, 1]])
    assert aug.mask_points_in_range(pts, KITTI_RANGE).tolist() == [True, True, False, False]
    boxes = np.array([[1, 0, 0, 1, 1, 1, 0], [1, 0, 1.5, 1, 1, 1, 0], [71, 0, 0, 4, 2, 2, 0]])
    assert aug.mask_boxes_outside_range(boxes, KITTI_RANGE).tolist() == [True, False, False]


# -- SECOND backbones ---------------------------------------------------------------------
def test_second_backbone_shapes_and_cpu_backward():
    from refbench.baselines.det3d.second import VoxelBackBone8x

    torch.manual_seed(0)
    grid = VoxelGrid(KITTI_VOXEL, KITTI_RANGE)
    lo, span = torch.tensor([0.0, -40, -3, 0]), torch.tensor([70.4, 80, 4, 1])
    frames = [torch.rand(1500, 4) * span + lo for _ in range(2)]
    vox, coords, num = batch_voxelize(frames, grid, 5, 16000)
    backbone = VoxelBackBone8x(4, grid.grid_size)
    assert backbone.sparse_shape == [41, 1600, 1408] and backbone.num_point_features == 128
    batch = MeanVFE(4)({"voxels": vox, "voxel_coords": coords, "voxel_num_points": num,
                        "batch_size": 2})
    batch = HeightCompression(256)(backbone(batch))
    assert batch["encoded_spconv_tensor_stride"] == 8 == batch["spatial_features_stride"]
    assert batch["spatial_features"].shape == (2, 256, 200, 176)
    assert set(batch["multi_scale_3d_features"]) == {"x_conv1", "x_conv2", "x_conv3", "x_conv4"}
    assert batch["multi_scale_3d_features"]["x_conv4"].spatial_shape == [5, 200, 176]
    batch["spatial_features"].square().sum().backward()
    for name, param in backbone.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert sum(p.numel() for p in backbone.parameters()) == 711_872


def test_height_compression_reshapes_dense():
    class Fake:
        def dense(self) -> torch.Tensor:
            return torch.arange(2 * 3 * 2 * 4 * 5, dtype=torch.float32).reshape(2, 3, 2, 4, 5)

    out = HeightCompression(6)({"encoded_spconv_tensor": Fake(),
                                "encoded_spconv_tensor_stride": 8})
    assert out["spatial_features"].shape == (2, 6, 4, 5)
    assert torch.equal(out["spatial_features"][0, 1], Fake().dense()[0, 0, 1])


def test_base_bev_backbone_second_config():
    net = BaseBEVBackbone(256, [5, 5], [1, 2], [128, 256], [1, 2], [256, 256])
    assert net.num_bev_features == 512
    assert sum(p.numel() for p in net.parameters()) == 4_576_768
    out = net({"spatial_features": torch.randn(1, 256, 16, 12)})
    assert out["spatial_features_2d"].shape == (1, 512, 16, 12)
    assert out["spatial_features_2x"].shape == (1, 256, 8, 6)
    down = BaseBEVBackbone(8, [1, 1], [1, 2], [8, 16], [0.5, 1], [4, 4])
    assert isinstance(down.deblocks[0][0], torch.nn.Conv2d)
    assert down({"spatial_features": torch.randn(1, 8, 8, 8)})["spatial_features_2d"].shape \
        == (1, 8, 4, 4)


def test_gt_sampling_rejects_overlaps_like_openpcdet():
    car, ped = [4.0, 1.8, 1.5], [0.8, 0.6, 1.7]
    boxes = np.array([[10.5, 5, -1, *car, 0.3],  # overlaps the scene's first car
                      [40, 20, -1, *car, 0.0], [41, 20, -1, *car, 0.5],  # overlap each other
                      [50, -20, -1, *car, 0.0],  # free
                      [50.5, -20, -1, *ped, 0.0],  # overlaps the accepted car
                      [60, 0, -1, *ped, 0.0]])  # free
    pts = tuple(np.array([[0.1 * k, 0, 0, 1]], np.float32) for k in range(6))
    db = aug.GTDatabase(pts, boxes, np.array(["Car"] * 4 + ["Pedestrian"] * 2),
                        np.zeros(6, int), np.ones(6, int))
    out = aug.gt_sampling(_scene(0), db, {"Car": 6, "Pedestrian": 3},
                          np.random.default_rng(0))
    assert out["gt_boxes"][4:].tolist() == [boxes[3].tolist(), boxes[5].tolist()]
    assert out["gt_names"][4:].tolist() == ["Car", "Pedestrian"]
    assert np.allclose(out["points"][:2, :3], [[50.3, -20, -1], [60.5, 0, -1]])
