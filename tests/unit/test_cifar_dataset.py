"""CIFAR-10/100: both official formats, restricted unpickling, shape and label checks."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from refbench.datasets.cifar import Cifar10Builder, Cifar100Builder
from refbench.datasets.cifar.batches import (
    CIFAR100_TRAIN_ROWS,
    PIXELS,
    ROWS_PER_BATCH,
    load_pickle,
    py2_pickle,
)
from refbench.errors import RefbenchError


def test_official_limits_are_pinned() -> None:
    assert PIXELS == 3072 and ROWS_PER_BATCH == 10_000 and CIFAR100_TRAIN_ROWS == 50_000
    assert Cifar10Builder.variant.classes == 10 and Cifar100Builder.variant.classes == 100
    assert Cifar100Builder.variant.coarse == 20


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cifar10")
    root = Cifar10Builder().synthesize(base / "src", n=60, seed=0)
    Cifar10Builder().prepare(root, base / "cache")
    return root, base / "cache"


def test_prepared_rows_hold_the_exact_official_pixels(cifar10: tuple[Path, Path]) -> None:
    from PIL import Image

    root, cache = cifar10
    batch = load_pickle(root / "cifar-10-batches-py" / "data_batch_2")
    ds = Cifar10Builder().load("train", cache=cache)
    assert len(ds) == 50 and ds[10]["id"] == "data_batch_2/00000"
    row = ds[10]
    pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
    assert pixels.shape == (32, 32, 3)
    assert np.array_equal(pixels.transpose(2, 0, 1).reshape(-1), batch["data"][0])
    assert row["label"] == batch["labels"][0] and row["filename"] == batch["filenames"][0]
    assert row["class_name"] == ds.features["label"].names[row["label"]]


def test_binary_format_reads_like_the_python_one(cifar10: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    root, cache = cifar10
    names = load_pickle(root / "cifar-10-batches-py" / "batches.meta")["label_names"]
    out = tmp_path / "cifar-10-batches-bin"
    out.mkdir()
    (out / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = load_pickle(root / "cifar-10-batches-py" / name)
        labels = np.asarray(batch["labels"], np.uint8)[:, None]
        (out / f"{name}.bin").write_bytes(np.hstack([labels, batch["data"]]).tobytes())
    Cifar10Builder().prepare(tmp_path, tmp_path / "cache")
    binary = Cifar10Builder().load("test", cache=tmp_path / "cache")
    python = Cifar10Builder().load("test", cache=cache)
    assert binary["id"] == python["id"] and binary["label"] == python["label"]
    assert [r["bytes"] for r in binary["image"]] == [r["bytes"] for r in python["image"]]
    (out / "test_batch.bin").write_bytes((out / "test_batch.bin").read_bytes()[:-5])
    with pytest.raises(RefbenchError, match="test_batch.bin: .*whole number of 3073-byte"):
        Cifar10Builder().prepare(tmp_path, tmp_path / "cache2")


def _rewrite(root: Path, name: str, **changes: object) -> Path:
    path = root / "cifar-10-batches-py" / name
    batch = load_pickle(path)
    batch.update(changes)
    path.write_bytes(py2_pickle(batch))
    return path


@pytest.mark.parametrize("change, message", [
    ({"data": np.zeros((10, 3071), np.uint8)}, r"data must be a uint8 array \(rows, 3072\)"),
    ({"data": np.zeros((9, 3072), np.uint8)}, r"data has shape \(9, 3072\), expected \(10, 3072\)"),
    ({"labels": [10] * 10}, r"label 10 of row 0 is not in 0..9"),
    ({"labels": [1] * 9}, "9 labels for 10 images"),
])
def test_bad_batches_are_one_line_errors_and_nothing_is_written(
        tmp_path: Path, change: dict, message: str) -> None:
    root = Cifar10Builder().synthesize(tmp_path / "src", n=60, seed=1)
    path = _rewrite(root, "data_batch_3", **change)
    with pytest.raises(RefbenchError, match=message) as info:
        Cifar10Builder().prepare(root, tmp_path / "cache")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "cache" / "cifar10").exists() or \
        not any((tmp_path / "cache" / "cifar10").iterdir())
    assert not Cifar10Builder().check(root).ok


def test_truncated_and_malicious_pickles_are_refused(tmp_path: Path) -> None:
    root = Cifar10Builder().synthesize(tmp_path / "src", n=60, seed=1)
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(RefbenchError, match="not a complete CIFAR pickle"):
        Cifar10Builder().prepare(root, tmp_path / "cache")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    path.write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(RefbenchError, match="refused to unpickle"):
        Cifar10Builder().prepare(root, tmp_path / "cache")
    assert not marker.exists()


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    builder = Cifar100Builder()
    root = builder.synthesize(tmp_path / "src", n=120, seed=0)
    builder.prepare(root, tmp_path / "cache")
    ds = builder.load("train", cache=tmp_path / "cache")
    assert len(ds) == 100 and ds.features["coarse_label"].num_classes == 20
    assert all(c == f // 5 for f, c in zip(ds["label"], ds["coarse_label"]))
    path = root / "cifar-100-python" / "train"
    batch = load_pickle(path)
    shared = set(load_pickle(root / "cifar-100-python" / "test")["fine_labels"])
    row = next(i for i, f in enumerate(batch["fine_labels"]) if f in shared)
    batch["coarse_labels"][row] = (batch["coarse_labels"][row] + 1) % 20
    path.write_bytes(py2_pickle(batch))
    with pytest.raises(RefbenchError, match=r"fine label \d+ of row \d+ has coarse label"):
        builder.prepare(root, tmp_path / "cache2")


def _pooled(data: np.ndarray) -> np.ndarray:
    """(rows, 3072) -> 4x4-pooled (rows, 3 * 8 * 8) features in 0-1."""
    images = data.reshape(-1, 3, 8, 4, 8, 4).astype(np.float32) / 255
    return images.mean(axis=(3, 5)).reshape(len(data), -1)


def test_synthetic_cifar_is_learnable(tmp_path: Path) -> None:
    """A linear model on 500 synthetic training images (4x4-pooled pixels) is far above
    chance (10%) on the 100 test images."""
    from sklearn.linear_model import LogisticRegression

    root = Cifar10Builder().synthesize(tmp_path, n=600, seed=3)
    folder = root / "cifar-10-batches-py"
    train = [load_pickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    x = _pooled(np.concatenate([b["data"] for b in train]))
    y = np.concatenate([b["labels"] for b in train])
    test = load_pickle(folder / "test_batch")
    model = LogisticRegression(max_iter=500).fit(x, y)
    accuracy = model.score(_pooled(test["data"]), test["labels"])
    assert accuracy > 0.5, accuracy
