"""Image datasets on real files from ../shared/data (read in place, never copied into the
repository): Caffe's ILSVRC2012 val.txt / synsets.txt / synset_words.txt, the official
CIFAR-10 metadata of both formats, and 50 real CIFAR-10 test images as an ImageFolder tree.

Reference values: the ILSVRC2012 validation set has 50,000 images, 50 per class; its
first image is a sea snake (n01751748, label 65 in the sorted-wnid order, whose
ILSVRC2012_ID in the devkit is 490); CIFAR-10's batches hold 10,000 images each.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from refbench.datasets.cifar.batches import ROWS_PER_BATCH, load_pickle, read_name_lines
from refbench.datasets.cifar.synth import CIFAR10_NAMES
from refbench.datasets.images.imagefolder import ImageFolderBuilder
from refbench.datasets.imagenet.readers import (
    read_caffe_val,
    read_image_list,
    read_synset_words,
    read_synsets,
)


@pytest.fixture(scope="module")
def caffe(shared_data: Path) -> Path:
    folder = shared_data / "imagenet" / "ilsvrc12_caffe"
    if not (folder / "val.txt").is_file():
        pytest.skip(f"Caffe ILSVRC2012 files not found in {folder}")
    return folder


def test_caffe_synsets_are_the_standard_sorted_wnid_order(caffe: Path) -> None:
    synsets = read_synsets(caffe / "synsets.txt")
    assert len(synsets) == 1000 and synsets == sorted(synsets)
    words = read_synset_words(caffe / "synset_words.txt")
    assert list(words) == synsets and words["n01440764"] == "tench, Tinca tinca"


def test_caffe_val_labels(caffe: Path) -> None:
    synsets = read_synsets(caffe / "synsets.txt")
    rows = read_caffe_val(caffe / "val.txt", synsets)
    assert len(rows) == 50_000
    assert rows[0] == (1, "ILSVRC2012_val_00000001", "n01751748")
    assert sorted(synsets).index("n01751748") == 65
    counts = Counter(wnid for _, _, wnid in rows)
    assert len(counts) == 1000 and set(counts.values()) == {50}
    assert [key for _, key, _ in rows] == [f"ILSVRC2012_val_{i:08d}" for i in range(1, 50_001)]
    as_list = read_image_list(caffe / "val.txt", 1000)  # the same file as a `path label` list
    assert [e.label for e in as_list[:3]] == [65, 970, 230]


@pytest.fixture(scope="module")
def cifar(shared_data: Path) -> Path:
    folder = shared_data / "cifar10"
    if not (folder / "cifar-10-batches-py" / "batches.meta").is_file():
        pytest.skip(f"CIFAR-10 metadata not found in {folder}")
    return folder


def test_cifar10_metadata_of_both_formats(cifar: Path) -> None:
    meta = load_pickle(cifar / "cifar-10-batches-py" / "batches.meta")  # restricted unpickler
    assert meta == {"num_cases_per_batch": ROWS_PER_BATCH, "label_names": list(CIFAR10_NAMES),
                    "num_vis": 3072}
    names = read_name_lines(cifar / "cifar-10-batches-bin" / "batches.meta.txt", 10)
    assert names == list(CIFAR10_NAMES)


def test_real_cifar10_images_as_an_imagefolder(cifar: Path, tmp_path: Path) -> None:
    import torch

    from refbench.datasets.images.loader import ImageClassification, ImageTransform, \
        collate_images

    builder = ImageFolderBuilder()
    root = cifar / "imagefolder_jpg"
    assert builder.check(root).ok
    manifest = builder.prepare(root, tmp_path / "cache")
    assert manifest["splits"]["default"] == {"train": 0, "validation": 0, "test": 50}
    test = builder.load("test", cache=tmp_path / "cache")
    assert test.features["label"].names == list(CIFAR10_NAMES)  # sorted = CIFAR's order
    assert Counter(test["class_name"]) == {name: 5 for name in CIFAR10_NAMES}
    data = ImageClassification(test, ImageTransform(size=32, resize=32))
    batch = collate_images([data[i] for i in range(len(data))])
    assert batch["images"].shape == (50, 3, 32, 32) and data.skipped == 0
    assert torch.equal(batch["labels"], torch.tensor(test["label"]))
