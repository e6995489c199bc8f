"""Semantic segmentation pixel accuracy and mIoU, over a confusion matrix as mmsegmentation
computes them (`intersect_and_union` / `total_area_to_metrics`), for the ADE20K and
Cityscapes label layouts.

Per image, pixels whose ground truth is the ignore index are dropped; the rest add to a
(K+1) x (K+1) confusion matrix whose last row / column collects labels outside 0..K-1 (a
prediction of 255, of -1, of an unknown class). Then, summed over images:
- `aAcc` = correct pixels / labelled pixels (PyTorch-Encoding's `pixAcc`, the figure Pi-NAS
  reports, is the same ratio);
- per class IoU = intersect / (pred area + label area - intersect) and Acc = intersect /
  label area; `mIoU` and `mAcc` average the classes whose value is defined (nanmean: a
  class absent from both ground truth and prediction is left out, as mmseg and the
  Cityscapes script do); `mIoU_all_classes` averages every class, an undefined one
  counting 0 (PyTorch-Encoding's `SegmentationMetric`, which divides by union + eps).
  A prediction outside the classes is a wrong pixel that enlarges no class's pred area.

Layouts (`layout`):
- `ade20k`: annotation PNGs of 0..150, 0 = "other" (ignored). reduce_zero_label, as mmseg
  configures ADE20K: 0 becomes 255, every other label moves down by one (classes 0..149),
  255 is ignored. Predictions use the annotation convention (1..150, the challenge's
  submission format) and move down the same way; a predicted 0 is a wrong pixel.
- `cityscapes`: 19 train ids (road .. bicycle), ignore 255. Ground truth in labelIds
  (`*_gtFine_labelIds.png`, mapped with cityscapesScripts' `labels.py` table) or already in
  trainIds (`*_gtFine_labelTrainIds.png`); predictions in labelIds (the official
  submission convention) or trainIds (`prediction_ids`).

Label maps outside a layout's values are refused, naming the file and pixel: ADE20K
0..150 (255 also in ground truth), Cityscapes labelIds 0..33 (the official script stops
on any other id, "Unknown label with id"), trainIds 0..18 and 255.

Keys: `aAcc`, `mIoU`, `mAcc`, `mIoU_all_classes`, `IoU/<class>`; fractions in [0, 1]
(mmseg prints them x100). Higher is better.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS

IGNORE = 255
ADE20K_CLASSES = 150
#: cityscapesScripts labels.py: labelId -> trainId for the 19 evaluated classes; every
#: other id (0-6, 9, 10, 14-16, 18, 29, 30, license plate) is ignored (255)
CITYSCAPES_TRAIN_IDS: dict[int, int] = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7,
                                        21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
                                        28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")
#: the largest id of cityscapesScripts' labels.py that a labelIds image holds (bicycle)
CITYSCAPES_MAX_LABEL_ID = 33
LAYOUTS = {"ade20k": ADE20K_CLASSES, "cityscapes": len(CITYSCAPES_CLASSES)}


def label_ids_to_train_ids(labels: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds -> trainIds (255 for every id that is not evaluated)."""
    table = np.full(256, IGNORE, dtype=np.int64)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        table[label_id] = train_id
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise RefbenchError("Cityscapes labelIds must lie in 0..255")
    return table[labels]


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """mmseg's ADE20K convention: 0 -> 255, others -1 (so 255 stays ignored)."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    labels[labels == 0] = IGNORE + 1  # becomes 255 after the shift
    labels -= 1
    labels[labels == IGNORE - 1] = IGNORE  # a label of 255 stays ignored
    return labels


def confusion(pred: np.ndarray, label: np.ndarray, num_classes: int,
              ignore_index: int = IGNORE) -> np.ndarray:
    """(K+1) x (K+1) counts of (label, prediction) over the non-ignored pixels; index K
    collects values outside 0..K-1."""
    pred, label = np.asarray(pred, dtype=np.int64), np.asarray(label, dtype=np.int64)
    if pred.shape != label.shape:
        raise RefbenchError(f"prediction shape {pred.shape} differs from the label's {label.shape}")
    keep = label != ignore_index
    k = num_classes
    lab, prd = label[keep], pred[keep]
    lab = np.where((lab >= 0) & (lab < k), lab, k)
    prd = np.where((prd >= 0) & (prd < k), prd, k)
    return np.bincount(lab * (k + 1) + prd, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)


def scores(matrix: np.ndarray) -> dict[str, Any]:
    """aAcc, per-class IoU / Acc and their means from a `confusion` matrix."""
    k = matrix.shape[0] - 1
    intersect = np.diag(matrix)[:k].astype(np.float64)
    area_label = matrix[:k, :].sum(axis=1).astype(np.float64)
    area_pred = matrix[:, :k].sum(axis=0).astype(np.float64)
    union = area_pred + area_label - intersect
    labelled = matrix[:k, :].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / union
        acc = intersect / area_label
    return {"aAcc": float(intersect.sum() / labelled) if labelled else math.nan,
            "IoU": iou, "Acc": acc,
            "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan,
            "mAcc": float(np.nanmean(acc)) if np.isfinite(acc).any() else math.nan,
            "mIoU_all_classes": float(np.nan_to_num(iou, nan=0.0).mean())}


@dataclass(frozen=True)
class SegmentationPair:
    """One image's label map source: an array or a loader returning one (lazy PNG)."""

    name: str
    load: Any

    def array(self) -> np.ndarray:
        value = self.load() if callable(self.load) else self.load
        return np.asarray(value)

    def __str__(self) -> str:
        """A digest of the label values (what result.json's label-set hash covers): the
        same labels give the same string wherever the file lives."""
        array = np.ascontiguousarray(self.array(), dtype=np.int64)
        return f"labels{array.shape}:{hashlib.sha256(array.tobytes()).hexdigest()}"


def _keys(layout: str) -> dict[str, str]:
    names = CITYSCAPES_CLASSES if layout == "cityscapes" else tuple(
        str(i) for i in range(1, ADE20K_CLASSES + 1))
    return {"aAcc": "correct / labelled pixels", "mIoU": "mean IoU over defined classes",
            "mAcc": "mean per-class accuracy over defined classes",
            "mIoU_all_classes": "mean IoU over every class, undefined = 0 (Encoding)",
            **{f"IoU/{n}": f"IoU of class {n}" for n in names}}


@METRICS.register("semantic_segmentation", higher_is_better=True, version="1")
class SemanticSegmentation(Metric):
    """Pixel accuracy and mIoU (module docstring). Arguments: `layout` (`ade20k` or
    `cityscapes`), `label_ids` / `prediction_ids` (`labelIds` or `trainIds`, Cityscapes
    only). Predictions and references are `SegmentationPair`s or label-map arrays."""

    keys: ClassVar[dict[str, str]] = _keys("cityscapes")
    directions: ClassVar[dict[str, bool | None]] = {}

    def __init__(self, layout: str = "ade20k", label_ids: str = "labelIds",
                 prediction_ids: str = "labelIds", **args: Any) -> None:
        if args:
            raise RefbenchError(f"metric semantic_segmentation takes layout, label_ids and "
                                f"prediction_ids, got {', '.join(sorted(args))}")
        if layout not in LAYOUTS:
            raise RefbenchError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        for name, value in (("label_ids", label_ids), ("prediction_ids", prediction_ids)):
            if value not in ("labelIds", "trainIds"):
                raise RefbenchError(f"{name} must be labelIds or trainIds, got {value!r}")
        super().__init__(layout=layout, label_ids=label_ids, prediction_ids=prediction_ids)
        self.layout, self.label_ids, self.prediction_ids = layout, label_ids, prediction_ids
        self.num_classes = LAYOUTS[layout]
        self.matrix = np.zeros((self.num_classes + 1,) * 2, dtype=np.int64)
        self.images = 0
        self.missing = 0

    def output_keys(self) -> list[str]:
        return list(_keys(self.layout))

    def convert(self, array: np.ndarray, ids: str) -> np.ndarray:
        if self.layout == "ade20k":
            return reduce_zero_label(array)
        return label_ids_to_train_ids(array) if ids == "labelIds" else np.asarray(array, np.int64)

    def valid_values(self, ids: str, prediction: bool) -> tuple[int, bool]:
        """(largest valid value, whether 255 is valid) of a label map in convention `ids`:
        ADE20K 0..150 (a ground truth may carry 255, ignored); Cityscapes labelIds 0..33
        (the official script stops on any other id), trainIds 0..18 and 255."""
        if self.layout == "ade20k":
            return ADE20K_CLASSES, not prediction
        return (CITYSCAPES_MAX_LABEL_ID, False) if ids == "labelIds" else (
            len(CITYSCAPES_CLASSES) - 1, True)

    def checked(self, value: Any, ids: str, prediction: bool) -> np.ndarray:
        """The label map of `value` (a `SegmentationPair` or an array), refused in one line
        naming its file when a value lies outside the layout's range."""
        array = value.array() if isinstance(value, SegmentationPair) else np.asarray(value)
        name = value.name if isinstance(value, SegmentationPair) else (
            "prediction" if prediction else "ground truth")
        top, ignore_ok = self.valid_values(ids, prediction)
        if array.size and (array.min() < 0 or array.max() > top):
            bad = (array < 0) | (array > top)
            if ignore_ok:
                bad &= array != IGNORE
            if bad.any():
                y, x = (int(v) for v in np.argwhere(bad)[0])
                what = ("an ADE20K class (0..150)" if self.layout == "ade20k" else
                        f"a Cityscapes {ids[:-3]}Id (0..{top}{', 255' if ignore_ok else ''})")
                raise RefbenchError(f"{name}: label {int(array[y, x])} at pixel (x={x}, y={y}) "
                                    f"is not {what}")
        return array

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        for pred, ref in zip(predictions, references):
            label = self.convert(self.checked(ref, self.label_ids, False), self.label_ids)
            if pred is None:  # no prediction: every labelled pixel is wrong
                self.missing += 1
                pred_arr = np.full(label.shape, -1, dtype=np.int64)
            else:
                raw = self.checked(pred, self.prediction_ids, True)
                if raw.shape != label.shape:
                    name = pred.name if isinstance(pred, SegmentationPair) else "prediction"
                    raise RefbenchError(f"{name}: size {raw.shape} differs from its label map's "
                                        f"{label.shape}")
                pred_arr = self.convert(raw, self.prediction_ids)
            self.matrix += confusion(pred_arr, label, self.num_classes)
            self.images += 1

    def merge(self, other: Metric) -> None:
        if not isinstance(other, SemanticSegmentation) or other.layout != self.layout:
            raise TypeError("can only merge a SemanticSegmentation of the same layout")
        self.matrix += other.matrix
        self.images += other.images
        self.missing += other.missing

    def compute(self) -> dict[str, float]:
        if not self.matrix[:self.num_classes].sum():
            raise RefbenchError("no labelled pixel was scored")
        out = scores(self.matrix)
        names = list(_keys(self.layout))[4:]
        values = {k: out[k] for k in ("aAcc", "mIoU", "mAcc", "mIoU_all_classes")}
        # a class absent from both sides has no IoU: reported as 0 with a count, since
        # results must be finite (mIoU leaves it out)
        values.update({n: float(0.0 if math.isnan(v) else v) for n, v in zip(names, out["IoU"])})
        return values

    def counts(self) -> dict[str, int]:
        """`images/scored`, `images/no_prediction`, `pixels/labelled`, `classes/absent`
        (classes in neither ground truth nor prediction, left out of mIoU)."""
        k = self.num_classes
        present = (self.matrix[:k, :].sum(axis=1) + self.matrix[:, :k].sum(axis=0)) > 0
        return {"images/scored": self.images, "images/no_prediction": self.missing,
                "pixels/labelled": int(self.matrix[:k, :].sum()),
                "classes/absent": int((~present).sum())}
