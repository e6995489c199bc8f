"""WAS-VTON on every release: BODY_25 poses (VITON-HD, MPV3D) mapped onto the COCO-18 order
of the pose maps by OpenPose's part names, other keypoint counts refused in one line, rows
resized to the model's size with their keypoints, and try-ons predicted back at the
release's size; the benchmarks the baselines accept and refuse."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from refbench.baselines.tryon.wasvton import inputs
from refbench.errors import RefbenchError

pytestmark = pytest.mark.usefixtures("one_thread")

#: OpenPose's output documentation (doc/02_output.md), POSE_BODY_25_BODY_PARTS and the COCO
#: model's parts, in index order
BODY_25_PARTS = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow",
                 "LWrist", "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle",
                 "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
                 "RSmallToe", "RHeel")
COCO_18_PARTS = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow",
                 "LWrist", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
                 "REar", "LEar")


def test_limits_pinned() -> None:
    from refbench.baselines.tryon.wasvton.baseline import SIZE_MULTIPLE

    assert (inputs.COCO_18, inputs.BODY_25) == (18, 25)
    assert (inputs.POSE_RADIUS, inputs.POSE_HEIGHT) == (5, 256)
    assert inputs.ASPECT_TOLERANCE == 0.02 and SIZE_MULTIPLE == 8
    assert inputs.MASKED_LABELS == (5, 6, 7, 10, 14, 15) and inputs.UPPER_CLOTHES == 5


def test_body25_to_coco18_follows_the_part_names() -> None:
    by_name = tuple(BODY_25_PARTS.index(part) for part in COCO_18_PARTS)
    assert inputs.COCO18_FROM_BODY25 == by_name
    assert inputs.COCO18_FROM_BODY25 == (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16,
                                         17, 18)
    dropped = set(range(25)) - set(inputs.COCO18_FROM_BODY25)
    assert {BODY_25_PARTS[i] for i in dropped} == {"MidHip", "LBigToe", "LSmallToe", "LHeel",
                                                  "RBigToe", "RSmallToe", "RHeel"}
    # the synthesizer writes its COCO-18 files with the same correspondence
    from refbench.datasets.tryon.synth import COCO_FROM_BODY25

    assert tuple(COCO_FROM_BODY25) == inputs.COCO18_FROM_BODY25
    pose = np.stack([np.arange(25), 100 + np.arange(25), np.ones(25)], 1).astype(np.float32)
    coco = inputs.to_coco18(pose, "p")
    assert coco.shape == (18, 3) and coco[8, 0] == 9 and coco[13, 0] == 14 and coco[17, 0] == 18
    same = inputs.to_coco18(coco, "p")
    assert np.array_equal(same, coco)


@pytest.mark.parametrize("shape", [(17, 3), (24, 3), (26, 3), (25, 2), (75,), (0, 3)])
def test_other_keypoint_counts_are_one_line_errors(shape: tuple[int, ...]) -> None:
    with pytest.raises(RefbenchError) as info:
        inputs.to_coco18(np.ones(shape, np.float32), "00006_00_00006_00")
    text = str(info.value)
    assert info.value.key == "pose" and "00006_00_00006_00" in text and "\n" not in text
    assert "COCO-18" in text and "BODY_25" in text


def test_nan_pose_is_refused() -> None:
    pose = np.ones((25, 3), np.float32)
    pose[3, 0] = np.nan
    with pytest.raises(RefbenchError) as info:
        inputs.to_coco18(pose, "p1")
    assert info.value.key == "pose" and "NaN" in str(info.value)


def test_scaled_keypoints_keep_presence() -> None:
    pose = np.array([[100.0, 200.0, 0.9], [0.0, 0.0, 0.0], [1.5, 300.0, 0.2], [1.0, 50.0, 0.5]],
                    np.float32)
    out = inputs.scale_pose(pose, 0.25, 0.5)
    assert out[0].tolist() == pytest.approx([50.0, 50.0, 0.9])
    assert out[1, :2].tolist() == [0, 0] and out[3, :2].tolist() == [0, 0]  # absent stays absent
    assert out[2, 0] == pytest.approx(1.01) and out[2, 0] > 1  # present stays present


@pytest.fixture(scope="module")
def vitonhd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from refbench.datasets.tryon import VitonHDBuilder

    base = tmp_path_factory.mktemp("vitonhd")
    root = VitonHDBuilder().synthesize(base / "src", n=8, seed=3)
    VitonHDBuilder().prepare(root, base / "cache", configs=["paired"])
    return root, str(base / "cache")


def _rows(cache: str, split: str = "test"):
    from refbench.datasets.base import load_prepared

    return load_prepared("viton_hd", split=split, config="paired", cache_dir=cache)


def test_decode_resizes_a_body25_row(vitonhd) -> None:
    from PIL import Image

    from refbench.baselines.tryon.wasvton.space import garment_category

    _, cache = vitonhd
    row = _rows(cache)[0]
    assert np.asarray(row["pose"]).shape == (25, 3) and (row["height"], row["width"]) == (128, 96)
    got = inputs.decode_pair(row, 64, 48)
    assert got["size"] == (128, 96) and got["person"].shape == (64, 48, 3)
    assert got["pose"].shape == (18, 64, 48) and got["parse"].shape == (64, 48)
    full_mask = np.asarray(Image.open(io.BytesIO(row["cloth_mask"]["bytes"]))) >= 128
    assert got["category"] == garment_category(full_mask)
    neck = np.asarray(row["pose"])[1]  # BODY_25 neck -> COCO slot 1, scaled by 1/2
    ys, xs = np.nonzero(got["pose"][1])
    assert abs(xs.mean() - neck[0] / 2) <= 1.0 and abs(ys.mean() - neck[1] / 2) <= 1.0
    assert set(np.unique(got["parse"])) <= set(np.unique(np.asarray(
        Image.open(io.BytesIO(row["parse"]["bytes"])))))
    native = inputs.decode_pair(row, 128, 96)
    assert native["size"] == (128, 96) and native["pose"].shape == (18, 128, 96)
    with pytest.raises(RefbenchError) as info:
        inputs.decode_pair(row, 64, 64)
    assert info.value.key == "model.height" and "aspect" in str(info.value)


def test_predictions_come_back_at_the_release_size(vitonhd, tmp_path: Path) -> None:
    from refbench.baselines.tryon.wasvton.baseline import WasVton
    from refbench.registry import get_spec

    _, cache = vitonhd
    spec = get_spec("vitonhd-tryon")
    rows = _rows(cache)
    model = WasVton.create({"height": 64, "width": 48, "channels": 4}, spec, _rows(cache, "train"),
                           tmp_path)
    model.eval()
    features = model.encode(rows)
    batch = model.collate([features[i] for i in range(len(features))])
    assert batch["agnostic"].shape[1:] == (22, 64, 48) and batch["sizes"][0] == (128, 96)
    preds = model.predict(batch)
    assert [p.id for p in preds] == rows["pair_id"]
    assert all(p.value.shape == (128, 96, 3) and p.value.dtype == np.uint8 for p in preds)


def test_benchmarks_accepted_and_refused() -> None:
    from refbench.baselines.tryon.wasvton.baseline import WasVton, WasVtonSupernet
    from refbench.registry import get_spec

    for name in ("viton-tryon", "vitonhd-tryon", "mpv3d-tryon"):
        assert WasVtonSupernet.validate_config({"height": 64, "width": 40}, get_spec(name))
    with pytest.raises(RefbenchError) as info:
        WasVton.validate_config({}, get_spec("mpv3d-tryon-depth"))
    assert info.value.key == "benchmark" and "tryon_depth" in str(info.value)
    for bad in ({"height": 60}, {"width": 44}, {"height": 24}):
        with pytest.raises(RefbenchError) as info:
            WasVton.validate_config(bad, get_spec("vitonhd-tryon"))
        assert info.value.key == "model.height"


def test_an_rgb_parse_is_refused_naming_the_pair(vitonhd) -> None:
    from PIL import Image

    _, cache = vitonhd
    row = dict(_rows(cache)[0])
    labels = np.asarray(Image.open(io.BytesIO(row["parse"]["bytes"])))
    buffer = io.BytesIO()
    Image.fromarray(np.stack([labels] * 3, -1)).save(buffer, format="PNG")
    row["parse"] = {"bytes": buffer.getvalue(), "path": None}
    with pytest.raises(RefbenchError) as info:
        inputs.decode_pair(row, 64, 48)
    assert info.value.key == "parse" and row["pair_id"] in str(info.value)
    assert "RGB-mode" in str(info.value)
