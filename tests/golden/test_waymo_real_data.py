"""Real Waymo samples (../shared/data/waymo): v2 Parquet components, v1 TFRecords, gt.bin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refbench.datasets.waymo import builder as W
from refbench.datasets.waymo import reader as R
from refbench.datasets.waymo import v1 as V1
from refbench.errors import RefbenchError
from refbench.evaluation.waymo import Waymo3DMetric, iou_3d

SEGMENT = "10023947602400723454_1120_000_1140_000"


@pytest.fixture(scope="module")
def waymo(shared_data: Path) -> Path:
    root = shared_data / "waymo"
    if not root.is_dir():
        pytest.skip(f"no Waymo samples in {shared_data}")
    return root


def test_v2_check_names_the_missing_components(waymo: Path):
    report = W.WaymoBuilder().check(waymo / "v2")
    messages = [p.message for p in report.problems]
    assert messages[0] == (f"segment {SEGMENT}: missing required component(s) lidar, "
                           f"lidar_calibration, lidar_box (present: camera_hkp, vehicle_pose)")
    assert any("no validation segment found" in m for m in messages)
    assert f"training/vehicle_pose/{SEGMENT}.parquet" in report.found


def test_v2_prepare_fails_with_the_precise_reason(waymo: Path, tmp_path: Path):
    with pytest.raises(RefbenchError) as err:
        W.WaymoBuilder().prepare(waymo / "v2", tmp_path / "cache")
    assert f"segment {SEGMENT}: missing required component(s) lidar, lidar_calibration, " \
           f"lidar_box" in str(err.value)
    assert str(err.value).startswith(str(waymo / "v2" / "training" / "lidar"))


def test_v2_vehicle_pose_is_read(waymo: Path):
    poses = R.read_vehicle_pose(waymo / "v2" / "training" / "vehicle_pose" / f"{SEGMENT}.parquet")
    assert len(poses) == 199
    stamps = sorted(poses)
    steps = np.diff(stamps)
    assert np.all(np.abs(steps - 100_000) < 5_000)  # 10 Hz frames
    for mat in poses.values():
        assert mat.shape == (4, 4)
        assert mat[3].tolist() == [0.0, 0.0, 0.0, 1.0]
        assert np.allclose(mat[:3, :3] @ mat[:3, :3].T, np.eye(3), atol=1e-5)
        assert np.linalg.det(mat[:3, :3]) == pytest.approx(1.0, abs=1e-5)


def test_v1_container_records_and_crcs(waymo: Path, tmp_path: Path):
    folder = waymo / "v1" / "validation"
    expected = {"val.tfrecord": ("1071392229495085036_1844_790_1864_790", 8140),
                "pvps_data_one_frame.tfrecord": ("1024360143612057520_3580_000_3600_000",
                                                 2168758)}
    for name, (context, length) in expected.items():
        records = list(V1.iter_records(folder / name))  # both CRCs of every record verified
        assert [info.length for info, _ in records] == [length]
        assert (folder / name).stat().st_size == length + 16
        assert V1.frame_header(records[0][1])[0] == context
    cut = tmp_path / "val.tfrecord"
    cut.write_bytes((folder / "val.tfrecord").read_bytes()[:4000])
    with pytest.raises(RefbenchError) as err:
        V1.scan(cut)
    assert str(err.value) == (f"{cut}: truncated record at byte offset 0: its length says 8140 "
                              f"data bytes + 4 checksum bytes, only 3988 remain")


def test_v1_frame_parsing_uses_the_official_schema_or_says_what_to_install(waymo: Path):
    import importlib.util

    _, data = next(V1.iter_records(waymo / "v1" / "validation" / "val.tfrecord"))
    if importlib.util.find_spec("waymo_open_dataset") is None:
        with pytest.raises(RefbenchError, match="waymo-open-dataset-tf-2-12-0"):
            V1.parse_frame(data)
    else:
        frame = V1.parse_frame(data)
        assert frame.context.name == "1071392229495085036_1844_790_1864_790"


def test_gt_bin_scored_against_the_frame_labels(waymo: Path):
    folder = waymo / "v1" / "validation"
    [obj] = V1.read_objects_bin(folder / "gt.bin")
    _, data = next(V1.iter_records(folder / "val.tfrecord"))
    context, stamp = V1.frame_header(data)
    assert (obj["context_name"], obj["timestamp"]) == (context, stamp)
    labels = V1.frame_laser_labels(data)
    assert len(labels) == 18 and sorted({lab["type"] for lab in labels}) == [1, 3]
    [vehicle] = [lab for lab in labels if lab["type"] == 1]
    assert iou_3d(np.array(obj["box"]), np.array(vehicle["box"])) > 0.95
    ref = {"boxes": np.array([lab["box"] for lab in labels]),
           "types": np.array([lab["type"] for lab in labels]),
           "num_points": np.array([lab["num_points"] for lab in labels]),
           "difficulty": np.array([lab["difficulty"] for lab in labels]),
           "context_name": context, "timestamp": stamp}
    pred = {"boxes": np.array([obj["box"]]), "types": np.array([obj["type"]]),
            "scores": np.array([obj["score"]])}
    metric = Waymo3DMetric()
    metric.update([pred], [ref])
    out = metric.compute()
    assert out["VEHICLE/L1/mAP"] == pytest.approx(1.0)
    assert out["VEHICLE/L2/RANGE_50_INF/mAP"] == pytest.approx(1.0)  # the car is 77 m away
    assert out["SIGN/L2/mAP"] == 0.0
    assert 0.99 < out["VEHICLE/L1/mAPH"] < 1.0  # headings differ by 0.002 rad


def test_evaluate_official_bin_files_end_to_end(waymo: Path, tmp_path: Path):
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.benchmarks.formats.waymo import read_box_file, write_box_file

    gt_bin = waymo / "v1" / "validation" / "gt.bin"
    result = evaluate_file("waymo-3d", gt_bin, references=gt_bin)
    assert result.primary == "VEHICLE/L2/mAPH"
    assert result.metrics["VEHICLE/L2/mAPH"] == pytest.approx(1.0)
    assert result.metrics["sampled_interval"] == 1.0
    assert result.directions["sampled_interval"] == "none"
    # the same predictions through the Parquet submission file
    write_box_file(tmp_path / "predictions.parquet", read_box_file(gt_bin))
    again = evaluate_file("waymo-3d", tmp_path / "predictions.parquet", references=gt_bin)
    assert again.metrics == result.metrics


def test_check_of_the_sample_folder_points_at_v2_and_explains_v1(waymo: Path):
    report = W.WaymoBuilder().check(waymo)
    assert not report.ok
    assert report.hints[0] == (f"{waymo / 'v2'} holds the v2 Parquet release (training/): use "
                               f"--root {waymo / 'v2'}")
    v1 = report.hints[1]
    assert v1.startswith("2 Waymo v1 TFRecord file(s) found "
                         "(v1/validation/pvps_data_one_frame.tfrecord and 1 more): "
                         "`datasets prepare waymo` reads only the v2 Parquet release")
    assert "refbench.datasets.waymo.v1" in v1 and "`refbench evaluate waymo-3d`" in v1
    v2 = W.WaymoBuilder().check(waymo / "v2")
    assert v2.hints[0].startswith("only training/ holds segments")
    assert v2.hints[1].startswith("the v2 release is downloaded component by component")
    # what the v1 hint promises: the container is read, frame by frame
    for path in sorted((waymo / "v1" / "validation").glob("*.tfrecord")):
        context, stamp = V1.frame_header(next(V1.iter_records(path))[1])
        assert context and stamp > 0


def test_label_set_hash_of_the_real_labels_is_pinned(waymo: Path):
    """The result's label-set hash is taken over each frame's repr: the faster repr must
    give the hash the dataclass repr gave (value from refbench before the change)."""
    from refbench.benchmarks.formats.waymo import read_objects_references
    from refbench.benchmarks.scoring import label_set_sha256

    refs = read_objects_references(waymo / "v1" / "validation" / "gt.bin")
    frame = next(iter(refs.values()))
    assert repr(frame) == (
        f"BoxFrame(context_name={frame.context_name!r}, timestamp={frame.timestamp!r}, "
        f"boxes={frame.boxes!r}, types={frame.types!r}, scores=None, "
        f"num_points={frame.num_points!r}, difficulty={frame.difficulty!r})")
    assert label_set_sha256(refs) == \
        "b5afe3a7e55dd974238fc8d7dbe4cc6728d44ebd0601ff0f751b6c4b959125bd"
