"""The shared image schema, worker-side decoding, `imagefolder` and `digits`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from refbench.datasets.images.digits import DigitsBuilder, read_digits, split_of, to_grey
from refbench.datasets.images.imagefolder import ImageFolderBuilder
from refbench.datasets.images.loader import (
    ImageClassification,
    ImageTransform,
    Skipped,
    collate_images,
)
from refbench.datasets.images.schema import TRAILER_WINDOW, sniff_image
from refbench.errors import RefbenchError
from tests.helpers import run_cli


def _jpeg(size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_sniff_catches_empty_foreign_and_truncated_files(tmp_path: Path) -> None:
    assert TRAILER_WINDOW == 4096
    good = tmp_path / "a.JPEG"
    good.write_bytes(_jpeg())
    assert sniff_image(good) is None
    png_named_jpeg = tmp_path / "b.JPEG"  # ImageNet holds such a file: content decides
    from PIL import Image

    Image.new("RGB", (4, 4)).save(png_named_jpeg, format="PNG")
    assert sniff_image(png_named_jpeg) is None
    (tmp_path / "c.jpg").write_bytes(b"")
    assert sniff_image(tmp_path / "c.jpg") == "empty file (0 bytes)"
    (tmp_path / "d.jpg").write_bytes(b"<html>not found</html>")
    assert "not an image" in sniff_image(tmp_path / "d.jpg")
    (tmp_path / "e.jpg").write_bytes(_jpeg()[:-10])
    assert sniff_image(tmp_path / "e.jpg").startswith("truncated JPEG")


def test_transforms_follow_torchvision_definitions() -> None:
    from PIL import Image

    image = Image.new("RGB", (80, 50), (255, 0, 0))
    rng = np.random.default_rng(0)
    out = ImageTransform(size=32, resize=36)(image, rng)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.full((32, 32), (1 - 0.485) / 0.229))
    train = ImageTransform(size=16, train=True)
    for _ in range(50):
        top, left, h, w = train.crop_box(50, 80, rng)
        assert 0 <= top and top + h <= 50 and 0 <= left and left + w <= 80
        assert 0.08 * 4000 * 0.9 <= h * w <= 4000 and 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    assert train(image, rng).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="resize"):
        ImageTransform(size=32, resize=16)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return ImageFolderBuilder().synthesize(tmp_path / "src", n=40, seed=0)


def test_imagefolder_prepare_keeps_paths(folder: Path, tmp_path: Path) -> None:
    builder = ImageFolderBuilder()
    manifest = builder.prepare(folder, tmp_path / "cache")
    assert manifest["splits"]["default"] == {"train": 24, "validation": 8, "test": 8}
    ds = builder.load("val", cache=tmp_path / "cache")
    assert ds.features["label"].names == ["cross", "disc", "square", "triangle"]
    assert ds[0]["id"] == "val/cross/0003.png" and ds[0]["image"]["bytes"] is None
    size = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.arrow"))
    assert size < 20_000  # references, not the 40 PNG files


def test_workers_skip_and_count_corrupt_images(folder: Path, tmp_path: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    builder = ImageFolderBuilder()
    builder.prepare(folder, tmp_path / "cache")
    ds = builder.load("train", cache=tmp_path / "cache")
    (folder / "train" / "disc" / "0000.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (folder / "train" / "square" / "0001.png").unlink()
    data = ImageClassification(ds, ImageTransform(size=24, resize=28, train=True))
    loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=2,
                                         collate_fn=collate_images)
    batches = list(loader)
    assert sum(len(b["ids"]) for b in batches) == 22
    skipped = [i for b in batches for i in b["skipped_ids"]]
    assert sorted(skipped) == ["train/disc/0000.png", "train/square/0001.png"]
    assert data.skipped == 2  # summed over both worker processes
    err = capfd.readouterr().err
    assert "warning: skipped image train/disc/0000.png" in err
    assert all(b["images"].shape[1:] == (3, 24, 24) for b in batches)
    assert collate_images([Skipped("x", "bad")])["images"].shape[0] == 0


def test_imagefolder_bad_inputs(folder: Path, tmp_path: Path) -> None:
    bad = folder / "test" / "disc" / "0004.png"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(RefbenchError, match=r"0004.png: truncated PNG"):
        ImageFolderBuilder().prepare(folder, tmp_path / "cache")
    assert not (tmp_path / "cache" / "imagefolder" / "1.0").exists()
    assert run_cli(["datasets", "prepare", "imagefolder", "--root", str(folder),
                    "--cache-dir", str(tmp_path / "cache")]) == 2
    report = ImageFolderBuilder().check(folder)
    assert [p.kind for p in report.problems] == ["corrupt image"]
    bad.unlink()
    (folder / "val" / "empty").mkdir()
    with pytest.raises(RefbenchError, match="empty: class folder holds no image"):
        ImageFolderBuilder().prepare(folder, tmp_path / "cache")


def test_flat_tree_is_the_train_split(tmp_path: Path) -> None:
    for cls in ("b", "a"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        (tmp_path / "src" / cls / "x.jpg").write_bytes(_jpeg())
        (tmp_path / "src" / cls / "notes.txt").write_text("ignored")
    builder = ImageFolderBuilder()
    manifest = builder.prepare(tmp_path / "src", tmp_path / "cache")
    assert manifest["splits"]["default"] == {"train": 2, "validation": 0, "test": 0}
    assert builder.load("train", cache=tmp_path / "cache")["label"] == [0, 1]


def test_digits_are_scikit_learns_real_scans(tmp_path: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    builder = DigitsBuilder()
    root = builder.synthesize(tmp_path / "src")
    manifest = builder.prepare(root, tmp_path / "cache")
    assert manifest["splits"]["default"] == {"train": 1079, "validation": 359, "test": 359}
    reference = load_digits()
    test = builder.load("test", cache=tmp_path / "cache")
    assert test[0]["id"] == "00004" and split_of(4) == "test" and split_of(3) == "validation"
    for row in test.select(range(20)):
        i = int(row["id"])
        pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
        assert np.array_equal(pixels, to_grey(reference.images[i].astype(np.uint8)))
        assert row["label"] == reference.target[i]
    assert to_grey(np.array([0, 8, 16])).tolist() == [0, 128, 255]


@pytest.mark.parametrize("line, message", [
    ("0," * 64, "not a number"),
    ("0," * 63 + "0", "expected 65 comma-separated values, found 64"),
    ("0," * 63 + "17,3", "outside 0..16"),
    ("0," * 64 + "10", "digit label 10"),
    ("0," * 63 + "nan,1", "whole numbers"),
])
def test_digits_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "digits.csv"
    path.write_text("0," * 64 + "3\n" + line + "\n")
    with pytest.raises(RefbenchError, match=f"digits.csv:2: .*{message}"):
        read_digits(path)
