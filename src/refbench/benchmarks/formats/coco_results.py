"""The COCO results format (the file `COCO.loadRes` reads) and the COCO instances
annotation file as references.

A submission is a JSON list of results, each `{"image_id": int, "category_id": int,
"score": float}` plus `"bbox": [x, y, w, h]` (bbox benchmarks) or `"segmentation": {"size":
[h, w], "counts": RLE}` (segm benchmarks; compressed string or uncompressed list counts,
as `pycocotools.mask.encode` writes). Read strictly, each error naming the file and the
result's index: not a list, a result that is not an object, an id that is not an integer
(cocoapi compares ids by value: `"42"` would never match image 42), a NaN or infinite
number, a box with a negative width or height, a mask that is a polygon (`loadRes` computes
mask areas from RLE only). Image and category ids are checked against the ground truth by
the metric (`coco_detection`), which refuses unknown ones.

Maps are `{image_id: CocoImageResults}` (the image's results in file order, with their
indices) and `{image_id: CocoImage}` for every image of the ground truth. An image without
results is scored as COCOeval scores it (its ground truth counts, with no detection); an
image id outside the ground truth is refused, as `loadRes` refuses it.

References: the official `instances_<split><year>.json` (or a folder holding exactly one
`instances_*.json`, directly or in `annotations/`), checked: unique image, category and
annotation ids, annotations on known images and categories, finite boxes and areas,
`iscrowd` 0/1.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.coco_detection import (
    CocoGroundTruth,
    CocoImage,
    CocoImageResults,
    UnknownImage,
)
from refbench.io import atomic_write_text, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec


def _load(path: Path, what: str) -> Any:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise RefbenchError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError(f"expected a JSON file ({what}), found a folder", path=path) from None
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path,
                            line=exc.lineno) from None


def _int(obj: dict, key: str, path: Path, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        got = "missing" if key not in obj else f"{json.dumps(value)[:30]}, not an integer"
        raise RefbenchError(f"{key} {got}", path=path, key=where)
    return value


def _number(value: Any, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RefbenchError(f"{json.dumps(value)[:30]} is not a finite number", path=path,
                            key=where)
    return float(value)


def _box(value: Any, path: Path, where: str) -> list[float]:
    if not isinstance(value, list) or len(value) != 4:
        raise RefbenchError(f"bbox must be [x, y, width, height], got {json.dumps(value)[:60]}",
                            path=path, key=where)
    box = [_number(v, path, where) for v in value]
    if box[2] < 0 or box[3] < 0:
        raise RefbenchError(f"bbox {box} has a negative width or height", path=path, key=where)
    return box


def _rle(value: Any, path: Path, where: str) -> None:
    if isinstance(value, list):
        raise RefbenchError("segmentation is a polygon; results need RLE masks "
                            "({'size': [h, w], 'counts': ...}), whose area loadRes computes",
                            path=path, key=where)
    if not isinstance(value, dict) or set(value) != {"size", "counts"}:
        raise RefbenchError("segmentation must be an RLE {'size': [h, w], 'counts': ...}",
                            path=path, key=where)
    size, counts = value["size"], value["counts"]
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise RefbenchError(f"RLE size {json.dumps(size)[:40]} is not [height, width]",
                            path=path, key=where)
    if not (isinstance(counts, str) or (isinstance(counts, list) and all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts))):
        raise RefbenchError("RLE counts must be a compressed string or a list of run lengths",
                            path=path, key=where)


def read_results(path: Path, iou_type: str) -> dict[int, CocoImageResults]:
    """`{image_id: CocoImageResults}` of a results file, strictly (module docstring)."""
    path = Path(path)
    data = _load(path, "results file")
    if not isinstance(data, list):
        raise RefbenchError("a COCO results file is a JSON list of results", path=path)
    by_image: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for index, result in enumerate(data):
        where = f"result {index}"
        if not isinstance(result, dict):
            raise RefbenchError(f"expected an object, got {type(result).__name__}", path=path,
                                key=where)
        image_id = _int(result, "image_id", path, where)
        _int(result, "category_id", path, where)
        if "score" not in result:
            raise RefbenchError("missing score", path=path, key=where)
        _number(result["score"], path, f"{where}: score")
        if iou_type == "bbox" or "bbox" in result:
            if "bbox" not in result:
                raise RefbenchError("missing bbox", path=path, key=where)
            _box(result["bbox"], path, f"{where}: bbox")
        if iou_type == "segm":
            if "segmentation" not in result:
                raise RefbenchError("missing segmentation", path=path, key=where)
            _rle(result["segmentation"], path, f"{where}: segmentation")
        by_image[image_id].append((index, result))
    return {image_id: CocoImageResults(image_id, tuple(items), str(path))
            for image_id, items in by_image.items()}


def _unique(items: list, what: str, path: Path) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RefbenchError("expected an object", path=path, key=f"{what}[{i}]")
        key = _int(item, "id", path, f"{what}[{i}]")
        if key in out:
            raise RefbenchError(f"id {key} appears twice", path=path, key=f"{what}[{i}]")
        out[key] = item
    return out


def read_ground_truth(path: Path) -> CocoGroundTruth:
    """A checked COCO instances annotation file (module docstring)."""
    path = Path(path)
    data = _load(path, "annotation file")
    if not isinstance(data, dict):
        raise RefbenchError("a COCO annotation file is a JSON object", path=path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise RefbenchError(f"missing list {key!r}", path=path, key=key)
    images = _unique(data["images"], "images", path)
    for image_id, image in images.items():
        for key in ("height", "width"):
            if _int(image, key, path, f"image {image_id}") <= 0:
                raise RefbenchError(f"{key} must be positive", path=path, key=f"image {image_id}")
    categories = _unique(data["categories"], "categories", path)
    for i, ann in _unique(data["annotations"], "annotations", path).items():
        where = f"annotation {i}"
        if _int(ann, "image_id", path, where) not in images:
            raise RefbenchError(f"image_id {ann['image_id']} is not in images", path=path, key=where)
        if _int(ann, "category_id", path, where) not in categories:
            raise RefbenchError(f"category_id {ann['category_id']} is not in categories",
                                path=path, key=where)
        _box(ann.get("bbox"), path, f"{where}: bbox")
        _number(ann.get("area"), path, f"{where}: area")
        if ann.get("iscrowd", 0) not in (0, 1) or isinstance(ann.get("iscrowd"), bool):
            raise RefbenchError(f"iscrowd {ann.get('iscrowd')!r} is not 0 or 1", path=path,
                                key=where)
        if "segmentation" not in ann:
            raise RefbenchError("missing segmentation", path=path, key=where)
    return CocoGroundTruth(data, source=str(path), sha256=sha256_file(path))


def locate_annotation_file(path: Path) -> Path:
    """The annotation file itself, or the one `instances_*.json` of a folder or its
    `annotations/` subfolder."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = sorted(path.glob("instances_*.json")) or sorted(path.glob("annotations/instances_*.json"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise RefbenchError(f"expected one instances_*.json here or in annotations/ (found "
                            f"{names}): pass the annotation file itself", path=path)
    return found[0]


def iou_type_of(spec: "BenchmarkSpec") -> str:
    return str(spec.metric.kwargs().get("iou_type", "bbox"))


def perfect_results(references: Mapping[int, CocoImage]) -> dict[int, CocoImageResults]:
    """The non-crowd ground truth as results of score 1 (boxes and RLE masks)."""
    from pycocotools import mask as mask_utils

    out: dict[int, CocoImageResults] = {}
    index = 0
    for image_id, ref in references.items():
        image = ref.gt.images[image_id]
        items = []
        for ann in ref.gt.dataset["annotations"]:
            if ann["image_id"] != image_id or ann.get("iscrowd"):
                continue
            segm = ann["segmentation"]
            h, w = image["height"], image["width"]
            rle = (mask_utils.merge(mask_utils.frPyObjects(segm, h, w)) if isinstance(segm, list)
                   else mask_utils.frPyObjects(segm, h, w) if isinstance(segm["counts"], list)
                   else segm)
            rle = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()
                   if isinstance(rle["counts"], bytes) else rle["counts"]}
            items.append((index, {"image_id": image_id, "category_id": ann["category_id"],
                                  "bbox": list(ann["bbox"]), "segmentation": rle, "score": 1.0}))
            index += 1
        if items:
            out[image_id] = CocoImageResults(image_id, tuple(items))
    return out


@FORMATS.register("coco_results")
class CocoResultsFormat(SubmissionFormat):
    """The COCO results JSON (`loadRes`'s input), scored against an instances file."""

    missing = "score"
    missing_scored_as = "scored as images without detections, as COCOeval scores them"
    extra = "score"
    extra_scored_as = "refused: pycocotools' loadRes rejects results for unknown images"
    references_required = True
    references_example = "the instances JSON, e.g. annotations/instances_val2014.json"

    def extra_reference(self, key: Any) -> Any:
        return UnknownImage(key)

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        """Write `{image_id: CocoImageResults}` as one JSON list in file-index order."""
        rows: list[tuple[int, dict]] = []
        for image_id, value in predictions.items():
            if not isinstance(value, CocoImageResults):
                raise RefbenchError(f"image {image_id}: expected CocoImageResults, got "
                                    f"{type(value).__name__}", path=path)
            if any(r.get("image_id") != image_id for _, r in value.results):
                raise RefbenchError(f"image {image_id}: holds a result of another image",
                                    path=path)
            rows.extend(value.results)
        try:
            text = json.dumps([r for _, r in sorted(rows, key=lambda x: x[0])], allow_nan=False)
        except ValueError:
            raise RefbenchError("a result holds NaN or an infinite number", path=path) from None
        atomic_write_text(Path(path), text)

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"coco_results takes no read options, got {sorted(options)}")
        return read_results(Path(path), iou_type_of(spec))

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        return perfect_results(references)

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        gt = read_ground_truth(locate_annotation_file(Path(path)))
        return {image_id: CocoImage(image_id, gt) for image_id in sorted(gt.images)}

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        raise RefbenchError(f"{spec.name} is scored against the official COCO annotation file: "
                            f"pass --references instances_<split><year>.json")
