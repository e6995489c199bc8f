"""`ade20k`: the ADE20K SceneParsing release (MIT Scene Parsing Benchmark, 150 classes).

```
ROOT/ADEChallengeData2016/images/training/ADE_train_00000001.jpg        (20,210 images)
ROOT/ADEChallengeData2016/images/validation/ADE_val_00000001.jpg        (2,000 images)
ROOT/ADEChallengeData2016/annotations/{training,validation}/ADE_*.png   (one per image)
```

(ROOT may also be the `ADEChallengeData2016` folder itself.) Annotations are 8-bit
single-channel PNGs of the image's size: 0 = "other" (not scored), 1..150 the classes of
`objectInfo150.txt`; the metric reduces the zero label as mmseg configures ADE20K. Ids
are the image stems (`ADE_val_00000001`), the names the challenge's submission PNGs take.
Splits `train` (training) and `validation` (validation); the unlabelled `release_test`
is a separate download and not read here.

Refused with one line naming the file: an image without its annotation or an
annotation without its image, a size mismatch, a colour (RGB) annotation, an unreadable
image; `check` also decodes every annotation and reports labels outside 0..150.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from refbench.datasets.base import MISSING_FOLDER, CheckReport
from refbench.datasets.images.ondisk import OnDiskImageBuilder
from refbench.datasets.segmentation import common
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

RELEASE = "ADEChallengeData2016"
FOLDERS = {"train": "training", "validation": "validation"}
NUM_CLASSES = 150
#: label values an annotation may hold: 0 ("other") and the 150 classes
LABELS = np.arange(NUM_CLASSES + 1)


def release_root(root: Path) -> Path:
    """The folder holding images/ and annotations/: ROOT/ADEChallengeData2016 or ROOT."""
    root = Path(root)
    return root / RELEASE if (root / RELEASE).is_dir() else root


def pairs(root: Path, split: str) -> list[tuple[str, Path, Path]]:
    """(id, image, annotation) of a split, sorted by id; unpaired files are refused."""
    base = release_root(root)
    images_dir, labels_dir = base / "images" / FOLDERS[split], base / "annotations" / FOLDERS[split]
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise RefbenchError(f"{FOLDERS[split]} folder not found (expected "
                                f"{RELEASE}/{{images,annotations}}/{FOLDERS[split]}/)", path=folder)
    images = {p.stem: p for p in sorted(images_dir.glob("*.jpg")) if p.is_file()}
    labels = {p.stem: p for p in sorted(labels_dir.glob("*.png")) if p.is_file()}
    for key, path in images.items():
        if key not in labels:
            raise RefbenchError(f"image has no annotation {key}.png", path=path)
    for key, path in labels.items():
        if key not in images:
            raise RefbenchError(f"annotation has no image {key}.jpg", path=path)
    return [(key, images[key], labels[key]) for key in sorted(images)]


@DATASETS.register("ade20k")
class ADE20KBuilder(OnDiskImageBuilder):
    """ADE20K SceneParsing (config `default`; splits train, validation)."""

    name = "ade20k"
    version = "2016"
    license = ("images: see the ADE20K terms of use (research only); annotations BSD-3 "
               "(MIT CSAIL)")
    citation = ("Zhou et al., Scene Parsing through ADE20K Dataset, CVPR 2017; Zhou et al., "
                "Semantic Understanding of Scenes through the ADE20K Dataset, IJCV 2019")
    homepage = "http://sceneparsing.csail.mit.edu/"
    split_aliases: ClassVar[dict[str, str]] = {"training": "train", "val": "validation"}

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(FOLDERS)

    def layout(self) -> str:
        return (f"ROOT/{RELEASE}/images/{{training,validation}}/ADE_*.jpg\n"
                f"ROOT/{RELEASE}/annotations/{{training,validation}}/ADE_*.png "
                f"(0 = other, 1..{NUM_CLASSES} classes; one per image, same size)")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        base = release_root(root)
        for split, folder in FOLDERS.items():
            if not (base / "images" / folder).is_dir():
                report.add(base / "images" / folder, "folder not found", MISSING_FOLDER)
                continue
            try:
                found = pairs(root, split)
            except RefbenchError as exc:
                report.add(exc.path or base, exc.message, "unpaired file")
                continue
            report.found.append(f"{split}: {len(found):,} images with annotations")
            for _, image, label in found:
                try:
                    common.check_pair(image, label)
                    common.check_values(label, LABELS, f"an ADE20K label (0..{NUM_CLASSES})")
                except RefbenchError as exc:
                    report.add(exc.path or label, exc.message, "bad annotation")

    def source_files(self, root: Path, config: str) -> list[Path]:
        info = release_root(root) / "objectInfo150.txt"
        return [info] if info.is_file() else []

    def image_files(self, root: Path, config: str) -> list[Path]:
        return [p for split in FOLDERS for _, image, label in pairs(root, split)
                for p in (image, label)]

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        self.resolve_configs([config])
        out = {}
        for split in FOLDERS:
            rows = common.empty_rows()
            for key, image, label in pairs(Path(root), split):
                common.add_row(rows, key, image, label, "ade20k", common.check_pair(image, label))
            out[split] = common.to_dataset(rows, split)
        return out

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        """`n` JPEG scenes with PNG annotations (3/4 training, the rest validation, at
        least 2 each), 24x32: bands of 2-4 labels drawn from 0..15 (0 = other) whose colour
        per label is fixed, so a per-pixel model learns them."""
        root = Path(out)
        rng = np.random.default_rng(seed)
        colours = common.class_colours(NUM_CLASSES + 1, seed=150)
        n_val = max(2, n // 4)
        n_train = max(2, n - n_val)
        for split, count in (("train", n_train), ("validation", n_val)):
            prefix = "ADE_train" if split == "train" else "ADE_val"
            for i in range(1, count + 1):
                labels = rng.choice(np.arange(NUM_CLASSES // 10 + 1), size=int(rng.integers(2, 5)),
                                    replace=False).tolist()
                image, label_map = common.paint_scene(labels, colours, 24, 32, rng)
                name = f"{prefix}_{i:08d}"
                common.write_jpeg(root / RELEASE / "images" / FOLDERS[split] / f"{name}.jpg", image)
                common.write_png(root / RELEASE / "annotations" / FOLDERS[split] / f"{name}.png",
                                 label_map)
        return root
