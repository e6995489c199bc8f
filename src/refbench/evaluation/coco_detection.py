"""COCO detection and instance segmentation AP, computed by pycocotools' `COCOeval`.

The numbers are the official cocoapi ones because the official code computes them: the
ground truth is handed to `pycocotools.coco.COCO` as parsed, the results go through
`COCO.loadRes` in file order (the order decides ties of equal score), and `COCOeval`
runs with its default detection parameters, which the tests pin: IoU thresholds
0.50:0.05:0.95 (10), 101 recall points, maxDets 1 / 10 / 100, areas all / small (< 32^2) /
medium (32^2 - 96^2) / large (>= 96^2), categories used.

Keys are the 12 `COCOeval.stats`, as fractions (detectron2 prints them x100):
`AP`, `AP50`, `AP75`, `APs`, `APm`, `APl` (maxDets 100), `AR1`, `AR10`, `AR100`, `ARs`,
`ARm`, `ARl`. cocoapi reports -1 for an area range without ground truth; refbench keeps
that value (it is the official number) and says so in a warning.

Strict where cocoapi is silent or crashes (each a one-line `RefbenchError` naming the
results file and the result's index): an image id outside the ground truth (`loadRes`
asserts), a category id outside it (`COCOeval` silently drops it), a mask whose size is not
its image's (the IoU code raises). The readers refuse NaN, bad boxes and bad fields.

For `segm`, a result's `bbox` is dropped before `loadRes`, as detectron2's COCOEvaluator
does: with a bbox present, `loadRes` would treat the file as box results and replace every
mask by its box (and size areas by boxes).
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from refbench.errors import RefbenchError, require
from refbench.evaluation.base import Metric
from refbench.registry import METRICS

IOU_TYPES = ("bbox", "segm")
STAT_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
STAT_MEANINGS = (
    "AP @ IoU 0.50:0.95, all areas, 100 dets", "AP @ IoU 0.50", "AP @ IoU 0.75",
    "AP, small objects (area < 32^2)", "AP, medium objects (32^2 - 96^2)",
    "AP, large objects (area >= 96^2)", "AR, 1 detection per image", "AR, 10 detections",
    "AR, 100 detections", "AR, small objects", "AR, medium objects", "AR, large objects")
#: fewer ground-truth images than this: AP is noisy (the cocoapi demo uses 100)
FEW_IMAGES = 50


@dataclass
class CocoGroundTruth:
    """A COCO instances annotation file, parsed and checked (`refbench.benchmarks.formats.
    coco_results.read_ground_truth`): the dict pycocotools reads, plus lookups. Its `repr`
    names the file and its sha256, so the label-set hash of a result covers it."""

    dataset: dict[str, Any]
    source: str = ""
    sha256: str = ""
    images: dict[int, dict[str, Any]] = field(init=False)
    category_ids: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        self.images = {img["id"]: img for img in self.dataset["images"]}
        self.category_ids = frozenset(c["id"] for c in self.dataset["categories"])

    def __repr__(self) -> str:
        return f"CocoGroundTruth({self.source}, sha256={self.sha256})"


@dataclass(frozen=True)
class CocoImage:
    """The reference of one image: its id and the ground truth it belongs to."""

    image_id: int
    gt: CocoGroundTruth


@dataclass(frozen=True)
class UnknownImage:
    """The reference of a result's image id that the ground truth lacks (refused)."""

    image_id: Any


@dataclass(frozen=True)
class CocoImageResults:
    """One image's results in file order: (index in the file, result dict), and the file."""

    image_id: int
    results: tuple[tuple[int, dict[str, Any]], ...]
    source: str = ""


def _quiet() -> contextlib.AbstractContextManager:
    return contextlib.redirect_stdout(io.StringIO())


def coco_eval(gt: dict[str, Any], results: Sequence[dict[str, Any]], iou_type: str,
              image_ids: Sequence[int] | None = None) -> tuple[np.ndarray, Any]:
    """(the 12 stats, the COCOeval object) of result dicts against a ground-truth dict,
    exactly as `COCO() / loadRes / COCOeval(...).evaluate() / accumulate() / summarize()`;
    `image_ids` restricts the evaluated images (default: every ground-truth image)."""
    require("pycocotools", "detection")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise RefbenchError(f"iou_type must be one of {', '.join(IOU_TYPES)}, got {iou_type!r}")
    with _quiet():
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        dets = [dict(r) for r in results]
        if iou_type == "segm":
            for det in dets:
                det.pop("bbox", None)
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        if not dets:  # loadRes cannot take an empty list; an empty result set scores 0
            coco_dt.dataset = {"images": list(gt["images"]), "categories": gt["categories"],
                               "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats, dtype=np.float64), evaluator


@METRICS.register("coco_detection", higher_is_better=True, version="1")
class CocoDetection(Metric):
    """COCO `bbox` or `segm` AP / AR through pycocotools (module docstring). Argument
    `iou_type`. Predictions are `CocoImageResults` (None: the image has no detection,
    scored as COCOeval scores it), references `CocoImage`s of one ground truth."""

    keys: ClassVar[dict[str, str]] = dict(zip(STAT_KEYS, STAT_MEANINGS))
    directions: ClassVar[dict[str, bool | None]] = {key: True for key in STAT_KEYS}

    def __init__(self, iou_type: str = "bbox", **args: Any) -> None:
        if args:
            raise RefbenchError(f"metric coco_detection takes iou_type only, got "
                                f"{', '.join(sorted(args))}")
        if iou_type not in IOU_TYPES:
            raise RefbenchError(f"iou_type must be one of {', '.join(IOU_TYPES)}, got "
                                f"{iou_type!r}")
        super().__init__(iou_type=iou_type)
        self.iou_type = iou_type
        self._gt: CocoGroundTruth | None = None
        self._image_ids: list[int] = []
        self._results: list[tuple[str, int, dict[str, Any]]] = []
        self._no_detection = 0
        self._stats: np.ndarray | None = None

    def _check_gt(self, gt: CocoGroundTruth) -> None:
        if self._gt is None:
            self._gt = gt
        elif gt is not self._gt and gt.sha256 != self._gt.sha256:
            raise RefbenchError(f"references from two ground truths ({self._gt!r}, {gt!r})")

    def _check_result(self, gt: CocoGroundTruth, image_id: int, index: int, result: dict,
                      source: str) -> None:
        where = f"result {index}"
        if result.get("image_id") != image_id:
            raise RefbenchError(f"{where}: filed under image {image_id} but says "
                                f"{result.get('image_id')!r}", path=source or None)
        if result["category_id"] not in gt.category_ids:
            raise RefbenchError(f"{where}: category_id {result['category_id']} is not a "
                                f"category of the ground truth", path=source or None)
        if self.iou_type == "segm":
            image = gt.images[image_id]
            size = list(result["segmentation"]["size"])
            if size != [image["height"], image["width"]]:
                raise RefbenchError(f"{where}: mask size {size} is not image {image_id}'s "
                                    f"[height, width] {[image['height'], image['width']]}",
                                    path=source or None)
        elif "bbox" not in result:
            raise RefbenchError(f"{where}: no bbox (a bbox benchmark scores boxes)",
                                path=source or None)

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        for pred, ref in zip(predictions, references):
            if isinstance(ref, UnknownImage):
                first = pred.results[0][0] if isinstance(pred, CocoImageResults) else "?"
                source = pred.source if isinstance(pred, CocoImageResults) else None
                raise RefbenchError(f"result {first}: image_id {ref.image_id} is not an image of "
                                    f"the ground truth (pycocotools' loadRes refuses such "
                                    f"results)", path=source or None)
            if not isinstance(ref, CocoImage):
                raise RefbenchError(f"expected a CocoImage reference, got {type(ref).__name__}")
            self._check_gt(ref.gt)
            self._image_ids.append(ref.image_id)
            if pred is None or not pred.results:
                self._no_detection += 1
                continue
            if not isinstance(pred, CocoImageResults):
                raise RefbenchError(f"image {ref.image_id}: expected CocoImageResults, got "
                                    f"{type(pred).__name__}")
            for index, result in pred.results:
                self._check_result(ref.gt, ref.image_id, index, result, pred.source)
                self._results.append((pred.source, index, result))

    def merge(self, other: Metric) -> None:
        if not isinstance(other, CocoDetection) or other.iou_type != self.iou_type:
            raise TypeError("can only merge a CocoDetection of the same iou_type")
        if other._gt is not None:
            self._check_gt(other._gt)
        self._image_ids += other._image_ids
        self._results += other._results
        self._no_detection += other._no_detection

    def compute(self) -> dict[str, float]:
        if self._gt is None or not self._image_ids:
            raise RefbenchError("no COCO image was scored")
        if len(set(self._image_ids)) != len(self._image_ids):
            raise RefbenchError("an image is referenced twice")
        ordered = [r for _, _, r in sorted(self._results, key=lambda x: (x[0], x[1]))]
        self._stats, _ = coco_eval(self._gt.dataset, ordered, self.iou_type, self._image_ids)
        return {key: float(value) for key, value in zip(STAT_KEYS, self._stats)}

    def counts(self) -> dict[str, int]:
        """`images/scored`, `images/no_detection`, `detections/scored`, `gt/annotations`
        (crowd included), `gt/crowd` and `gt/categories` of the scored images."""
        if self._gt is None:
            return {}
        scored = set(self._image_ids)
        anns = [a for a in self._gt.dataset["annotations"] if a["image_id"] in scored]
        return {"images/scored": len(scored), "images/no_detection": self._no_detection,
                "detections/scored": len(self._results), "gt/annotations": len(anns),
                "gt/crowd": sum(1 for a in anns if a.get("iscrowd")),
                "gt/categories": len(self._gt.category_ids)}

    def warnings(self) -> list[str]:
        out = []
        n = len(set(self._image_ids))
        if 0 < n < FEW_IMAGES:
            out.append(f"only {n} images were scored: AP over so few images is noisy")
        if self._stats is not None:
            empty = [k for k, v in zip(STAT_KEYS, self._stats) if v == -1]
            if empty:
                out.append(f"{', '.join(empty)} = -1: no ground truth in that area range "
                           f"(cocoapi's value, kept)")
        return out
