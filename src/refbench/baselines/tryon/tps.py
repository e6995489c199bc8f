"""Thin-plate-spline (TPS) warping, the geometric matcher of CP-VTON-style try-on networks
(M3D-VTON's MTM; WAS-VTON's warping module reuses it).

A regular `grid_size x grid_size` grid of control points `P` spans `[-1, 1]^2`; a network
regresses displacements `theta` (first the N x offsets, then the N y offsets), the target
points are `Q = P + theta`, and the spline `f` with `f(P_i) = Q_i` (affine part plus radial
kernel) maps every output pixel to the position `grid_sample` reads the garment from.
`theta = 0` is the identity, so an untrained regressor starts near "no warp".

Re-derived from M3D-VTON's `TpsGridGen` (itself from CP-VTON / cnngeometric), with two
quirks kept because they change nothing or because the official numbers depend on them:

- the control points are enumerated x-major (`P_Y, P_X = meshgrid(a, a)`: point
  `k = i * n + j` sits at `x = a[i], y = a[j]`); it only orders `theta`;
- the kernel is `U(r) = r^2 log r^2` (twice the textbook `r^2 log r`); the solved weights
  halve, so the interpolant is the same spline;
- the pixel grid is `linspace(-1, 1, W) x linspace(-1, 1, H)` (pixel centres at the ends,
  `align_corners=True`'s convention) while the official `F.grid_sample` call runs with
  PyTorch's default `align_corners=False`: the identity warp therefore shrinks the image
  by half a pixel at each border. `warp` keeps that default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.errors import RefbenchError


def control_points(grid_size: int) -> Tensor:
    """`(N, 2)` control points `(x, y)` of the regular grid, in the official x-major order."""
    if grid_size < 2:
        raise RefbenchError(f"a TPS grid needs at least 2 x 2 control points, got {grid_size}",
                            key="model.grid_size")
    axis = torch.linspace(-1.0, 1.0, grid_size, dtype=torch.float64)
    xs = axis.repeat_interleave(grid_size)  # x = a[i] for k = i * n + j
    ys = axis.repeat(grid_size)  # y = a[j]
    return torch.stack([xs, ys], dim=1)


def tps_kernel(dist_squared: Tensor) -> Tensor:
    """The official radial kernel `d^2 log d^2`, 0 where `d = 0` (it sets `d^2 = 1` there)."""
    safe = torch.where(dist_squared == 0, torch.ones_like(dist_squared), dist_squared)
    return safe * torch.log(safe)


def tps_system(points: Tensor) -> Tensor:
    """The inverse of the `(N + 3) x (N + 3)` TPS system `L = [[K, P], [P^T, 0]]`."""
    n = points.shape[0]
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    ones = torch.ones(n, 1, dtype=points.dtype)
    p = torch.cat([ones, points], dim=1)
    top = torch.cat([tps_kernel(d2), p], dim=1)
    bottom = torch.cat([p.t(), torch.zeros(3, 3, dtype=points.dtype)], dim=1)
    return torch.linalg.inv(torch.cat([top, bottom], dim=0))


def pixel_grid(height: int, width: int) -> Tensor:
    """`(H * W, 2)` normalised `(x, y)` of every output pixel, row-major."""
    ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, height, dtype=torch.float64),
                            torch.linspace(-1.0, 1.0, width, dtype=torch.float64), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


class TpsGridGen(nn.Module):
    """`theta (B, 2N)` -> sampling grid `(B, H, W, 2)` for `grid_sample` (module docstring).

    The pixel-to-control-point kernel and the system's inverse are computed once (float64,
    stored float32) as non-persistent buffers: constants, not checkpoint content."""

    def __init__(self, height: int, width: int, grid_size: int = 3) -> None:
        super().__init__()
        self.height, self.width, self.grid_size = int(height), int(width), int(grid_size)
        points = control_points(grid_size)
        self.num_points = points.shape[0]
        pixels = pixel_grid(self.height, self.width)
        inverse = tps_system(points)[:, : self.num_points]  # the right-hand side is [Q; 0]
        d2 = ((pixels[:, None, :] - points[None, :, :]) ** 2).sum(-1)
        # basis (H*W, N + 3): kernel to each control point, then 1, x, y
        basis = torch.cat([tps_kernel(d2), torch.ones(len(pixels), 1, dtype=torch.float64),
                           pixels], dim=1)
        # one matrix maps target points to pixel positions: grid = (basis @ inverse) @ Q
        self.register_buffer("mapping", (basis @ inverse).float(), persistent=False)
        self.register_buffer("points", points.float(), persistent=False)

    def forward(self, theta: Tensor) -> Tensor:
        n = self.num_points
        if theta.dim() != 2 or theta.shape[1] != 2 * n:
            raise RefbenchError(f"TPS parameters must be (batch, {2 * n}), got "
                                f"{tuple(theta.shape)}")
        target = torch.stack([theta[:, :n], theta[:, n:]], dim=2) + self.points  # (B, N, 2)
        grid = torch.einsum("pn,bnc->bpc", self.mapping.to(theta.dtype), target)
        return grid.view(theta.shape[0], self.height, self.width, 2)


def warp(image: Tensor, grid: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Sample `image (B, C, H, W)` at `grid`, with the official call's defaults (bilinear,
    `align_corners=False`); garments use `border` padding, masks `zeros`, as M3D-VTON."""
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)
