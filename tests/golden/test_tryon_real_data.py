"""Try-on builders and preprocessing on the real samples in ../shared/data (read there,
copied only into temporary folders): the authors' MPV3D example folder, PF-AFN's VITON
test pairs and VITON-HD test images with one complete HR-VITON sample.

Reference values are the authors' own files: M3D-VTON's `palm-mask/` (recomputed here
pixel for pixel), `image-sobel/` (written by matplotlib from OpenCV's Sobel: recomputed
here for 94-95 % of the pixels exactly and within 2 grey levels everywhere; the authors'
grey input evidently differs slightly from the PNG they ship) and `aligned/test_pairs/`
(their JPEGs of the pre-aligned garments)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refbench.datasets.tryon import MPV3DBuilder, VitonBuilder, VitonHDBuilder, preprocess, readers


@pytest.fixture(scope="module")
def mpv3d(shared_data: Path) -> Path:
    root = shared_data / "mpv3d" / "mpv3d_example"
    if not root.is_dir():
        pytest.skip(f"MPV3D example folder not found at {root}")
    return root


def _persons(root: Path) -> list[Path]:
    return sorted((root / "image").glob("*.png"))


def test_mpv3d_example_prepares(mpv3d: Path, tmp_path: Path) -> None:
    builder = MPV3DBuilder()
    report = builder.check(mpv3d)
    assert report.ok and "camera.txt" in report.found
    manifest = builder.prepare(mpv3d, tmp_path / "cache")
    assert manifest["splits"]["unpaired"] == {"train": 0, "test": 2}
    rows = builder.load("test", config="unpaired", cache=tmp_path / "cache")
    assert rows["pair_id"] == ["ZX121DA0E-Q11@6=person_whole_front",
                               "BJ721E05W-J11@9=person_whole_front"]
    row = rows[1]
    assert np.asarray(row["depth_front"]).shape == (512, 320) and row["derived"] == []
    assert np.asarray(row["pose"]).shape == (25, 3) and not row["paired"]


def test_mpv3d_palm_masks_equal_the_authors(mpv3d: Path) -> None:
    for person in _persons(mpv3d):
        parse = readers.read_parse(mpv3d / "image-parse" / person.name.replace(".png", "_label.png"))
        pose = readers.read_pose(mpv3d / "pose" / person.name.replace(".png", "_keypoints.json"), 25)
        ours = preprocess.palm_mask(parse, pose)
        theirs = readers.read_mask(mpv3d / "palm-mask" /
                                   person.name.replace("whole_front.png", "palm_mask.png"))
        assert ours.sum() > 500 and np.array_equal(ours, theirs)


def test_mpv3d_sobel_images_match_the_authors(mpv3d: Path) -> None:
    for person in _persons(mpv3d):
        ours = preprocess.sobel_images(readers.read_rgb(person))
        for axis in ("x", "y"):
            file = mpv3d / "image-sobel" / person.name.replace(".png", f"_sobel{axis}.png")
            theirs = np.asarray(Image.open(file).convert("L")).astype(int)
            diff = np.abs(ours[axis].astype(int) - theirs)
            assert diff.max() <= 2 and (diff == 0).mean() > 0.94, (file.name, (diff == 0).mean())


def test_mpv3d_prealignment_matches_the_authors(mpv3d: Path) -> None:
    """BJ721E05W's garment mask is the authors' pixel for pixel; ZX121DA0E's is placed at
    the same corner but 2 pixels smaller in both directions in their file (made, it seems,
    from slightly different inputs than the ones shipped), IoU 0.954."""
    ious = []
    for line in readers.read_pairs(mpv3d / "test_pairs.txt"):
        parse = readers.read_parse(mpv3d / "image-parse" / line.person.replace(".png", "_label.png"))
        mask_name = line.cloth.replace(".jpg", "_mask.jpg")
        with Image.open(mpv3d / "cloth" / line.cloth) as c, \
                Image.open(mpv3d / "cloth-mask" / mask_name) as m:
            aligned, mask = preprocess.prealign_cloth(c, m, parse)
        theirs = readers.read_rgb(mpv3d / "aligned" / "test_pairs" / "cloth" / line.cloth)
        theirs_mask = readers.read_mask(mpv3d / "aligned" / "test_pairs" / "cloth-mask" / mask_name)
        ours_mask = np.asarray(mask) >= readers.MASK_THRESHOLD
        iou = (ours_mask & theirs_mask).sum() / (ours_mask | theirs_mask).sum()
        ious.append(iou)
        assert np.argwhere(ours_mask).min(axis=0).tolist() == \
            np.argwhere(theirs_mask).min(axis=0).tolist()
        assert np.abs(np.asarray(aligned, dtype=int) - theirs).mean() < 6.0  # JPEG noise
    assert max(ious) == 1.0 and min(ious) > 0.95


def test_mpv3d_depth_convention_on_real_maps(mpv3d: Path) -> None:
    """The loader's mapping: front `-(2d-1)` where d > 0; back mirrored left-right, then
    `2d-1`. Mirroring makes the back silhouette coincide with the front one."""
    assert readers.read_camera(mpv3d / "camera.txt") == readers.EXPECTED_CAMERA
    for person in _persons(mpv3d):
        front = readers.read_depth(mpv3d / "depth" / person.name.replace(".png", "_depth.npy"))
        back = readers.read_depth(mpv3d / "depth" / person.name.replace("front.png", "back_depth.npy"))
        mirrored = np.flip(back, axis=1)
        fm, bm = front > 0, mirrored > 0
        assert (fm & bm).sum() / (fm | bm).sum() > 0.97
        assert (fm & (back > 0)).sum() / (fm | (back > 0)).sum() < (fm & bm).sum() / (fm | bm).sum()
        world_front = -(2 * front - 1) * fm
        world_back = (2 * mirrored - 1) * bm
        both = fm & bm
        assert (world_front[both] > world_back[both]).mean() > 0.99  # front lies in front


def test_viton_pfafn_test_pairs(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "viton" / "PF-AFN_test"
    if not root.is_dir():
        pytest.skip(f"VITON sample not found at {root}")
    builder = VitonBuilder()
    assert builder.check(root).ok
    builder.prepare(root, tmp_path / "cache")
    rows = builder.load("test", config="unpaired", cache=tmp_path / "cache")
    assert rows["pair_id"] == ["000066_0", "016962_0", "004912_0", "005510_0", "014834_0",
                               "015794_0"]
    assert rows["cloth_id"][0] == "017575_1.jpg" and rows[0]["pose"] is None
    raw = np.asarray(Image.open(root / "dataset" / "test_edge" / "017575_1.jpg"))
    stored = np.asarray(Image.open(io.BytesIO(rows[0]["cloth_mask"]["bytes"])))
    assert len(np.unique(raw)) > 2 and np.array_equal(stored > 0, raw >= 128)
    assert (rows[0]["height"], rows[0]["width"]) == (256, 192)


@pytest.fixture(scope="module")
def viton_hd(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = shared_data / "viton-hd"
    if not (source / "test" / "image" / "00006_00.jpg").is_file():
        pytest.skip(f"VITON-HD sample not found at {source}")
    root = tmp_path_factory.mktemp("vitonhd") / "viton-hd"
    shutil.copytree(source, root)
    persons = sorted(p.name for p in (root / "test" / "image").iterdir() if p.name != "00006_00.jpg")
    clothes = sorted(p.name for p in (root / "test" / "cloth").iterdir()
                     if p.name not in ("00006_00.jpg", "06396_00.jpg"))
    listed = (root / "test_pairs_00006_00.txt").read_text()
    (root / "test_pairs.txt").write_text(listed + "\n" + "".join(
        f"{p} {c}\n" for p, c in zip(persons, clothes)))
    return root


def test_viton_hd_complete_sample(viton_hd: Path, tmp_path: Path) -> None:
    builder = VitonHDBuilder()
    report = builder.check(viton_hd)
    assert report.ok, report.problems
    builder.prepare(viton_hd, tmp_path / "cache")
    rows = builder.load("test", config="unpaired", cache=tmp_path / "cache")
    assert len(rows) == 6 and rows[0]["pair_id"] == "00006_00_06396_00"
    full = rows[0]
    assert (full["height"], full["width"]) == (1024, 768)
    assert np.asarray(full["pose"]).shape == (25, 3)  # VITON-HD's JSON is BODY_25, not COCO-18
    parse = np.asarray(Image.open(io.BytesIO(full["parse"]["bytes"])))
    assert set(np.unique(parse)) == {0, 2, 5, 9, 10, 13, 14, 15}
    for name in ("parse_agnostic", "densepose", "pose_image", "cloth_mask"):
        assert full[name] is not None, name
    mask = np.asarray(Image.open(io.BytesIO(full["cloth_mask"]["bytes"])))
    raw = np.asarray(Image.open(viton_hd / "test" / "cloth-mask" / "06396_00.jpg"))
    assert np.array_equal(mask > 0, raw >= 128) and len(np.unique(raw)) > 2
    bare = rows[1]  # IDM-VTON's demo persons: image and cloth only
    assert bare["parse"] is None and bare["pose"] is None and bare["cloth_mask"] is None
    paired = builder.load("test", config="paired", cache=tmp_path / "cache")
    assert paired["pair_id"] == ["00006_00_00006_00"]


def test_viton_hd_perfect_results_score_one(viton_hd: Path, tmp_path: Path) -> None:
    from refbench.benchmarks.formats.tryon import TryOnResultsFormat
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.registry import get_spec

    spec, fmt = get_spec("vitonhd-tryon"), TryOnResultsFormat()
    fmt.write(tmp_path / "res", fmt.perfect_predictions(fmt.read_references(viton_hd, spec)), spec)
    result = evaluate_file(spec, tmp_path / "res", viton_hd)
    assert result.metrics["SSIM"] == pytest.approx(1.0)
    assert result.counts["resolution/height"] == 1024
