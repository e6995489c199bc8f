"""KITTI calibration and box maths: hand-computed cases and round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refbench.datasets.kitti import geometry as geo
from refbench.datasets.kitti.synth import png_bytes, synth_calibration
from refbench.errors import RefbenchError

# lidar x fwd / y left / z up -> camera x right / y down / z fwd, no offsets
_AXES = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


def _simple_calib() -> geo.Calibration:
    p2 = np.array([[700.0, 0, 600, 0], [0, 700, 180, 0], [0, 0, 1, 0]])
    return geo.Calibration(p2, np.eye(3), _AXES.copy())


def _random_calib(seed: int) -> geo.Calibration:
    mats = synth_calibration(np.random.default_rng(seed))
    return geo.Calibration(mats["P2"], mats["R0_rect"], mats["Tr_velo_to_cam"])


def test_camera_to_lidar_hand_computed() -> None:
    # camera bottom centre (1, 2, 10) -> lidar (10, -1, -2); centre is h/2 higher in lidar z
    boxes = geo.boxes_camera_to_lidar([[1.0, 2.0, 10.0]], [[1.5, 1.6, 3.9]], [0.3],
                                      _simple_calib())
    np.testing.assert_allclose(boxes[0], [10.0, -1.0, -1.25, 3.9, 1.6, 1.5, -(0.3 + np.pi / 2)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_round_trip_camera_lidar_camera(seed: int) -> None:
    rng = np.random.default_rng(seed)
    calib = _random_calib(seed)
    loc = rng.uniform([-10, 0, 5], [10, 2, 60], (20, 3))
    dims = rng.uniform(0.5, 4.0, (20, 3))
    ry = rng.uniform(-np.pi, np.pi, 20)
    boxes = geo.boxes_camera_to_lidar(loc, dims, ry, calib)
    loc2, dims2, ry2 = geo.boxes_lidar_to_camera(boxes, calib)
    np.testing.assert_allclose(loc2, loc, atol=1e-9)
    np.testing.assert_allclose(dims2, dims)
    np.testing.assert_allclose(ry2, ry, atol=1e-12)


def test_point_round_trip_and_projection() -> None:
    calib = _random_calib(3)
    pts = np.random.default_rng(3).uniform([-5, -10, -2], [60, 10, 2], (100, 3))
    np.testing.assert_allclose(geo.rect_to_lidar(geo.lidar_to_rect(pts, calib), calib), pts,
                               atol=1e-9)
    uv, depth = geo.lidar_to_img(pts, calib)
    rect = geo.lidar_to_rect(pts, calib)
    hom = np.hstack([rect, np.ones((100, 1))]) @ calib.P2.T
    np.testing.assert_allclose(uv, hom[:, :2] / hom[:, 2:], rtol=1e-12)
    np.testing.assert_allclose(depth, hom[:, 2] - calib.P2[2, 3])


def test_projection_hand_computed() -> None:
    # lidar (10, -1, -2) is camera (1, 2, 10): u = 700 * 0.1 + 600, v = 700 * 0.2 + 180
    uv, depth = geo.lidar_to_img(np.array([[10.0, -1.0, -2.0]]), _simple_calib())
    np.testing.assert_allclose(uv[0], [670.0, 320.0])
    assert depth[0] == pytest.approx(10.0)


def test_fov_mask_keeps_points_projecting_inside() -> None:
    calib = _random_calib(4)
    pts = np.random.default_rng(4).uniform([-30, -30, -2, 0], [30, 30, 2, 1], (2000, 4))
    mask = geo.fov_mask(pts, calib, (375, 1242))
    assert 0 < mask.sum() < len(pts)
    uv, depth = geo.lidar_to_img(pts[:, :3], calib)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < 1242) & (uv[:, 1] >= 0) & (uv[:, 1] < 375) & (depth > 0)
    np.testing.assert_array_equal(mask, inside)
    assert (pts[mask, 0] > 0).all()  # everything kept is in front of the car


def test_points_in_rotated_box() -> None:
    box = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, np.pi / 2]])  # long side along y
    pts = np.array([[0.0, 1.9, 0.0], [1.5, 0.0, 0.0], [0.9, 0.0, 0.9], [0.0, 0.0, 1.1],
                    [0.0, -1.99, -0.99]])
    np.testing.assert_array_equal(geo.points_in_boxes(pts, box)[0],
                                  [True, False, True, False, True])
    assert geo.count_points_in_boxes(pts, box).tolist() == [3]


def test_box_corners_match_points_in_box() -> None:
    box = np.array([5.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.7])
    corners = geo.box_corners_lidar(box)[0]
    centre = corners.mean(axis=0)
    np.testing.assert_allclose(centre, box[:3], atol=1e-12)
    shrunk = centre + 0.99 * (corners - centre)
    grown = centre + 1.01 * (corners - centre)
    assert geo.points_in_boxes(shrunk, box[None]).all()
    assert not geo.points_in_boxes(grown, box[None]).any()


def test_difficulty_official_limits() -> None:
    bbox = np.array([[0, 0, 10, 41], [0, 0, 10, 40], [0, 0, 10, 30], [0, 0, 10, 25],
                     [0, 0, 10, 60], [0, 0, 10, 60], [0, 0, 10, 60], [0, 0, 10, 60]], float)
    occ = np.array([0, 0, 0, 0, 1, 2, 3, 0])
    trunc = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4])
    assert geo.difficulty(bbox, occ, trunc).tolist() == [0, 1, 1, -1, 1, 2, -1, 2]


def test_calib_parse_and_missing_key(tmp_path: Path) -> None:
    mats = synth_calibration(np.random.default_rng(0))
    path = tmp_path / "000000.txt"
    path.write_text(geo.format_calib(mats))
    calib = geo.read_calib(path)
    np.testing.assert_allclose(calib.P2, mats["P2"], rtol=1e-11)
    np.testing.assert_allclose(geo.Calibration.from_row(calib.to_row()).Tr_velo_to_cam,
                               mats["Tr_velo_to_cam"])
    path.write_text("\n".join(line for line in geo.format_calib(mats).splitlines()
                              if not line.startswith("R0_rect")))
    with pytest.raises(RefbenchError, match="R0_rect") as err:
        geo.read_calib(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    path.write_text("P0: 1 2 3\n")
    with pytest.raises(RefbenchError, match=r"000000.txt:1 \[P0\].*3 values"):
        geo.read_calib(path)


def test_png_shape_from_header(tmp_path: Path) -> None:
    import zlib

    gray = np.arange(37 * 53, dtype=np.uint32).reshape(37, 53) % 256
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(gray))
    assert geo.png_shape(path) == (37, 53)
    data = path.read_bytes()  # decode the single IDAT independently: filter byte + row
    start = data.index(b"IDAT")
    length = int.from_bytes(data[start - 4:start], "big")
    raw = np.frombuffer(zlib.decompress(data[start + 4:start + 4 + length]), np.uint8)
    np.testing.assert_array_equal(raw.reshape(37, 54)[:, 1:], gray)
    (tmp_path / "b.png").write_bytes(b"GIF89a" + b"\0" * 30)
    with pytest.raises(RefbenchError, match="not a PNG"):
        geo.png_shape(tmp_path / "b.png")
