"""Try-on builders on synthetic releases: schema, settings, the official limits (mask
threshold 128, LIP labels 0..19, BODY_25 / COCO-18 lengths, viewport depth in [0, 1]) and
one-line errors for bad input, with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refbench.datasets.tryon import MPV3DBuilder, VitonBuilder, VitonHDBuilder, readers
from refbench.errors import RefbenchError


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tryon")
    return {cls.name: cls().synthesize(base / cls.name, n=8, seed=3)
            for cls in (MPV3DBuilder, VitonBuilder, VitonHDBuilder)}


def _copy(releases: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(releases[name], tmp_path / name))


@pytest.mark.parametrize("cls", [MPV3DBuilder, VitonBuilder, VitonHDBuilder])
def test_rows_schema_and_settings(cls, releases, tmp_path) -> None:
    builder = cls()
    root = releases[builder.name]
    assert builder.check(root).ok
    data = builder.generate(root, "paired")
    unpaired = builder.generate(root, "unpaired")
    assert len(data["train"]) == 6 and len(data["test"]) == 2
    assert all(data["test"]["paired"]) and not any(unpaired["test"]["paired"])
    row = data["test"][0]
    points = 18 if builder.name == "viton" else 25
    assert np.asarray(row["pose"]).shape == (points, 3)
    mask = np.asarray(Image.open(__import__("io").BytesIO(row["cloth_mask"]["bytes"])))
    assert set(np.unique(mask)) <= {0, 255}
    assert (builder.name == "mpv3d") == ("depth_front" in data["test"].features)
    assert len(set(unpaired["test"]["pair_id"])) == len(unpaired["test"])


def test_pair_ids_follow_the_official_result_names(releases) -> None:
    hd = VitonHDBuilder().generate(releases["viton_hd"], "unpaired")["test"][0]
    assert hd["pair_id"] == f"{hd['person_id'][:-4]}_{hd['cloth_id'][:-4]}"
    mpv = MPV3DBuilder().generate(releases["mpv3d"], "paired")["test"][0]
    assert mpv["pair_id"] == mpv["person_id"][:-4] and mpv["pair_id"].endswith("front")


def test_mask_threshold_is_128(tmp_path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[127, 128, 255, 0]], np.uint8)).save(path)
    assert readers.read_mask(path).tolist() == [[False, True, True, False]]


def test_parse_labels_limit_is_19(tmp_path) -> None:
    path = tmp_path / "p.png"
    Image.fromarray(np.array([[0, 19]], np.uint8)).save(path)
    assert readers.read_parse(path).max() == 19
    Image.fromarray(np.array([[0, 20]], np.uint8)).save(path)
    with pytest.raises(RefbenchError, match=r"p\.png.*unknown parse label\(s\) 20"):
        readers.read_parse(path)


def test_pose_lengths_and_empty_people(tmp_path) -> None:
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 75}]}))
    assert readers.read_pose(path, 25).shape == (25, 3)
    with pytest.raises(RefbenchError, match="expected 54 values"):
        readers.read_pose(path, 18)
    path.write_text(json.dumps({"people": []}))
    with pytest.raises(RefbenchError, match=r"k\.json: OpenPose found no person"):
        readers.read_pose(path, 25)


def test_depth_limits(tmp_path) -> None:
    path = tmp_path / "d.npy"
    np.save(path, np.array([[0.0, 1.0]], np.float32))
    assert readers.read_depth(path, (1, 2)).dtype == np.float32
    np.save(path, np.array([[0.0, 1.01]], np.float32))
    with pytest.raises(RefbenchError, match=r"must lie in \[0, 1\]"):
        readers.read_depth(path)
    np.save(path, np.array([[np.nan, 0.5]], np.float32))
    with pytest.raises(RefbenchError, match="d.npy: depth holds 1 NaN"):
        readers.read_depth(path)
    np.save(path, np.zeros((2, 2), np.float32))
    with pytest.raises(RefbenchError, match="is 2x2 .* is 1x2"):
        readers.read_depth(path, (1, 2))


def test_pairs_list_rules(tmp_path) -> None:
    path = tmp_path / "test_pairs.txt"
    path.write_text("a.jpg    b.jpg\nc.jpg d.jpg")  # tabs/spaces, no final newline
    assert [(p.person, p.cloth, p.line) for p in readers.read_pairs(path)] == [
        ("a.jpg", "b.jpg", 1), ("c.jpg", "d.jpg", 2)]
    path.write_text("a.jpg b.jpg\n\nc.jpg d.jpg\n")
    with pytest.raises(RefbenchError, match=r"test_pairs\.txt:2: .*blank line"):
        readers.read_pairs(path)


def _assert_fails_cleanly(builder, root: Path, cache: Path, pattern: str) -> None:
    with pytest.raises(RefbenchError, match=pattern) as info:
        builder.prepare(root, cache)
    assert "\n" not in str(info.value)
    assert not (cache / builder.name).exists() or not any(
        p.name == "manifest.json" for p in (cache / builder.name).rglob("*"))


def test_missing_member_and_size_mismatch(releases, tmp_path) -> None:
    root = _copy(releases, "viton_hd", tmp_path)
    person = next((root / "test" / "image").iterdir())
    cloth = root / "test" / "cloth" / person.name
    cloth.rename(tmp_path / "gone.jpg")
    _assert_fails_cleanly(VitonHDBuilder(), root, tmp_path / "c1",
                          r"test_pairs\.txt:\d+: the cloth image test/cloth/.* is missing")
    (tmp_path / "gone.jpg").rename(cloth)
    Image.open(cloth).resize((10, 10)).save(cloth)
    _assert_fails_cleanly(VitonHDBuilder(), root, tmp_path / "c2", r"is 10x10 \(WxH\) but")


def test_bad_depth_pose_and_parse_name_the_file(releases, tmp_path) -> None:
    root = _copy(releases, "mpv3d", tmp_path)
    depth = sorted((root / "depth").glob("*front_depth.npy"))[0]
    np.save(depth, np.full((3, 3), 0.5, np.float32))
    _assert_fails_cleanly(MPV3DBuilder(), root, tmp_path / "c1", f"{depth.name}: depth map is 3x3")
    shutil.copy(releases["mpv3d"] / "depth" / depth.name, depth)
    pose = sorted((root / "pose").glob("*.json"))[0]
    pose.write_text('{"version": 1.3, "people": []}')
    _assert_fails_cleanly(MPV3DBuilder(), root, tmp_path / "c2", f"{pose.name}: OpenPose found")


def test_camera_txt_is_checked(releases, tmp_path) -> None:
    root = _copy(releases, "mpv3d", tmp_path)
    camera = readers.read_camera(root / "camera.txt")
    assert camera == readers.EXPECTED_CAMERA
    (root / "camera.txt").write_text((root / "camera.txt").read_text().replace("zfar=3.0",
                                                                                 "zfar=4.0"))
    report = MPV3DBuilder().check(root)
    assert not report.ok and "differ" in report.problems[0].message


def test_derive_fills_missing_preprocessing(releases, tmp_path) -> None:
    root = _copy(releases, "mpv3d", tmp_path)
    shutil.rmtree(root / "image-sobel")
    shutil.rmtree(root / "aligned")
    builder = MPV3DBuilder()
    builder.set_options({"derive": "true"})
    row = builder.generate(root, "paired")["test"][0]
    assert {"sobel_x", "sobel_y", "aligned_cloth", "aligned_cloth_mask"} <= set(row["derived"])
    builder.set_options({"derive": "false"})
    row = builder.generate(root, "paired")["test"][0]
    assert row["sobel_x"] is None and row["derived"] == []


def test_a_misnamed_test_pairs_list_is_refused_once_with_the_near_miss(releases,
                                                                       tmp_path) -> None:
    root = _copy(releases, "viton_hd", tmp_path)
    (root / "test_pairs.txt").rename(root / "test_pairs_00006_00.txt")
    match = (r"test_pairs\.txt: pairs list not found \(found test_pairs_00006_00\.txt: a "
             r"pairs list must be named test_pairs\.txt\)")
    _assert_fails_cleanly(VitonHDBuilder(), root, tmp_path / "c", match)
    problems = VitonHDBuilder().check(root).problems
    assert len(problems) == 1 and "found test_pairs_00006_00.txt" in problems[0].message
