"""Points -> voxels in pure torch (the semantics of spconv's `PointToVoxel` on CPU).

Detectors are only comparable if they see the same voxels, so this reproduces what
OpenPCDet gets from spconv's CPU voxel generator: a point belongs to voxel
floor((p - range_min) / voxel_size) computed in float32; points whose voxel index falls
outside [0, grid) on any axis are dropped (so a point exactly on the upper bound is out);
voxels are numbered in the order of their first point; each keeps its first
`max_points_per_voxel` points in point order (the rest of the slots are zero); voxels
beyond `max_voxels` are dropped with their points. Unlike spconv's GPU generator (whose
order depends on atomics) the result is deterministic and identical on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from refbench.errors import RefbenchError

#: tolerance on extent / voxel size being an integer number of voxels
GRID_TOLERANCE = 1e-4


@dataclass(frozen=True)
class VoxelGrid:
    """A voxel size (vx, vy, vz) and a point cloud range (x0, y0, z0, x1, y1, z1)."""

    voxel_size: tuple[float, float, float]
    point_cloud_range: tuple[float, float, float, float, float, float]

    def __post_init__(self) -> None:
        if len(self.voxel_size) != 3 or len(self.point_cloud_range) != 6:
            raise RefbenchError("voxel_size needs 3 values and point_cloud_range 6",
                                key="model.voxel_size")
        object.__setattr__(self, "voxel_size", tuple(float(v) for v in self.voxel_size))
        object.__setattr__(self, "point_cloud_range",
                           tuple(float(v) for v in self.point_cloud_range))
        _ = self.grid_size  # raises on a size that does not divide the range

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """(nx, ny, nz): the number of voxels along x, y, z."""
        out = []
        for axis in range(3):
            size = self.voxel_size[axis]
            extent = self.point_cloud_range[axis + 3] - self.point_cloud_range[axis]
            if size <= 0 or extent <= 0:
                raise RefbenchError(f"voxel size and range extent must be positive on axis "
                                    f"{'xyz'[axis]}", key="model.voxel_size")
            count = extent / size
            if abs(count - round(count)) > GRID_TOLERANCE:
                raise RefbenchError(f"voxel size {size} does not divide the range extent "
                                    f"{extent} along {'xyz'[axis]}", key="model.voxel_size")
            out.append(round(count))
        return out[0], out[1], out[2]

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx), the spconv order."""
        nx, ny, nz = self.grid_size
        return nz, ny, nx


def voxelize(points: torch.Tensor, grid: VoxelGrid, max_points_per_voxel: int,
             max_voxels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxels (V, P, C), coords (V, 3) int32 [z, y, x] and num_points (V,) int32 of one
    frame's points (N, C >= 3); see the module docstring for the exact rules."""
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, C>=3), got {tuple(points.shape)}")
    device, feats = points.device, points.shape[1]
    nx, ny, nz = grid.grid_size
    lo = torch.tensor(grid.point_cloud_range[:3], dtype=torch.float32, device=device)
    size = torch.tensor(grid.voxel_size, dtype=torch.float32, device=device)
    bound = torch.tensor([nx, ny, nz], dtype=torch.long, device=device)
    idx = torch.floor((points[:, :3].float() - lo) / size).long()
    inside = ((idx >= 0) & (idx < bound)).all(dim=1)
    keep = torch.nonzero(inside).squeeze(1)
    idx = idx[keep]
    linear = (idx[:, 2] * ny + idx[:, 1]) * nx + idx[:, 0]
    uniq, inverse = torch.unique(linear, return_inverse=True)
    order = torch.arange(linear.numel(), device=device)
    first = torch.full((uniq.numel(),), linear.numel(), dtype=torch.long, device=device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    # voxel ids in order of first appearance
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.numel(), device=device)
    voxel_of_point = rank[inverse]
    num_voxels = min(int(first.numel()), int(max_voxels))
    # slot of each point within its voxel = number of earlier points in the same voxel
    by_voxel = torch.argsort(voxel_of_point, stable=True)
    sorted_vox = voxel_of_point[by_voxel]
    counts = torch.bincount(voxel_of_point, minlength=first.numel())
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(by_voxel.numel(), device=device) - starts[sorted_vox]
    take = (sorted_vox < num_voxels) & (slot < max_points_per_voxel)
    src = keep[by_voxel[take]]
    voxels = points.new_zeros((num_voxels, max_points_per_voxel, feats))
    voxels[sorted_vox[take], slot[take]] = points[src]
    coords = torch.empty((num_voxels, 3), dtype=torch.int32, device=device)
    first_idx = idx[torch.sort(first).values[:num_voxels]]
    coords[:, 0], coords[:, 1], coords[:, 2] = first_idx[:, 2], first_idx[:, 1], first_idx[:, 0]
    num_points = counts[:num_voxels].clamp(max=max_points_per_voxel).to(torch.int32)
    return voxels, coords, num_points


def batch_voxelize(points: list[torch.Tensor], grid: VoxelGrid, max_points_per_voxel: int,
                   max_voxels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`voxelize` each frame; coords become (V, 4) int32 [b, z, y, x] (frame b's voxels
    follow frame b-1's), as OpenPCDet's collate does."""
    all_vox, all_coords, all_num = [], [], []
    for b, frame in enumerate(points):
        vox, coords, num = voxelize(frame, grid, max_points_per_voxel, max_voxels)
        batch_col = torch.full((coords.shape[0], 1), b, dtype=torch.int32, device=coords.device)
        all_vox.append(vox)
        all_coords.append(torch.cat([batch_col, coords], dim=1))
        all_num.append(num)
    if not all_vox:
        raise ValueError("batch_voxelize needs at least one frame")
    return torch.cat(all_vox), torch.cat(all_coords), torch.cat(all_num)


class MeanVFE(nn.Module):
    """Voxel feature = mean of its valid points' features (OpenPCDet `MeanVFE`).

    Empty slots are zero, so the mean is the slot sum over max(num_points, 1)."""

    def __init__(self, num_point_features: int) -> None:
        super().__init__()
        self.num_point_features = num_point_features

    def get_output_feature_dim(self) -> int:
        return self.num_point_features

    def forward(self, batch_dict: dict) -> dict:
        voxels, num = batch_dict["voxels"], batch_dict["voxel_num_points"]
        total = voxels.sum(dim=1)
        normalizer = torch.clamp_min(num.view(-1, 1), min=1.0).type_as(voxels)
        batch_dict["voxel_features"] = (total / normalizer).contiguous()
        return batch_dict
