"""The three real KITTI training frames: geometry, FOV crop, prepare and load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from refbench.datasets.kitti import geometry as geo
from refbench.datasets.base import MISSING_FILE, MISSING_FOLDER, load_prepared
from refbench.datasets.kitti.builder import KittiBuilder, read_frame, read_velodyne
from refbench.io import sha256_file
from tests.helpers import run_cli

IDS = ("000000", "000001", "000002")


@pytest.fixture(scope="module")
def kitti(shared_data: Path) -> Path:
    root = shared_data / "kitti"
    if not (root / "training" / "velodyne" / "000000.bin").is_file():
        pytest.skip(f"real KITTI frames not found under {root}")
    return root


@pytest.fixture()
def small_root(kitti: Path, tmp_path: Path) -> Path:
    """The 3 frames with ImageSets listing only them (the real ones name 7481 ids)."""
    root = tmp_path / "kitti"
    for folder in ("velodyne", "label_2", "calib", "image_2"):
        (root / "training" / folder).mkdir(parents=True)
        for fid in IDS:
            src = next((kitti / "training" / folder).glob(f"{fid}.*"))
            shutil.copyfile(src, root / "training" / folder / src.name)
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "train.txt").write_text("000000\n")
    (root / "ImageSets" / "val.txt").write_text("000001\n000002\n")
    (root / "ImageSets" / "test.txt").write_text("")
    return root


def _camera_inside(points: np.ndarray, loc: np.ndarray, hwl: np.ndarray, ry: float,
                   calib: geo.Calibration, tol: float) -> np.ndarray:
    """Independent test in the rectified camera frame: rotate about camera y by ry."""
    rect = geo.lidar_to_rect(points[:, :3], calib) - loc
    c, s = np.cos(ry), np.sin(ry)
    # camera box frame: x along the length (rotated by ry about y), y down, z across
    along = rect[:, 0] * c - rect[:, 2] * s
    across = rect[:, 0] * s + rect[:, 2] * c
    h, w, l = hwl
    return ((np.abs(along) < l / 2 + tol) & (np.abs(across) < w / 2 + tol)
            & (rect[:, 1] <= tol) & (rect[:, 1] >= -h - tol))


def test_real_pedestrian_points_lie_inside_its_box(kitti: Path) -> None:
    row, _ = read_frame(kitti, "train", "000000")
    calib = geo.Calibration.from_row(row["calib"])
    assert row["name"] == ["Pedestrian"]
    box = np.asarray(row["boxes_lidar"][0])
    inside = geo.points_in_boxes(row["points"], box[None])[0]
    assert inside.sum() == row["num_points"][0] > 50
    loc, hwl, ry = (np.asarray(row["location"][0]), np.asarray(row["dimensions"][0]),
                    row["rotation_y"][0])
    pts = row["points"].astype(np.float64)
    # every counted point is inside the label box checked in the camera frame (2 cm slack
    # for OpenPCDet's lidar-z half-height shift), and the strict camera count agrees
    assert _camera_inside(pts[inside], loc, hwl, ry, calib, tol=0.02).all()
    strict = _camera_inside(pts, loc, hwl, ry, calib, tol=-0.02).sum()
    assert 0.9 * inside.sum() <= strict <= inside.sum()
    # the pedestrian stands about 8.4 m ahead, 1.9 m to the right
    assert box[0] == pytest.approx(8.73, abs=0.05) and box[1] == pytest.approx(-1.86, abs=0.05)


@pytest.mark.parametrize("fid", IDS)
def test_real_fov_crop_projects_inside_image(kitti: Path, fid: str) -> None:
    row, shas = read_frame(kitti, "train", fid)
    raw = read_velodyne(kitti / "training" / "velodyne" / f"{fid}.bin")
    assert 0 < len(row["points"]) < len(raw) // 2  # the scan is 360 degrees, the camera ~90
    h, w = row["image_shape"]
    calib = row["calib"]
    m = (np.asarray(calib["P2"]).reshape(3, 4) @ np.vstack([
        np.hstack([np.asarray(calib["R0_rect"]).reshape(3, 3), np.zeros((3, 1))]),
        [0, 0, 0, 1]]) @ np.vstack([np.asarray(calib["Tr_velo_to_cam"]).reshape(3, 4),
                                    [0, 0, 0, 1]]))
    hom = np.hstack([row["points"][:, :3].astype(np.float64), np.ones((len(row["points"]), 1))])
    proj = hom @ m.T
    u, v = proj[:, 0] / proj[:, 2], proj[:, 1] / proj[:, 2]
    assert (proj[:, 2] > 0).all()
    assert ((u >= 0) & (u < w) & (v >= 0) & (v < h)).all()
    assert shas[f"training/velodyne/{fid}.bin"] == sha256_file(
        kitti / "training" / "velodyne" / f"{fid}.bin")


def test_real_frames_prepare_and_load(small_root: Path, tmp_path: Path) -> None:
    builder = KittiBuilder()
    assert builder.check(small_root).ok, builder.check(small_root).problems
    manifest = builder.prepare(small_root, tmp_path / "cache")
    assert manifest["splits"]["default"] == {"train": 1, "validation": 2, "test": 0}
    val = load_prepared("kitti", split="val", cache_dir=str(tmp_path / "cache"))
    assert val["id"] == ["000001", "000002"]
    row = val.with_format("numpy")[0]
    names = [line.split()[0] for line in
             (small_root / "training" / "label_2" / "000001.txt").read_text().splitlines()]
    assert list(row["name"]) == names
    assert row["name"][0] == "Truck" and row["difficulty"][0] == 1  # 32.9 px tall, fully visible
    assert (row["num_points"][np.array(names) == "DontCare"] == -1).all()
    np.testing.assert_allclose(row["dimensions"][0], [2.85, 2.63, 12.34], rtol=1e-6)
    assert tuple(row["image_shape"]) == (375, 1242)
    raw = np.fromfile(small_root / "training" / "velodyne" / "000001.bin",
                      dtype=np.float32).reshape(-1, 4)
    calib = geo.Calibration.from_row(val[0]["calib"])
    np.testing.assert_array_equal(row["points"], raw[geo.fov_mask(raw, calib, (375, 1242))])


@pytest.fixture()
def real_labels(shared_data: Path) -> Path:
    folder = shared_data / "kitti" / "training" / "label_2"
    if not folder.is_dir():
        pytest.skip(f"no real KITTI label_2 folder under {shared_data}")
    return folder


def test_real_ground_truth_as_predictions_shows_counts_and_the_warning(
        real_labels: Path, tmp_path: Path) -> None:
    """Ground truth submitted as predictions on the 3 real frames: Car/3d/moderate scores
    R40 0.00 and R11 9.09, what the official devkit computes with 1 valid moderate Car
    (000002's 33 px Car; 000001's 21.6 px Car is too low for any level). The result must
    say so: the valid counts and the quantisation warning."""
    from refbench.benchmarks.scoring import evaluate_file

    preds = tmp_path / "label_2"
    preds.mkdir()
    for label in sorted(real_labels.glob("*.txt")):
        lines = label.read_text().splitlines()
        (preds / label.name).write_text("".join(f"{line} 1.0\n" for line in lines if line))
    result = evaluate_file("kitti-car-3d", preds, real_labels)
    assert result.metrics["Car/3d/moderate/R40"] == 0.0
    assert round(result.metrics["Car/3d/moderate/R11"], 2) == 9.09
    assert result.counts == {"references": 3, "predictions": 3, "missing": 0, "extra": 0,
                             "scored": 3, "Car/easy/valid_gt": 0, "Car/moderate/valid_gt": 1,
                             "Car/hard/valid_gt": 1}
    assert ("kitti_ap: Car/moderate has 1 valid ground-truth box: R40 and R11 are quantised "
            "(fewer boxes than the 41 recall sample points; a perfect detector scores R40 "
            "0.00, R11 9.09)") in result.warnings
    assert len(result.warnings) == 3  # easy (0 boxes), moderate, hard; nothing about ids


def test_real_release_check_is_summarized_with_hints(kitti: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The samples: 3 frames of 7,481 listed in train/val, no testing/ part (7,518 listed).
    The check exits 1 with one line per kind of problem instead of 29,912 lines."""
    report = KittiBuilder().check(kitti)
    groups = {g.kind: g for g in report.summary()}
    assert groups[MISSING_FILE].count == (3712 + 3769 - 3) * 4
    assert groups[MISSING_FILE].notes == ["1 of 3,712 frames of ImageSets/train.txt present",
                                          "2 of 3,769 frames of ImageSets/val.txt present"]
    assert groups[MISSING_FOLDER].count == 1
    assert report.hints[0].startswith("only 3 of 7,481 frames of ImageSets/train.txt, "
                                      "ImageSets/val.txt are present (000000, 000001, 000002): "
                                      "to use the frames you have, keep only their ids in")
    assert report.hints[1].startswith("ImageSets/test.txt lists 7,518 frames but testing/ is "
                                      "missing")
    assert run_cli(["datasets", "check", "kitti", "--root", str(kitti)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) < 15 and out[-1] == "29,913 problem(s)"
    assert out[1].startswith("  missing file: 29,912 (training/velodyne/000003.bin, ")
    # pointed at training/ or at the folder above the release
    assert KittiBuilder().check(kitti / "training").hints[0].endswith(f"use --root {kitti}")
    assert KittiBuilder().check(kitti.parent).hints == [(
        f"{kitti} looks like the KITTI release (it holds ImageSets/ or training/): use "
        f"--root {kitti}")]
