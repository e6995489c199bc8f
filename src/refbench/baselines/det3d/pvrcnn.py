"""PV-RCNN's point branch and refinement head (VoTr-TSD = VoTr backbone + this stage).

- `VoxelSetAbstraction`: keypoints by farthest point sampling of the raw points, each
  described by set abstraction over several sources (bilinear BEV features, raw points,
  voxel centres of the multi-scale 3D features) and fused to `num_output_features`.
- `PointHeadSimple`: keypoint foreground segmentation; its sigmoid scores weight the
  keypoint features that the RoI head pools (the "predicted keypoint weighting").
- `PVRCNNHead`: RoI-grid pooling (grid points of each RoI aggregate the weighted keypoint
  features by `StackSAModuleMSG`) on top of the shared `RoIHeadTemplate`.

Re-derived from OpenPCDet v0.3 (`voxel_set_abstraction.py`, `point_head_simple.py`,
`point_head_template.py`, `pvrcnn_head.py`, pointnet2 `StackSAModuleMSG`); defaults are
the values of `tools/cfgs/kitti_models/pv_rcnn.yaml`. Pure torch: the pointnet2 CUDA
ops come from `det3d.ops`. Stacked point sets are sorted by batch index here before the
stacked ops run (the official code assumes they already are).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.det3d.boxes import enlarge_box, points_in_boxes_indices
from refbench.baselines.det3d.losses import SigmoidFocalClassificationLoss
from refbench.baselines.det3d.ops import (
    ball_query,
    farthest_point_sample_batched,
    gather_rows,
    group_points_relative,
    grouping,
)
from refbench.baselines.det3d.roi_head import (
    RoIHeadConfig,
    RoIHeadTemplate,
    rotate_points_along_z,
)
from refbench.errors import RefbenchError

__all__ = [
    "PVRCNNHead",
    "PVRCNNHeadConfig",
    "PointHeadConfig",
    "PointHeadSimple",
    "RoIGridPoolConfig",
    "SALayerConfig",
    "StackSAModuleMSG",
    "VSAConfig",
    "VoxelSetAbstraction",
    "bilinear_interpolate",
    "get_voxel_centers",
]


# -- configs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SALayerConfig:
    """One multi-scale set-abstraction source: per scale a radius, a neighbour count and
    an MLP (output widths). `downsample_factor` is the source's voxel stride;
    `input_channels` its feature width (None: the first MLP width, as OpenPCDet v0.3
    assumes for the sparse-conv sources)."""

    mlps: tuple[tuple[int, ...], ...]
    pool_radius: tuple[float, ...]
    nsample: tuple[int, ...]
    downsample_factor: int = 1
    input_channels: int | None = None


def _pv_rcnn_sa_layers() -> dict[str, SALayerConfig]:
    return {
        "raw_points": SALayerConfig(((16, 16), (16, 16)), (0.4, 0.8), (16, 16)),
        "x_conv1": SALayerConfig(((16, 16), (16, 16)), (0.4, 0.8), (16, 16), 1),
        "x_conv2": SALayerConfig(((32, 32), (32, 32)), (0.8, 1.2), (16, 32), 2),
        "x_conv3": SALayerConfig(((64, 64), (64, 64)), (1.2, 2.4), (16, 32), 4),
        "x_conv4": SALayerConfig(((64, 64), (64, 64)), (2.4, 4.8), (16, 32), 8),
    }


@dataclass
class VSAConfig:
    """pv_rcnn.yaml `PFE` (VoxelSetAbstraction). The default feature sources are VoTr-TSD's
    ('bev', 'x_conv3', 'x_conv4', 'raw_points'); PV-RCNN also uses x_conv1 and x_conv2."""

    num_keypoints: int = 2048
    num_output_features: int = 128
    features_source: tuple[str, ...] = ("bev", "x_conv3", "x_conv4", "raw_points")
    sa_layer: dict[str, SALayerConfig] = field(default_factory=_pv_rcnn_sa_layers)
    bev_stride: int = 8  # used when the batch has no `spatial_features_stride`

    def __post_init__(self) -> None:
        if self.num_keypoints < 1 or self.num_output_features < 1:
            raise RefbenchError("num_keypoints and num_output_features must be positive",
                                key="model.pfe")
        for name in self.features_source:
            if name != "bev" and name not in self.sa_layer:
                raise RefbenchError(f"feature source {name!r} has no sa_layer entry",
                                    key="model.pfe.features_source")
        for name, sa in self.sa_layer.items():
            if not len(sa.mlps) == len(sa.pool_radius) == len(sa.nsample) or not sa.mlps:
                raise RefbenchError(f"sa_layer {name!r} needs as many mlps as radii and nsample",
                                    key=f"model.pfe.sa_layer.{name}")


@dataclass(frozen=True)
class PointHeadConfig:
    """pv_rcnn.yaml `POINT_HEAD` (PointHeadSimple)."""

    cls_fc: tuple[int, ...] = (256, 256)
    class_agnostic: bool = True
    use_point_features_before_fusion: bool = True
    gt_extra_width: tuple[float, float, float] = (0.2, 0.2, 0.2)
    point_cls_weight: float = 1.0


@dataclass(frozen=True)
class RoIGridPoolConfig:
    """pv_rcnn.yaml `ROI_HEAD.ROI_GRID_POOL`."""

    grid_size: int = 6
    mlps: tuple[tuple[int, ...], ...] = ((64, 64), (64, 64))
    pool_radius: tuple[float, ...] = (0.8, 1.6)
    nsample: tuple[int, ...] = (16, 16)
    pool_method: str = "max_pool"


@dataclass
class PVRCNNHeadConfig(RoIHeadConfig):
    """pv_rcnn.yaml `ROI_HEAD` (PVRCNNHead): the shared RoI head settings plus the grid."""

    roi_grid_pool: RoIGridPoolConfig = field(default_factory=RoIGridPoolConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        g = self.roi_grid_pool
        if g.grid_size < 1 or not len(g.mlps) == len(g.pool_radius) == len(g.nsample):
            raise RefbenchError("roi_grid_pool needs grid_size >= 1 and as many mlps as radii "
                                "and nsample", key="model.roi_head.roi_grid_pool")
        if g.pool_method not in ("max_pool", "avg_pool"):
            raise RefbenchError(f"unknown pool_method {g.pool_method!r}",
                                key="model.roi_head.roi_grid_pool.pool_method")


# -- stacked set abstraction -----------------------------------------------------------------
class StackSAModuleMSG(nn.Module):
    """Multi-scale PointNet set abstraction on stacked point sets: for every query point
    and scale, ball-query `nsample` neighbours, concatenate their offsets (use_xyz) and
    features, shared MLP (Conv2d k1 + BN + ReLU), then max (or mean) over neighbours.
    Empty balls contribute zeros before the MLP, as the official QueryAndGroup."""

    def __init__(self, radii: Sequence[float], nsamples: Sequence[int],
                 mlps: Sequence[Sequence[int]], use_xyz: bool = True,
                 pool_method: str = "max_pool") -> None:
        """`mlps[k]` = [input channels, widths...] of scale k (3 is added for use_xyz)."""
        super().__init__()
        if not len(radii) == len(nsamples) == len(mlps):
            raise ValueError("StackSAModuleMSG needs as many radii, nsamples and mlps")
        self.radii = [float(r) for r in radii]
        self.nsamples = [int(n) for n in nsamples]
        self.use_xyz = use_xyz
        self.pool_method = pool_method
        self.mlps = nn.ModuleList()
        for spec in mlps:
            widths = [int(spec[0]) + (3 if use_xyz else 0)] + [int(c) for c in spec[1:]]
            layers: list[nn.Module] = []
            for c_in, c_out in itertools.pairwise(widths):
                layers += [nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU()]
            self.mlps.append(nn.Sequential(*layers))
        self.out_channels = sum(int(spec[-1]) for spec in mlps)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, xyz: Tensor, xyz_batch_cnt: Tensor, new_xyz: Tensor,
                new_xyz_batch_cnt: Tensor, features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """xyz (N, 3) and features (N, C) stacked by batch element (`xyz_batch_cnt`),
        queries new_xyz (M, 3) likewise -> (new_xyz, (M, sum of last MLP widths))."""
        outs = []
        for radius, nsample, mlp in zip(self.radii, self.nsamples, self.mlps):
            idx, empty = ball_query(radius, nsample, xyz, xyz_batch_cnt, new_xyz, new_xyz_batch_cnt)
            parts = []
            if self.use_xyz or features is None:
                parts.append(group_points_relative(xyz, idx, new_xyz, empty))
            if features is not None:
                parts.append(grouping(features, idx, empty))
            grouped = torch.cat(parts, dim=1)  # (M, C+3, nsample)
            out = mlp(grouped.permute(1, 0, 2).unsqueeze(0))  # (1, C', M, nsample)
            out = out.max(dim=-1).values if self.pool_method == "max_pool" else out.mean(dim=-1)
            outs.append(out.squeeze(0).permute(1, 0))
        return new_xyz, torch.cat(outs, dim=1)


def _batch_counts(batch_idx: Tensor, batch_size: int) -> Tensor:
    return torch.bincount(batch_idx.long(), minlength=batch_size)[:batch_size].int()


def _stack_by_batch(batch_idx: Tensor, *tensors: Tensor | None) -> tuple[Tensor, list[Tensor | None]]:
    """Sort rows by batch index (stable) so that stacked ops see contiguous elements."""
    order = torch.sort(batch_idx.long(), stable=True).indices
    return batch_idx[order], [None if t is None else t[order] for t in tensors]


# -- geometry helpers -----------------------------------------------------------------------
def bilinear_interpolate(im: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """(N, C) bilinear samples of a (H, W, C) map at fractional cell coordinates x, y
    (no half-cell offset; neighbours clamped to the map, as OpenPCDet's
    `bilinear_interpolate_torch`, whose weights use the clamped neighbours)."""
    x0 = torch.floor(x).long()
    y0 = torch.floor(y).long()
    x1, y1 = x0 + 1, y0 + 1
    x0 = x0.clamp(0, im.shape[1] - 1)
    x1 = x1.clamp(0, im.shape[1] - 1)
    y0 = y0.clamp(0, im.shape[0] - 1)
    y1 = y1.clamp(0, im.shape[0] - 1)
    wa = (x1.type_as(x) - x) * (y1.type_as(y) - y)
    wb = (x1.type_as(x) - x) * (y - y0.type_as(y))
    wc = (x - x0.type_as(x)) * (y1.type_as(y) - y)
    wd = (x - x0.type_as(x)) * (y - y0.type_as(y))
    flat, width = im.reshape(-1, im.shape[-1]), im.shape[1]

    def at(yy: Tensor, xx: Tensor) -> Tensor:  # index_select: a deterministic backward
        return gather_rows(flat, yy * width + xx)

    return (at(y0, x0) * wa[:, None] + at(y1, x0) * wb[:, None]
            + at(y0, x1) * wc[:, None] + at(y1, x1) * wd[:, None])


def get_voxel_centers(voxel_coords: Tensor, downsample_times: int, voxel_size: Sequence[float],
                      point_cloud_range: Sequence[float]) -> Tensor:
    """(V, 3) xyz centres of voxels given as (V, 3) [z, y, x] indices at a stride of
    `downsample_times` base voxels: (index + 0.5) * voxel_size * stride + range minimum."""
    centres = voxel_coords[:, [2, 1, 0]].float()
    size = torch.tensor(list(voxel_size), dtype=torch.float32, device=centres.device) * downsample_times
    low = torch.tensor(list(point_cloud_range[0:3]), dtype=torch.float32, device=centres.device)
    return (centres + 0.5) * size + low


# -- voxel set abstraction ------------------------------------------------------------------
class VoxelSetAbstraction(nn.Module):
    """Keypoints and their fused multi-source features (PV-RCNN's PFE).

    Reads `batch_size`, `points` (N, 1+3+C) [b, x, y, z, ...], `spatial_features` (B, C, H,
    W) (+ `spatial_features_stride`) for 'bev', and `multi_scale_3d_features[name]`
    (anything with `.features` (V, C) and `.indices` (V, 4) [b, z, y, x]: spconv tensors
    or VoTr's `SparseVoxels`). Writes `point_coords` (B*K, 4) [b, x, y, z],
    `point_features` (B*K, num_output_features) and `point_features_before_fusion`.
    """

    def __init__(self, model_cfg: VSAConfig, voxel_size: Sequence[float],
                 point_cloud_range: Sequence[float], num_bev_features: int | None = None,
                 num_rawpoint_features: int | None = None) -> None:
        super().__init__()
        self.cfg = model_cfg
        self.voxel_size = [float(v) for v in voxel_size]
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.sa_layers = nn.ModuleDict()
        self.sa_layer_names: list[str] = []
        c_in = 0
        for name in model_cfg.features_source:
            if name in ("bev", "raw_points"):
                continue
            sa = model_cfg.sa_layer[name]
            channels = sa.input_channels if sa.input_channels is not None else sa.mlps[0][0]
            layer = StackSAModuleMSG(sa.pool_radius, sa.nsample,
                                     [[channels, *m] for m in sa.mlps])
            self.sa_layers[name] = layer
            self.sa_layer_names.append(name)
            c_in += layer.out_channels
        if "bev" in model_cfg.features_source:
            if num_bev_features is None:
                raise RefbenchError("the 'bev' source needs num_bev_features",
                                    key="model.pfe.features_source")
            c_in += num_bev_features
        self.sa_rawpoints: StackSAModuleMSG | None = None
        if "raw_points" in model_cfg.features_source:
            if num_rawpoint_features is None or num_rawpoint_features < 3:
                raise RefbenchError("the 'raw_points' source needs num_rawpoint_features >= 3",
                                    key="model.pfe.features_source")
            sa = model_cfg.sa_layer["raw_points"]
            self.sa_rawpoints = StackSAModuleMSG(
                sa.pool_radius, sa.nsample, [[num_rawpoint_features - 3, *m] for m in sa.mlps])
            c_in += self.sa_rawpoints.out_channels
        self.vsa_point_feature_fusion = nn.Sequential(
            nn.Linear(c_in, model_cfg.num_output_features, bias=False),
            nn.BatchNorm1d(model_cfg.num_output_features),
            nn.ReLU(),
        )
        self.num_point_features = model_cfg.num_output_features
        self.num_point_features_before_fusion = c_in

    def get_sampled_points(self, batch_dict: dict[str, Any]) -> Tensor:
        """(B*K, 4) [b, x, y, z] keypoints: FPS over each sample's raw points (a sample
        with fewer points than K repeats them in FPS order)."""
        points = batch_dict["points"]
        batch_size = int(batch_dict["batch_size"])
        k = self.cfg.num_keypoints
        rows = farthest_point_sample_batched(points[:, 0:4], k, batch_size).reshape(-1)
        bidx = torch.arange(batch_size, device=points.device).repeat_interleave(k)
        return torch.cat([bidx[:, None].to(points.dtype), points[rows, 1:4]], dim=1)

    def interpolate_from_bev_features(self, keypoints: Tensor, bev_features: Tensor,
                                      batch_size: int, bev_stride: int) -> Tensor:
        """(B*K, C) BEV features at the keypoints (bilinear in BEV cell coordinates)."""
        x_idxs = (keypoints[:, 1] - self.point_cloud_range[0]) / self.voxel_size[0] / bev_stride
        y_idxs = (keypoints[:, 2] - self.point_cloud_range[1]) / self.voxel_size[1] / bev_stride
        out = []
        for b in range(batch_size):
            mask = keypoints[:, 0] == b
            out.append(bilinear_interpolate(bev_features[b].permute(1, 2, 0), x_idxs[mask],
                                            y_idxs[mask]))
        return torch.cat(out, dim=0)

    @staticmethod
    def _aggregate(layer: StackSAModuleMSG, batch_size: int, xyz: Tensor, features: Tensor | None,
                   batch_idx: Tensor, new_xyz: Tensor, new_xyz_batch_cnt: Tensor) -> Tensor:
        batch_idx, (xyz_s, feat_s) = _stack_by_batch(batch_idx, xyz, features)
        assert xyz_s is not None
        cnt = _batch_counts(batch_idx, batch_size)
        _, pooled = layer(xyz_s.contiguous(), cnt, new_xyz, new_xyz_batch_cnt,
                          None if feat_s is None else feat_s.contiguous())
        return pooled

    def forward(self, batch_dict: dict[str, Any]) -> dict[str, Any]:
        """Sample keypoints and describe them; see the class docstring."""
        batch_size = int(batch_dict["batch_size"])
        keypoints = self.get_sampled_points(batch_dict)
        feats: list[Tensor] = []
        if "bev" in self.cfg.features_source:
            stride = int(batch_dict.get("spatial_features_stride", self.cfg.bev_stride))
            feats.append(self.interpolate_from_bev_features(
                keypoints, batch_dict["spatial_features"], batch_size, stride))
        new_xyz = keypoints[:, 1:4].contiguous()
        new_cnt = _batch_counts(keypoints[:, 0], batch_size)
        if self.sa_rawpoints is not None:
            raw = batch_dict["points"]
            feats.append(self._aggregate(
                self.sa_rawpoints, batch_size, raw[:, 1:4],
                raw[:, 4:] if raw.shape[1] > 4 else None, raw[:, 0], new_xyz, new_cnt))
        for name in self.sa_layer_names:
            source = batch_dict["multi_scale_3d_features"][name]
            coords = source.indices
            xyz = get_voxel_centers(coords[:, 1:4], self.cfg.sa_layer[name].downsample_factor,
                                    self.voxel_size, self.point_cloud_range).to(new_xyz.dtype)
            feats.append(self._aggregate(self.sa_layers[name], batch_size, xyz, source.features,
                                         coords[:, 0], new_xyz, new_cnt))
        point_features = torch.cat(feats, dim=-1)
        batch_dict["point_features_before_fusion"] = point_features
        batch_dict["point_features"] = self.vsa_point_feature_fusion(point_features)
        batch_dict["point_coords"] = keypoints
        return batch_dict


# -- keypoint segmentation ------------------------------------------------------------------
class PointHeadSimple(nn.Module):
    """Keypoint foreground segmentation (PV-RCNN's predicted keypoint weighting).

    Labels: 1 inside a gt box, -1 (ignored) inside the box grown by `gt_extra_width` but
    not the box, else 0. Loss: sigmoid focal loss (alpha 0.25, gamma 2) normalised by the
    number of foreground keypoints. Writes `point_cls_scores` (B*K,) = max sigmoid.
    """

    def __init__(self, num_class: int, input_channels: int, model_cfg: PointHeadConfig) -> None:
        super().__init__()
        self.cfg = model_cfg
        self.num_class = 1 if model_cfg.class_agnostic else num_class
        layers: list[nn.Module] = []
        c_in = input_channels
        for width in model_cfg.cls_fc:
            layers += [nn.Linear(c_in, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            c_in = width
        layers.append(nn.Linear(c_in, self.num_class, bias=True))
        self.cls_layers = nn.Sequential(*layers)
        self.cls_loss_func = SigmoidFocalClassificationLoss(alpha=0.25, gamma=2.0)
        self.forward_ret_dict: dict[str, Tensor] | None = None

    def assign_targets(self, batch_dict: dict[str, Any]) -> Tensor:
        """(B*K,) long keypoint labels (class ids when not class agnostic)."""
        coords, gt_boxes = batch_dict["point_coords"], batch_dict["gt_boxes"]
        labels = torch.zeros(coords.shape[0], dtype=torch.long, device=coords.device)
        for b in range(gt_boxes.shape[0]):
            mask = coords[:, 0] == b
            gt = gt_boxes[b]
            gt = gt[gt.abs().sum(dim=-1) > 0]
            pts = coords[mask][:, 1:4]
            inside = points_in_boxes_indices(pts, gt[:, 0:7])
            inside_ext = points_in_boxes_indices(pts, enlarge_box(gt[:, 0:7], self.cfg.gt_extra_width))
            fg = inside >= 0
            cur = torch.zeros_like(inside)
            cur[fg ^ (inside_ext >= 0)] = -1
            if self.num_class == 1:
                cur[fg] = 1
            else:
                cur[fg] = gt[inside[fg], -1].long()
            labels[mask] = cur
        return labels

    def forward(self, batch_dict: dict[str, Any]) -> dict[str, Any]:
        """Score the keypoints; in training also assign their labels for `get_loss`."""
        key = "point_features_before_fusion" if self.cfg.use_point_features_before_fusion \
            else "point_features"
        preds = self.cls_layers(batch_dict[key])
        batch_dict["point_cls_scores"] = torch.sigmoid(preds).max(dim=-1).values
        ret = {"point_cls_preds": preds}
        if self.training:
            ret["point_cls_labels"] = self.assign_targets(batch_dict)
        self.forward_ret_dict = ret
        return batch_dict

    def get_loss(self, tb_dict: dict[str, float] | None = None) -> tuple[Tensor, dict[str, float]]:
        """Focal loss of the last training forward, summed and divided by the positives."""
        if self.forward_ret_dict is None or "point_cls_labels" not in self.forward_ret_dict:
            raise RuntimeError("get_loss() needs a forward pass in training mode first")
        labels = self.forward_ret_dict["point_cls_labels"].view(-1)
        preds = self.forward_ret_dict["point_cls_preds"].view(-1, self.num_class)
        positives = labels > 0
        weights = ((labels == 0).to(preds.dtype) + positives.to(preds.dtype))
        pos_normalizer = positives.sum().to(preds.dtype)
        weights = weights / pos_normalizer.clamp_min(1.0)
        one_hot = F.one_hot(labels.clamp_min(0), self.num_class + 1)[:, 1:].to(preds.dtype)
        loss = self.cls_loss_func(preds, one_hot, weights).sum() * self.cfg.point_cls_weight
        tb = {} if tb_dict is None else tb_dict
        tb.update({"point_loss_cls": float(loss.detach()), "point_pos_num": float(pos_normalizer)})
        return loss, tb


# -- RoI-grid pooling head ------------------------------------------------------------------
class PVRCNNHead(RoIHeadTemplate):
    """PV-RCNN refinement: grid_size^3 points per RoI pool the keypoint features (weighted
    by `point_cls_scores`) with `StackSAModuleMSG`; the pooled (B*R, C, grid^3) features
    go through the template's shared FC, classification and regression layers."""

    def __init__(self, input_channels: int, model_cfg: PVRCNNHeadConfig, num_class: int = 1) -> None:
        super().__init__(num_class=num_class, cfg=model_cfg)
        g = model_cfg.roi_grid_pool
        self.grid_size = g.grid_size
        self.roi_grid_pool_layer = StackSAModuleMSG(
            g.pool_radius, g.nsample, [[input_channels, *m] for m in g.mlps],
            use_xyz=True, pool_method=g.pool_method)
        self.build_layers(g.grid_size ** 3 * self.roi_grid_pool_layer.out_channels)

    @staticmethod
    def get_dense_grid_points(rois: Tensor, grid_size: int) -> Tensor:
        """(N, G^3, 3) cell centres of a G x G x G grid over each RoI, in the RoI frame
        (x index slowest, z fastest)."""
        idx = torch.nonzero(rois.new_ones(grid_size, grid_size, grid_size)).to(rois.dtype)
        size = rois[:, 3:6]
        return (idx[None] + 0.5) / grid_size * size[:, None, :] - size[:, None, :] / 2

    def get_global_grid_points_of_roi(self, rois: Tensor, grid_size: int) -> tuple[Tensor, Tensor]:
        """(global (N, G^3, 3), local (N, G^3, 3)) grid points of (.., 7) RoIs."""
        rois = rois.reshape(-1, rois.shape[-1])
        local = self.get_dense_grid_points(rois, grid_size)
        glob = rotate_points_along_z(local, rois[:, 6]) + rois[:, None, 0:3]
        return glob, local

    def roi_grid_pool(self, batch_dict: dict[str, Any]) -> Tensor:
        """(B*R, C, G^3) RoI-grid features from `point_coords`, `point_features` and
        `point_cls_scores`."""
        batch_size = int(batch_dict["batch_size"])
        rois = batch_dict["rois"]
        coords = batch_dict["point_coords"]
        features = batch_dict["point_features"] * batch_dict["point_cls_scores"].view(-1, 1)
        grid, _ = self.get_global_grid_points_of_roi(rois, self.grid_size)
        grid = grid.view(batch_size, -1, 3)
        bidx, (xyz, feats) = _stack_by_batch(coords[:, 0], coords[:, 1:4], features)
        assert xyz is not None and feats is not None
        new_cnt = torch.full((batch_size,), grid.shape[1], dtype=torch.int32, device=rois.device)
        _, pooled = self.roi_grid_pool_layer(xyz.contiguous(), _batch_counts(bidx, batch_size),
                                             grid.reshape(-1, 3), new_cnt, feats.contiguous())
        pooled = pooled.view(-1, self.grid_size ** 3, pooled.shape[-1])  # (B*R, G^3, C)
        return pooled.permute(0, 2, 1).contiguous()
