"""`imagefolder`: any tree of class folders, read as torchvision's `ImageFolder` reads it.

```
ROOT/<class>/**/<image>.{jpg,jpeg,png,ppm,bmp,pgm,tif,tiff,webp}     -> split `train`
ROOT/{train,val|validation|valid,test}/<class>/**/<image>.<ext>       -> one split each
```

When ROOT holds a folder named like a split, every split folder is read and other
folders are left alone (reported by `check`); else ROOT itself is the `train` split.
Class names are the class folders' names, sorted (torchvision sorts them per root; here
the classes of all splits are pooled first, so one name has one label in every split).
Files are found recursively (as `os.walk` does) in sorted order; names whose ending is
not an image extension are ignored, as torchvision ignores them. A split folder that is
absent gives an empty split. Images stay on disk: the cache stores each image's absolute
path, and ids are the paths relative to ROOT (`test/airplane/0000.jpg`), unique by
construction.

Every image is sniffed (`schema.sniff_image`) when checked or prepared: an empty, non-image
or truncated file stops `prepare` with a one-line error naming it; decoding problems that
only a full decode finds are counted and skipped by the DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from refbench.datasets.base import MISSING_FOLDER, CheckReport
from refbench.datasets.images.ondisk import OnDiskImageBuilder
from refbench.datasets.images.schema import (
    check_image_file,
    empty_rows,
    is_image_name,
    relative_path,
    rows_to_dataset,
    sniff_image,
    stored_path,
)
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation", "valid"),
                 "test": ("test",)}
CORRUPT_IMAGE = "corrupt image"
EMPTY_CLASS = "empty class folder"


def class_images(folder: Path) -> list[tuple[str, Path]]:
    """(class name, image path) of every image below `folder/<class>/`, sorted by class
    then path; hidden folders and non-image names are skipped."""
    out: list[tuple[str, Path]] = []
    for cls in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in cls.rglob("*") if p.is_file() and is_image_name(p.name)
                       and not any(part.startswith(".") for part in p.relative_to(cls).parts))
        out.extend((cls.name, f) for f in files)
    return out


def class_folders(folder: Path) -> list[str]:
    """The class folder names directly below `folder`, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_folder(root: Path, split: str) -> Path | None:
    """The folder of a split: one of its names below ROOT, or ROOT itself for `train`
    when ROOT holds no split folder; None when the split is absent."""
    named = [root / n for names in SPLIT_FOLDERS.values() for n in names]
    if not any(p.is_dir() for p in named):
        return root if split == "train" else None
    return next((root / n for n in SPLIT_FOLDERS[split] if (root / n).is_dir()), None)


@DATASETS.register("imagefolder")
class ImageFolderBuilder(OnDiskImageBuilder):
    """A generic tree of class folders (config `default`; splits train, validation, test)."""

    name = "imagefolder"
    version = "1.0"
    license = "that of the images in the tree (refbench adds none)"
    citation = "(none: cite the source of the images)"
    homepage = "https://pytorch.org/vision/stable/generated/torchvision.datasets.ImageFolder.html"
    split_aliases: ClassVar[dict[str, str]] = {"val": "validation", "valid": "validation"}

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLIT_FOLDERS)

    def layout(self) -> str:
        return ("Class folders of images (jpg, jpeg, png, ppm, bmp, pgm, tif, tiff, webp):\n"
                "  ROOT/<class>/<image>                 (all of it is split `train`), or\n"
                "  ROOT/train/<class>/<image>, ROOT/val/<class>/<image>, "
                "ROOT/test/<class>/<image>\n"
                "Class labels follow the sorted class folder names.")

    def classes(self, root: Path) -> list[str]:
        """The sorted union of the class folders of every split."""
        names: set[str] = set()
        for split in SPLIT_FOLDERS:
            folder = split_folder(root, split)
            if folder is not None:
                names.update(class_folders(folder))
        return sorted(names)

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        present = [s for s in SPLIT_FOLDERS if split_folder(root, s) is not None]
        if not present:
            report.add(root, "no split folder (train/, val/, test/) and no class folders",
                       MISSING_FOLDER)
            return
        for split in present:
            folder = split_folder(root, split)
            assert folder is not None
            items = class_images(folder)
            report.found.append(f"{relative_path(folder, root) if folder != root else '.'}/ "
                                f"({len(items):,} images, {len(class_folders(folder))} classes)")
            for cls in class_folders(folder):
                if not any(c == cls for c, _ in items):
                    report.add(folder / cls, "holds no image file", EMPTY_CLASS)
            for _, path in items:
                problem = sniff_image(path)
                if problem is not None:
                    report.add(path, problem, CORRUPT_IMAGE)
        if split_folder(root, "train") == root:
            report.hint("ROOT holds no train/, val/ or test/ folder: all of its class "
                        "folders form the train split")
            return
        for split in (s for s in SPLIT_FOLDERS if s not in present):
            report.hint(f"no {split} folder ({' or '.join(SPLIT_FOLDERS[split])}/): "
                        f"the {split} split will be empty")
        known = {n for names in SPLIT_FOLDERS.values() for n in names}
        other = [p.name for p in root.iterdir() if p.is_dir() and p.name not in known
                 and not p.name.startswith(".")]
        if other:
            report.hint(f"folders that are no split are ignored: {', '.join(sorted(other))}")

    def source_files(self, root: Path, config: str) -> list[Path]:
        return []  # no label file: the tree is the labels (hashed by `image_files`)

    def image_files(self, root: Path, config: str) -> list[Path]:
        out = []
        for split in SPLIT_FOLDERS:
            folder = split_folder(Path(root), split)
            if folder is not None:
                out.extend(path for _, path in class_images(folder))
        return out

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        self.resolve_configs([config])
        root = Path(root)
        names = self.classes(root)
        if not names:
            raise RefbenchError("no class folders found (expected ROOT/<class>/ or "
                                "ROOT/train/<class>/)", path=root)
        index = {name: i for i, name in enumerate(names)}
        out = {}
        for split in SPLIT_FOLDERS:
            rows = empty_rows()
            folder = split_folder(root, split)
            items = class_images(folder) if folder is not None else []
            if folder is not None:
                empty = [c for c in class_folders(folder) if not any(c == k for k, _ in items)]
                if empty:
                    raise RefbenchError("class folder holds no image file (torchvision's "
                                        "ImageFolder refuses it too)", path=folder / empty[0])
            for cls, path in items:
                check_image_file(path)
                rel = relative_path(path, root)
                rows["id"].append(rel)
                rows["image"].append({"bytes": None, "path": stored_path(path)})
                rows["label"].append(index[cls])
                rows["class_name"].append(cls)
            out[split] = rows_to_dataset(rows, names, split)
        return out

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        """Four learnable classes as PNG files in train/, val/ and test/ (60/20/20)."""
        from refbench.datasets.images.paint import SHAPES, paint
        from refbench.datasets.images.schema import encode_png
        from refbench.io import atomic_write_bytes

        root = Path(out)
        rng = np.random.default_rng(seed)
        per_class = max(5, n // len(SHAPES))
        for c, cls in enumerate(SHAPES):
            for i in range(per_class):
                split = "train" if i % 5 < 3 else "val" if i % 5 == 3 else "test"
                atomic_write_bytes(root / split / cls / f"{i:04d}.png",
                                   encode_png(paint(c, len(SHAPES), 32, rng)))
        return root
