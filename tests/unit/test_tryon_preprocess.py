"""M3D-VTON's offline preprocessing: the script's constants and rules, on hand-made inputs
(the golden test compares with the authors' own outputs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refbench.datasets.tryon import MPV3DBuilder, preprocess
from refbench.errors import RefbenchError


def test_script_constants() -> None:
    assert preprocess.ALIGN_LABELS == (5, 14, 15)
    assert preprocess.LEFT_ARM_POINTS == (5, 6, 7) and preprocess.RIGHT_ARM_POINTS == (2, 3, 4)
    assert preprocess.CONFIDENCE == 0.1
    assert (preprocess.DILATION, preprocess.DILATION_HEIGHT) == (20, 512)


def test_sobel_matches_opencv_kernel() -> None:
    grey = np.zeros((9, 9), np.uint8)
    grey[:, 5:] = 10
    gx, gy = preprocess.sobel(grey, "x"), preprocess.sobel(grey, "y")
    # the 5x5 Sobel of a vertical step: (1+4+6+4+1) * (2*10 + 1*10) at the step's left
    assert gx[4, 4] == 16 * 30 and gx[4, 0] == 0 and np.all(gy == 0)
    levels = preprocess.grey_levels(np.array([[0.0, 0.5, 1.0]]))
    assert levels.tolist() == [[0, 127, 255]] or levels.tolist() == [[0, 128, 255]]


def _person(conf: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    parse = np.zeros((64, 40), np.uint8)
    parse[10:40, 30:33] = 14  # left arm (image right), narrower than the quadrilaterals
    pose = np.zeros((25, 3))  # float64, as json reads them
    pose[5], pose[6], pose[7] = (31, 10, conf), (31, 22, conf), (31, 32, conf)
    return parse, pose


def test_palm_is_the_arm_beyond_the_wrist() -> None:
    parse, pose = _person()
    palm = preprocess.palm_mask(parse, pose)
    assert not palm[:32].any() and palm[32:40, 30:33].all() and palm.sum() == 8 * 3


def test_unsure_keypoint_removes_the_palm() -> None:
    parse, pose = _person()
    pose[6, 2] = 0.1  # the script keeps a segment only when confidence > 0.1
    assert not preprocess.palm_mask(parse, pose).any()


def test_palm_needs_body25() -> None:
    with pytest.raises(RefbenchError, match="BODY_25"):
        preprocess.palm_mask(np.zeros((4, 4), np.uint8), np.zeros((18, 3), np.float32))


def test_prealign_fits_the_region() -> None:
    cloth = Image.fromarray(np.full((40, 40, 3), 200, np.uint8))
    mask_array = np.zeros((40, 40), np.uint8)
    mask_array[10:30, 10:30] = 255
    parse = np.zeros((64, 40), np.uint8)
    parse[20:41, 10:31] = 5
    aligned, mask = preprocess.prealign_cloth(cloth, Image.fromarray(mask_array), parse)
    rows, cols = np.nonzero(np.asarray(mask))
    # scale 20/19 (the script's boxes are max - min), offset int(9.47) = 9: rows 19..39
    assert aligned.size == (40, 64)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (19, 39, 10, 30)
    with pytest.raises(RefbenchError, match="empty"):
        preprocess.prealign_cloth(cloth, Image.fromarray(mask_array), np.zeros((64, 40), np.uint8))


def test_preprocess_release_writes_what_is_missing(tmp_path: Path) -> None:
    root = MPV3DBuilder().synthesize(tmp_path / "mpv3d", n=4, seed=0)
    shutil.rmtree(root / "image-sobel")
    shutil.rmtree(root / "aligned")
    counts = preprocess.preprocess_release(root, steps=("align", "sobel"))
    assert counts == {"align": 4 * 2, "sobel": 4 * 2}
    assert MPV3DBuilder().check(root).ok
    with pytest.raises(RefbenchError, match="unknown preprocessing step"):
        preprocess.preprocess_release(root, steps=("blur",))


def test_preprocess_release_writes_nothing_on_bad_input(tmp_path: Path) -> None:
    root = MPV3DBuilder().synthesize(tmp_path / "mpv3d", n=4, seed=0)
    shutil.rmtree(root / "image-sobel")
    bad = sorted((root / "image").iterdir())[-1]
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(RefbenchError, match="cannot decode"):
        preprocess.preprocess_release(root, steps=("sobel",))
    assert not (root / "image-sobel").exists()
