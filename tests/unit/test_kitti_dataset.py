"""KITTI builder on synthetic releases: round trip, label/point agreement, bad inputs,
resumable preparation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from refbench.datasets.kitti import geometry as geo
from refbench.datasets.base import MISSING_FILE, MISSING_FOLDER, load_prepared, read_manifest
from refbench.datasets.kitti.builder import KittiBuilder, parse_label_text, read_velodyne
from refbench.errors import RefbenchError
from refbench.io import sha256_file


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return KittiBuilder().synthesize(tmp_path_factory.mktemp("kitti") / "src", n=12, seed=3)


@pytest.fixture()
def root(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy each test may break."""
    return Path(shutil.copytree(synth_root, tmp_path / "src"))


def _independent_inside(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Inside test written differently: project on the box's axes with dot products."""
    cx, cy, cz, l, w, h, yaw = box
    d = points[:, :2] - [cx, cy]
    along = d @ np.array([np.cos(yaw), np.sin(yaw)])
    across = d @ np.array([-np.sin(yaw), np.cos(yaw)])
    return ((np.abs(along) < l / 2) & (np.abs(across) < w / 2)
            & (np.abs(points[:, 2] - cz) <= h / 2))


def _camera_inside(points: np.ndarray, loc: np.ndarray, hwl: np.ndarray, ry: float,
                   calib: geo.Calibration, tol: float) -> np.ndarray:
    """Inside test in the rectified camera frame (bottom centre, rotation about y)."""
    rect = geo.lidar_to_rect(points[:, :3], calib) - loc
    c, s = np.cos(ry), np.sin(ry)
    along, across = rect[:, 0] * c - rect[:, 2] * s, rect[:, 0] * s + rect[:, 2] * c
    h, w, l = hwl
    return ((np.abs(along) < l / 2 + tol) & (np.abs(across) < w / 2 + tol)
            & (rect[:, 1] <= tol) & (rect[:, 1] >= -h - tol))


def test_synthesize_check_prepare_load_round_trip(synth_root: Path, tmp_path: Path) -> None:
    builder = KittiBuilder()
    assert builder.check(synth_root).ok
    manifest = builder.prepare(synth_root, tmp_path / "cache")
    assert manifest["splits"]["default"] == {"train": 6, "validation": 6, "test": 3}
    assert manifest["frames_per_second"] > 0
    rel = "training/velodyne/000000.bin"
    assert manifest["sources"][rel] == sha256_file(synth_root / rel)
    train = load_prepared("kitti", split="train", cache_dir=str(tmp_path / "cache"))
    test = load_prepared("kitti", split="test", cache_dir=str(tmp_path / "cache"))
    assert len(test) == 3 and all(len(row["name"]) == 0 for row in test)
    ids = (synth_root / "ImageSets" / "train.txt").read_text().split()
    assert train["id"] == ids
    row = train.with_format("numpy")[0]
    fid = row["id"]
    raw = read_velodyne(synth_root / "training" / "velodyne" / f"{fid}.bin")
    calib = geo.Calibration.from_row(train[0]["calib"])
    shape = tuple(int(v) for v in row["image_shape"])
    assert shape == geo.png_shape(synth_root / row["image_path"])
    np.testing.assert_array_equal(row["points"], raw[geo.fov_mask(raw, calib, shape)])
    label = parse_label_text((synth_root / "training" / "label_2" / f"{fid}.txt").read_text())
    assert list(row["name"]) == label["name"].tolist()
    np.testing.assert_allclose(row["dimensions"], label["dimensions"], rtol=1e-6)
    np.testing.assert_allclose(row["location"], label["location"], rtol=1e-6)


def test_synthetic_labels_agree_with_points(synth_root: Path, tmp_path: Path) -> None:
    builder = KittiBuilder()
    builder.prepare(synth_root, tmp_path / "cache")
    ds = load_prepared("kitti", split="val", cache_dir=str(tmp_path / "cache"))
    cared = 0
    for row in ds.with_format("numpy"):
        points = row["points"]
        calib = geo.Calibration(row["calib"]["P2"].reshape(3, 4),
                                row["calib"]["R0_rect"].reshape(3, 3),
                                row["calib"]["Tr_velo_to_cam"].reshape(3, 4))
        for i, (name, box, count, level) in enumerate(zip(
                row["name"], row["boxes_lidar"], row["num_points"], row["difficulty"])):
            if name == "DontCare":
                assert count == -1 and level == -1
                continue
            cared += 1
            inside = _independent_inside(points.astype(np.float64), box.astype(np.float64))
            assert count > 0 and inside.sum() == count
            assert _camera_inside(points[inside].astype(np.float64), row["location"][i],
                                  row["dimensions"][i], float(row["rotation_y"][i]), calib,
                                  tol=0.05).all()  # frames tilt ~0.01 rad
            # the box really holds an object: its points rise above the ground
            assert points[inside, 2].max() > box[2] - box[5] / 2 + 0.3
    assert cared >= 6


class _Interrupted(BaseException):
    """Stands for Ctrl-C / a kill in the middle of a prepare."""


def _append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


BREAKAGES = {
    "missing-folder": (lambda r: shutil.rmtree(r / "training" / "calib"), "training/calib", None),
    "id-without-files": (lambda r: _append(r / "ImageSets" / "train.txt", "999999\n"),
                         "999999.bin", None),
    "bin-size": (lambda r: _append(r / "training" / "velodyne" / "000001.bin", "abc"),
                 "000001.bin", None),
    "label-columns": (lambda r: _append(r / "training" / "label_2" / "000002.txt",
                                        "Car 0 0 0 1 2 3 4\n"), "000002.txt", "columns"),
    "label-number": (lambda r: (r / "training" / "label_2" / "000003.txt").write_text(
        "Car 0.00 0 x 1 2 3 4 1.5 1.6 3.9 1 2 10 0\n"), "000003.txt:1", "'x'"),
    "label-not-utf8": (lambda r: (r / "training" / "label_2" / "000005.txt").write_bytes(
        b"Car \xff\xfe 0 0 1 2 3 4 1.5 1.6 3.9 1 2 10 0\n"), "000005.txt", "UTF-8"),
    "calib-key": (lambda r: (r / "training" / "calib" / "000004.txt").write_text(
        "\n".join(line for line in (r / "training" / "calib" / "000004.txt").read_text()
                  .splitlines() if not line.startswith("Tr_velo_to_cam"))), "000004.txt",
        "Tr_velo_to_cam"),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_bad_inputs_one_line_errors_and_no_cache(case: str, root: Path, tmp_path: Path) -> None:
    breaker, where, what = BREAKAGES[case]
    breaker(root)
    builder = KittiBuilder()
    report = builder.check(root)
    assert not report.ok
    text = "\n".join(p.format() for p in report.problems)
    assert where in text and (what is None or what in text)
    if case in ("label-columns",):
        assert any(p.line is not None for p in report.problems)
    cache = tmp_path / "cache"
    with pytest.raises(RefbenchError) as err:
        builder.prepare(root, cache)
    message = str(err.value)
    assert "\n" not in message and where.split(":")[0] in message
    assert not builder.cache_path(cache).exists()
    leftovers = list((cache / "kitti").iterdir()) if (cache / "kitti").exists() else []
    assert leftovers == []


def test_prepare_resumes_after_interruption(synth_root: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    builder = KittiBuilder()
    builder.chunk_size = 2
    cache = tmp_path / "cache"
    real = KittiBuilder.convert_chunk
    calls: list[list[str]] = []
    armed = [True]

    def flaky(self, root, split, ids, shard):  # type: ignore[no-untyped-def]
        calls.append(list(ids))
        if armed[0] and len(calls) == 3:
            raise _Interrupted
        return real(self, root, split, ids, shard)

    monkeypatch.setattr(KittiBuilder, "convert_chunk", flaky)
    with pytest.raises(_Interrupted):
        builder.prepare(synth_root, cache)
    assert not builder.cache_path(cache).exists()
    assert builder.work_dir(synth_root, cache).is_dir()
    calls.clear()
    armed[0] = False
    manifest = builder.prepare(synth_root, cache, progress=True)
    assert manifest["frames_reused"] == 4 and manifest["frames_converted"] == 15 - 4
    assert sum(len(c) for c in calls) == 11
    assert "frames/s" in capsys.readouterr().out
    assert not builder.work_dir(synth_root, cache).exists()
    resumed = load_prepared("kitti", split="train", cache_dir=str(cache))
    fresh_cache = tmp_path / "fresh"
    KittiBuilder().prepare(synth_root, fresh_cache)
    fresh = load_prepared("kitti", split="train", cache_dir=str(fresh_cache))
    assert resumed["id"] == fresh["id"]
    for a, b in zip(resumed.with_format("numpy"), fresh.with_format("numpy")):
        np.testing.assert_array_equal(a["points"], b["points"])
        np.testing.assert_array_equal(a["num_points"], b["num_points"])
    assert read_manifest(builder.cache_path(cache))["fingerprint"] == \
        read_manifest(builder.cache_path(fresh_cache))["fingerprint"]


# -- check: summary notes and hints -----------------------------------------------------------
def test_check_subset_of_frames_is_summarized_with_a_hint(root: Path) -> None:
    for folder in ("velodyne", "calib", "image_2", "label_2"):
        for path in (root / "training" / folder).iterdir():
            if path.stem not in ("000000", "000001", "000002"):
                path.unlink()
    report = KittiBuilder().check(root)
    groups = report.summary()
    assert [(g.kind, g.count) for g in groups] == [(MISSING_FILE, 9 * 4)]
    train = (root / "ImageSets" / "train.txt").read_text().split()
    val = (root / "ImageSets" / "val.txt").read_text().split()
    have_train = [i for i in train if i in ("000000", "000001", "000002")]
    assert groups[0].notes == [
        f"{len(have_train)} of {len(train)} frames of ImageSets/train.txt present",
        f"{3 - len(have_train)} of {len(val)} frames of ImageSets/val.txt present"]
    assert report.hints == [(
        "only 3 of 12 frames of ImageSets/train.txt, ImageSets/val.txt are present (000000, "
        "000001, 000002): to use the frames you have, keep only their ids in "
        "ImageSets/train.txt, ImageSets/val.txt (e.g. `ls training/velodyne | sed "
        "'s/\\.bin$//'`), or download the rest of the release")]
    assert len(report.found) == 3 + 3 * 4 + 3 * 3  # ImageSets, training and testing files
    # doing what the hint says makes the check pass
    (root / "ImageSets" / "train.txt").write_text("".join(f"{i}\n" for i in have_train))
    (root / "ImageSets" / "val.txt").write_text(
        "".join(f"{i}\n" for i in ("000000", "000001", "000002") if i not in have_train))
    assert KittiBuilder().check(root).ok


def test_check_missing_testing_part_is_one_problem_and_a_hint(root: Path) -> None:
    shutil.rmtree(root / "testing")
    report = KittiBuilder().check(root)
    assert [(p.kind, p.path) for p in report.problems] == [(MISSING_FOLDER,
                                                            str(root / "testing"))]
    assert report.notes[MISSING_FOLDER] == ["ImageSets/test.txt lists 3 frames of testing/"]
    assert len(report.hints) == 1
    assert report.hints[0].startswith("ImageSets/test.txt lists 3 frames but testing/ is "
                                      "missing: unpack the testing part")
    (root / "ImageSets" / "test.txt").write_text("")  # the hint's other way out
    assert KittiBuilder().check(root).ok


def test_check_root_one_level_off_suggests_the_right_root(root: Path, tmp_path: Path) -> None:
    report = KittiBuilder().check(root / "training")
    assert len(report.problems) == 3  # the ImageSets files
    assert report.hints == [(f"{root / 'training'} holds velodyne/, calib/, image_2/, label_2/ "
                             f"itself, so it is the training/ folder of a KITTI release, not "
                             f"its root: use --root {root}")]
    parent = tmp_path / "datasets"
    parent.mkdir()
    shutil.move(str(root), str(parent / "kitti"))
    report = KittiBuilder().check(parent)
    assert report.hints == [(f"{parent / 'kitti'} looks like the KITTI release (it holds "
                             f"ImageSets/ or training/): use --root {parent / 'kitti'}")]


def test_check_without_imagesets_says_where_they_come_from(root: Path) -> None:
    shutil.rmtree(root / "ImageSets")
    report = KittiBuilder().check(root)
    assert len(report.problems) == 3
    assert len(report.hints) == 1 and "not part of the KITTI download" in report.hints[0]
