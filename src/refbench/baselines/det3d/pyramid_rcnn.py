"""Pyramid R-CNN second stage: RoI-grid pyramid, RoI-grid attention, density-aware radius.

Re-derived from the paper (Pyramid R-CNN, ICCV 2021) and the official OpenPCDet-v0.3 fork
(`pyramid_head.py`: `PyramidRoIHead`, `PyramidRoIHeadV2`; `pointnet2_modules.py`:
`PyramidModule`, `PyramidModuleV2`; `ball_query_deform`), in plain torch on any device.

Why the pieces are what they are:
- `RoIGridPyramid`: each of the 5 levels lays a g x g x g grid over the RoI enlarged per
  axis (KITTI: grids [6, 4, 4, 4, 1], ratios [1,1,1] ... [4,4,1]), so the coarse levels
  see context far outside the box. Grid points are cell centres in the RoI frame, turned
  by the heading and moved to the RoI centre; point p = (ix * g + iy) * g + iz.
- `RoIGridAttention` (`ATTENTION_OP: vmh_1`): a grid point aggregates its ball-query
  neighbours (keypoints) with attention whose logits mix a positional embedding of the
  relative xyz, a key embedding of the features and their product, each gated by a
  sigmoid coefficient computed from the neighbourhood mean; 4 heads share one logit per
  neighbour over 16 value channels each. There is no output projection in vmh_1.
- Per level, one post-norm transformer encoder layer over that level's grid points (query
  and key get a per-grid-point position embedding, the value not), then sigmoid
  re-weighting of every grid point, separately for the classification and the
  regression branch; the levels are concatenated grid point by grid point.
- `DensityAwareRadius` (`PyramidModuleV2`, the Waymo PV config): context pooled around the
  RoI centre at two radii predicts a radius offset per RoI and level; the ball query runs
  at r + 5 T and neighbours are soft-masked by 1 - sigmoid((d - r) / T), which is what
  makes r trainable (the query itself has no gradient).
- `PyramidRoIHead`: the official head has no shared FC; the cls and reg features of all
  grid points feed separate FC stacks (CLS_FC / REG_FC [256, 256, 256], dropout 0.3).

Where this differs from the official code (each is a config switch):
- `mask_padding=True` (default): unfilled ball-query slots (which repeat the first
  neighbour) are left out of the softmax and of the neighbourhood means; official counts
  the repeats. An empty query keeps its one zero slot, as in official, so no NaN.
- `learned_grid_pos_embedding=True` (default): official keeps the position embeddings in a
  plain Python list, so they are never registered, never trained and stay zero; here they
  are registered parameters (zero-initialised, as there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.det3d.ops import ball_query, group_points_relative, grouping
from refbench.baselines.det3d.pvrcnn import VSAConfig
from refbench.baselines.det3d.roi_head import (
    RoIHeadConfig,
    RoIHeadTemplate,
    make_fc_layers,
    rotate_points_along_z,
)
from refbench.baselines.det3d.second import VoxelBackBone8x
from refbench.baselines.det3d.two_stage import TwoStageConfig, TwoStageDetector
from refbench.errors import RefbenchError
from refbench.registry import BASELINES

__all__ = [
    "DensityAwareRadius",
    "GridTransformerLayer",
    "PyramidGridPoolConfig",
    "PyramidHeadConfig",
    "PyramidRoIGridPool",
    "PyramidRoIHead",
    "RoIGridAttention",
    "RoIGridPyramid",
    "kitti_pv_config",
    "padding_mask",
    "soft_radius_weights",
    "temperature_at",
    "waymo_pv_config",
]


# -- configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class PyramidGridPoolConfig:
    """`ROI_HEAD.ROI_GRID_POOL` of the official configs, KITTI Pyramid-PV defaults.

    `radius_by_rois` is the official RADIUS_BY_ROIS (radius = pool_radius x diagonal of the
    enlarged RoI; False in every released config); `density_aware` selects
    `PyramidRoIHeadV2`'s radius prediction (`predict_*`, `weights_before`), which the
    Waymo PV config uses."""

    grid_sizes: tuple[int, ...] = (6, 4, 4, 4, 1)
    enlarge_ratios: tuple[tuple[float, float, float], ...] = (
        (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (1.5, 1.5, 1.0), (2.0, 2.0, 1.0), (4.0, 4.0, 1.0))
    pool_radii: tuple[float, ...] = (0.8, 1.6, 2.4, 3.2, 6.4)
    nsamples: tuple[int, ...] = (16, 16, 16, 16, 32)
    num_heads: int = 4
    head_dims: int = 16
    transformer_mode: str = "normal"  # TR_MODE: "none" | "normal" | "residual"
    transformer_heads: int = 4
    transformer_dropout: float = 0.1  # ROI_GRID_POOL.DP_RATIO
    radius_by_rois: bool = False
    density_aware: bool = False
    predict_radii: tuple[float, ...] = (2.4, 4.8)  # PRE_RADII
    predict_nsamples: tuple[int, ...] = (32, 32)  # PRE_NS
    # PRE_NORM per level: (divisor of the MLP output, radius min, radius max)
    predict_norm: tuple[tuple[float, float, float], ...] = (
        (25.0, 0.4, 1.6), (25.0, 0.8, 3.2), (25.0, 1.2, 4.8), (25.0, 1.6, 6.4),
        (25.0, 3.2, 12.8))
    weights_before: bool = True  # USE_WEIGHTS_BEFORE
    temperature: float = 1e-4  # used when the batch carries no 'temperature'
    weight_by_point_scores: bool = True  # point_features * point_cls_scores, as official
    mask_padding: bool = True  # refbench; False = official (repeats take part)
    learned_grid_pos_embedding: bool = True  # refbench; False = official (zeros, fixed)

    def __post_init__(self) -> None:
        n = len(self.grid_sizes)
        key = "model.roi_head.roi_grid_pool"
        if n == 0:
            raise RefbenchError("the RoI-grid pyramid needs at least one level", key=key)
        for name in ("enlarge_ratios", "pool_radii", "nsamples"):
            if len(getattr(self, name)) != n:
                raise RefbenchError(f"{name} has {len(getattr(self, name))} entries for {n} "
                                    "pyramid levels", key=f"{key}.{name}")
        if any(len(r) != 3 for r in self.enlarge_ratios):
            raise RefbenchError("each enlarge ratio needs 3 values (x, y, z)",
                                key=f"{key}.enlarge_ratios")
        if min(self.grid_sizes) < 1 or min(self.nsamples) < 1:
            raise RefbenchError("grid sizes and nsamples must be positive", key=key)
        if self.transformer_mode not in ("none", "normal", "residual"):
            raise RefbenchError(f"unknown transformer mode {self.transformer_mode!r} "
                                "(none, normal, residual)", key=f"{key}.transformer_mode")
        if self.num_heads * self.head_dims % self.transformer_heads:
            raise RefbenchError("num_heads * head_dims must divide by transformer_heads",
                                key=f"{key}.transformer_heads")
        if self.density_aware:
            if len(self.predict_norm) != n:
                raise RefbenchError(f"predict_norm has {len(self.predict_norm)} entries for "
                                    f"{n} pyramid levels", key=f"{key}.predict_norm")
            if not self.predict_radii or len(self.predict_radii) != len(self.predict_nsamples):
                raise RefbenchError("predict_radii and predict_nsamples must be non-empty "
                                    "and of equal length", key=f"{key}.predict_radii")
            if self.temperature <= 0:
                raise RefbenchError("the soft-mask temperature must be positive",
                                    key=f"{key}.temperature")

    @property
    def out_dims(self) -> int:
        """Channels per grid point (num_heads x head_dims = 64 in every config)."""
        return self.num_heads * self.head_dims

    @property
    def num_grid_points(self) -> int:
        """Grid points per RoI over all levels (KITTI: 216 + 3 x 64 + 1 = 409)."""
        return sum(g ** 3 for g in self.grid_sizes)

    @property
    def pooled_channels(self) -> int:
        """Flattened features per RoI and branch (KITTI: 409 x 64 = 26176)."""
        return self.num_grid_points * self.out_dims


@dataclass
class PyramidHeadConfig(RoIHeadConfig):
    """`ROI_HEAD` of `pyramid_rcnn_pv.yaml`: the template's settings with the Pyramid FC
    layout (no shared FC; CLS_FC and REG_FC [256, 256, 256], DP_RATIO 0.3; sampling, NMS
    and losses as PV-RCNN) plus the pyramid grid pooling."""

    shared_fc: tuple[int, ...] = ()
    cls_fc: tuple[int, ...] = (256, 256, 256)
    reg_fc: tuple[int, ...] = (256, 256, 256)
    dp_ratio: float = 0.3
    roi_grid_pool: PyramidGridPoolConfig = field(default_factory=PyramidGridPoolConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shared_fc:
            raise RefbenchError("the Pyramid R-CNN head has no shared FC (its classification "
                                "and regression features are weighted separately); leave "
                                "shared_fc empty", key="model.roi_head.shared_fc")


def kitti_pv_config(**grid_overrides: Any) -> PyramidHeadConfig:
    """`kitti_models/pyramid_rcnn_pv.yaml` ROI_HEAD (fixed radii); keyword arguments
    replace fields of the grid pooling config (e.g. a tiny grid for tests)."""
    return PyramidHeadConfig(roi_grid_pool=replace(PyramidGridPoolConfig(), **grid_overrides))


def waymo_pv_config(**grid_overrides: Any) -> PyramidHeadConfig:
    """`waymo_models/pyramid_rcnn_pv.yaml` ROI_HEAD (PyramidRoIHeadV2: density-aware
    radius, 8 neighbours on the first level). PyramidModuleV2 always runs the transformer,
    with dropout 0.1."""
    grid = PyramidGridPoolConfig(nsamples=(8, 16, 16, 16, 32), density_aware=True,
                                 transformer_mode="normal", transformer_dropout=0.1)
    return PyramidHeadConfig(roi_grid_pool=replace(grid, **grid_overrides))


def temperature_at(epoch: float, start: float = 0.02, end: float = 1e-4,
                   decay_epochs: Sequence[float] = (0.0, 30.0), mode: str = "exp") -> float:
    """Soft-mask temperature for the Waymo recipe (DECAY_TEMPERATURE [0.02, 0.0001],
    DECAY_EPOCH [0, 30], DECAY_MODE exp): held at `start` before the first decay epoch and
    at `end` after the second, geometric ("exp") or linear in between. The official
    training loop that sets batch_dict['temperature'] is not in the released sources we
    could read, so this interpolation is our reading of those three keys."""
    e0, e1 = float(decay_epochs[0]), float(decay_epochs[1])
    t = 1.0 if e1 <= e0 else min(max((epoch - e0) / (e1 - e0), 0.0), 1.0)
    if mode == "exp":
        return float(start * (end / start) ** t)
    if mode == "linear":
        return float(start + (end - start) * t)
    raise RefbenchError(f"unknown temperature decay mode {mode!r} (exp, linear)",
                        key="optimization.decay_mode")


# -- RoI-grid pyramid -----------------------------------------------------------------------

class RoIGridPyramid(nn.Module):
    """Grid points of the enlarged RoIs, one set per pyramid level (no parameters)."""

    def __init__(self, grid_sizes: Sequence[int],
                 enlarge_ratios: Sequence[Sequence[float]]) -> None:
        super().__init__()
        self.grid_sizes = [int(g) for g in grid_sizes]
        self.enlarge_ratios = [tuple(float(v) for v in r) for r in enlarge_ratios]

    def enlarged_rois(self, rois: Tensor, level: int) -> Tensor:
        """(R, 7) RoIs with dx, dy, dz scaled by the level's per-axis ratio."""
        rois = rois.reshape(-1, rois.shape[-1])[:, :7]
        scale = rois.new_tensor(self.enlarge_ratios[level])
        return torch.cat([rois[:, :3], rois[:, 3:6] * scale, rois[:, 6:7]], dim=1)

    def local_grid_points(self, rois: Tensor, level: int) -> Tensor:
        """(R, g^3, 3) cell centres of the enlarged RoI in its own frame (centre 0)."""
        g = self.grid_sizes[level]
        size = self.enlarged_rois(rois, level)[:, 3:6]
        ar = torch.arange(g, device=rois.device, dtype=rois.dtype)
        ix, iy, iz = torch.meshgrid(ar, ar, ar, indexing="ij")
        cells = torch.stack([ix, iy, iz], dim=-1).reshape(-1, 3)  # x-major, like nonzero()
        return (cells[None] + 0.5) / g * size[:, None, :] - size[:, None, :] / 2

    def grid_points(self, rois: Tensor, level: int) -> Tensor:
        """(R, g^3, 3) grid points in the global (LiDAR) frame."""
        big = self.enlarged_rois(rois, level)
        local = self.local_grid_points(rois, level)
        return rotate_points_along_z(local, big[:, 6]) + big[:, None, 0:3]

    def radius_by_roi_size(self, rois: Tensor, level: int, ratio: float) -> Tensor:
        """(R,) RADIUS_BY_ROIS radius: ratio x the 3D diagonal of the enlarged RoI."""
        return self.enlarged_rois(rois, level)[:, 3:6].norm(dim=1) * ratio

    def forward(self, rois: Tensor) -> list[Tensor]:
        """Per level (R, g^3, 3) global grid points of (..., 7+) RoIs."""
        return [self.grid_points(rois, i) for i in range(len(self.grid_sizes))]


# -- RoI-grid attention ---------------------------------------------------------------------

def padding_mask(idx: Tensor) -> Tensor:
    """(M, ns) bool: slot j holds a real neighbour. `ball_query` fills unfilled slots with
    the first neighbour and found indices are distinct, so a later slot equal to slot 0
    is padding; slot 0 always counts (for an empty query it is its zero slot)."""
    valid = idx != idx[:, :1]
    valid[:, 0] = True
    return valid


def _gate(dims: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dims, dims, bias=False), nn.Sigmoid())


class RoIGridAttention(nn.Module):
    """Official `vmh_1` attention of one pyramid level over grouped neighbours."""

    def __init__(self, in_channels: int, num_heads: int = 4, head_dims: int = 16) -> None:
        """`in_channels`: keypoint feature channels; the grouped input carries 3 more
        (the relative xyz in front), as `QueryAndGroupPyramidAttention` builds it."""
        super().__init__()
        d = num_heads * head_dims
        c = in_channels + 3
        self.num_heads, self.head_dims = num_heads, head_dims
        self.pos_proj = nn.Sequential(nn.Conv1d(3, d, 1, bias=False), nn.ReLU())
        self.key_proj = nn.Sequential(nn.Conv1d(c, d, 1, bias=False), nn.ReLU())
        self.value_proj = nn.Sequential(
            nn.Conv1d(c, d, 1, bias=False), nn.BatchNorm1d(d), nn.ReLU(),
            nn.Conv1d(d, d, 1, bias=False), nn.BatchNorm1d(d), nn.ReLU())
        self.attention_proj = nn.Conv1d(d, num_heads, 1, bias=False)
        self.q_coef, self.k_coef = _gate(d), _gate(d)
        self.qk_coef, self.v_coef = _gate(d), _gate(d)

    def forward(self, grouped_xyz: Tensor, grouped_features: Tensor,
                valid: Tensor | None = None, weights: Tensor | None = None,
                weights_before: bool = True) -> Tensor:
        """(M, num_heads x head_dims) features of M grid points.

        grouped_xyz (M, 3, ns) relative positions; grouped_features (M, 3 + C, ns);
        valid (M, ns) bool slots that take part (None: all, the official behaviour);
        weights (M, ns) soft radius mask: multiplied into the grouped features before the
        projections (`weights_before`) or into the attention weights after the softmax."""
        if weights is not None and weights_before:
            grouped_features = grouped_features * weights[:, None, :]
        pos = self.pos_proj(grouped_xyz)
        key = self.key_proj(grouped_features)
        value = self.value_proj(grouped_features)
        pos_key = pos * key

        if valid is None:
            def mean(t: Tensor) -> Tensor:
                return t.mean(dim=2)
        else:
            w = valid.to(pos.dtype)[:, None, :]
            n = w.sum(dim=2).clamp_min(1.0)

            def mean(t: Tensor) -> Tensor:
                return (t * w).sum(dim=2) / n

        q_c = self.q_coef(mean(pos))[:, :, None]
        k_c = self.k_coef(mean(key))[:, :, None]
        qk_c = self.qk_coef(mean(pos_key))[:, :, None]
        v_c = self.v_coef(mean(pos))[:, :, None]
        value = value + pos * v_c
        logits = self.attention_proj(pos * q_c + key * k_c + pos_key * qk_c)  # (M, H, ns)
        if valid is not None:
            logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
        attn = torch.softmax(logits, dim=-1)
        if weights is not None and not weights_before:
            attn = attn * weights[:, None, :]
        m, _, ns = value.shape
        value = value.view(m, self.num_heads, self.head_dims, ns)
        return (attn[:, :, None, :] * value).sum(dim=-1).reshape(m, -1)


class GridTransformerLayer(nn.Module):
    """One post-norm transformer encoder layer over a level's grid points (DETR style:
    the position embedding is added to query and key only; feed-forward width = d)."""

    def __init__(self, d_model: int, nhead: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout,
                                               batch_first=True)
        self.linear1 = nn.Linear(d_model, d_model)
        self.linear2 = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor | None = None) -> Tensor:
        """(R, L, d) -> (R, L, d); `pos` (L, d) is broadcast over the RoIs."""
        qk = src if pos is None else src + pos[None]
        src = self.norm1(src + self.dropout1(self.self_attn(qk, qk, src,
                                                            need_weights=False)[0]))
        ff = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ff))


# -- density-aware radius ---------------------------------------------------------------------

def soft_radius_weights(dist: Tensor, radius: Tensor, temperature: float) -> Tensor:
    """1 - sigmoid((d - r) / T): ~1 well inside r, 0.5 at r, < 0.007 beyond r + 5 T (which
    is why the ball query can stop there)."""
    return 1.0 - torch.sigmoid((dist - radius) / temperature)


class DensityAwareRadius(nn.Module):
    """PyramidModuleV2's radius prediction: per RoI, a radius for every pyramid level."""

    def __init__(self, in_channels: int, out_dims: int, predict_radii: Sequence[float],
                 predict_nsamples: Sequence[int],
                 norm_factors: Sequence[Sequence[float]]) -> None:
        super().__init__()
        self.predict_radii = [float(r) for r in predict_radii]
        self.predict_nsamples = [int(n) for n in predict_nsamples]
        self.norm_factors = [tuple(float(v) for v in f) for f in norm_factors]
        c = in_channels + 3
        self.context_mlps = nn.ModuleList(nn.Sequential(
            nn.Conv1d(c, out_dims, 1, bias=False), nn.BatchNorm1d(out_dims), nn.ReLU(),
            nn.Conv1d(out_dims, out_dims, 1, bias=False), nn.BatchNorm1d(out_dims),
            nn.ReLU()) for _ in self.predict_radii)
        ctx = out_dims * len(self.predict_radii)
        self.radius_mlps = nn.ModuleList(nn.Sequential(
            nn.Linear(ctx, ctx // 4, bias=False), nn.ReLU(),
            nn.Linear(ctx // 4, 1, bias=False)) for _ in self.norm_factors)

    def context(self, xyz: Tensor, xyz_batch_cnt: Tensor, features: Tensor,
                centers: Tensor, centers_batch_cnt: Tensor) -> Tensor:
        """(R, out_dims x levels) max-pooled PointNet features around the RoI centres."""
        parts = []
        for radius, ns, mlp in zip(self.predict_radii, self.predict_nsamples,
                                   self.context_mlps):
            idx, empty = ball_query(radius, ns, xyz, xyz_batch_cnt, centers,
                                    centers_batch_cnt)
            grouped = torch.cat([group_points_relative(xyz, idx, centers, empty),
                                 grouping(features, idx, empty)], dim=1)
            parts.append(mlp(grouped).max(dim=2).values)
        return torch.cat(parts, dim=1)

    def radius(self, context: Tensor, level: int, base_radius: Tensor) -> Tensor:
        """(R,) radius of one level: clamp(base + MLP(context) / div, min, max) (official
        clamps the radius, not the offset)."""
        div, lo, hi = self.norm_factors[level]
        delta = self.radius_mlps[level](context).squeeze(-1) / div
        return torch.clamp(base_radius + delta, min=lo, max=hi)


# -- the pooling module ------------------------------------------------------------------------

class PyramidRoIGridPool(nn.Module):
    """All levels: grid points -> ball query -> attention -> transformer -> cls/reg weights.

    Returns (cls_features, reg_features), each (B x R, sum g^3, num_heads x head_dims)."""

    def __init__(self, in_channels: int, cfg: PyramidGridPoolConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.out_dims
        self.pyramid = RoIGridPyramid(cfg.grid_sizes, cfg.enlarge_ratios)
        self.attention = nn.ModuleList(RoIGridAttention(in_channels, cfg.num_heads,
                                                        cfg.head_dims)
                                       for _ in cfg.grid_sizes)
        self.transformers = nn.ModuleList()
        self.pos_embeddings = nn.ParameterList()
        if cfg.transformer_mode != "none":
            for g in cfg.grid_sizes:
                self.transformers.append(GridTransformerLayer(d, cfg.transformer_heads,
                                                              cfg.transformer_dropout))
                self.pos_embeddings.append(nn.Parameter(
                    torch.zeros(g ** 3, d), requires_grad=cfg.learned_grid_pos_embedding))

        def reweight() -> nn.Sequential:
            return nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(), nn.Linear(d // 2, 1),
                                 nn.Sigmoid())

        self.cls_weights = nn.ModuleList(reweight() for _ in cfg.grid_sizes)
        self.reg_weights = nn.ModuleList(reweight() for _ in cfg.grid_sizes)
        self.density = (DensityAwareRadius(in_channels, d, cfg.predict_radii,
                                           cfg.predict_nsamples, cfg.predict_norm)
                        if cfg.density_aware else None)
        self._init_weights()

    def _init_weights(self) -> None:
        """PyramidModule.init_weights: Kaiming-normal convs and linears, zero biases,
        unit BN (the head later re-initialises the convs with Xavier, as official)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, rois: Tensor, point_coords: Tensor, point_features: Tensor,
                batch_size: int, temperature: float | None = None) -> tuple[Tensor, Tensor]:
        """rois (B, R, 7+); point_coords (K, 4) [b, x, y, z]; point_features (K, C)."""
        cfg = self.cfg
        num_rois = rois.shape[1]
        bidx = point_coords[:, 0].round().long()
        order = torch.argsort(bidx, stable=True)  # ball_query wants rows grouped by sample
        xyz = point_coords[order, 1:4].contiguous()
        feats = point_features[order].contiguous()
        xyz_cnt = torch.bincount(bidx, minlength=batch_size)[:batch_size]
        flat_rois = rois.reshape(batch_size * num_rois, rois.shape[-1])
        temp = float(cfg.temperature if temperature is None else temperature)
        context = None
        if self.density is not None:
            centers = flat_rois[:, 0:3].contiguous()
            context = self.density.context(xyz, xyz_cnt, feats, centers,
                                           [num_rois] * batch_size)

        cls_list, reg_list = [], []
        for i, g in enumerate(cfg.grid_sizes):
            n_grid = g ** 3
            new_xyz = self.pyramid.grid_points(flat_rois, i).reshape(-1, 3)
            if cfg.radius_by_rois:
                radius = self.pyramid.radius_by_roi_size(flat_rois, i, cfg.pool_radii[i])
            else:
                radius = flat_rois.new_full((flat_rois.shape[0],), cfg.pool_radii[i])
            weights = None
            if context is not None:
                assert self.density is not None
                radius = self.density.radius(context, i, radius)
            radius = radius.repeat_interleave(n_grid)
            query_radius = radius + 5.0 * temp if context is not None else radius
            new_cnt = [num_rois * n_grid] * batch_size
            idx, empty = ball_query(query_radius.detach(), cfg.nsamples[i], xyz, xyz_cnt,
                                    new_xyz, new_cnt)
            rel = group_points_relative(xyz, idx, new_xyz, empty)
            grouped = torch.cat([rel, grouping(feats, idx, empty)], dim=1)
            if context is not None:
                weights = soft_radius_weights(rel.norm(dim=1), radius[:, None], temp)
            valid = padding_mask(idx) if cfg.mask_padding else None
            new = self.attention[i](rel, grouped, valid, weights, cfg.weights_before)
            new = new.reshape(batch_size * num_rois, n_grid, -1)
            if cfg.transformer_mode != "none":
                out = self.transformers[i](new, self.pos_embeddings[i])
                new = out if cfg.transformer_mode == "normal" else new + out
            cls_list.append(new * self.cls_weights[i](new))
            reg_list.append(new * self.reg_weights[i](new))
        return torch.cat(cls_list, dim=1), torch.cat(reg_list, dim=1)


# -- the head ----------------------------------------------------------------------------------

class _Channels(nn.Module):
    """Takes channels [start, stop) of (N, C, 1) features: routes the concatenated cls and
    reg features that `roi_grid_pool` returns to their own FC stacks."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.start:self.stop]

    def extra_repr(self) -> str:
        return f"start={self.start}, stop={self.stop}"


class PyramidRoIHead(RoIHeadTemplate):
    """Pyramid R-CNN refinement head (`PyramidRoIHead`; `PyramidRoIHeadV2` when
    `cfg.roi_grid_pool.density_aware`).

    `roi_grid_pool` returns, per RoI, the re-weighted classification features of all grid
    points followed by the regression ones, (B*R, 2 x 409 x 64) for KITTI, each flattened
    grid point by grid point as the official head does. The template's shared FC is empty
    (official: commented out), and `cls_layers` / `reg_layers` each read their own half.
    The soft-mask temperature of the density-aware variant comes from
    batch_dict['temperature'] (see `temperature_at`) or `roi_grid_pool.temperature`."""

    def __init__(self, input_channels: int, model_cfg: PyramidHeadConfig | None = None,
                 num_class: int = 1) -> None:
        cfg = PyramidHeadConfig() if model_cfg is None else model_cfg
        super().__init__(num_class=num_class, cfg=cfg)
        self.grid_cfg = cfg.roi_grid_pool
        self.roi_grid_pool_layer = PyramidRoIGridPool(input_channels, self.grid_cfg)
        self.build_layers(self.grid_cfg.pooled_channels)

    def build_layers(self, pooled_channels: int) -> None:
        """Separate CLS_FC / REG_FC stacks on `pooled_channels` each (no shared FC), then
        the template's init (Xavier for every conv of the head, the pooling's included,
        as the official head re-initialises them; last regression conv N(0, 0.001))."""
        cfg = self.cfg
        c = pooled_channels
        self.shared_fc_layer = nn.Sequential()
        self.cls_layers = nn.Sequential(
            _Channels(0, c), *make_fc_layers(c, cfg.cls_fc, self.num_outputs, cfg.dp_ratio))
        self.reg_layers = nn.Sequential(
            _Channels(c, 2 * c), *make_fc_layers(c, cfg.reg_fc,
                                                 self.box_coder.code_size * self.num_outputs,
                                                 cfg.dp_ratio))
        self.init_weights()

    def pool_features(self, batch_dict: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(cls, reg) features, each (B*R, sum g^3, num_heads x head_dims), of the RoIs in
        batch_dict['rois'] from `point_coords`, `point_features` (x `point_cls_scores`)."""
        features = batch_dict["point_features"]
        if self.grid_cfg.weight_by_point_scores:
            features = features * batch_dict["point_cls_scores"].view(-1, 1)
        temperature = batch_dict.get("temperature")
        return self.roi_grid_pool_layer(
            batch_dict["rois"], batch_dict["point_coords"], features,
            int(batch_dict["batch_size"]),
            None if temperature is None else float(temperature))

    def roi_grid_pool(self, batch_dict: dict[str, Any]) -> Tensor:
        """(B*R, 2 x C_flat): flattened cls features, then flattened reg features."""
        cls_feat, reg_feat = self.pool_features(batch_dict)
        return torch.cat([cls_feat.flatten(1), reg_feat.flatten(1)], dim=1)


# -- the registered baseline -------------------------------------------------------------


def _pv_rcnn_sources() -> VSAConfig:
    return VSAConfig(features_source=("bev", "x_conv1", "x_conv2", "x_conv3", "x_conv4",
                                      "raw_points"))


@dataclass
class PyramidConfig(TwoStageConfig):
    """Pyramid-PV: PV-RCNN's first stage and keypoints, the pyramid RoI head."""

    pfe: VSAConfig = field(default_factory=_pv_rcnn_sources)
    roi_head: PyramidHeadConfig = field(default_factory=kitti_pv_config)


@BASELINES.register("pyramid", family="Pyramid R-CNN (Mao et al., 2021)", tasks="kitti, waymo")
class PyramidRCNN(TwoStageDetector):
    """Pyramid-PV: SECOND's sparse backbone, BEV backbone and anchor head propose boxes;
    keypoints (VoxelSetAbstraction) carry multi-scale features; the pyramid RoI head
    (RoI-grid pyramid, RoI-grid attention, optional density-aware radius) refines them."""

    Config = PyramidConfig

    def build_backbone(self, cfg: Any, grid: Any) -> nn.Module:
        return VoxelBackBone8x(cfg.num_point_features, grid.grid_size)

    def build_roi_head(self, cfg: Any, input_channels: int) -> nn.Module:
        return PyramidRoIHead(input_channels, cfg.roi_head, num_class=1)
