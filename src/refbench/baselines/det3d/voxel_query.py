"""Fast Voxel Query for VoTr without a GPU hash table.

VoTr finds the non-empty voxels a query attends to with a CUDA hash table. Here every
voxel is a linearised int64 key ``((b * nz + z) * ny + y) * nx + x``; the keys are sorted
once and looked up with ``torch.searchsorted``. This runs on any device, has no custom op,
and gives the same neighbour lists (same enumeration order, same cap) as the official
index builders, so attention sees the same keys.

Offsets follow the official ``RANGE_SPEC`` enumeration. Each attention group is nine
integers ``[x_start, x_end, x_stride, y_start, y_end, y_stride, z_start, z_end,
z_stride]``; for every half-distance triple ``(oz, oy, ox)`` with ``o* in range(0, end,
stride)`` (z outermost, x innermost) the triple is skipped only if ``ox < x_start and
oy < y_start and oz < z_start``; each kept triple visits the corner positions ``centre -
o`` and ``centre + o`` per axis (one position when ``o == 0``). For a strided (sparse)
query at downsampled cell ``c`` with stride ``s`` the positions along an axis are
``c*s - o`` and ``c*s + s - 1 + o`` (stepping ``2*o + s - 1``), i.e. the fine cells just
outside the query's own ``s``-cube. Offsets are returned as ``(dz, dy, dx)`` relative to
the anchor ``c * s`` so that they add directly to ``[b, z, y, x]`` coordinates.

Note (official behaviour, kept): because the skip test needs *all three* axes to be
below their start and the KITTI specs use ``z_start = 0``, no triple is ever skipped;
later groups therefore repeat positions of earlier groups (the centre voxel appears once
per group). ``strided_offsets(..., dedupe=True)`` drops repeats for experiments.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from refbench.errors import RefbenchError

RangeSpec = Sequence[Sequence[int]]

#: Query rows handled per chunk so that (rows * offsets) lookups stay near this size.
LOOKUP_BUDGET = 1 << 22


def linear_keys(coords: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """int64 key of each ``[b, z, y, x]`` row; callers must mask out-of-grid rows."""
    nz, ny, nx = (int(s) for s in spatial_shape)
    c = coords.long()
    return ((c[..., 0] * nz + c[..., 1]) * ny + c[..., 2]) * nx + c[..., 3]


def in_grid(coords: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Whether each ``[b, z, y, x]`` row lies inside the grid (and has ``b >= 0``)."""
    nz, ny, nx = (int(s) for s in spatial_shape)
    c = coords.long()
    return ((c[..., 0] >= 0) & (c[..., 1] >= 0) & (c[..., 1] < nz) & (c[..., 2] >= 0)
            & (c[..., 2] < ny) & (c[..., 3] >= 0) & (c[..., 3] < nx))


class VoxelIndex:
    """Sorted-key map from voxel coordinates to row indices of the voxel tensor.

    Built once per sparse tensor (one ``torch.sort``); each lookup is one
    ``torch.searchsorted``. Coordinates must be unique (as produced by voxelisation);
    voxels outside the grid are not indexed (the original hash build skips them too).

    ``margin`` pads every spatial axis by that many cells in key space, so that
    ``gather_neighbors`` can add any offset up to ``margin`` to an in-grid anchor without
    bounds checks (a padded cell can never alias a real one). With ``margin == 0`` the
    key is exactly ``((b * nz + z) * ny + y) * nx + x``.
    """

    def __init__(self, coords: torch.Tensor, spatial_shape: Sequence[int], margin: int = 0) -> None:
        if coords.ndim != 2 or coords.shape[1] != 4:
            raise RefbenchError(f"voxel coords must be (V, 4) [b, z, y, x], got {tuple(coords.shape)}",
                                key="voxel_coords")
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        if len(self.spatial_shape) != 3:
            raise RefbenchError("spatial_shape must be (nz, ny, nx)", key="spatial_shape")
        self.margin = int(margin)
        self.padded_shape = tuple(s + 2 * self.margin for s in self.spatial_shape)
        inside = in_grid(coords, self.spatial_shape)
        rows = torch.arange(coords.shape[0], device=coords.device)
        if not bool(inside.all()):
            rows = rows[inside]
        keys = self.keys_of(coords[rows])
        self.sorted_keys, perm = torch.sort(keys)
        self.order = rows[perm]
        self.num_voxels = int(self.sorted_keys.shape[0])

    def keys_of(self, coords: torch.Tensor) -> torch.Tensor:
        """Padded-space key of ``[..., 4]`` coordinates (valid for cells within the margin)."""
        shift = coords.new_tensor([0, self.margin, self.margin, self.margin]).long()
        return linear_keys(coords.long() + shift, self.padded_shape)

    def lookup(self, query_coords: torch.Tensor) -> torch.Tensor:
        """Row index of each query ``[..., 4]`` coordinate, or -1 if empty or off-grid."""
        shape = query_coords.shape[:-1]
        flat = query_coords.reshape(-1, 4)
        return self.lookup_keys(self.keys_of(flat), in_grid(flat, self.spatial_shape)).reshape(shape)

    def lookup_keys(self, keys: torch.Tensor, ok: torch.Tensor | None = None) -> torch.Tensor:
        """Row index for padded-space keys (any shape); -1 where absent or ``ok`` is False."""
        if self.num_voxels == 0 or keys.numel() == 0:
            return torch.full(keys.shape, -1, dtype=torch.long, device=keys.device)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_(max=self.num_voxels - 1)
        hit = self.sorted_keys[pos] == keys
        if ok is not None:
            hit &= ok
        return torch.where(hit, self.order[pos], -1)


def _axis_positions(offset: int, stride: int) -> list[int]:
    """Positions visited along one axis relative to ``c * stride`` (official loop)."""
    step = 2 * offset + stride - 1
    first, last = -offset, stride - 1 + offset
    if step <= 0:  # stride 1, offset 0: the loop visits the centre once
        return [0]
    return list(range(first, last + 1, step))


def _check_group(group: Sequence[int]) -> tuple[int, ...]:
    if len(group) != 9:
        raise RefbenchError(f"RANGE_SPEC group needs 9 ints [start, end, stride] x (x, y, z), got {list(group)}",
                            key="model.RANGE_SPEC")
    vals = tuple(int(v) for v in group)
    if any(vals[i] <= 0 for i in (2, 5, 8)):
        raise RefbenchError(f"RANGE_SPEC strides must be positive, got {list(group)}", key="model.RANGE_SPEC")
    return vals


def _group_offsets(group: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int, int]]:
    """Ordered ``(dz, dy, dx)`` list of one RANGE_SPEC group (official enumeration)."""
    xs, xe, xst, ys, ye, yst, zs, ze, zst = _check_group(group)
    sz, sy, sx = (int(s) for s in stride)
    out: list[tuple[int, int, int]] = []
    for oz in range(0, ze, zst):
        for oy in range(0, ye, yst):
            for ox in range(0, xe, xst):
                if ox < xs and oy < ys and oz < zs:
                    continue
                for dz in _axis_positions(oz, sz):
                    for dy in _axis_positions(oy, sy):
                        for dx in _axis_positions(ox, sx):
                            out.append((dz, dy, dx))
    return out


def _as_tensor(offsets: list[tuple[int, int, int]], dedupe: bool) -> torch.Tensor:
    if dedupe:
        offsets = list(dict.fromkeys(offsets))
    return torch.tensor(offsets, dtype=torch.long).reshape(-1, 3)


def strided_offsets(range_spec: RangeSpec, stride: Sequence[int] = (1, 1, 1), *,
                    dedupe: bool = False) -> torch.Tensor:
    """All groups of a ``StridedAttention`` RANGE_SPEC in official order: (K, 3) ``(dz, dy, dx)``.

    ``stride`` is ``(sz, sy, sx)``: ``(1, 1, 1)`` for submanifold queries, the module's
    stride for sparse (downsampling) queries; offsets are relative to ``centre * stride``.
    """
    offsets: list[tuple[int, int, int]] = []
    for group in range_spec:
        offsets.extend(_group_offsets(group, stride))
    return _as_tensor(offsets, dedupe)


def local_offsets(range_spec: RangeSpec, stride: Sequence[int] = (1, 1, 1)) -> torch.Tensor:
    """Local attention part: the first RANGE_SPEC group (a small dense window)."""
    if len(range_spec) == 0:
        raise RefbenchError("RANGE_SPEC is empty", key="model.RANGE_SPEC")
    return _as_tensor(_group_offsets(range_spec[0], stride), False)


def dilated_offsets(range_spec: RangeSpec, stride: Sequence[int] = (1, 1, 1)) -> torch.Tensor:
    """Dilated attention part: groups 2.. of RANGE_SPEC (growing strides), official order.

    Positions already in the local window are kept when the official skip rule keeps
    them (see the module docstring); ``strided_offsets`` is the concatenation.
    """
    return strided_offsets(list(range_spec)[1:], stride)


def window_offsets(attend_range: int, stride: Sequence[int] = (1, 1, 1)) -> torch.Tensor:
    """``LocalAttention`` (RANGE = r): every cell from ``c*s - r`` to ``c*s + s - 1 + r``."""
    r = int(attend_range)
    sz, sy, sx = (int(s) for s in stride)
    out = [(dz, dy, dx) for dz in range(-r, sz + r) for dy in range(-r, sy + r) for dx in range(-r, sx + r)]
    return _as_tensor(out, False)


def gather_neighbors(index: VoxelIndex, centre_coords: torch.Tensor, offsets: torch.Tensor,
                     max_k: int, stride: Sequence[int] = (1, 1, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``max_k`` non-empty voxels (in offset order) around each query.

    ``centre_coords`` (M, 4) ``[b, z, y, x]`` in the query grid; the candidate at offset
    ``o`` is ``[b, c * stride + o]`` in the indexed (key) grid. Returns ``(indices, mask)``,
    both (M, max_k): indices into the indexed voxels (-1 for empty slots) and the key
    padding mask (True = empty slot), as ``nn.MultiheadAttention`` expects. Queries whose
    anchor ``c * stride`` lies outside the key grid get no neighbours (as in the original).

    Offsets are scanned in growing blocks and only queries that are not yet full go on to
    the next block, so dense regions stop after the local window.
    """
    device = centre_coords.device
    m, k = int(centre_coords.shape[0]), int(offsets.shape[0])
    out = torch.full((m, max_k + 1), -1, dtype=torch.long, device=device)   # last column: spill
    if m == 0 or k == 0 or max_k <= 0:
        return out[:, :max_k], out[:, :max_k] < 0
    off = offsets.to(device=device, dtype=torch.long)
    c = centre_coords.long()
    anchor = c.clone()
    anchor[:, 1:] = c[:, 1:] * torch.tensor([int(s) for s in stride], dtype=torch.long, device=device)
    count = torch.zeros(m, dtype=torch.long, device=device)
    count[~in_grid(anchor, index.spatial_shape)] = max_k                      # never active
    base = index.keys_of(anchor)
    need = int(off.abs().max())
    off_keys = index.keys_of(torch.cat([off.new_zeros((k, 1)), off], dim=1)) - index.keys_of(
        off.new_zeros((1, 4)))                                                # key shift per offset
    flat_out = out.view(-1)
    block, ob = 64, 0
    while ob < k:
        o_keys, o = off_keys[ob:ob + block], off[ob:ob + block]
        active = (count < max_k).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        rows = max(1, LOOKUP_BUDGET // o.shape[0])
        for rs in range(0, active.numel(), rows):
            r = active[rs:rs + rows]
            keys = base[r, None] + o_keys[None, :]
            ok = None
            if need > index.margin:
                ok = torch.ones(keys.shape, dtype=torch.bool, device=device)
                for axis in range(3):
                    pos = anchor[r, axis + 1, None] + o[None, :, axis]
                    ok &= (pos >= 0) & (pos < index.spatial_shape[axis])
            idx = index.lookup_keys(keys, ok)
            valid = idx >= 0
            rank = count[r, None] + torch.cumsum(valid, dim=1) - 1
            keep = valid & (rank < max_k)
            target = r[:, None] * (max_k + 1) + torch.where(keep, rank, max_k)
            flat_out.scatter_(0, target.reshape(-1), torch.where(keep, idx, -1).reshape(-1))
            count[r] += valid.sum(dim=1)
        ob += block
        block = min(block * 2, 1024)
    res = out[:, :max_k]
    return res, res < 0
