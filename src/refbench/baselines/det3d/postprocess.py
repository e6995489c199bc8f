"""Detection post-processing: scores, score threshold, rotated NMS (OpenPCDet v0.3
`Detector3DTemplate.post_processing` with `model_nms_utils`).

Class-agnostic path (the KITTI default): scores are sigmoid(logits) unless the batch says
they are already normalised; each box takes its best class (label = argmax + 1, or the
`roi_labels` of a second stage, OpenPCDet's `has_class_labels`); boxes below
`score_thresh` are dropped; the rest, at most `nms_pre_max` by score, go through one rotated
BEV NMS at `nms_thresh`, keeping at most `nms_post_max`. Multi-class path: the same per
class column, labels k + 1. `recall_record` counts gt boxes recalled by rois / predictions
at 3D IoU thresholds (OpenPCDet's `generate_recall_record`), for logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from refbench.baselines.det3d.boxes import boxes_iou3d, rotated_nms
from refbench.errors import RefbenchError

__all__ = ["PostConfig", "class_agnostic_nms", "multi_classes_nms", "post_process", "recall_record"]


@dataclass
class PostConfig:
    """`post:` section of a detector recipe (OpenPCDet KITTI defaults)."""

    score_thresh: float = 0.1
    nms_thresh: float = 0.01
    nms_pre_max: int = 4096
    nms_post_max: int = 500
    multi_class_nms: bool = False
    recall_thresh_list: tuple[float, ...] = (0.3, 0.5, 0.7)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.nms_thresh) <= 1.0:
            raise RefbenchError("nms_thresh must be in [0, 1]", key="model.post.nms_thresh")
        if int(self.nms_pre_max) < 1 or int(self.nms_post_max) < 1:
            raise RefbenchError("nms_pre_max and nms_post_max must be >= 1",
                                key="model.post.nms_pre_max")
        self.recall_thresh_list = tuple(float(t) for t in self.recall_thresh_list)


def class_agnostic_nms(box_scores: torch.Tensor, box_preds: torch.Tensor, cfg: PostConfig,
                       score_thresh: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (into the inputs) of the boxes kept by threshold + rotated NMS, and their scores."""
    device = box_scores.device
    candidates = torch.arange(box_scores.shape[0], device=device)
    if score_thresh is not None:
        candidates = (box_scores >= score_thresh).nonzero()[:, 0]
    if candidates.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, box_scores[empty]
    scores = box_scores[candidates]
    top_scores, order = torch.topk(scores, k=min(int(cfg.nms_pre_max), scores.shape[0]))
    top = candidates[order]
    keep = rotated_nms(box_preds[top, :7], top_scores, cfg.nms_thresh)[: int(cfg.nms_post_max)]
    selected = top[keep]
    return selected, box_scores[selected]


def multi_classes_nms(cls_scores: torch.Tensor, box_preds: torch.Tensor, cfg: PostConfig,
                      score_thresh: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per class column: threshold + NMS. Returns scores, 0-based labels and boxes of all kept."""
    scores, labels, boxes = [], [], []
    for k in range(cls_scores.shape[1]):
        selected, sel_scores = class_agnostic_nms(cls_scores[:, k], box_preds, cfg, score_thresh)
        scores.append(sel_scores)
        labels.append(torch.full_like(selected, k))
        boxes.append(box_preds[selected])
    return torch.cat(scores), torch.cat(labels), torch.cat(boxes)


def _sample(batch_dict: dict[str, Any], key: str, index: int) -> torch.Tensor:
    """Rows of sample `index` of a (B, N, ...) tensor, or of an (N, ...) one with `batch_index`."""
    value = batch_dict[key]
    if batch_dict.get("batch_index") is not None:
        return value[batch_dict["batch_index"] == index]
    return value[index]


def post_process(batch_dict: dict[str, Any], cfg: PostConfig, num_class: int) -> list[dict[str, torch.Tensor]]:
    """Per sample: `pred_boxes` (K, 7+), `pred_scores` (K,), `pred_labels` (K,) 1-based,
    from `batch_cls_preds` / `batch_box_preds` (B, N, .) (or (N, .) with `batch_index`)."""
    batch_size = int(batch_dict["batch_size"])
    normalized = bool(batch_dict.get("cls_preds_normalized", False))
    use_roi_labels = "roi_labels" in batch_dict and bool(batch_dict.get("has_class_labels", True))
    out: list[dict[str, torch.Tensor]] = []
    for index in range(batch_size):
        box_preds = _sample(batch_dict, "batch_box_preds", index)
        cls_preds = _sample(batch_dict, "batch_cls_preds", index)
        if cls_preds.dim() == 1:
            cls_preds = cls_preds[:, None]
        if cls_preds.shape[1] not in (1, num_class):
            raise ValueError(f"batch_cls_preds has {cls_preds.shape[1]} columns for {num_class} classes")
        if not normalized:
            cls_preds = torch.sigmoid(cls_preds)
        if cfg.multi_class_nms:
            scores, labels, boxes = multi_classes_nms(cls_preds, box_preds, cfg, cfg.score_thresh)
            labels = labels + 1
        else:
            max_scores, labels = cls_preds.max(dim=-1)
            if use_roi_labels:
                labels = batch_dict["roi_labels"][index].long()
            else:
                labels = labels + 1
            selected, scores = class_agnostic_nms(max_scores, box_preds, cfg, cfg.score_thresh)
            labels = labels[selected]
            boxes = box_preds[selected]
        out.append({"pred_boxes": boxes, "pred_scores": scores, "pred_labels": labels})
    return out


def recall_record(box_preds: torch.Tensor, gt_boxes: torch.Tensor, thresh_list: Sequence[float],
                  rois: torch.Tensor | None = None) -> dict[str, int]:
    """Counts for one sample: `gt` (non-padding gt boxes) and, per threshold t,
    `rcnn_{t}` / `roi_{t}` = gt boxes whose best 3D IoU with a prediction / roi is > t."""
    nonzero = (gt_boxes.abs().sum(dim=-1) != 0).nonzero()
    cnt = int(nonzero.max().item()) + 1 if nonzero.numel() else 0
    gt = gt_boxes[:cnt, :7]
    record: dict[str, int] = {"gt": int(cnt)}
    for t in thresh_list:
        for name, boxes in (("roi", rois), ("rcnn", box_preds)):
            if boxes is None:
                continue
            hit = 0
            if cnt > 0 and boxes.shape[0] > 0:
                iou = boxes_iou3d(boxes[:, :7], gt)
                hit = int((iou.max(dim=0).values > t).sum().item())
            record[f"{name}_{t}"] = hit
    return record
