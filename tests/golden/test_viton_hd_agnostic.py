"""HR-VITON's agnostic-parse derivation on the real VITON-HD test sample 00006_00 against the
`image-parse-agnostic-v3.2` file shipped with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refbench.datasets.tryon import agnostic, readers


@pytest.fixture(scope="module")
def sample(shared_data: Path) -> Path:
    test = shared_data / "viton-hd" / "test"
    if not (test / "image-parse-agnostic-v3.2" / "00006_00.png").is_file():
        pytest.skip(f"VITON-HD complete sample 00006_00 not found under {test}")
    return test


def test_parse_agnostic_agrees_with_the_shipped_file(sample: Path) -> None:
    parse = readers.read_parse(sample / "image-parse-v3" / "00006_00.png")
    shipped = readers.read_parse(sample / "image-parse-agnostic-v3.2" / "00006_00.png")
    pose = readers.read_pose(sample / "openpose_json" / "00006_00_keypoints.json", 25)
    derived = agnostic.parse_agnostic(parse, pose)
    differ = derived != shipped
    # identical everywhere but 2,102 right-arm (15) pixels below the wrist (y 883-924), which
    # the shipped file clears and the official code's 4 r = 40 px wrist disc around this
    # JSON's wrist (201.7, 856.3) does not reach: the shipped parse was made from another pose
    # (the fork regenerated its openpose files), not by another rule
    assert int(differ.sum()) == 2102
    assert np.all(parse[differ] == 15) and np.all(shipped[differ] == 0)
    ys = np.nonzero(differ)[0]
    assert ys.min() > pose[4, 1] + 4 * agnostic.PARSE_RADIUS - 15
    assert float((~differ).mean()) == pytest.approx(0.99733, abs=1e-5)
    assert set(np.unique(derived)) == set(np.unique(shipped)) == {0, 2, 9, 13, 14, 15}


def test_image_agnostic_on_the_real_sample(sample: Path) -> None:
    image = readers.read_rgb(sample / "image" / "00006_00.jpg")
    parse = readers.read_parse(sample / "image-parse-v3" / "00006_00.png")
    pose = readers.read_pose(sample / "openpose_json" / "00006_00_keypoints.json", 25)
    keep = np.isin(parse, agnostic.HEAD_LABELS + agnostic.LOWER_LABELS)
    for convention in agnostic.CONVENTIONS:
        out = agnostic.image_agnostic(image, parse, pose, convention)
        assert np.array_equal(out[keep], image[keep])
        grey = (out == 128).all(-1)
        assert grey[np.isin(parse, agnostic.UPPER_LABELS)].mean() > 0.99
