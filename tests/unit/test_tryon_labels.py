"""Parse label maps are read as stored ids, L or P mode (VITON-HD's parses are P mode):
the paste floor and M3D-VTON's inputs see label 5 as upper clothes, not a grey level."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from refbench.baselines.tryon.floors import paste_image
from refbench.baselines.tryon.labels import label_map
from refbench.errors import RefbenchError


def _png(labels: np.ndarray, mode: str) -> bytes:
    image = Image.fromarray(labels, mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, 200)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "P"])
def test_label_ids_are_the_stored_values(mode: str) -> None:
    labels = np.array([[0, 5, 5], [13, 14, 15]], dtype=np.uint8)
    row = {"pair_id": "a_b", "parse": {"bytes": _png(labels, mode)}}
    assert Image.open(io.BytesIO(row["parse"]["bytes"])).mode == mode
    assert np.array_equal(label_map(row), labels)
    person = np.full((2, 3, 3), 9, np.uint8)
    floor = paste_image(person, label_map(row), np.zeros_like(person), np.zeros((2, 3), bool))
    assert (floor[0, 1:] == 255).all() and (floor[0, 0] == 9).all()  # label 5 blanked


def test_rgb_or_missing_parse_is_one_line() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2)).save(buffer, format="PNG")
    with pytest.raises(RefbenchError, match="pair a_b: 'parse' is a RGB-mode image"):
        label_map({"pair_id": "a_b", "parse": {"bytes": buffer.getvalue()}})
    with pytest.raises(RefbenchError, match="pair a_b: no 'parse'"):
        label_map({"pair_id": "a_b", "parse": None})
    with pytest.raises(RefbenchError, match="cannot decode 'parse'"):
        label_map({"pair_id": "a_b", "parse": {"bytes": b"\x89PNG\r\n"}})
