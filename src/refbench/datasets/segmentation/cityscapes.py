"""`cityscapes`: the Cityscapes fine-annotation release (gtFine + leftImg8bit).

```
ROOT/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
ROOT/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
ROOT/gtFine/.../<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (createTrainIdLabelImgs)
```

(beside them the release keeps `_gtFine_color.png`, `_gtFine_instanceIds.png` and
`_gtFine_polygons.json`, which are not read). The annotation of an image is its labelIds
PNG, the official evaluation's ground truth (ids 0..33, mapped to the 19 train ids with
255 for the rest by cityscapesScripts' `labels.py` table, `refbench.evaluation.
segmentation.CITYSCAPES_TRAIN_IDS`); when only the labelTrainIds PNG is present it is the
annotation instead (0..18, 255 ignored) and `label_ids` says so. Ids are
`<city>_<seq>_<frame>` (`frankfurt_000000_000294`): the official evaluation finds a
prediction by that part of its file name. Splits `train`, `validation` (val) and `test`
(whose public labels are placeholders; its rows keep whatever labelIds PNG exists).

Refused with one line naming the file: a train/val image without a label map, a label
map without its image, a file name not of the form `<city>_<6 digits>_<6 digits>_...`, a
size mismatch, a colour PNG as label map; `check` also decodes every label map and
reports ids outside 0..33 (labelIds) or outside 0..18 and 255 (labelTrainIds), which the
official script stops on ("Unknown label with id").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from refbench.datasets.base import MISSING_FOLDER, CheckReport
from refbench.datasets.images.ondisk import OnDiskImageBuilder
from refbench.datasets.segmentation import common
from refbench.errors import RefbenchError
from refbench.evaluation.segmentation import CITYSCAPES_TRAIN_IDS, IGNORE
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

FOLDERS = {"train": "train", "validation": "val", "test": "test"}
IMAGE_SUFFIX, LABEL_SUFFIX, TRAIN_SUFFIX = ("_leftImg8bit.png", "_gtFine_labelIds.png",
                                            "_gtFine_labelTrainIds.png")
NAME = re.compile(r"(?P<key>(?P<city>[a-z]+)_\d{6}_\d{6})_")
#: the label ids of labels.py that appear in labelIds images (license plate, -1, cannot)
MAX_LABEL_ID = 33
LABEL_IDS = np.arange(MAX_LABEL_ID + 1)
TRAIN_IDS = np.array([*range(len(CITYSCAPES_TRAIN_IDS)), IGNORE])


def image_key(path: Path) -> tuple[str, str]:
    """(`<city>_<seq>_<frame>`, city) of a release file name; refuses other names."""
    match = NAME.match(path.name)
    if match is None:
        raise RefbenchError("not a Cityscapes file name (<city>_<6 digits>_<6 digits>_...)",
                            path=path)
    return match["key"], match["city"]


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob(f"*{suffix}")):
        key, _ = image_key(path)
        if key in out:
            raise RefbenchError(f"image {key} appears twice (also {out[key]})", path=path)
        out[key] = path
    return out


def rows_of(root: Path, split: str) -> list[tuple[str, str, Path, Path | None, str]]:
    """(id, city, image, annotation or None, its convention) of a split, sorted by id."""
    folder = FOLDERS[split]
    images_dir, labels_dir = Path(root) / "leftImg8bit" / folder, Path(root) / "gtFine" / folder
    if not images_dir.is_dir():
        raise RefbenchError(f"leftImg8bit/{folder}/ not found", path=images_dir)
    images = _files(images_dir, IMAGE_SUFFIX)
    label_ids = _files(labels_dir, LABEL_SUFFIX) if labels_dir.is_dir() else {}
    train_ids = _files(labels_dir, TRAIN_SUFFIX) if labels_dir.is_dir() else {}
    for key, path in {**train_ids, **label_ids}.items():
        if key not in images:
            raise RefbenchError(f"label map has no image {key}{IMAGE_SUFFIX}", path=path)
    out = []
    for key, image in images.items():
        city = image_key(image)[1]
        if key in label_ids:
            out.append((key, city, image, label_ids[key], "labelIds"))
        elif key in train_ids:
            out.append((key, city, image, train_ids[key], "trainIds"))
        elif split == "test":
            out.append((key, city, image, None, "labelIds"))
        else:
            raise RefbenchError(f"image has no label map gtFine/{folder}/{city}/{key}"
                                f"{LABEL_SUFFIX}", path=image)
    return out


@DATASETS.register("cityscapes")
class CityscapesBuilder(OnDiskImageBuilder):
    """Cityscapes gtFine (config `default`; splits train, validation, test)."""

    name = "cityscapes"
    version = "1.0"
    license = "Cityscapes license (non-commercial research; registration required)"
    citation = ("Cordts et al., The Cityscapes Dataset for Semantic Urban Scene "
                "Understanding, CVPR 2016")
    homepage = "https://www.cityscapes-dataset.com/"
    gated = True
    split_aliases: ClassVar[dict[str, str]] = {"val": "validation"}

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(FOLDERS)

    def layout(self) -> str:
        return ("ROOT/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png\n"
                "ROOT/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png "
                "(or _gtFine_labelTrainIds.png)")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        for split, folder in FOLDERS.items():
            if not (root / "leftImg8bit" / folder).is_dir():
                report.add(root / "leftImg8bit" / folder, "folder not found", MISSING_FOLDER)
                continue
            try:
                found = rows_of(root, split)
            except RefbenchError as exc:
                report.add(exc.path or root, exc.message, "unpaired file")
                continue
            report.found.append(f"{split}: {len(found):,} images, "
                                f"{sum(a is not None for *_, a, _ in found):,} label maps")
            for _, _, image, label, kind in found:
                if label is None:
                    continue
                allowed, what = ((LABEL_IDS, f"a labelId (0..{MAX_LABEL_ID})") if kind == "labelIds"
                                 else (TRAIN_IDS, "a trainId (0..18 or 255)"))
                try:
                    common.check_pair(image, label)
                    common.check_values(label, allowed, what)
                except RefbenchError as exc:
                    report.add(exc.path or label, exc.message, "bad label map")

    def source_files(self, root: Path, config: str) -> list[Path]:
        return []  # no label text file: the label maps are hashed by `image_files`

    def image_files(self, root: Path, config: str) -> list[Path]:
        out = []
        for split in FOLDERS:
            if (Path(root) / "leftImg8bit" / FOLDERS[split]).is_dir():
                for *_, image, label, _ in rows_of(root, split):
                    out.extend([image] if label is None else [image, label])
        return out

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        self.resolve_configs([config])
        out = {}
        for split in FOLDERS:
            rows = common.empty_rows()
            present = (Path(root) / "leftImg8bit" / FOLDERS[split]).is_dir()
            if not present and split != "test":
                raise RefbenchError(f"leftImg8bit/{FOLDERS[split]}/ not found",
                                    path=Path(root) / "leftImg8bit" / FOLDERS[split])
            for key, city, image, label, kind in rows_of(root, split) if present else []:
                size = common.check_pair(image, label) if label is not None else \
                    common.image_size(image)
                common.add_row(rows, key, image, label, kind, size, city)
            out[split] = common.to_dataset(rows, split)
        return out

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        """`n` PNG street scenes (3/5 train, 1/5 val, 1/5 test over two cities each) with
        labelIds maps drawn from the real ids (evaluated and ignored ones), colour maps
        beside them as in the release, and labelTrainIds maps for train (as
        createTrainIdLabelImgs writes them)."""
        root = Path(out)
        rng = np.random.default_rng(seed)
        colours = common.class_colours(MAX_LABEL_ID + 1, seed=34)
        table = np.full(256, IGNORE, dtype=np.uint8)
        for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
            table[label_id] = train_id
        cities = {"train": ("aachen", "bochum"), "validation": ("frankfurt", "lindau"),
                  "test": ("berlin", "bonn")}
        counts = {"validation": max(2, n // 5), "test": max(2, n // 5)}
        counts["train"] = max(2, n - counts["validation"] - counts["test"])
        ids = [0, 4, 7, 8, 11, 17, 21, 23, 24, 26]  # unlabeled, static and eight classes
        for split, count in counts.items():
            for i in range(count):
                city = cities[split][i % 2]
                key = f"{city}_{i // 2:06d}_{19 * (i + 1):06d}"
                labels = rng.choice(ids, size=int(rng.integers(2, 5)), replace=False).tolist()
                image, label_map = common.paint_scene(labels, colours, 16, 32, rng)
                folder = FOLDERS[split]
                common.write_png(root / "leftImg8bit" / folder / city / f"{key}{IMAGE_SUFFIX}",
                                 image)
                gt = root / "gtFine" / folder / city
                if split == "test":  # the public test labels are placeholders
                    label_map = np.zeros_like(label_map)
                common.write_png(gt / f"{key}{LABEL_SUFFIX}", label_map)
                common.write_png(gt / f"{key}_gtFine_color.png",
                                 colours[label_map].astype(np.uint8))
                if split == "train":
                    common.write_png(gt / f"{key}{TRAIN_SUFFIX}", table[label_map])
        return root
