"""WAS-VTON on the real VITON-HD test sample 00006_00 (1024 x 768, OpenPose BODY_25 JSON,
LIP parse, a grey-level JPEG garment mask): the row decodes at the model's size with its
BODY_25 keypoints mapped onto COCO-18, one prediction runs, comes back at 1024 x 768 and is
scored by `vitonhd-tryon` against the release folder, as `refbench evaluate --references`
does; the box-aligned paste floor is scored the same way. Skips without the sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
PERSON = "00006_00"


@pytest.fixture(scope="module")
def release(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from refbench.datasets.tryon import VitonHDBuilder

    source = shared_data / "viton-hd"
    if not (source / "test" / "openpose_json" / f"{PERSON}_keypoints.json").is_file():
        pytest.skip(f"VITON-HD sample {PERSON} not found under {source}")
    base = tmp_path_factory.mktemp("wasvton_vitonhd")
    root = base / "viton-hd"
    shutil.copytree(source, root)
    (root / "test_pairs.txt").write_text((root / f"test_pairs_{PERSON}.txt").read_text())
    VitonHDBuilder().prepare(root, base / "cache", configs=["paired"])
    return root, str(base / "cache")


def _rows(cache: str):
    from refbench.datasets.base import load_prepared

    return load_prepared("viton_hd", split="test", config="paired", cache_dir=cache)


def test_real_body25_pose_lands_on_the_coco_maps(release, shared_data: Path) -> None:
    from refbench.baselines.tryon.wasvton import inputs, space

    _, cache = release
    row = _rows(cache)[0]
    assert row["pair_id"] == f"{PERSON}_{PERSON}" and (row["height"], row["width"]) == (1024, 768)
    people = json.loads((shared_data / "viton-hd" / "test" / "openpose_json" /
                         f"{PERSON}_keypoints.json").read_text())["people"]
    raw = np.asarray(people[0]["pose_keypoints_2d"], np.float32).reshape(25, 3)
    assert np.allclose(np.asarray(row["pose"]), raw)
    got = inputs.decode_pair(row, 256, 192)
    for coco, body25 in ((1, 1), (8, 9), (11, 12)):  # neck, right hip, left hip
        x, y, _ = raw[body25]
        assert x > 1 and y > 1
        ys, xs = np.nonzero(got["pose"][coco])
        assert abs(xs.mean() - x / 4) <= 1.0 and abs(ys.mean() - y / 4) <= 1.0, coco
    assert got["category"] in space.CATEGORIES and got["size"] == (1024, 768)
    # its parse is a P-mode PNG: the label ids are read, not the palette's grey levels
    labels = set(np.unique(inputs.decode_pair(row, 1024, 768)["parse"]).tolist())
    assert labels == {0, 2, 5, 9, 10, 13, 14, 15}
    assert 5 in set(np.unique(got["parse"]).tolist()) <= labels


def test_one_real_prediction_is_scored_at_the_release_size(release, tmp_path: Path) -> None:
    from refbench.baselines.tryon.wasvton.baseline import WasVton, paste_floor
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.registry import get_spec
    from refbench.runner import write_predictions

    root, cache = release
    spec = get_spec("vitonhd-tryon")
    rows = _rows(cache)
    model = WasVton.create({"height": 64, "width": 48, "channels": 4}, spec, rows, tmp_path)
    model.eval()
    features = model.encode(rows)
    preds = model.predict(model.collate([features[0]]))
    assert len(preds) == 1 and preds[0].value.shape == (1024, 768, 3)
    path = write_predictions(spec, {p.id: p.value for p in preds}, tmp_path / "tryon")
    result = evaluate_file(spec, path, references=root)
    assert 0 < result.metrics["SSIM"] < 1 and result.counts["resolution/height"] == 1024
    floor = evaluate_file(spec, write_predictions(spec, paste_floor(rows), tmp_path / "floor"),
                          references=root)
    assert 0 < floor.metrics["SSIM"] < 1
