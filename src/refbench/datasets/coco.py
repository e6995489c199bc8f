"""COCO instances annotations (detection and instance segmentation ground truth).

The root is the official release folder: `annotations/instances_train<year>.json` and
`annotations/instances_val<year>.json` (configs `2017` and `2014`; splits `train`,
`validation`). Only the annotation files are read: the images (`val2017/*.jpg`) are what a
detector reads, and the COCO benchmarks score result files against the annotation file
itself (`refbench.benchmarks.formats.coco_results`), so prepared rows serve browsing and
training code, one row per image: `image_id`, `file_name`, `height`, `width` and its
`objects` (`id`, `category_id`, `bbox` [x, y, w, h], `area`, `iscrowd`, `segmentation` as
the file's JSON text: polygons or RLE), plus `category_names` of the file's categories.
Files are checked by the same reader the benchmarks use (unique ids, known images and
categories, finite boxes and areas).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from refbench.benchmarks.formats.coco_results import read_ground_truth
from refbench.datasets.base import MISSING_FILE, CheckReport, DatasetBuilder, Problem
from refbench.errors import RefbenchError
from refbench.io import atomic_write_text
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

YEARS = ("2017", "2014")
SPLIT_PREFIX = {"train": "train", "validation": "val"}
_CITATION = """@inproceedings{lin2014microsoft,
  title = {Microsoft {COCO}: Common Objects in Context},
  author = {Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James and
            Perona, Pietro and Ramanan, Deva and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  booktitle = {Proceedings of ECCV},
  year = {2014}
}"""


def annotation_file(root: Path, config: str, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{SPLIT_PREFIX[split]}{config}.json"


def features() -> "hf_datasets.Features":
    import datasets as hf

    obj = {"id": hf.Value("int64"), "category_id": hf.Value("int32"),
           "bbox": hf.Sequence(hf.Value("float64"), length=4), "area": hf.Value("float64"),
           "iscrowd": hf.Value("bool"), "segmentation": hf.Value("string")}
    return hf.Features({"image_id": hf.Value("int64"), "file_name": hf.Value("string"),
                        "height": hf.Value("int32"), "width": hf.Value("int32"),
                        "objects": hf.Sequence(obj),
                        "category_names": hf.Sequence(hf.Value("string"))})


def rows_of(path: Path) -> dict[str, list]:
    gt = read_ground_truth(path)
    names = {c["id"]: str(c.get("name", c["id"])) for c in gt.dataset["categories"]}
    by_image: dict[int, list] = {i: [] for i in gt.images}
    for ann in gt.dataset["annotations"]:
        by_image[ann["image_id"]].append(ann)
    cols: dict[str, list] = {k: [] for k in features()}
    for image_id, image in gt.images.items():
        anns = by_image[image_id]
        cols["image_id"].append(image_id)
        cols["file_name"].append(str(image.get("file_name", "")))
        cols["height"].append(image["height"])
        cols["width"].append(image["width"])
        cols["objects"].append({
            "id": [a["id"] for a in anns], "category_id": [a["category_id"] for a in anns],
            "bbox": [[float(v) for v in a["bbox"]] for a in anns],
            "area": [float(a["area"]) for a in anns],
            "iscrowd": [bool(a.get("iscrowd", 0)) for a in anns],
            "segmentation": [json.dumps(a["segmentation"]) for a in anns]})
        cols["category_names"].append([names[c] for c in sorted(names)])
    return cols


@DATASETS.register("coco")
class CocoBuilder(DatasetBuilder):
    """COCO instances annotations (configs `2017`, `2014`; splits `train`, `validation`)."""

    name = "coco"
    version = "1.0"
    license = "CC BY 4.0 (annotations); images under their Flickr licences"
    citation = _CITATION
    homepage = "https://cocodataset.org"
    split_aliases: ClassVar[dict[str, str]] = {"val": "validation"}

    def configs(self) -> list[str]:
        return list(YEARS)

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLIT_PREFIX)

    def layout(self) -> str:
        return ("The COCO release folder; only the instances annotation files are read:\n"
                "  annotations/instances_train2017.json, annotations/instances_val2017.json"
                "   (config 2017)\n"
                "  annotations/instances_train2014.json, annotations/instances_val2014.json"
                "   (config 2014)")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        for config in configs:
            for split in SPLIT_PREFIX:
                path = annotation_file(root, config, split)
                if not path.is_file():
                    report.add(path, f"missing COCO {config} {split} annotations", MISSING_FILE)
                    continue
                report.found.append(path.relative_to(root).as_posix())
                try:
                    read_ground_truth(path)
                except RefbenchError as exc:
                    report.problems.append(Problem.from_error(exc, path))

    def source_files(self, root: Path, config: str) -> list[Path]:
        out = []
        for split in SPLIT_PREFIX:
            path = annotation_file(root, config, split)
            if not path.is_file():
                raise RefbenchError(f"missing COCO {config} {split} annotations", path=path)
            out.append(path)
        return out

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        import datasets as hf

        files = self.source_files(root, config)
        return {split: hf.Dataset.from_dict(rows_of(path), features=features(),
                                            split=hf.NamedSplit(split))
                for split, path in zip(SPLIT_PREFIX, files)}

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        """Both splits of every config: `n` images of 3 categories, each object a box
        with its rectangle polygon (a detector can learn box = object)."""
        rng = np.random.default_rng(seed)
        cats = [{"id": i, "name": name, "supercategory": "shape"}
                for i, name in ((1, "square"), (2, "wide"), (3, "tall"))]
        out = Path(out)
        ann_id = 1
        for config in YEARS:
            for split in SPLIT_PREFIX:
                images, anns = [], []
                for i in range(1, max(n, 2) + 1):
                    images.append({"id": i, "file_name": f"{i:012d}.jpg", "height": 96,
                                   "width": 128})
                    for _ in range(int(rng.integers(1, 4))):
                        cat = int(rng.integers(1, 4))
                        w = float(rng.integers(8, 40)) * (2 if cat == 2 else 1)
                        h = float(rng.integers(8, 40)) * (2 if cat == 3 else 1)
                        x, y = float(rng.integers(0, 128 - w)), float(rng.integers(0, 96 - h))
                        poly = [x, y, x + w, y, x + w, y + h, x, y + h]
                        anns.append({"id": ann_id, "image_id": i, "category_id": cat,
                                     "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                                     "segmentation": [poly]})
                        ann_id += 1
                text = json.dumps({"images": images, "annotations": anns, "categories": cats})
                atomic_write_text(annotation_file(out, config, split), text)
        return out
