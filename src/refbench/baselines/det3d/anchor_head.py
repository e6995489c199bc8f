"""Anchor-based dense head of SECOND-style detectors (OpenPCDet v0.3 `AnchorHeadSingle`).

Re-derived from OpenPCDet's `AnchorHeadTemplate` / `AnchorHeadSingle`, `AnchorGenerator` and
`AxisAlignedTargetAssigner`; the semantics that matter for reproducing its numbers:

Anchors. For every anchor class, centres lie on the BEV feature map grid (nx = grid_x //
stride, ny = grid_y // stride): x = x0 + i (x1 - x0) / (nx - 1) (the first and last centres on
the range edges), or with `align_center` x = x0 + (i + 1/2) (x1 - x0) / nx; the same in y.
z = bottom_height + dz / 2 (box centres). One class's anchors have shape
(nz=1, ny, nx, num_sizes, num_rotations, 7) and the head flattens all classes as
(y, x, class, size, rotation), which is also the order of the 1x1 conv channels.

Targets (per sample, per anchor class, against the gt boxes of that class only): the
(nearest-BEV, i.e. axis-aligned after snapping the heading to 0 or pi/2) IoU matrix;
each anchor takes its best gt; positives have IoU >= matched_threshold; every gt's best
anchors (ALL anchors tied at that gt's best IoU, provided it is > 0) are positives too
(force match), labelled with the class of their own best gt; negatives have IoU <
unmatched_threshold (force matches excepted); the rest is ignored (-1). Box targets are
ResidualCoder codes of an anchor's best gt. Trailing all-zero rows of `gt_boxes` are padding.

Losses (`get_loss`): sigmoid focal loss on all cared anchors (one-hot targets without the
background column; positives and negatives weight 1, divided by the sample's number of
positives, at least 1; summed, divided by the batch size) * cls_weight; smooth-L1
(beta 1/9) on positives with the heading code replaced by the sin-difference trick, same
normalisation, * loc_weight; softmax direction classification on positives (bin of
limit_period(heading - dir_offset, 0, 2 pi), num_dir_bins bins) * dir_weight.

Prediction: boxes are decoded from the anchors; with the direction classifier the heading
is folded into one period 2 pi / num_bins, rot' = limit_period(rot - dir_offset,
dir_limit_offset, period) + dir_offset + period * argmax(dir logits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from refbench.baselines.det3d.boxes import (
    ResidualCoder,
    boxes_iou3d,
    boxes_nearest_bev_iou,
    limit_period,
)
from refbench.baselines.det3d.losses import (
    SigmoidFocalClassificationLoss,
    WeightedCrossEntropyLoss,
    WeightedSmoothL1Loss,
    add_sin_difference,
)
from refbench.errors import RefbenchError

__all__ = [
    "AnchorClassConfig",
    "AnchorGenerator",
    "AnchorHeadConfig",
    "AnchorHeadSingle",
    "AxisAlignedTargetAssigner",
    "anchors_per_location",
    "decode_direction",
    "get_direction_target",
    "kitti_anchor",
]

_KEY = "model.head"


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------
@dataclass
class AnchorClassConfig:
    """One entry of OpenPCDet's ANCHOR_GENERATOR_CONFIG: the anchors of one class and the
    IoU thresholds its targets are matched with."""

    class_name: str
    anchor_sizes: list[list[float]]
    anchor_rotations: list[float]
    anchor_bottom_heights: list[float]
    matched_threshold: float
    unmatched_threshold: float
    feature_map_stride: int = 8
    align_center: bool = False

    def __post_init__(self) -> None:
        key = f"{_KEY}.anchors.{self.class_name}"
        sizes = [list(map(float, s)) for s in self.anchor_sizes]
        if not sizes or any(len(s) != 3 or min(s) <= 0 for s in sizes):
            raise RefbenchError("anchor_sizes must be a non-empty list of positive [dx, dy, dz]",
                                key=f"{key}.anchor_sizes")
        if not self.anchor_rotations:
            raise RefbenchError("anchor_rotations must not be empty", key=f"{key}.anchor_rotations")
        if not self.anchor_bottom_heights:
            raise RefbenchError("anchor_bottom_heights must not be empty",
                                key=f"{key}.anchor_bottom_heights")
        if not 0.0 <= float(self.unmatched_threshold) <= float(self.matched_threshold) <= 1.0:
            raise RefbenchError("need 0 <= unmatched_threshold <= matched_threshold <= 1",
                                key=f"{key}.matched_threshold")
        if int(self.feature_map_stride) < 1:
            raise RefbenchError("feature_map_stride must be >= 1", key=f"{key}.feature_map_stride")
        self.anchor_sizes = sizes
        self.anchor_rotations = [float(r) for r in self.anchor_rotations]
        self.anchor_bottom_heights = [float(h) for h in self.anchor_bottom_heights]
        self.matched_threshold = float(self.matched_threshold)
        self.unmatched_threshold = float(self.unmatched_threshold)
        self.feature_map_stride = int(self.feature_map_stride)
        self.align_center = bool(self.align_center)

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.anchor_sizes) * len(self.anchor_rotations) * len(self.anchor_bottom_heights)


# OpenPCDet's KITTI anchors (second.yaml / pv_rcnn.yaml): size [dx, dy, dz], bottom z,
# matched / unmatched IoU. Tuples: never mutated; `kitti_anchor` builds fresh configs.
_KITTI_ANCHORS: Mapping[str, tuple[tuple[float, float, float], float, float, float]] = {
    "Car": ((3.9, 1.6, 1.56), -1.78, 0.6, 0.45),
    "Pedestrian": ((0.8, 0.6, 1.73), -0.6, 0.5, 0.35),
    "Cyclist": ((1.76, 0.6, 1.73), -0.6, 0.5, 0.35),
}


def kitti_anchor(name: str, feature_map_stride: int = 8) -> AnchorClassConfig:
    """The official KITTI anchor config of class `name` (rotations 0 and 1.57)."""
    if name not in _KITTI_ANCHORS:
        raise RefbenchError(f"no KITTI anchor config for class {name!r} "
                            f"(known: {', '.join(_KITTI_ANCHORS)})", key=f"{_KEY}.anchors")
    size, bottom, matched, unmatched = _KITTI_ANCHORS[name]
    return AnchorClassConfig(class_name=name, anchor_sizes=[list(size)], anchor_rotations=[0.0, 1.57],
                             anchor_bottom_heights=[bottom], matched_threshold=matched,
                             unmatched_threshold=unmatched, feature_map_stride=feature_map_stride)


@dataclass
class AnchorHeadConfig:
    """`AnchorHeadSingle` settings with OpenPCDet's KITTI SECOND defaults.

    `pos_fraction` None (official -1) trains on all cared anchors; a value samples
    `sample_size` anchors with at most that fraction of positives.
    """

    anchors: list[AnchorClassConfig]
    use_direction_classifier: bool = True
    dir_offset: float = 0.78539
    dir_limit_offset: float = 0.0
    num_dir_bins: int = 2
    pos_fraction: float | None = None
    sample_size: int = 512
    norm_by_num_examples: bool = False
    match_height: bool = False
    cls_weight: float = 1.0
    loc_weight: float = 2.0
    dir_weight: float = 0.2
    code_weights: list[float] = field(default_factory=lambda: [1.0] * 7)

    def __post_init__(self) -> None:
        anchors = [a if isinstance(a, AnchorClassConfig) else AnchorClassConfig(**dict(a))
                   for a in self.anchors]
        if not anchors:
            raise RefbenchError("at least one anchor class is needed", key=f"{_KEY}.anchors")
        names = [a.class_name for a in anchors]
        if len(set(names)) != len(names):
            raise RefbenchError("anchor classes must be unique", key=f"{_KEY}.anchors")
        self.anchors = anchors
        if int(self.num_dir_bins) < 1:
            raise RefbenchError("num_dir_bins must be >= 1", key=f"{_KEY}.num_dir_bins")
        self.num_dir_bins = int(self.num_dir_bins)
        if self.pos_fraction is not None and float(self.pos_fraction) < 0:
            self.pos_fraction = None  # the official "-1.0" means no sampling
        if self.pos_fraction is not None and not 0.0 <= float(self.pos_fraction) <= 1.0:
            raise RefbenchError("pos_fraction must be in [0, 1] (or null)", key=f"{_KEY}.pos_fraction")
        if int(self.sample_size) < 1:
            raise RefbenchError("sample_size must be >= 1", key=f"{_KEY}.sample_size")
        if len(self.code_weights) != 7:
            raise RefbenchError("code_weights must have 7 values", key=f"{_KEY}.code_weights")
        self.code_weights = [float(w) for w in self.code_weights]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for run records)."""
        return asdict(self)


# --------------------------------------------------------------------------------------
# anchors
# --------------------------------------------------------------------------------------
class AnchorGenerator:
    """Anchors of every anchor class on its BEV feature map (OpenPCDet's AnchorGenerator)."""

    def __init__(self, anchor_range: Sequence[float], anchor_generator_config: Sequence[AnchorClassConfig]) -> None:
        if len(anchor_range) != 6:
            raise RefbenchError("point_cloud_range must have 6 values", key="model.point_cloud_range")
        self.anchor_range = [float(v) for v in anchor_range]
        self.configs = list(anchor_generator_config)

    def generate_anchors(self, grid_sizes: Sequence[Sequence[int]], device: torch.device | str | None = None,
                         dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], list[int]]:
        """grid_sizes: one (nx, ny) feature map size per anchor class. Returns the anchors,
        each (1, ny, nx, num_sizes, num_rotations, 7) for a single bottom height (nz = number
        of bottom heights), and the number of anchors per location of each class."""
        if len(grid_sizes) != len(self.configs):
            raise ValueError("one feature map size per anchor class is needed")
        x0, y0, _, x1, y1, _ = self.anchor_range
        all_anchors: list[torch.Tensor] = []
        per_location: list[int] = []
        for (nx, ny), cfg in zip(grid_sizes, self.configs):
            nx, ny = int(nx), int(ny)
            if nx < 1 or ny < 1 or (not cfg.align_center and (nx < 2 or ny < 2)):
                raise RefbenchError(f"feature map {nx}x{ny} is too small for anchors",
                                    key=f"{_KEY}.anchors.{cfg.class_name}.feature_map_stride")
            per_location.append(cfg.num_anchors_per_location)
            if cfg.align_center:
                sx, sy = (x1 - x0) / nx, (y1 - y0) / ny
                ox, oy = sx / 2, sy / 2
            else:
                sx, sy = (x1 - x0) / (nx - 1), (y1 - y0) / (ny - 1)
                ox = oy = 0.0
            xs = x0 + ox + sx * torch.arange(nx, device=device, dtype=torch.float64)
            ys = y0 + oy + sy * torch.arange(ny, device=device, dtype=torch.float64)
            zs = torch.tensor(cfg.anchor_bottom_heights, device=device, dtype=torch.float64)
            sizes = torch.tensor(cfg.anchor_sizes, device=device, dtype=torch.float64)  # (S, 3)
            rots = torch.tensor(cfg.anchor_rotations, device=device, dtype=torch.float64)  # (R,)
            nz, ns, nr = zs.numel(), sizes.shape[0], rots.numel()
            zg, yg, xg = torch.meshgrid(zs, ys, xs, indexing="ij")  # (nz, ny, nx)
            shape = (nz, ny, nx, ns, nr)
            centre = torch.stack([xg, yg, zg], dim=-1)[:, :, :, None, None, :].expand(*shape, 3)
            size = sizes[None, None, None, :, None, :].expand(*shape, 3)
            rot = rots[None, None, None, None, :, None].expand(*shape, 1)
            anchors = torch.cat([centre, size, rot], dim=-1).clone()
            anchors[..., 2] += anchors[..., 5] / 2  # bottom height -> box centre
            all_anchors.append(anchors.to(dtype).contiguous())
        return all_anchors, per_location


def anchors_per_location(anchors: torch.Tensor) -> torch.Tensor:
    """(nz, ny, nx, S, R, 7) anchors of one class -> (ny, nx, nz * S * R, 7), the grouping of
    the head's conv channels (for one bottom height, OpenPCDet's plain flattening)."""
    if anchors.dim() != 6:
        raise ValueError("anchors must be (nz, ny, nx, num_sizes, num_rotations, 7)")
    ny, nx = anchors.shape[1:3]
    return anchors.permute(1, 2, 0, 3, 4, 5).reshape(ny, nx, -1, anchors.shape[-1])


# --------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------
class AxisAlignedTargetAssigner:
    """Anchor labels and box targets by IoU thresholds (OpenPCDet's AxisAlignedTargetAssigner)."""

    def __init__(self, anchor_configs: Sequence[AnchorClassConfig], class_names: Sequence[str],
                 box_coder: ResidualCoder, match_height: bool = False, pos_fraction: float | None = None,
                 sample_size: int = 512, norm_by_num_examples: bool = False) -> None:
        self.configs = list(anchor_configs)
        self.class_names = list(class_names)
        for cfg in self.configs:
            if cfg.class_name not in self.class_names:
                raise RefbenchError(f"anchor class {cfg.class_name!r} is not one of the model's classes "
                                    f"{self.class_names}", key=f"{_KEY}.anchors")
        self.box_coder = box_coder
        self.match_height = bool(match_height)
        self.pos_fraction = None if pos_fraction is None or pos_fraction < 0 else float(pos_fraction)
        self.sample_size = int(sample_size)
        self.norm_by_num_examples = bool(norm_by_num_examples)

    def assign_targets(self, all_anchors: Sequence[torch.Tensor], gt_boxes_with_classes: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
        """all_anchors: per class (nz, ny, nx, S, R, 7); gt_boxes_with_classes:
        (B, M, 8), class id (1-based, into class_names) last. Returns `box_cls_labels` (B, A)
        int (-1 ignore, 0 background, class id), `box_reg_targets` (B, A, code_size),
        `reg_weights` (B, A), anchors ordered as the head flattens them."""
        batch_size = gt_boxes_with_classes.shape[0]
        labels_b, targets_b, weights_b = [], [], []
        for k in range(batch_size):
            cur = gt_boxes_with_classes[k]
            nonzero_rows = (cur.abs().sum(dim=-1) != 0).nonzero()
            cnt = int(nonzero_rows.max().item()) + 1 if nonzero_rows.numel() else 0
            cur = cur[:cnt]  # trailing all-zero rows are padding
            cur_classes = cur[:, 7].round().long()
            cur_boxes = cur[:, :7]
            per_class = []
            for cfg, anchors in zip(self.configs, all_anchors):
                loc = anchors_per_location(anchors)  # (ny, nx, k, 7)
                class_id = self.class_names.index(cfg.class_name) + 1
                mask = cur_classes == class_id
                single = self.assign_targets_single(
                    loc.reshape(-1, loc.shape[-1]), cur_boxes[mask], cur_classes[mask],
                    cfg.matched_threshold, cfg.unmatched_threshold)
                per_class.append({key: val.view(*loc.shape[:3], *val.shape[1:])
                                  for key, val in single.items()})
            labels_b.append(torch.cat([t["box_cls_labels"] for t in per_class], dim=2).reshape(-1))
            targets_b.append(torch.cat([t["box_reg_targets"] for t in per_class], dim=2)
                             .reshape(-1, self.box_coder.code_size))
            weights_b.append(torch.cat([t["reg_weights"] for t in per_class], dim=2).reshape(-1))
        return {
            "box_cls_labels": torch.stack(labels_b, dim=0),
            "box_reg_targets": torch.stack(targets_b, dim=0),
            "reg_weights": torch.stack(weights_b, dim=0),
        }

    def _overlap(self, anchors: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        if self.match_height:
            return boxes_iou3d(anchors[:, :7], gt_boxes[:, :7])
        return boxes_nearest_bev_iou(anchors[:, :7], gt_boxes[:, :7])

    def assign_targets_single(self, anchors: torch.Tensor, gt_boxes: torch.Tensor, gt_classes: torch.Tensor,
                              matched_threshold: float = 0.6, unmatched_threshold: float = 0.45
                              ) -> dict[str, torch.Tensor]:
        """anchors (A, 7) of one class against that class's gt boxes (M, 7) with their class
        ids (M,). Returns labels (A,), box targets (A, code_size) and reg weights (A,)."""
        device = anchors.device
        num_anchors, num_gt = anchors.shape[0], gt_boxes.shape[0]
        labels = torch.full((num_anchors,), -1, dtype=torch.int64, device=device)
        gt_classes = gt_classes.to(device=device, dtype=torch.int64)
        has_gt = num_gt > 0 and num_anchors > 0
        if has_gt:
            overlap = self._overlap(anchors, gt_boxes)  # (A, M)
            anchor_to_gt_argmax = overlap.argmax(dim=1)
            anchor_to_gt_max = overlap.gather(1, anchor_to_gt_argmax[:, None])[:, 0]
            gt_to_anchor_max = overlap.max(dim=0).values.clone()
            gt_to_anchor_max[gt_to_anchor_max == 0] = -1  # a gt no anchor touches forces nothing
            force = (overlap == gt_to_anchor_max[None, :]).nonzero()[:, 0]  # ties included
            gt_inds_force = anchor_to_gt_argmax[force]
            labels[force] = gt_classes[gt_inds_force]
            pos = anchor_to_gt_max >= matched_threshold
            labels[pos] = gt_classes[anchor_to_gt_argmax[pos]]
            bg_inds = (anchor_to_gt_max < unmatched_threshold).nonzero()[:, 0]
        else:
            bg_inds = torch.arange(num_anchors, device=device)
        fg_inds = (labels > 0).nonzero()[:, 0]

        if self.pos_fraction is not None:
            # OpenPCDet samples here with two index slips (positions in fg_inds used as
            # anchor ids; bg drawn with replacement, none at all when there are few):
            # this follows the intent, at most pos_fraction * sample_size positives and
            # background up to sample_size anchors in all.
            num_fg = int(self.pos_fraction * self.sample_size)
            if fg_inds.numel() > num_fg:
                drop = fg_inds[torch.randperm(fg_inds.numel(), device=device)[:fg_inds.numel() - num_fg]]
                labels[drop] = -1
                fg_inds = (labels > 0).nonzero()[:, 0]
            bg_free = bg_inds[labels[bg_inds] <= 0]
            num_bg = self.sample_size - int(fg_inds.numel())
            if bg_free.numel() > num_bg:
                bg_free = bg_free[torch.randperm(bg_free.numel(), device=device)[:max(num_bg, 0)]]
            labels[bg_free] = 0
        elif not has_gt:
            labels[:] = 0
        else:
            labels[bg_inds] = 0
            labels[force] = gt_classes[gt_inds_force]  # force matches stay positive

        targets = anchors.new_zeros((num_anchors, self.box_coder.code_size))
        if has_gt and fg_inds.numel() > 0:
            targets[fg_inds] = self.box_coder.encode(gt_boxes[anchor_to_gt_argmax[fg_inds]], anchors[fg_inds])
        reg_weights = anchors.new_zeros((num_anchors,))
        if self.norm_by_num_examples:
            num_examples = max(float((labels >= 0).sum().item()), 1.0)
            reg_weights[labels > 0] = 1.0 / num_examples
        else:
            reg_weights[labels > 0] = 1.0
        return {"box_cls_labels": labels, "box_reg_targets": targets, "reg_weights": reg_weights}


# --------------------------------------------------------------------------------------
# direction bins
# --------------------------------------------------------------------------------------
def get_direction_target(anchors: torch.Tensor, reg_targets: torch.Tensor, dir_offset: float = 0.0,
                         num_bins: int = 2, one_hot: bool = True) -> torch.Tensor:
    """Direction bin of each anchor's gt heading (anchor heading + residual): the bin of
    limit_period(heading - dir_offset, 0, 2 pi) among `num_bins` equal bins. anchors
    (B, A, 7) or (A, 7); reg_targets (B, A, code). One-hot (B, A, num_bins) or ids (B, A)."""
    batch_size = reg_targets.shape[0]
    anchors = anchors.reshape(-1, anchors.shape[-1]).expand(batch_size, -1, -1) \
        if anchors.dim() == 2 else anchors.view(batch_size, -1, anchors.shape[-1])
    rot_gt = reg_targets[..., 6] + anchors[..., 6]
    offset_rot = limit_period(rot_gt - dir_offset, 0, 2 * math.pi)
    bins = torch.floor(offset_rot / (2 * math.pi / num_bins)).long().clamp(min=0, max=num_bins - 1)
    if not one_hot:
        return bins
    out = torch.zeros(*bins.shape, num_bins, dtype=anchors.dtype, device=bins.device)
    out.scatter_(-1, bins.unsqueeze(-1), 1.0)
    return out


def decode_direction(headings: torch.Tensor, dir_labels: torch.Tensor, dir_offset: float,
                     dir_limit_offset: float, num_bins: int) -> torch.Tensor:
    """Fold decoded headings into one bin period and add the classified bin:
    limit_period(rot - dir_offset, dir_limit_offset, P) + dir_offset + P * bin, P = 2 pi / bins."""
    period = 2 * math.pi / num_bins
    dir_rot = limit_period(headings - dir_offset, dir_limit_offset, period)
    return dir_rot + dir_offset + period * dir_labels.to(headings.dtype)


# --------------------------------------------------------------------------------------
# the head
# --------------------------------------------------------------------------------------
class AnchorHeadSingle(nn.Module):
    """1x1 conv class / box / direction predictions for every anchor of every class on one
    BEV feature map (`spatial_features_2d`), with OpenPCDet's targets and losses."""

    def __init__(self, cfg: AnchorHeadConfig, input_channels: int, class_names: Sequence[str],
                 grid_size: Sequence[int], point_cloud_range: Sequence[float],
                 predict_boxes_when_training: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.class_names = list(class_names)
        self.num_class = len(self.class_names)
        if self.num_class < 1:
            raise RefbenchError("the model needs at least one class", key="model.class_names")
        self.predict_boxes_when_training = bool(predict_boxes_when_training)
        self.box_coder = ResidualCoder(code_size=7)
        code_size = self.box_coder.code_size

        grid = [int(g) for g in list(grid_size)[:2]]
        fm_sizes = [(grid[0] // a.feature_map_stride, grid[1] // a.feature_map_stride) for a in cfg.anchors]
        if len(set(fm_sizes)) != 1:
            raise RefbenchError("all anchor classes of a single head need the same feature_map_stride",
                                key=f"{_KEY}.anchors")
        self.feature_map_size = fm_sizes[0]  # (nx, ny)
        anchors, per_location = AnchorGenerator(point_cloud_range, cfg.anchors).generate_anchors(fm_sizes)
        self._num_anchor_sets = len(anchors)
        for i, a in enumerate(anchors):
            self.register_buffer(f"anchors_{i}", a, persistent=False)
        self.num_anchors_per_location = int(sum(per_location))

        self.target_assigner = AxisAlignedTargetAssigner(
            cfg.anchors, self.class_names, self.box_coder, match_height=cfg.match_height,
            pos_fraction=cfg.pos_fraction, sample_size=cfg.sample_size,
            norm_by_num_examples=cfg.norm_by_num_examples)

        a = self.num_anchors_per_location
        self.conv_cls = nn.Conv2d(input_channels, a * self.num_class, kernel_size=1)
        self.conv_box = nn.Conv2d(input_channels, a * code_size, kernel_size=1)
        self.conv_dir_cls = (nn.Conv2d(input_channels, a * cfg.num_dir_bins, kernel_size=1)
                             if cfg.use_direction_classifier else None)
        self.cls_loss_func = SigmoidFocalClassificationLoss(alpha=0.25, gamma=2.0)
        self.reg_loss_func = WeightedSmoothL1Loss(code_weights=cfg.code_weights)
        self.dir_loss_func = WeightedCrossEntropyLoss()
        self.forward_ret_dict: dict[str, torch.Tensor] = {}
        self.init_weights()

    def init_weights(self) -> None:
        """Official init: class prior 0.01 in the cls bias (so the focal loss starts from
        mostly-background scores), tiny box weights (so boxes start at the anchors)."""
        prior = 0.01
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.conv_box.weight, mean=0.0, std=0.001)

    @property
    def anchors(self) -> list[torch.Tensor]:
        """Per anchor class (nz, ny, nx, S, R, 7), on the module's device."""
        return [getattr(self, f"anchors_{i}") for i in range(self._num_anchor_sets)]

    def flat_anchors(self) -> torch.Tensor:
        """All anchors (A, 7) in the order of the head's predictions: y, x, class, (bottom
        height,) size, rotation."""
        per_loc = [anchors_per_location(a) for a in self.anchors]
        return torch.cat(per_loc, dim=2).reshape(-1, per_loc[0].shape[-1])

    def assign_targets(self, gt_boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Targets of every anchor for gt_boxes (B, M, 8)."""
        return self.target_assigner.assign_targets(self.anchors, gt_boxes)

    def forward(self, batch_dict: dict[str, Any]) -> dict[str, Any]:
        feats = batch_dict["spatial_features_2d"]
        nx, ny = self.feature_map_size
        if tuple(feats.shape[2:]) != (ny, nx):
            raise RefbenchError(f"the BEV feature map is {tuple(feats.shape[2:])} (H, W) but the anchors "
                                f"were laid on {(ny, nx)}: check grid size and feature_map_stride",
                                key=f"{_KEY}.anchors")
        cls_preds = self.conv_cls(feats).permute(0, 2, 3, 1).contiguous()  # (B, H, W, A*C)
        box_preds = self.conv_box(feats).permute(0, 2, 3, 1).contiguous()
        ret: dict[str, torch.Tensor] = {"cls_preds": cls_preds, "box_preds": box_preds}
        dir_cls_preds = None
        if self.conv_dir_cls is not None:
            dir_cls_preds = self.conv_dir_cls(feats).permute(0, 2, 3, 1).contiguous()
            ret["dir_cls_preds"] = dir_cls_preds
        if self.training:
            if "gt_boxes" not in batch_dict:
                raise KeyError("AnchorHeadSingle needs batch_dict['gt_boxes'] in training mode")
            ret.update(self.assign_targets(batch_dict["gt_boxes"]))
        self.forward_ret_dict = ret
        if not self.training or self.predict_boxes_when_training:
            batch_cls, batch_box = self.generate_predicted_boxes(
                int(batch_dict.get("batch_size", feats.shape[0])), cls_preds, box_preds, dir_cls_preds)
            batch_dict["batch_cls_preds"] = batch_cls
            batch_dict["batch_box_preds"] = batch_box
            batch_dict["cls_preds_normalized"] = False
        return batch_dict

    def generate_predicted_boxes(self, batch_size: int, cls_preds: torch.Tensor, box_preds: torch.Tensor,
                                 dir_cls_preds: torch.Tensor | None = None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, .) raw predictions -> (B, A, num_class) logits and (B, A, 7) decoded boxes."""
        anchors = self.flat_anchors()
        num_anchors = anchors.shape[0]
        batch_anchors = anchors[None].expand(batch_size, -1, -1)
        batch_cls = cls_preds.reshape(batch_size, num_anchors, -1).float()
        batch_box = self.box_coder.decode(box_preds.reshape(batch_size, num_anchors, -1).to(anchors.dtype),
                                          batch_anchors)
        if dir_cls_preds is not None:
            dir_labels = dir_cls_preds.reshape(batch_size, num_anchors, -1).argmax(dim=-1)
            rot = decode_direction(batch_box[..., 6], dir_labels, self.cfg.dir_offset,
                                   self.cfg.dir_limit_offset, self.cfg.num_dir_bins)
            batch_box = torch.cat([batch_box[..., :6], rot.unsqueeze(-1), batch_box[..., 7:]], dim=-1)
        return batch_cls, batch_box

    # -- losses ------------------------------------------------------------------------
    def get_cls_layer_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        cls_preds = self.forward_ret_dict["cls_preds"]
        labels = self.forward_ret_dict["box_cls_labels"]
        batch_size = int(cls_preds.shape[0])
        cared = labels >= 0
        positives = labels > 0
        negatives = labels == 0
        pos_normalizer = positives.sum(1, keepdim=True).float().clamp(min=1.0)
        cls_weights = (negatives.float() + positives.float()) / pos_normalizer
        if self.num_class == 1:
            labels = torch.where(positives, torch.ones_like(labels), labels)  # class agnostic
        cls_targets = (labels * cared.to(labels.dtype)).long()
        one_hot = torch.zeros(*cls_targets.shape, self.num_class + 1, dtype=torch.float32,
                              device=cls_targets.device)
        one_hot.scatter_(-1, cls_targets.unsqueeze(-1), 1.0)
        one_hot = one_hot[..., 1:]
        logits = cls_preds.reshape(batch_size, -1, self.num_class).float()
        cls_loss = self.cls_loss_func(logits, one_hot, weights=cls_weights).sum() / batch_size
        cls_loss = cls_loss * self.cfg.cls_weight
        return cls_loss, {"rpn_loss_cls": float(cls_loss.item())}

    def get_box_reg_layer_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        box_preds = self.forward_ret_dict["box_preds"]
        dir_preds = self.forward_ret_dict.get("dir_cls_preds")
        targets = self.forward_ret_dict["box_reg_targets"]
        labels = self.forward_ret_dict["box_cls_labels"]
        batch_size = int(box_preds.shape[0])
        positives = labels > 0
        reg_weights = positives.float() / positives.sum(1, keepdim=True).float().clamp(min=1.0)
        anchors = self.flat_anchors()[None].expand(batch_size, -1, -1)
        preds = box_preds.reshape(batch_size, -1, box_preds.shape[-1] // self.num_anchors_per_location).float()
        preds_sin, targets_sin = add_sin_difference(preds, targets)
        loc_loss = self.reg_loss_func(preds_sin, targets_sin, weights=reg_weights).sum() / batch_size
        loc_loss = loc_loss * self.cfg.loc_weight
        box_loss = loc_loss
        tb = {"rpn_loss_loc": float(loc_loss.item())}
        if dir_preds is not None:
            dir_targets = get_direction_target(anchors, targets, dir_offset=self.cfg.dir_offset,
                                               num_bins=self.cfg.num_dir_bins)
            dir_logits = dir_preds.reshape(batch_size, -1, self.cfg.num_dir_bins).float()
            weights = positives.float()
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
            dir_loss = self.dir_loss_func(dir_logits, dir_targets, weights=weights).sum() / batch_size
            dir_loss = dir_loss * self.cfg.dir_weight
            box_loss = box_loss + dir_loss
            tb["rpn_loss_dir"] = float(dir_loss.item())
        return box_loss, tb

    def get_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """RPN loss of the last training forward and its parts (floats, for logging)."""
        if "box_cls_labels" not in self.forward_ret_dict:
            raise RuntimeError("get_loss needs a training-mode forward with gt_boxes first")
        cls_loss, tb = self.get_cls_layer_loss()
        box_loss, tb_box = self.get_box_reg_layer_loss()
        tb.update(tb_box)
        loss = cls_loss + box_loss
        tb["rpn_loss"] = float(loss.item())
        return loss, tb
