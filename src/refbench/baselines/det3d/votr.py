"""VoTr backbone (Voxel Transformer, Mao et al., ICCV 2021) in plain PyTorch.

Re-derived from the official ``VoxelTransformer`` (``votr_backbone.py``) and its index
builders, with the CUDA hash table replaced by ``voxel_query`` (sorted int64 keys) so the
model runs on CPU or any GPU without custom ops or spconv. Structure (KITTI VoTr-SSD):
an input ``Linear -> BN -> ReLU`` to 16 channels, then three stages, each one sparse
(stride-2) attention module followed by two submanifold attention modules whose output
is added back to the sparse module's output (``AttentionResBlock``). On KITTI
(spatial shape 40 x 1600 x 1408, no extra z cell) the output grid is 5 x 200 x 176 with
64 channels, i.e. 320 BEV channels after ``HeightCompression``.

Each query attends (``nn.MultiheadAttention``) over at most ``SIZE`` non-empty voxels
found with the RANGE_SPEC enumeration; keys carry a positional embedding
``ReLU(Linear(3, C))`` of their offset to the query in metres. Queries are processed in
chunks to bound memory; BatchNorm layers see all voxels at once, as in the original.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from refbench.baselines.det3d.ops import gather_rows
from refbench.baselines.det3d.pvrcnn import PVRCNNHead, PVRCNNHeadConfig
from refbench.baselines.det3d.two_stage import TwoStageConfig, TwoStageDetector
from refbench.baselines.det3d.voxel_query import (
    VoxelIndex,
    gather_neighbors,
    in_grid,
    linear_keys,
    strided_offsets,
    window_offsets,
)
from refbench.errors import RefbenchError
from refbench.registry import BASELINES

#: KITTI VoTr-SSD defaults (official ``votr_ssd.yaml``): voxel size and range.
KITTI_VOXEL_SIZE = (0.05, 0.05, 0.1)
KITTI_POINT_CLOUD_RANGE = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)

_SPEC_S1 = [[0, 2, 1, 0, 2, 1, 0, 2, 1], [2, 5, 1, 2, 5, 1, 0, 3, 1],
            [5, 25, 5, 5, 25, 5, 0, 15, 2], [25, 125, 25, 25, 125, 25, 0, 15, 3]]
_SPEC_S2 = [[0, 2, 1, 0, 2, 1, 0, 2, 1], [2, 4, 1, 2, 4, 1, 0, 3, 1],
            [4, 12, 3, 4, 12, 3, 0, 8, 2], [12, 60, 12, 12, 60, 12, 0, 8, 2]]
_SPEC_S3 = [[0, 2, 1, 0, 2, 1, 0, 2, 1], [2, 3, 1, 2, 3, 1, 0, 2, 1],
            [3, 8, 2, 3, 8, 2, 0, 4, 1], [8, 32, 8, 8, 32, 8, 0, 4, 1]]
_SPEC_S4 = [[0, 2, 1, 0, 2, 1, 0, 2, 1], [2, 4, 1, 2, 4, 1, 0, 3, 1], [4, 16, 2, 4, 16, 2, 0, 5, 1]]


def _mode(spec: list[list[int]]) -> dict[str, Any]:
    return {"NAME": "StridedAttention", "SIZE": 48, "RANGE_SPEC": spec}


def kitti_votr_ssd_config() -> dict[str, Any]:
    """A fresh copy of the official KITTI ``BACKBONE_3D`` config (VoTr-SSD)."""
    def stage(sp_ch: list[int], sp_spec: list[list[int]], subm_ch: list[int],
              subm_spec: list[list[int]]) -> dict[str, Any]:
        return {
            "SP_CFGS": {"CHANNELS": sp_ch, "DROPOUT": 0.0, "NUM_HEADS": 4, "ATTENTION": [_mode(sp_spec)],
                        "STRIDE": [2, 2, 2], "NUM_DS_VOXELS": 90000},
            "SUBM_CFGS": {"NUM_BLOCKS": 2, "CHANNELS": subm_ch, "DROPOUT": 0.0, "NUM_HEADS": 4,
                          "ATTENTION": [_mode(subm_spec)], "USE_POS_EMB": True},
        }
    return copy.deepcopy({
        "USE_RELATIVE_COORDS": True,
        "USE_POOLED_FEATURE": True,
        "USE_NO_QUERY_COORDS": True,
        "NUM_OUTPUT_FEATURES": 64,
        "PARAMS": [
            stage([16, 32, 32], _SPEC_S1, [32, 32, 32], _SPEC_S2),
            stage([32, 64, 64], _SPEC_S2, [64, 64, 64], _SPEC_S3),
            stage([64, 64, 64], _SPEC_S3, [64, 64, 64], _SPEC_S4),
        ],
    })


@dataclass
class SparseVoxels:
    """Sparse voxel tensor: what VoTr hands to ``HeightCompression``.

    ``indices`` are (V, 4) int32 ``[b, z, y, x]``; ``spatial_shape`` is ``(nz, ny, nx)``;
    ``voxel_size`` is ``(vx, vy, vz)`` in metres at this resolution (for positional
    embeddings); ``point_cloud_range`` is ``(x0, y0, z0, x1, y1, z1)``.
    """

    features: torch.Tensor
    indices: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    point_cloud_range: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def dense(self, channels_first: bool = True) -> torch.Tensor:
        """Scatter to ``(B, C, D, H, W)`` (or ``(B, D, H, W, C)``); empty cells are 0."""
        nz, ny, nx = self.spatial_shape
        c = self.features.shape[1]
        out = self.features.new_zeros((self.batch_size, nz, ny, nx, c))
        i = self.indices.long()
        out[i[:, 0], i[:, 1], i[:, 2], i[:, 3]] = self.features
        return out.permute(0, 4, 1, 2, 3).contiguous() if channels_first else out

    def centres(self) -> torch.Tensor:
        """Voxel centres ``(V, 3)`` x, y, z in metres (official ``with_coords``)."""
        return voxel_centres(self.indices, self.voxel_size, self.point_cloud_range, self.features)


def voxel_centres(indices: torch.Tensor, voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                  like: torch.Tensor) -> torch.Tensor:
    """Centres ``(V, 3)`` x, y, z in metres of ``[b, z, y, x]`` voxels, dtype/device of ``like``."""
    size = like.new_tensor(tuple(voxel_size))
    lo = like.new_tensor(tuple(point_cloud_range[:3]))
    return (indices[:, [3, 2, 1]].to(like.dtype) + 0.5) * size + lo


def _cfg(cfg: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise RefbenchError(f"VoTr config is missing {key}", key=f"model.{where}.{key}")
    return cfg[key]


def _mode_offsets(mode: Mapping[str, Any], stride: Sequence[int]) -> tuple[torch.Tensor, int]:
    """(offsets, SIZE) of one attention mode; stride is (sz, sy, sx)."""
    name = mode.get("NAME")
    size = int(_cfg(mode, "SIZE", "ATTENTION"))
    if name == "StridedAttention":
        return strided_offsets(_cfg(mode, "RANGE_SPEC", "ATTENTION"), stride), size
    if name == "LocalAttention":
        return window_offsets(int(_cfg(mode, "RANGE", "ATTENTION")), stride), size
    raise RefbenchError(f"unknown VoTr attention mode {name!r} (StridedAttention, LocalAttention)",
                        key="model.ATTENTION.NAME")


class Attention3d(nn.Module):
    """Shared parts of the VoTr attention modules (official ``Attention3d``).

    Multi-head attention of one query per voxel over its gathered keys, a ReLU FFN
    (``linear1``/``linear2``) and an output ``Linear -> BN -> ReLU`` that changes width.
    """

    def __init__(self, input_channels: int, output_channels: int, ff_channels: int, dropout: float,
                 num_heads: int, attention_modes: Sequence[Mapping[str, Any]], stride: Sequence[int],
                 chunk_size: int = 4096) -> None:
        super().__init__()
        if input_channels % num_heads:
            raise RefbenchError(f"channels {input_channels} not divisible by {num_heads} heads",
                                key="model.NUM_HEADS")
        self.chunk_size = int(chunk_size)
        self.stride = tuple(int(s) for s in stride)               # (sz, sy, sx)
        parts = [_mode_offsets(m, self.stride) for m in attention_modes]
        if not parts:
            raise RefbenchError("VoTr module needs at least one attention mode", key="model.ATTENTION")
        self.mode_sizes = [size for _, size in parts]
        for i, (off, _) in enumerate(parts):
            self.register_buffer(f"offsets_{i}", off, persistent=False)
        #: key-space padding that lets neighbour search skip bounds checks
        self.margin = max(int(off.abs().max()) if off.numel() else 0 for off, _ in parts)
        self.mhead_attention = nn.MultiheadAttention(embed_dim=input_channels, num_heads=num_heads,
                                                     dropout=dropout)
        self.drop_out = nn.Dropout(dropout)
        self.linear1 = nn.Linear(input_channels, ff_channels)
        self.linear2 = nn.Linear(ff_channels, input_channels)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.ReLU()
        self.output_layer = nn.Sequential(nn.Linear(input_channels, output_channels),
                                          nn.BatchNorm1d(output_channels), nn.ReLU())

    def index(self, sp: SparseVoxels) -> VoxelIndex:
        """Voxel index of the key voxels, padded for this module's offsets."""
        return VoxelIndex(sp.indices, sp.spatial_shape, margin=self.margin)

    @torch.no_grad()
    def gather(self, index: VoxelIndex, query_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key indices (M, sum SIZE) and padding mask, modes concatenated (official order)."""
        idx, mask = [], []
        for i, size in enumerate(self.mode_sizes):
            a, b = gather_neighbors(index, query_indices, getattr(self, f"offsets_{i}"), size, self.stride)
            idx.append(a)
            mask.append(b)
        return torch.cat(idx, dim=1), torch.cat(mask, dim=1)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """The position-wise feed-forward branch (without its residual)."""
        return self.dropout2(self.linear2(self.dropout1(self.activation(self.linear1(x)))))

    def attend(self, query: torch.Tensor, key_feats: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """One query (M, C) over its keys (M, K, C); a query with no key returns zeros, not NaN."""
        empty = key_mask.all(dim=1)
        if bool(empty.any()):
            key_mask = key_mask.clone()
            key_mask[empty, 0] = False
        out, _ = self.mhead_attention(query[None], key_feats.transpose(0, 1), key_feats.transpose(0, 1),
                                      key_padding_mask=key_mask, need_weights=False)
        out = out[0]
        return torch.where(empty[:, None], torch.zeros_like(out), out)


class SparseAttention3d(Attention3d):
    """Sparse voxel module: stride-2 downsampling by attention (official ``SparseAttention3d``).

    New positions are the unique ``coords // stride`` of the non-empty inputs; each attends
    to the non-empty *input* voxels around its location in the fine grid. Its initial
    feature is the max of the gathered key features (``USE_POOLED_FEATURE``; padded slots
    count as 0), plus a projection of its centre unless ``USE_NO_QUERY_COORDS``. Update:
    ``x = attn; x = x + FFN(x); x = BN(x); out = Linear-BN-ReLU(x)`` (no query residual).
    """

    def __init__(self, input_channels: int, output_channels: int, ff_channels: int, dropout: float,
                 num_heads: int, attention_modes: Sequence[Mapping[str, Any]], strides: Sequence[int],
                 use_relative_coords: bool = False, use_pooled_feature: bool = False,
                 use_no_query_coords: bool = False, chunk_size: int = 4096) -> None:
        sx, sy, sz = (int(s) for s in strides)   # official STRIDE order is x, y, z
        super().__init__(input_channels, output_channels, ff_channels, dropout, num_heads, attention_modes,
                         (sz, sy, sx), chunk_size)
        self.use_relative_coords = use_relative_coords
        self.use_pooled_features = use_pooled_feature
        self.use_no_query_coords = use_no_query_coords
        if not use_pooled_feature and use_no_query_coords:
            raise RefbenchError("sparse VoTr module needs pooled features or query coords",
                                key="model.USE_POOLED_FEATURE")
        self.norm = nn.BatchNorm1d(input_channels)
        if not use_no_query_coords:
            self.q_pos_proj = nn.Sequential(nn.Linear(3, input_channels), nn.ReLU())
        self.k_pos_proj = nn.Sequential(nn.Linear(3, input_channels), nn.ReLU())

    @torch.no_grad()
    def downsample(self, sp: SparseVoxels) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Unique coarse coords (sorted by key) and the floor-divided spatial shape."""
        shape = tuple(s // st for s, st in zip(sp.spatial_shape, self.stride))
        scale = sp.indices.new_tensor(self.stride).long()
        coarse = sp.indices.long().clone()
        coarse[:, 1:] = torch.div(coarse[:, 1:], scale, rounding_mode="floor")
        keys = torch.unique(linear_keys(coarse[in_grid(coarse, shape)], shape))  # sorted: b, z, y, x
        nz, ny, nx = shape
        out = torch.stack([keys // (nz * ny * nx), keys // (ny * nx) % nz, keys // nx % ny, keys % nx], dim=1)
        return out.to(sp.indices.dtype), shape                 # type: ignore[return-value]

    def forward(self, sp: SparseVoxels) -> SparseVoxels:
        new_indices, new_shape = self.downsample(sp)
        vx, vy, vz = sp.voxel_size
        sz, sy, sx = self.stride
        new_size = (vx * sx, vy * sy, vz * sz)
        out_sp = SparseVoxels(sp.features.new_zeros((0, 1)), new_indices, new_shape, sp.batch_size,
                              new_size, sp.point_cloud_range)
        key_idx, key_mask = self.gather(self.index(sp), new_indices)
        feats = sp.features
        key_xyz = sp.centres()
        q_xyz_all = voxel_centres(new_indices, new_size, sp.point_cloud_range, feats)
        outs = []
        for s in range(0, new_indices.shape[0], self.chunk_size):
            idx, mask = key_idx[s:s + self.chunk_size], key_mask[s:s + self.chunk_size]
            safe = idx.clamp(min=0)
            valid = (~mask)[..., None].to(feats.dtype)
            k_f = gather_rows(feats, safe) * valid                             # (m, K, C), empty slots 0
            q_xyz = q_xyz_all[s:s + self.chunk_size]
            if self.use_pooled_features:
                query = k_f.max(dim=1).values
                if not self.use_no_query_coords:
                    query = query + self.q_pos_proj(q_xyz)
            else:
                query = self.q_pos_proj(q_xyz)
            k_xyz = gather_rows(key_xyz, safe) * valid
            if self.use_relative_coords:
                k_xyz = k_xyz - q_xyz[:, None, :]
            k_f = k_f + self.k_pos_proj(k_xyz)
            outs.append(self.attend(query, k_f, mask))
        x = self.drop_out(torch.cat(outs) if outs else feats.new_zeros((0, feats.shape[1])))
        x = self.norm(x + self.ffn(x))
        out_sp.features = self.output_layer(x)
        return out_sp


class SubMAttention3d(Attention3d):
    """Submanifold voxel module: same positions in and out (official ``SubMAttention3d``).

    ``x = BN1(x + attn(x)); x = BN2(x + FFN(x)); out = Linear-BN-ReLU(x)``. Keys get a
    positional embedding of their (relative) centre when ``USE_POS_EMB``.
    """

    def __init__(self, input_channels: int, output_channels: int, ff_channels: int, dropout: float,
                 num_heads: int, attention_modes: Sequence[Mapping[str, Any]], use_pos_emb: bool = True,
                 use_relative_coords: bool = False, use_no_query_coords: bool = False,
                 chunk_size: int = 4096) -> None:
        super().__init__(input_channels, output_channels, ff_channels, dropout, num_heads, attention_modes,
                         (1, 1, 1), chunk_size)
        self.use_relative_coords = use_relative_coords
        self.use_no_query_coords = use_no_query_coords
        self.use_pos_emb = use_pos_emb
        self.norm1 = nn.BatchNorm1d(input_channels)
        self.norm2 = nn.BatchNorm1d(input_channels)
        if use_pos_emb:
            if not use_no_query_coords:
                self.q_pos_proj = nn.Sequential(nn.Linear(3, input_channels), nn.ReLU())
            self.k_pos_proj = nn.Sequential(nn.Linear(3, input_channels), nn.ReLU())

    def forward(self, sp: SparseVoxels,
                gathered: tuple[torch.Tensor, torch.Tensor] | None = None) -> SparseVoxels:
        if gathered is None:
            gathered = self.gather(self.index(sp), sp.indices)
        key_idx, key_mask = gathered
        feats = sp.features
        xyz = sp.centres() if self.use_pos_emb else None
        outs = []
        for s in range(0, feats.shape[0], self.chunk_size):
            idx, mask = key_idx[s:s + self.chunk_size], key_mask[s:s + self.chunk_size]
            safe = idx.clamp(min=0)
            valid = (~mask)[..., None].to(feats.dtype)
            query = feats[s:s + self.chunk_size]
            k_f = gather_rows(feats, safe) * valid
            if xyz is not None:
                q_xyz = xyz[s:s + self.chunk_size]
                k_xyz = gather_rows(xyz, safe) * valid
                if self.use_relative_coords:
                    k_xyz = k_xyz - q_xyz[:, None, :]
                k_f = k_f + self.k_pos_proj(k_xyz)
                if not self.use_no_query_coords:
                    query = query + self.q_pos_proj(q_xyz)
            outs.append(self.attend(query, k_f, mask))
        att = torch.cat(outs) if outs else torch.zeros_like(feats)
        x = self.norm1(feats + self.drop_out(att))
        x = self.norm2(x + self.ffn(x))
        return SparseVoxels(self.output_layer(x), sp.indices, sp.spatial_shape, sp.batch_size,
                            sp.voxel_size, sp.point_cloud_range)


#: Names used in the task description for the two module kinds.
SparseVoxelModule = SparseAttention3d
SubMVoxelModule = SubMAttention3d


class AttentionResBlock(nn.Module):
    """One stage: a sparse module, then submanifold modules added back as a residual."""

    def __init__(self, cfg: Mapping[str, Any], use_relative_coords: bool, use_pooled_feature: bool,
                 use_no_query_coords: bool, chunk_size: int = 4096) -> None:
        super().__init__()
        sp = _cfg(cfg, "SP_CFGS", "PARAMS")
        ch = _cfg(sp, "CHANNELS", "SP_CFGS")
        self.sp_attention = SparseAttention3d(
            ch[0], ch[2], ch[1], float(sp.get("DROPOUT", 0.0)), int(_cfg(sp, "NUM_HEADS", "SP_CFGS")),
            _cfg(sp, "ATTENTION", "SP_CFGS"), sp.get("STRIDE", [2, 2, 2]), use_relative_coords,
            use_pooled_feature, use_no_query_coords, chunk_size)
        subm = _cfg(cfg, "SUBM_CFGS", "PARAMS")
        ch = _cfg(subm, "CHANNELS", "SUBM_CFGS")
        self.subm_attention_modules = nn.ModuleList(
            SubMAttention3d(ch[0], ch[2], ch[1], float(subm.get("DROPOUT", 0.0)),
                            int(_cfg(subm, "NUM_HEADS", "SUBM_CFGS")), _cfg(subm, "ATTENTION", "SUBM_CFGS"),
                            bool(subm.get("USE_POS_EMB", True)), use_relative_coords, use_no_query_coords,
                            chunk_size)
            for _ in range(int(subm.get("NUM_BLOCKS", 2))))

    def forward(self, sp: SparseVoxels) -> SparseVoxels:
        sp = self.sp_attention(sp)
        identity = sp.features
        gathered = None
        if len(self.subm_attention_modules):  # one neighbour search per stage, as the original caches it
            first = self.subm_attention_modules[0]
            gathered = first.gather(first.index(sp), sp.indices)
        for module in self.subm_attention_modules:
            sp = module(sp, gathered)
        sp.features = sp.features + identity
        return sp


class VoxelTransformer(nn.Module):
    """VoTr 3D backbone; defaults are the official KITTI VoTr-SSD config.

    Writes ``encoded_spconv_tensor`` (a ``SparseVoxels``), its stride 8, and, like the
    official ``VoxelTransformerV3`` used by VoTr-TSD, ``multi_scale_3d_features`` with
    ``x_conv1`` (the 16-channel input transform, stride 1) and ``x_conv2..4`` (the stage
    outputs, strides 2, 4, 8).

    ``grid_size`` is OpenPCDet's ``(nx, ny, nz)`` (x first); VoTr uses it as is (no extra z
    cell, unlike SECOND), so KITTI's (1408, 1600, 40) ends at (nz, ny, nx) = (5, 200, 176).
    """

    def __init__(self, input_channels: int, grid_size: Sequence[int],
                 model_cfg: Mapping[str, Any] | None = None, *,
                 voxel_size: Sequence[float] = KITTI_VOXEL_SIZE,
                 point_cloud_range: Sequence[float] = KITTI_POINT_CLOUD_RANGE,
                 chunk_size: int = 4096) -> None:
        super().__init__()
        cfg = kitti_votr_ssd_config() if model_cfg is None else model_cfg
        self.model_cfg = cfg
        if len(grid_size) != 3:
            raise RefbenchError("grid_size must be (nx, ny, nz)", key="model.grid_size")
        self.grid_size = tuple(int(g) for g in grid_size)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        rel = bool(cfg.get("USE_RELATIVE_COORDS", False))
        pooled = bool(cfg.get("USE_POOLED_FEATURE", False))
        no_q = bool(cfg.get("USE_NO_QUERY_COORDS", False))
        params = _cfg(cfg, "PARAMS", "BACKBONE_3D")
        first = _cfg(_cfg(params[0], "SP_CFGS", "PARAMS"), "CHANNELS", "SP_CFGS")[0]
        self.input_transform = nn.Sequential(nn.Linear(input_channels, first), nn.BatchNorm1d(first), nn.ReLU())
        self.backbone = nn.ModuleList(AttentionResBlock(p, rel, pooled, no_q, chunk_size) for p in params)
        self.num_point_features = int(_cfg(cfg, "NUM_OUTPUT_FEATURES", "BACKBONE_3D"))

    def output_spatial_shape(self) -> tuple[int, int, int]:
        """``(nz, ny, nx)`` of the encoded tensor (each stage floor-divides by its stride)."""
        shape = tuple(reversed(self.grid_size))
        for block in self.backbone:
            shape = tuple(s // st for s, st in zip(shape, block.sp_attention.stride))
        return shape  # type: ignore[return-value]

    def forward(self, batch_dict: dict[str, Any]) -> dict[str, Any]:
        feats = self.input_transform(batch_dict["voxel_features"])
        sp = SparseVoxels(feats, batch_dict["voxel_coords"].int(), tuple(reversed(self.grid_size)),
                          int(batch_dict["batch_size"]), self.voxel_size, self.point_cloud_range)
        scales = {"x_conv1": sp}
        for i, block in enumerate(self.backbone):
            sp = block(sp)
            scales[f"x_conv{i + 2}"] = sp
        batch_dict["encoded_spconv_tensor"] = sp
        batch_dict["encoded_spconv_tensor_stride"] = 8
        # VoxelTransformerV3 (VoTr-TSD): input features and every stage, for VoxelSetAbstraction
        batch_dict["multi_scale_3d_features"] = scales
        batch_dict["multi_scale_3d_strides"] = {name: 2 ** i for i, name in enumerate(scales)}
        batch_dict["num_point_features"] = self.num_point_features
        return batch_dict


# -- the registered baseline -------------------------------------------------------------


@dataclass
class VoTrConfig(TwoStageConfig):
    """A VoTr recipe: the detector settings, the backbone's official `BACKBONE_3D` mapping
    (`backbone_3d`, upper-case keys as in votr_ssd.yaml) and, for VoTr-TSD
    (`second_stage: true`), PV-RCNN's keypoint stage and RoI-grid head."""

    backbone_3d: dict[str, Any] = field(default_factory=kitti_votr_ssd_config)
    second_stage: bool = False
    roi_head: PVRCNNHeadConfig = field(default_factory=PVRCNNHeadConfig)


@BASELINES.register("votr", family="VoTr (Mao et al., 2021)", tasks="kitti, waymo")
class VoTr(TwoStageDetector):
    """VoTr-SSD (voxel transformer backbone + BEV backbone + anchor head) and, with
    `second_stage: true`, VoTr-TSD (the same backbone in PV-RCNN: keypoints, point head,
    RoI-grid pooling head)."""

    Config = VoTrConfig

    def build_backbone(self, cfg: VoTrConfig, grid: Any) -> nn.Module:
        return VoxelTransformer(cfg.num_point_features, grid.grid_size, cfg.backbone_3d,
                                voxel_size=cfg.voxel_size,
                                point_cloud_range=cfg.point_cloud_range)

    def uses_second_stage(self, cfg: VoTrConfig) -> bool:
        return cfg.second_stage

    def build_roi_head(self, cfg: VoTrConfig, input_channels: int) -> nn.Module:
        return PVRCNNHead(input_channels, cfg.roi_head, num_class=1)
