"""The R-CNN second stage shared by PV-RCNN (VoTr-TSD) and Pyramid R-CNN (OpenPCDet v0.3).

`RoIHeadTemplate` holds everything a two-stage head needs except how RoI features are
pooled: proposal selection (class-agnostic rotated NMS over the first stage's boxes),
`ProposalTargetLayer` (RoI sampling and IoU-based labels), the canonical transform of the
targets into each RoI's frame, the losses, the decoding of refined boxes, and the shared
FC / classification / regression layers. A concrete head implements `roi_grid_pool`.

Re-derived from OpenPCDet's `roi_head_template.py` and `proposal_target_layer.py`; the
differences are refbench's: dataclass configs instead of EasyDict, torch random sampling
(no numpy), and an optional `append_gt_to_rois` switch (off by default, as in the
official sampler, which samples from the proposals only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.det3d.boxes import ResidualCoder, boxes_iou3d, rotated_nms
from refbench.baselines.det3d.losses import WeightedSmoothL1Loss, get_corner_loss_lidar
from refbench.errors import RefbenchError

__all__ = [
    "NMSConfig",
    "ProposalTargetConfig",
    "ProposalTargetLayer",
    "RoIHeadConfig",
    "RoIHeadTemplate",
    "RoILossConfig",
    "make_fc_layers",
    "make_shared_fc_layers",
    "rotate_points_along_z",
]


# -- configs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class NMSConfig:
    """Proposal selection: the `nms_pre_max` best boxes enter rotated BEV NMS at
    `nms_thresh`; at most `nms_post_max` RoIs per sample survive (zero padded)."""

    nms_pre_max: int
    nms_post_max: int
    nms_thresh: float


def _train_nms() -> NMSConfig:
    return NMSConfig(nms_pre_max=9000, nms_post_max=512, nms_thresh=0.8)


def _test_nms() -> NMSConfig:
    return NMSConfig(nms_pre_max=1024, nms_post_max=100, nms_thresh=0.7)


@dataclass(frozen=True)
class ProposalTargetConfig:
    """RoI sampling of pv_rcnn.yaml `ROI_HEAD.TARGET_CONFIG` (KITTI values)."""

    roi_per_image: int = 128
    fg_ratio: float = 0.5
    sample_roi_by_each_class: bool = True
    cls_score_type: str = "roi_iou"  # 'roi_iou' (soft IoU labels) or 'cls' (hard labels)
    cls_fg_thresh: float = 0.75
    cls_bg_thresh: float = 0.25
    cls_bg_thresh_lo: float = 0.1
    hard_bg_ratio: float = 0.8
    reg_fg_thresh: float = 0.55
    append_gt_to_rois: bool = False  # refbench switch: also sample the gt boxes as RoIs


@dataclass(frozen=True)
class RoILossConfig:
    """pv_rcnn.yaml `ROI_HEAD.LOSS_CONFIG`: BCE classification, smooth-L1 residuals plus
    the corner loss."""

    cls_loss: str = "BinaryCrossEntropy"  # or 'CrossEntropy'
    corner_loss_regularization: bool = True
    rcnn_cls_weight: float = 1.0
    rcnn_reg_weight: float = 1.0
    rcnn_corner_weight: float = 1.0
    code_weights: tuple[float, ...] = (1.0,) * 7


@dataclass
class RoIHeadConfig:
    """The layers and targets every RoI head shares (pv_rcnn.yaml `ROI_HEAD`)."""

    class_agnostic: bool = True
    shared_fc: tuple[int, ...] = (256, 256)
    cls_fc: tuple[int, ...] = (256, 256)
    reg_fc: tuple[int, ...] = (256, 256)
    dp_ratio: float = 0.3
    nms_train: NMSConfig = field(default_factory=_train_nms)
    nms_test: NMSConfig = field(default_factory=_test_nms)
    target: ProposalTargetConfig = field(default_factory=ProposalTargetConfig)
    loss: RoILossConfig = field(default_factory=RoILossConfig)

    def __post_init__(self) -> None:
        t = self.target
        if t.roi_per_image < 1 or not 0.0 <= t.fg_ratio <= 1.0:
            raise RefbenchError("RoI sampling needs roi_per_image >= 1 and 0 <= fg_ratio <= 1",
                                key="model.roi_head.target")
        if t.cls_score_type not in ("roi_iou", "cls"):
            raise RefbenchError(f"unknown cls_score_type {t.cls_score_type!r} "
                                "(expected 'roi_iou' or 'cls')", key="model.roi_head.target")
        if self.loss.cls_loss not in ("BinaryCrossEntropy", "CrossEntropy"):
            raise RefbenchError(f"unknown RoI classification loss {self.loss.cls_loss!r}",
                                key="model.roi_head.loss")


# -- small shared helpers ---------------------------------------------------------------------
def rotate_points_along_z(points: Tensor, angle: Tensor) -> Tensor:
    """Rotate the xyz columns of (B, N, 3+C) points counter-clockwise by (B,) angles
    (x towards y); other columns are kept. The frame change of the canonical transform."""
    c, s = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    x, y = points[..., 0], points[..., 1]
    return torch.cat([(x * c - y * s)[..., None], (x * s + y * c)[..., None], points[..., 2:]],
                     dim=-1)


def make_fc_layers(input_channels: int, fc_list: tuple[int, ...] | list[int],
                   output_channels: int, dropout: float) -> nn.Sequential:
    """Conv1d(k=1, no bias) + BN + ReLU per width, Dropout after the first block (the
    official `make_fc_layers`, where dropout >= 0 enables it), then a biased Conv1d to
    `output_channels`. Works on (N, C, 1) features."""
    layers: list[nn.Module] = []
    pre = input_channels
    for k, width in enumerate(fc_list):
        layers += [nn.Conv1d(pre, width, kernel_size=1, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        pre = width
        if dropout >= 0 and k == 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Conv1d(pre, output_channels, kernel_size=1, bias=True))
    return nn.Sequential(*layers)


def make_shared_fc_layers(input_channels: int, fc_list: tuple[int, ...] | list[int],
                          dropout: float) -> nn.Sequential:
    """The shared FC trunk: Conv1d(k=1) + BN + ReLU per width, Dropout between blocks
    (not after the last) when dropout > 0, as the official PV-RCNN head builds it."""
    layers: list[nn.Module] = []
    pre = input_channels
    for k, width in enumerate(fc_list):
        layers += [nn.Conv1d(pre, width, kernel_size=1, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        pre = width
        if k != len(fc_list) - 1 and dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


# -- RoI sampling ---------------------------------------------------------------------------
class ProposalTargetLayer(nn.Module):
    """Samples `roi_per_image` RoIs per sample (up to `fg_ratio` foreground, the rest hard
    and easy background) and labels them by 3D IoU with the gt boxes.

    Foreground: IoU >= min(reg_fg_thresh, cls_fg_thresh); easy background: IoU <
    cls_bg_thresh_lo; hard background: in between and below reg_fg_thresh. Regression is
    trained on IoU > reg_fg_thresh; the classification label is 1 above cls_fg_thresh, 0
    below cls_bg_thresh and linear in between ('roi_iou'), or hard with the in-between
    RoIs ignored (-1, 'cls')."""

    def __init__(self, cfg: ProposalTargetConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @torch.no_grad()
    def forward(self, batch_dict: dict[str, Any]) -> dict[str, Tensor]:
        """Returns rois (B, M, 7), gt_of_rois (B, M, 8), gt_iou_of_rois, roi_scores,
        roi_labels, reg_valid_mask (long) and rcnn_cls_labels (float) of M sampled RoIs."""
        cfg = self.cfg
        rois, ious, gts, scores, labels = self.sample_rois_for_rcnn(batch_dict)
        reg_valid_mask = (ious > cfg.reg_fg_thresh).long()
        if cfg.cls_score_type == "cls":
            cls_labels = (ious > cfg.cls_fg_thresh).float()
            ignore = (ious > cfg.cls_bg_thresh) & (ious < cfg.cls_fg_thresh)
            cls_labels[ignore] = -1
        else:
            fg = ious > cfg.cls_fg_thresh
            bg = ious < cfg.cls_bg_thresh
            between = ~fg & ~bg
            cls_labels = fg.float()
            cls_labels[between] = (ious[between] - cfg.cls_bg_thresh) / (
                cfg.cls_fg_thresh - cfg.cls_bg_thresh)
        return {"rois": rois, "gt_of_rois": gts, "gt_iou_of_rois": ious, "roi_scores": scores,
                "roi_labels": labels, "reg_valid_mask": reg_valid_mask,
                "rcnn_cls_labels": cls_labels}

    def sample_rois_for_rcnn(self, batch_dict: dict[str, Any]
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Per sample: IoU of every RoI with the (unpadded) gt boxes, then `subsample_rois`."""
        cfg = self.cfg
        batch_size = int(batch_dict["batch_size"])
        rois, roi_scores = batch_dict["rois"], batch_dict["roi_scores"]
        roi_labels, gt_boxes = batch_dict["roi_labels"], batch_dict["gt_boxes"]
        n, code = cfg.roi_per_image, rois.shape[-1]
        out_rois = rois.new_zeros(batch_size, n, code)
        out_gts = rois.new_zeros(batch_size, n, gt_boxes.shape[-1])
        out_ious = rois.new_zeros(batch_size, n)
        out_scores = rois.new_zeros(batch_size, n)
        out_labels = torch.zeros(batch_size, n, dtype=torch.long, device=rois.device)
        for b in range(batch_size):
            cur_roi, cur_gt = rois[b], gt_boxes[b]
            cur_labels, cur_scores = roi_labels[b].long(), roi_scores[b]
            keep = cur_gt.abs().sum(dim=-1) > 0  # padded gt rows are all zero
            cur_gt = cur_gt[keep]
            if cfg.append_gt_to_rois and cur_gt.shape[0] > 0:
                cur_roi = torch.cat([cur_roi, cur_gt[:, :code]], dim=0)
                cur_labels = torch.cat([cur_labels, cur_gt[:, -1].long()], dim=0)
                cur_scores = torch.cat([cur_scores, cur_scores.new_ones(cur_gt.shape[0])], dim=0)
            if cur_gt.shape[0] == 0:
                cur_gt = gt_boxes.new_zeros(1, gt_boxes.shape[-1])
            if cfg.sample_roi_by_each_class:
                max_iou, assign = self.get_max_iou_with_same_class(
                    cur_roi, cur_labels, cur_gt[:, 0:7], cur_gt[:, -1].long())
            else:
                max_iou, assign = torch.max(boxes_iou3d(cur_roi[:, 0:7], cur_gt[:, 0:7]), dim=1)
            sampled = self.subsample_rois(max_iou)
            out_rois[b] = cur_roi[sampled]
            out_labels[b] = cur_labels[sampled]
            out_ious[b] = max_iou[sampled]
            out_scores[b] = cur_scores[sampled]
            out_gts[b] = cur_gt[assign[sampled]]
        return out_rois, out_ious, out_gts, out_scores, out_labels

    def subsample_rois(self, max_overlaps: Tensor) -> Tensor:
        """(roi_per_image,) indices: random foreground up to fg_ratio, background filling
        the rest (`sample_bg_inds`); sampling with replacement when a pool is too small."""
        cfg = self.cfg
        device = max_overlaps.device
        fg_per_image = round(cfg.fg_ratio * cfg.roi_per_image)
        fg_thresh = min(cfg.reg_fg_thresh, cfg.cls_fg_thresh)
        fg_inds = torch.nonzero(max_overlaps >= fg_thresh).view(-1)
        easy_bg = torch.nonzero(max_overlaps < cfg.cls_bg_thresh_lo).view(-1)
        hard_bg = torch.nonzero((max_overlaps < cfg.reg_fg_thresh)
                                & (max_overlaps >= cfg.cls_bg_thresh_lo)).view(-1)
        n_fg, n_bg = fg_inds.numel(), hard_bg.numel() + easy_bg.numel()
        if n_fg > 0 and n_bg > 0:
            n_fg_take = min(fg_per_image, n_fg)
            fg_inds = fg_inds[torch.randperm(n_fg, device=device)[:n_fg_take]]
            bg_inds = self.sample_bg_inds(hard_bg, easy_bg, cfg.roi_per_image - n_fg_take,
                                          cfg.hard_bg_ratio)
        elif n_fg > 0:
            fg_inds = fg_inds[torch.randint(0, n_fg, (cfg.roi_per_image,), device=device)]
            bg_inds = fg_inds.new_zeros(0)
        elif n_bg > 0:
            fg_inds = fg_inds.new_zeros(0)
            bg_inds = self.sample_bg_inds(hard_bg, easy_bg, cfg.roi_per_image, cfg.hard_bg_ratio)
        else:
            raise RuntimeError("RoI sampling got no RoIs at all (empty proposal set)")
        return torch.cat([fg_inds, bg_inds]).long()

    @staticmethod
    def sample_bg_inds(hard_bg: Tensor, easy_bg: Tensor, n_bg: int, hard_ratio: float) -> Tensor:
        """`n_bg` background indices, `hard_ratio` of them hard when both pools exist
        (drawn with replacement, as the official sampler)."""
        device = hard_bg.device
        if hard_bg.numel() > 0 and easy_bg.numel() > 0:
            n_hard = min(int(n_bg * hard_ratio), hard_bg.numel())
            n_easy = n_bg - n_hard
            hard = hard_bg[torch.randint(0, hard_bg.numel(), (n_hard,), device=device)]
            easy = easy_bg[torch.randint(0, easy_bg.numel(), (n_easy,), device=device)]
            return torch.cat([hard, easy])
        pool = hard_bg if hard_bg.numel() > 0 else easy_bg
        return pool[torch.randint(0, pool.numel(), (n_bg,), device=device)]

    @staticmethod
    def get_max_iou_with_same_class(rois: Tensor, roi_labels: Tensor, gt_boxes: Tensor,
                                    gt_labels: Tensor) -> tuple[Tensor, Tensor]:
        """Max 3D IoU of each RoI over the gt boxes of its own class (0 when the class has
        no gt) and the index of that gt."""
        max_overlaps = rois.new_zeros(rois.shape[0])
        assignment = torch.zeros(rois.shape[0], dtype=torch.long, device=rois.device)
        for k in torch.unique(gt_labels).tolist():
            roi_mask, gt_mask = roi_labels == k, gt_labels == k
            if roi_mask.any() and gt_mask.any():
                iou = boxes_iou3d(rois[roi_mask][:, 0:7], gt_boxes[gt_mask])
                best, arg = torch.max(iou, dim=1)
                max_overlaps[roi_mask] = best
                assignment[roi_mask] = torch.nonzero(gt_mask).view(-1)[arg]
        return max_overlaps, assignment


# -- the head template ----------------------------------------------------------------------
class RoIHeadTemplate(nn.Module):
    """Two-stage head skeleton; subclasses supply the RoI feature pooling.

    Contract for a subclass (PV-RCNN's RoI-grid pooling, Pyramid R-CNN's pyramid pooling):

    1. In `__init__`, call `super().__init__(num_class, cfg)`, build the pooling modules,
       then call `self.build_layers(pooled_channels)` LAST, where `pooled_channels` is
       C_flat, the flattened size of one RoI's pooled features. It creates
       `shared_fc_layer` (cfg.shared_fc), `cls_layers` (cfg.cls_fc -> 1 logit) and
       `reg_layers` (cfg.reg_fc -> 7 residuals) and initialises
       every Conv1d/Conv2d of the head (xavier; the last regression conv N(0, 0.001)).
    2. Implement `roi_grid_pool(batch_dict)` returning the pooled features of the RoIs in
       `batch_dict['rois']` (B, R, 7), in B-major, R-minor order: either (B*R, C, G)
       (channels x grid points; flattened channel-major as the official head does) or
       already flat (B*R, C_flat).

    `forward` then runs: proposal selection (`proposal_layer`, skipped when the batch has
    no `batch_cls_preds` but already carries `rois`/`roi_scores`/`roi_labels`), training
    target assignment (RoIs replaced by the sampled ones), `roi_grid_pool`, the shared FC
    on (B*R, C_flat, 1), then `cls_layers` and `reg_layers`. In training it keeps the
    targets and predictions for `get_loss()`; in evaluation it writes `batch_cls_preds`
    (B, R, 1) logits, `batch_box_preds` (B, R, 7) and `cls_preds_normalized` = False.
    """

    def __init__(self, num_class: int, cfg: RoIHeadConfig) -> None:
        super().__init__()
        if not cfg.class_agnostic and num_class > 1:
            raise RefbenchError("only class-agnostic RoI heads are supported (the official "
                                "setting: one score and one box per RoI)",
                                key="model.roi_head.class_agnostic")
        self.cfg = cfg
        self.num_class = num_class
        self.box_coder = ResidualCoder(code_size=7)
        self.proposal_target_layer = ProposalTargetLayer(cfg.target)
        self.reg_loss_func = WeightedSmoothL1Loss(code_weights=cfg.loss.code_weights)
        self.forward_ret_dict: dict[str, Tensor] | None = None

    # layers ---------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        """One score and one box per RoI: the head is class agnostic (official KITTI
        setting); the class comes from the first stage's `roi_labels`."""
        return 1

    def build_layers(self, pooled_channels: int) -> None:
        """Shared FC, classification and regression layers on C_flat pooled features."""
        cfg = self.cfg
        self.shared_fc_layer = make_shared_fc_layers(pooled_channels, cfg.shared_fc, cfg.dp_ratio)
        pre = cfg.shared_fc[-1] if cfg.shared_fc else pooled_channels
        self.cls_layers = make_fc_layers(pre, cfg.cls_fc, self.num_outputs, cfg.dp_ratio)
        self.reg_layers = make_fc_layers(pre, cfg.reg_fc, self.box_coder.code_size * self.num_outputs,
                                         cfg.dp_ratio)
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-normal convolutions with zero bias, and a near-zero last regression
        layer so that refinement starts from the RoIs themselves (official init)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        nn.init.normal_(self.reg_layers[-1].weight, mean=0, std=0.001)

    def roi_grid_pool(self, batch_dict: dict[str, Any]) -> Tensor:
        """Pooled RoI features, (B*R, C, G) or (B*R, C_flat); see the class docstring."""
        raise NotImplementedError

    # proposals and targets ------------------------------------------------------------
    @torch.no_grad()
    def proposal_layer(self, batch_dict: dict[str, Any], nms_config: NMSConfig) -> dict[str, Any]:
        """Per sample: the `nms_pre_max` boxes with the best max-class score, class-agnostic
        rotated BEV NMS at `nms_thresh`, at most `nms_post_max` kept -> `rois` (B, R, 7),
        `roi_scores` (B, R) (the first stage's raw scores), `roi_labels` (B, R) 1-based
        argmax classes, `has_class_labels`; rows past the kept boxes stay zero."""
        batch_size = int(batch_dict["batch_size"])
        box_preds_all, cls_preds_all = batch_dict["batch_box_preds"], batch_dict["batch_cls_preds"]
        batch_index = batch_dict.get("batch_index")
        post = nms_config.nms_post_max
        rois = box_preds_all.new_zeros(batch_size, post, box_preds_all.shape[-1])
        roi_scores = box_preds_all.new_zeros(batch_size, post)
        roi_labels = torch.zeros(batch_size, post, dtype=torch.long, device=box_preds_all.device)
        for b in range(batch_size):
            if batch_index is not None:
                mask = batch_index == b
                box_preds, cls_preds = box_preds_all[mask], cls_preds_all[mask]
            else:
                box_preds, cls_preds = box_preds_all[b], cls_preds_all[b]
            scores, labels = torch.max(cls_preds, dim=1)
            if scores.numel() == 0:
                continue
            top_scores, top = torch.topk(scores, k=min(nms_config.nms_pre_max, scores.numel()))
            keep = rotated_nms(box_preds[top][:, 0:7], top_scores, nms_config.nms_thresh,
                               post_max=post)
            selected = top[keep[:post]]
            n = selected.numel()
            rois[b, :n] = box_preds[selected]
            roi_scores[b, :n] = scores[selected]
            roi_labels[b, :n] = labels[selected]
        batch_dict["rois"] = rois
        batch_dict["roi_scores"] = roi_scores
        batch_dict["roi_labels"] = roi_labels + 1
        batch_dict["has_class_labels"] = cls_preds_all.shape[-1] > 1
        batch_dict.pop("batch_index", None)
        return batch_dict

    def assign_targets(self, batch_dict: dict[str, Any]) -> dict[str, Tensor]:
        """Sample RoIs and express each assigned gt in its RoI's canonical frame: centre
        offset rotated by -heading, heading difference flipped by pi when it points
        backwards so that the target heading lies in [-pi/2, pi/2]. `gt_of_rois_src` keeps
        the gt in the LiDAR frame for the corner loss."""
        batch_size = int(batch_dict["batch_size"])
        with torch.no_grad():
            targets = self.proposal_target_layer(batch_dict)
        rois, gt = targets["rois"], targets["gt_of_rois"]
        targets["gt_of_rois_src"] = gt.clone().detach()
        targets["gt_of_rois"] = self.canonical_transform(rois, gt, batch_size)
        return targets

    @staticmethod
    def canonical_transform(rois: Tensor, gt_of_rois: Tensor, batch_size: int) -> Tensor:
        """(B, M, 7+C) gt boxes in the frames of their (B, M, 7) RoIs (see assign_targets)."""
        roi_ry = rois[:, :, 6] % (2 * math.pi)
        gt = gt_of_rois.clone()
        gt[:, :, 0:3] = gt[:, :, 0:3] - rois[:, :, 0:3]
        gt[:, :, 6] = gt[:, :, 6] - roi_ry
        gt = rotate_points_along_z(gt.view(-1, 1, gt.shape[-1]), -roi_ry.reshape(-1)).view(
            batch_size, -1, gt.shape[-1])
        heading = gt[:, :, 6] % (2 * math.pi)
        opposite = (heading > math.pi * 0.5) & (heading < math.pi * 1.5)
        heading = torch.where(opposite, (heading + math.pi) % (2 * math.pi), heading)
        heading = torch.where(heading > math.pi, heading - 2 * math.pi, heading)
        gt[:, :, 6] = torch.clamp(heading, min=-math.pi / 2, max=math.pi / 2)
        return gt

    # forward --------------------------------------------------------------------------
    def forward(self, batch_dict: dict[str, Any]) -> dict[str, Any]:
        """Select proposals, (train) sample targets, pool, predict; see the class docstring."""
        nms_config = self.cfg.nms_train if self.training else self.cfg.nms_test
        if "batch_cls_preds" in batch_dict:
            self.proposal_layer(batch_dict, nms_config)
        elif not all(k in batch_dict for k in ("rois", "roi_scores", "roi_labels")):
            raise ValueError("RoI head needs batch_cls_preds/batch_box_preds or rois, "
                             "roi_scores and roi_labels")
        targets: dict[str, Tensor] = {}
        if self.training:
            targets = self.assign_targets(batch_dict)
            batch_dict["rois"] = targets["rois"]
            batch_dict["roi_labels"] = targets["roi_labels"]

        pooled = self.roi_grid_pool(batch_dict)
        n = pooled.shape[0]
        shared = self.shared_fc_layer(pooled.reshape(n, -1, 1))
        rcnn_cls = self.cls_layers(shared).squeeze(-1)  # (B*R, 1 or num_class)
        rcnn_reg = self.reg_layers(shared).squeeze(-1)  # (B*R, 7 or 7 * num_class)

        if self.training:
            targets["rcnn_cls"] = rcnn_cls
            targets["rcnn_reg"] = rcnn_reg
            self.forward_ret_dict = targets
        else:
            cls_preds, box_preds = self.generate_predicted_boxes(
                int(batch_dict["batch_size"]), batch_dict["rois"], rcnn_cls, rcnn_reg)
            batch_dict["batch_cls_preds"] = cls_preds
            batch_dict["batch_box_preds"] = box_preds
            batch_dict["cls_preds_normalized"] = False
        return batch_dict

    # losses ---------------------------------------------------------------------------
    def get_box_cls_layer_loss(self, ret: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Mean BCE (on the sigmoid of the logits) over RoIs whose label is not -1."""
        rcnn_cls = ret["rcnn_cls"]
        labels = ret["rcnn_cls_labels"].view(-1)
        valid = (labels >= 0).to(rcnn_cls.dtype)
        if self.cfg.loss.cls_loss == "BinaryCrossEntropy":
            loss = F.binary_cross_entropy(torch.sigmoid(rcnn_cls.view(-1)),
                                          labels.clamp_min(0).to(rcnn_cls.dtype), reduction="none")
        else:
            loss = F.cross_entropy(rcnn_cls, labels.long(), reduction="none", ignore_index=-1)
        loss = (loss * valid).sum() / valid.sum().clamp_min(1.0)
        loss = loss * self.cfg.loss.rcnn_cls_weight
        return loss, {"rcnn_loss_cls": float(loss.detach())}

    def get_box_reg_layer_loss(self, ret: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Smooth-L1 on the residuals of the foreground RoIs against their canonical RoI
        (centre and heading zeroed), plus the corner loss of the decoded boxes in the LiDAR
        frame against the original gt."""
        lcfg = self.cfg.loss
        code = self.box_coder.code_size
        fg_mask = ret["reg_valid_mask"].view(-1) > 0
        fg_sum = int(fg_mask.sum())
        gt_ct = ret["gt_of_rois"][..., 0:code].reshape(-1, code)
        gt_src = ret["gt_of_rois_src"][..., 0:code].reshape(-1, code)
        rcnn_reg = ret["rcnn_reg"].reshape(gt_ct.shape[0], -1)
        rois = ret["rois"].reshape(-1, code)

        anchors = rois.clone().detach()
        anchors[:, 0:3] = 0
        anchors[:, 6] = 0
        reg_targets = self.box_coder.encode(gt_ct, anchors)
        loss = self.reg_loss_func(rcnn_reg[None], reg_targets[None])[0]
        loss = (loss * fg_mask[:, None].to(loss.dtype)).sum() / max(fg_sum, 1)
        loss = loss * lcfg.rcnn_reg_weight
        tb = {"rcnn_loss_reg": float(loss.detach())}

        if lcfg.corner_loss_regularization and fg_sum > 0:
            fg_rois = rois[fg_mask]
            pred = self._decode_in_roi_frames(rcnn_reg[fg_mask], fg_rois)
            corner = get_corner_loss_lidar(pred[:, 0:7], gt_src[fg_mask][:, 0:7]).mean()
            corner = corner * lcfg.rcnn_corner_weight
            loss = loss + corner
            tb["rcnn_loss_corner"] = float(corner.detach())
        return loss, tb

    def get_loss(self, tb_dict: dict[str, float] | None = None) -> tuple[Tensor, dict[str, float]]:
        """rcnn_loss = classification + regression (+ corner) of the last training forward."""
        if self.forward_ret_dict is None:
            raise RuntimeError("get_loss() needs a forward pass in training mode first")
        tb = {} if tb_dict is None else tb_dict
        loss_cls, tb_cls = self.get_box_cls_layer_loss(self.forward_ret_dict)
        loss_reg, tb_reg = self.get_box_reg_layer_loss(self.forward_ret_dict)
        loss = loss_cls + loss_reg
        tb.update(tb_cls)
        tb.update(tb_reg)
        tb["rcnn_loss"] = float(loss.detach())
        return loss, tb

    # decoding -------------------------------------------------------------------------
    def _decode_in_roi_frames(self, deltas: Tensor, rois: Tensor) -> Tensor:
        """(N, 7) LiDAR boxes from (N, 7) residuals against (N, 7) RoIs: decode against the
        RoI moved to the origin (heading kept), rotate by the RoI heading, add its centre."""
        local = rois.clone().detach()
        local[:, 0:3] = 0
        boxes = self.box_coder.decode(deltas, local)
        boxes = rotate_points_along_z(boxes[:, None, :], rois[:, 6]).squeeze(1)
        return torch.cat([boxes[:, 0:3] + rois[:, 0:3], boxes[:, 3:]], dim=-1)

    def generate_predicted_boxes(self, batch_size: int, rois: Tensor, cls_preds: Tensor,
                                 box_preds: Tensor) -> tuple[Tensor, Tensor]:
        """(B, R, C) class logits and (B, R, 7) LiDAR boxes from the head's (B*R, C) and
        (B*R, 7) outputs for `rois` (B, R, 7)."""
        code = self.box_coder.code_size
        batch_cls = cls_preds.view(batch_size, -1, cls_preds.shape[-1])
        boxes = self._decode_in_roi_frames(box_preds.reshape(-1, code), rois.reshape(-1, code))
        return batch_cls, boxes.view(batch_size, -1, code)
