"""Waymo v2 reader (synthetic round trip), range-image geometry, the `waymo_boxes` format
and the v1 TFRecord container."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from refbench.benchmarks.formats.waymo import (
    read_box_file,
    read_reference_folder,
    write_box_file,
)
from refbench.datasets.base import MISSING_FOLDER
from refbench.datasets.waymo import builder as W
from refbench.datasets.waymo import reader as R
from refbench.datasets.waymo import v1 as V1
from refbench.datasets.waymo.synth import synthesize_waymo
from refbench.errors import RefbenchError
from refbench.evaluation.waymo import BoxFrame, Waymo3DMetric


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_waymo(tmp_path_factory.mktemp("waymo") / "src", n=8, seed=3)


def _inside(points: np.ndarray, box: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    c, s = math.cos(box[6]), math.sin(box[6])
    rel = points[:, :3] - box[:3]
    lx, ly = rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c
    return ((np.abs(lx) <= box[3] / 2 + tol) & (np.abs(ly) <= box[4] / 2 + tol)
            & (np.abs(rel[:, 2]) <= box[5] / 2 + tol))


def test_azimuth_and_inclination_conventions():
    az = R.azimuths(4, np.eye(4))
    # column c looks at (2 (W - 0.5 - c) / W - 1) pi: backwards-left first, then clockwise
    assert az.tolist() == pytest.approx([0.75 * math.pi, 0.25 * math.pi, -0.25 * math.pi,
                                         -0.75 * math.pi])
    yawed = np.eye(4)
    yawed[:2, :2] = [[math.cos(0.1), -math.sin(0.1)], [math.sin(0.1), math.cos(0.1)]]
    assert R.azimuths(4, yawed) == pytest.approx(az - 0.1)
    # uniform at pixel centres between min and max, row 0 the highest beam
    assert R.beam_inclinations(2, -0.2, 0.2).tolist() == pytest.approx([0.1, -0.1])
    assert R.beam_inclinations(3, 0, 0, np.array([-0.3, -0.1, 0.05])).tolist() == [0.05, -0.1,
                                                                                   -0.3]
    with pytest.raises(RefbenchError, match="2 beam inclinations"):
        R.beam_inclinations(3, 0, 0, np.array([0.0, 1.0]))


def test_range_image_point_by_hand():
    image = np.full((2, 4, 4), -1.0, np.float32)
    image[1, 2] = [10.0, 0.5, 0.25, -1]  # row 1 = lower beam, column 2 = azimuth -pi/4
    ext = np.eye(4)
    ext[:3, 3] = [1.0, 0.0, 2.0]
    incl = R.beam_inclinations(2, -0.2, 0.2)
    pts = R.range_image_to_points(image, ext, incl)
    expect = [1 + 10 * math.cos(-0.1) * math.cos(-math.pi / 4),
              10 * math.cos(-0.1) * math.sin(-math.pi / 4), 2 + 10 * math.sin(-0.1), 0.5, 0.25]
    assert pts.shape == (1, 5) and pts[0] == pytest.approx(expect, abs=1e-5)
    # a per-pixel pose equal to the frame pose leaves the points where they are
    frame = np.eye(4)
    frame[:3, 3] = [100.0, -50.0, 3.0]
    pose = np.zeros((2, 4, 6))
    pose[..., 3:] = [100.0, -50.0, 3.0]
    again = R.range_image_to_points(image, ext, incl, pose, frame)
    assert again == pytest.approx(pts, abs=1e-4)


def test_synthetic_round_trip(synth_root: Path):
    builder = W.WaymoBuilder()
    assert builder.check(synth_root).ok
    segs = R.segments(synth_root, "training")
    seg = min(segs)
    assert segs[seg] >= {"lidar", "lidar_calibration", "lidar_box", "stats"}
    rows = list(W.segment_rows(synth_root, "training", seg))
    assert len(rows) >= 2
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    for row in rows:
        pts = row["points"]
        assert pts.dtype == np.float32 and pts.shape[1] == 5 and len(pts) > 1000
        on_ground = np.abs(pts[:, 2]) < 1e-3
        assert on_ground.mean() > 0.5
        assert len(row["boxes"]) > 0
        for box, count in zip(row["boxes"], row["num_points"]):
            # every point the writer counted in a box is read back inside that box
            assert _inside(pts, box).sum() == count
    # both returns are read: the second return of the TOP lidar lands on the ground
    table = R.read_table(synth_root / "training" / "lidar" / f"{seg}.parquet")
    second = R._images(table, "range_image_return2")
    assert sum(int((img[..., 0] > 0).sum()) for img in second) > 0
    testing = list(W._generate_split(str(synth_root), "testing", ""))
    assert testing and all(len(r["boxes"]) == 0 for r in testing)


def test_check_and_prepare_name_missing_components(synth_root: Path, tmp_path: Path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    seg = min(R.segments(root, "validation"))
    (root / "validation" / "lidar_box" / f"{seg}.parquet").unlink()
    report = W.WaymoBuilder().check(root)
    expected = (f"segment {seg}: missing required component(s) lidar_box (present: lidar, "
                f"lidar_calibration, stats)")
    assert [p.message for p in report.problems] == [expected]
    with pytest.raises(RefbenchError, match=f"segment {seg}: missing required component"):
        W.WaymoBuilder().prepare(root, tmp_path / "cache")
    assert not (tmp_path / "cache" / "waymo" / "2.0").exists()


def test_box_file_round_trip_and_errors(tmp_path: Path):
    frames = {("seg", 5): BoxFrame("seg", 5, boxes=np.array([[1, 2, 0.5, 4, 2, 1.5, 0.1]]),
                                   types=np.array([1]), scores=np.array([0.7], np.float32))}
    for name in ("p.parquet", "p.jsonl"):
        write_box_file(tmp_path / name, frames)
        assert read_box_file(tmp_path / name) == frames
    good = ('{"context_name": "s", "timestamp": 1, "center_x": 0, "center_y": 0, '
            '"center_z": 0, "length": 4, "width": 2, "height": 1.5, "heading": 0, '
            '"type": "VEHICLE", "score": 0.5}')
    cases = {"NaN": (good.replace('"center_y": 0', '"center_y": NaN'), ":2 [center_y]"),
             "negative": (good.replace('"width": 2', '"width": -2'), ":2 [width]"),
             "type": (good.replace('"VEHICLE"', '"TRUCK"'), ":2 [type]"),
             "missing": (good.replace('"score": 0.5', '"scor": 0.5'), ":2 [score]")}
    for label, (bad, where) in cases.items():
        path = tmp_path / f"{label}.jsonl"
        path.write_text(good + "\n" + bad + "\n")
        with pytest.raises(RefbenchError) as err:
            read_box_file(path)
        assert str(err.value).startswith(f"{path}{where}"), label
    path = tmp_path / "missing.parquet"
    write_box_file(path, frames)
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(path).drop_columns(["heading"]), path)
    with pytest.raises(RefbenchError, match=r"\[heading\].*missing column\(s\) heading"):
        read_box_file(path)


def test_reference_folder_scores_perfect_predictions(synth_root: Path, tmp_path: Path):
    refs = read_reference_folder(synth_root, "validation")
    assert refs and all(isinstance(v, BoxFrame) for v in refs.values())
    write_box_file(tmp_path / "p.parquet", refs)
    preds = read_box_file(tmp_path / "p.parquet")
    keys = list(refs)
    metric = Waymo3DMetric()
    metric.update([preds.get(k) for k in keys], [refs[k] for k in keys])
    out = metric.compute()
    assert out["VEHICLE/L2/mAP"] == pytest.approx(1.0)
    assert out["VEHICLE/L2/mAPH"] == pytest.approx(1.0)


def test_tfrecord_container_crc_and_truncation(tmp_path: Path):
    assert V1.crc32c(b"123456789") == 0xE3069283  # the CRC32C check value
    path = tmp_path / "a.tfrecord"
    V1.write_records(path, [b"hello", b"", b"x" * 1000])
    assert [(r.offset, r.length) for r in V1.scan(path)] == [(0, 5), (21, 0), (37, 1000)]
    blob = path.read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(blob[:-10])
    with pytest.raises(RefbenchError, match=r"cut.tfrecord: truncated record at byte offset "
                                            r"37: its length says 1000"):
        V1.scan(tmp_path / "cut.tfrecord")
    (tmp_path / "head.tfrecord").write_bytes(blob[:42])
    with pytest.raises(RefbenchError, match="truncated record header at byte offset 37"):
        V1.scan(tmp_path / "head.tfrecord")
    flipped = bytearray(blob)
    flipped[12] ^= 1
    (tmp_path / "bad.tfrecord").write_bytes(bytes(flipped))
    with pytest.raises(RefbenchError, match="byte offset 0: data checksum mismatch"):
        V1.scan(tmp_path / "bad.tfrecord")
    assert struct.unpack("<Q", blob[:8])[0] == 5


def test_frame_wire_parsing_by_hand():
    def field(number: int, wire: int, payload: bytes) -> bytes:
        return bytes([number << 3 | wire]) + payload

    box = b"".join(field(n, 1, struct.pack("<d", v)) for n, v in
                   [(1, 1.0), (2, 2.0), (3, 3.0), (5, 4.5), (4, 2.0), (6, 1.5), (7, 0.5)])
    label = field(1, 2, bytes([len(box)]) + box) + field(3, 0, b"\x02") + field(7, 0, b"\x09")
    context = field(1, 2, b"\x03abc")
    frame = field(1, 2, bytes([len(context)]) + context) + field(2, 0, b"\x96\x01") + \
        field(6, 2, bytes([len(label)]) + label)
    assert V1.frame_header(frame) == ("abc", 150)
    [parsed] = V1.frame_laser_labels(frame)
    assert parsed["box"] == [1.0, 2.0, 3.0, 4.5, 2.0, 1.5, 0.5]
    assert parsed["type"] == 2 and parsed["num_points"] == 9


# -- check: hints --------------------------------------------------------------------------
def _v2_layout(root: Path, splits: tuple[str, ...] = R.SPLITS) -> Path:
    """Empty component files in the v2 layout (check looks at names only)."""
    for split in splits:
        for comp in R.REQUIRED[split]:
            (root / split / comp).mkdir(parents=True)
            (root / split / comp / "seg_0.parquet").write_bytes(b"")
    return root


def test_check_hints_when_the_root_holds_v2(tmp_path: Path) -> None:
    _v2_layout(tmp_path / "waymo" / "v2")
    report = W.WaymoBuilder().check(tmp_path / "waymo")
    assert [(p.kind, Path(p.path).name) for p in report.problems] == [
        (MISSING_FOLDER, s) for s in R.SPLITS]
    assert report.hints == [(f"{tmp_path / 'waymo' / 'v2'} holds the v2 Parquet release "
                             f"(training/, validation/, testing/): use --root "
                             f"{tmp_path / 'waymo' / 'v2'}")]
    assert W.WaymoBuilder().check(tmp_path / "waymo" / "v2").ok
    split = W.WaymoBuilder().check(tmp_path / "waymo" / "v2" / "training")
    assert len(split.hints) == 1 and split.hints[0].endswith(
        f"use --root {tmp_path / 'waymo' / 'v2'}, the folder holding training/, validation/, "
        f"testing/")
    component = W.WaymoBuilder().check(tmp_path / "waymo" / "v2" / "training" / "lidar")
    assert component.hints == [(f"{tmp_path / 'waymo' / 'v2' / 'training' / 'lidar'} holds "
                                f"*.parquet files itself, so it is one component folder (like "
                                f"training/lidar/): use --root {tmp_path / 'waymo' / 'v2'}")]


def test_check_hints_for_v1_tfrecords(tmp_path: Path) -> None:
    root = tmp_path / "waymo_v1"
    (root / "validation").mkdir(parents=True)
    V1.write_records(root / "validation" / "segment-1_with_camera_labels.tfrecord", [b"x"])
    report = W.WaymoBuilder().check(root)
    assert not report.ok
    assert len(report.hints) == 1
    hint = report.hints[0]
    assert hint.startswith("1 Waymo v1 TFRecord file(s) found "
                           "(validation/segment-1_with_camera_labels.tfrecord): "
                           "`datasets prepare waymo` reads only the v2 Parquet release")
    assert "refbench.datasets.waymo.v1" in hint and "refbench evaluate waymo-3d" in hint
    assert "\n" not in hint


def test_check_hints_for_missing_splits_and_components(tmp_path: Path) -> None:
    root = _v2_layout(tmp_path / "v2", ("training",))
    (root / "training" / "lidar_box" / "seg_0.parquet").unlink()
    report = W.WaymoBuilder().check(root)
    assert len(report.problems) == 3
    assert report.hints[0].startswith("only training/ holds segments: prepare needs all of "
                                      "training/, validation/, testing/")
    assert report.hints[1].startswith("the v2 release is downloaded component by component")
