"""VITON-HD's cloth-agnostic derivations, the chunked resumable prepare and the unpaired
FID/KID benchmarks."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refbench.datasets.tryon import VitonHDBuilder, agnostic, readers
from refbench.datasets.tryon import builder as tryon_builder
from refbench.errors import RefbenchError


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return VitonHDBuilder().synthesize(tmp_path_factory.mktemp("vhd") / "src", n=12, seed=3)


def _copy(release: Path, tmp_path: Path) -> Path:
    root = tmp_path / "release"
    shutil.copytree(release, root)
    return root


def _body(width: int = 768, height: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """A parse with every label the derivations touch, and a BODY_25 pose on it."""
    s = width / 768
    parse = np.zeros((height, width), np.uint8)
    parse[int(100 * s):int(250 * s), int(300 * s):int(460 * s)] = 13   # face
    parse[int(250 * s):int(300 * s), int(340 * s):int(420 * s)] = 10   # neck
    parse[int(300 * s):int(600 * s), int(250 * s):int(510 * s)] = 5    # upper clothes
    parse[int(300 * s):int(900 * s), int(150 * s):int(250 * s)] = 15   # right arm (image left)
    parse[int(300 * s):int(900 * s), int(510 * s):int(610 * s)] = 14   # left arm
    parse[int(600 * s):, int(250 * s):int(510 * s)] = 9                # pants
    pose = np.zeros((25, 3))
    joints = {1: (380, 290), 2: (250, 310), 3: (200, 600), 4: (200, 850), 5: (510, 310),
              6: (560, 600), 7: (560, 850), 9: (300, 620), 12: (460, 620)}
    for index, (x, y) in joints.items():
        pose[index] = (x * s, y * s, 0.9)
    return parse, pose


def test_official_radii_are_pinned() -> None:
    assert (agnostic.PARSE_RADIUS, agnostic.VITON_HD_IMAGE_RADIUS) == (10, 20)
    assert agnostic.OFFICIAL_WIDTH == 768 and agnostic.GREY == (128, 128, 128)
    assert agnostic.UPPER_LABELS == (5, 6, 7) and agnostic.NECK_LABEL == 10
    assert agnostic.HEAD_LABELS == (4, 13) and agnostic.LOWER_LABELS == (9, 12, 16, 17, 18, 19)


def test_parse_agnostic_clears_garment_and_sleeves() -> None:
    parse, pose = _body()
    out = agnostic.parse_agnostic(parse, pose)
    assert not np.isin(out, (5, 10)).any()
    assert np.array_equal(out == 13, parse == 13) and np.array_equal(out == 9, parse == 9)
    # the right arm is cleared within 15 r = 150 px of the elbow, kept beyond the wrist disc
    assert out[600, 200] == 0 and parse[600, 200] == 15
    assert out[895, 160] == 15  # 45 px below the wrist, past the 4 r = 40 px disc
    # a missing elbow skips its segment and keeps the shoulder as the segment's start
    pose[3, :2] = 0
    skipped = agnostic.parse_agnostic(parse, pose)
    assert skipped[600, 160] == 15 and skipped[850, 200] == 0


def test_image_agnostic_conventions() -> None:
    parse, pose = _body()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=parse.shape + (3,), dtype=np.uint8)
    image[(image == 128).all(-1)] = 127
    for convention in agnostic.CONVENTIONS:
        out = agnostic.image_agnostic(image, parse, pose, convention)
        grey = (out == 128).all(-1)
        assert grey[450, 380] and grey[290, 380]  # torso and neck
        keep = np.isin(parse, agnostic.HEAD_LABELS + agnostic.LOWER_LABELS)
        assert np.array_equal(out[keep], image[keep])  # head and lower body pasted back
        assert not grey[10, 10]  # background untouched
    hr = agnostic.image_agnostic(image, parse, pose, "hrviton")
    vh = agnostic.image_agnostic(image, parse, pose, "viton_hd")
    assert not np.array_equal(hr, vh)
    with pytest.raises(RefbenchError, match="unknown agnostic convention"):
        agnostic.image_agnostic(image, parse, pose, "cp-vton")


def test_derivation_bad_input(tmp_path: Path) -> None:
    parse, pose = _body(192, 256)
    with pytest.raises(RefbenchError, match="needs the parse"):
        agnostic.require("agnostic parse", None, pose, tmp_path / "p.png")
    with pytest.raises(RefbenchError, match="unknown parse label"):
        agnostic.parse_agnostic(np.full((8, 8), 20, np.uint8), pose)
    with pytest.raises(RefbenchError, match="NaN"):
        agnostic.parse_agnostic(parse, np.full((25, 3), np.nan))
    with pytest.raises(RefbenchError, match="shape"):
        agnostic.parse_agnostic(parse, np.zeros((5, 3)))
    hipless = pose.copy()
    hipless[[9, 12], :2] = 0
    with pytest.raises(RefbenchError, match="hip"):
        agnostic.image_agnostic(np.zeros((256, 192, 3), np.uint8), parse, hipless)


def test_prepare_derives_agnostic_inputs(release: Path, tmp_path: Path) -> None:
    root = _copy(release, tmp_path)
    shutil.rmtree(root / "test" / "image-parse-agnostic-v3.2")
    builder = VitonHDBuilder()
    builder.prepare(root, tmp_path / "cache", options={"derive": "true"})
    rows = builder.load("test", config="unpaired", cache=tmp_path / "cache")
    row = rows[0]
    assert row["derived"] == ["parse_agnostic", "agnostic"]
    derived = np.asarray(Image.open(io.BytesIO(row["parse_agnostic"]["bytes"])))
    stem = row["person_id"][:-4]
    parse = readers.read_parse(root / "test" / "image-parse-v3" / f"{stem}.png")
    pose = readers.read_pose(root / "test" / "openpose_json" / f"{stem}_keypoints.json", 25)
    assert np.array_equal(derived, agnostic.parse_agnostic(parse, pose))
    image = np.asarray(Image.open(io.BytesIO(row["agnostic"]["bytes"])))
    assert image.shape == (row["height"], row["width"], 3)
    train = builder.load("train", config="unpaired", cache=tmp_path / "cache")
    assert train[0]["derived"] == ["agnostic"]  # its shipped agnostic parse is kept
    builder.prepare(root, tmp_path / "plain")  # derive is off by default
    assert builder.load("test", config="unpaired", cache=tmp_path / "plain")[0]["derived"] == []
    with pytest.raises(RefbenchError, match="unknown agnostic convention"):
        builder.prepare(root, tmp_path / "c2", options={"agnostic": "acgpn"})


@pytest.mark.parametrize("case", ["no pose file", "no people", "bad label"])
def test_derive_bad_input_is_one_line_and_writes_nothing(release: Path, tmp_path: Path,
                                                         case: str) -> None:
    root = _copy(release, tmp_path)
    shutil.rmtree(root / "test" / "image-parse-agnostic-v3.2")
    first = (root / "test_pairs.txt").read_text().split()[0][:-4]
    pose = root / "test" / "openpose_json" / f"{first}_keypoints.json"
    parse = root / "test" / "image-parse-v3" / f"{first}.png"
    if case == "no pose file":
        pose.unlink()
        expected = pose.name
    elif case == "no people":
        pose.write_text(json.dumps({"version": 1.3, "people": []}))
        expected = pose.name
    else:
        labels = np.asarray(Image.open(parse)).copy()
        labels[0, 0] = 23
        Image.fromarray(labels, "L").save(parse)
        expected = parse.name
    cache = tmp_path / "cache"
    with pytest.raises(RefbenchError) as info:
        VitonHDBuilder().prepare(root, cache, options={"derive": "true"})
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert not cache.exists() or not any(cache.rglob("*.arrow"))
    assert not any(p.name.startswith(".") for p in cache.rglob("*") if p.is_dir()) \
        if cache.exists() else True


def test_interrupted_prepare_resumes(release: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    builder = VitonHDBuilder()
    builder.chunk_size = 2
    real = tryon_builder.read_row
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tryon_builder, "read_row", flaky)
    with pytest.raises(KeyboardInterrupt):
        builder.prepare(release, tmp_path / "cache")
    work = builder.work_dir(release, tmp_path / "cache")
    assert len(list(work.rglob("done.json"))) == 3  # three finished chunks of two rows
    assert not (builder.cache_path(tmp_path / "cache") / "manifest.json").exists()
    monkeypatch.setattr(tryon_builder, "read_row", real)
    manifest = builder.prepare(release, tmp_path / "cache")
    assert manifest["rows_reused"] == 6 and manifest["chunk_size"] == 2
    assert not work.exists()
    fresh = VitonHDBuilder().prepare(release, tmp_path / "fresh")
    assert fresh["fingerprint"] == manifest["fingerprint"]
    assert fresh["splits"] == manifest["splits"] and fresh["rows_reused"] == 0
    a = builder.load("test", config="unpaired", cache=tmp_path / "cache")
    b = builder.load("test", config="unpaired", cache=tmp_path / "fresh")
    assert a["pair_id"] == b["pair_id"] and a["person"] == b["person"]


def test_mismatched_size_names_the_file(release: Path, tmp_path: Path) -> None:
    root = _copy(release, tmp_path)
    person = sorted((root / "test" / "image").iterdir())[-1]
    Image.open(person).resize((48, 64)).save(person)
    with pytest.raises(RefbenchError, match=person.name):
        VitonHDBuilder().prepare(root, tmp_path / "cache")
