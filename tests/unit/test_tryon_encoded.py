"""Try-on references stay encoded until scored: same label-set hash and same scores as
decoded arrays, scoring in chunks equals scoring at once, and a corrupt reference is a
one-line error naming the pair."""

from __future__ import annotations

import io

import numpy as np
import pytest

from refbench.benchmarks.formats.tryon import HashedArray
from refbench.benchmarks.scoring import label_set_sha256
from refbench.errors import RefbenchError
from refbench.evaluation.tryon.images import EncodedImage, load_rgb
from refbench.evaluation.tryon.metrics import TryOnImage


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (24, 16, 3), dtype=np.uint8) for _ in range(n)]


def test_encoded_reference_hashes_and_decodes_like_the_array() -> None:
    refs = _images(3, 0)
    decoded = {f"p{i}": HashedArray(a, f"p{i}") for i, a in enumerate(refs)}
    encoded = {f"p{i}": EncodedImage(_png(a), f"p{i}") for i, a in enumerate(refs)}
    assert label_set_sha256(encoded) == label_set_sha256(decoded)
    assert np.array_equal(load_rgb(encoded["p1"]), refs[1])
    assert np.array_equal(np.asarray(encoded["p2"]), refs[2])


@pytest.mark.parametrize("batch_size", [1, 2, 50])
def test_chunked_update_equals_one_chunk(batch_size: int) -> None:
    refs, preds = _images(5, 1), _images(5, 2)
    whole = TryOnImage(ssim_convention="hrviton", batch_size=50)
    whole.update(preds, refs)
    chunked = TryOnImage(ssim_convention="hrviton", batch_size=batch_size)
    chunked.update(preds, [EncodedImage(_png(r), f"p{i}") for i, r in enumerate(refs)])
    assert chunked.compute() == pytest.approx(whole.compute(), abs=1e-12)
    assert chunked.counts()["pairs/scored"] == 5


def test_corrupt_encoded_reference_names_the_pair() -> None:
    bad = EncodedImage(_png(_images(1, 3)[0])[:40], "00006_00_00006_00")
    with pytest.raises(RefbenchError, match="00006_00_00006_00: cannot decode image") as info:
        TryOnImage(ssim_convention="hrviton").update(_images(1, 4), [bad])
    assert "\n" not in str(info.value)
