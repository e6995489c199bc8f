"""Point-set operators of the two-stage detectors, in plain torch.

Re-derivations of OpenPCDet's `pointnet2_stack` CUDA ops (ball query, grouping,
farthest point sampling) with the same results, so that VoTr-TSD and Pyramid R-CNN run
on any device without compiled extensions. "Stacked" inputs concatenate the points of
the batch elements; `*_batch_cnt` give how many rows belong to each element. Indices
returned here are global rows of the stacked tensor (so `grouping` needs no counts).
"""

from __future__ import annotations

import torch
from torch import Tensor

_CHUNK_ELEMS = 1 << 22  # query x point distances computed at once


def gather_rows(table: Tensor, idx: Tensor) -> Tensor:
    """`table[idx]` for an index tensor of any shape, through `index_select`: its backward
    (`index_add_`) is deterministic on CPU, while advanced indexing's accumulating backward
    sums repeated indices in a thread-dependent order (runs then differ in the last bits)."""
    return torch.index_select(table, 0, idx.reshape(-1)).view(*idx.shape, table.shape[-1])


def _counts(cnt: Tensor | list[int]) -> list[int]:
    return [int(c) for c in (cnt.tolist() if isinstance(cnt, Tensor) else cnt)]


def ball_query(radius: float | Tensor, nsample: int, xyz: Tensor,
               xyz_batch_cnt: Tensor | list[int], new_xyz: Tensor,
               new_xyz_batch_cnt: Tensor | list[int]) -> tuple[Tensor, Tensor]:
    """(idx (M, nsample) long, empty (M,) bool): for each query, the first `nsample`
    points (in row order) of its own batch element with squared distance < radius^2.

    OpenPCDet `pointnet2_stack.ball_query` semantics: unfilled slots repeat the first
    neighbour found; a query without neighbours gets all-zero indices and empty=True.
    `radius` is one float or an (M,) tensor of per-query radii (Pyramid R-CNN's
    `ball_query_deform`)."""
    xyz_cnt, new_cnt = _counts(xyz_batch_cnt), _counts(new_xyz_batch_cnt)
    if len(xyz_cnt) != len(new_cnt) or sum(xyz_cnt) != xyz.shape[0] \
            or sum(new_cnt) != new_xyz.shape[0]:
        raise ValueError("ball_query: batch counts do not match the stacked inputs")
    m, device = new_xyz.shape[0], new_xyz.device
    r2 = (torch.as_tensor(radius, dtype=new_xyz.dtype, device=device) ** 2).expand(m)
    idx = torch.zeros(m, nsample, dtype=torch.long, device=device)
    empty = torch.ones(m, dtype=torch.bool, device=device)
    slots = torch.arange(nsample, device=device)[None, :]
    p_start = q_start = 0
    for n_pts, n_q in zip(xyz_cnt, new_cnt):
        pts = xyz[p_start:p_start + n_pts, :3].detach()
        step = max(1, _CHUNK_ELEMS // max(1, n_pts))
        for s in range(q_start, q_start + n_q, step) if n_pts else ():
            e = min(s + step, q_start + n_q)
            d2 = ((new_xyz[s:e, None, :3].detach() - pts[None, :, :].to(new_xyz.dtype))
                  ** 2).sum(dim=-1)
            mask = d2 < r2[s:e, None]
            rank = torch.cumsum(mask.to(torch.int32), dim=1)
            take = mask & (rank <= nsample)
            rows, cols = torch.nonzero(take, as_tuple=True)
            block = torch.zeros(e - s, nsample, dtype=torch.long, device=device)
            block[rows, (rank[rows, cols] - 1).long()] = cols + p_start
            found = rank[:, -1].clamp_max(nsample)
            block = torch.where(slots < found[:, None], block, block[:, :1])
            idx[s:e] = block
            empty[s:e] = found == 0
        p_start += n_pts
        q_start += n_q
    return idx, empty


def grouping(features: Tensor, idx: Tensor, empty: Tensor | None = None) -> Tensor:
    """(M, C, nsample) features of the grouped rows (`idx` from `ball_query`); rows of
    empty queries are zero, as OpenPCDet's `QueryAndGroup` sets them."""
    grouped = gather_rows(features, idx).permute(0, 2, 1)
    if empty is not None:
        grouped = grouped * (~empty).to(grouped.dtype)[:, None, None]
    return grouped.contiguous()


def group_points_relative(xyz: Tensor, idx: Tensor, new_xyz: Tensor,
                          empty: Tensor | None = None) -> Tensor:
    """(M, 3, nsample) offsets of the grouped points from their query centres (zero for
    empty queries when `empty` is given)."""
    rel = gather_rows(xyz, idx)[..., :3] - new_xyz[:, None, :3]
    if empty is not None:
        rel = rel * (~empty).to(rel.dtype)[:, None, None]
    return rel.permute(0, 2, 1).contiguous()


def _fps_padded(xyz: Tensor, valid: Tensor, npoint: int) -> Tensor:
    """(B, npoint) local indices of farthest point sampling on padded (B, P, 3) sets."""
    b = xyz.shape[0]
    rows = torch.arange(b, device=xyz.device)
    dist = torch.where(valid, torch.full_like(xyz[..., 0], 1e10),
                       torch.full_like(xyz[..., 0], -1.0))
    out = torch.zeros(b, npoint, dtype=torch.long, device=xyz.device)
    last = torch.zeros(b, dtype=torch.long, device=xyz.device)
    for j in range(1, npoint):
        d = ((xyz - xyz[rows, last][:, None, :]) ** 2).sum(dim=-1)
        dist = torch.where(valid, torch.minimum(dist, d), dist)
        last = torch.argmax(dist, dim=1)
        out[:, j] = last
    return out


def farthest_point_sample(xyz: Tensor, npoint: int) -> Tensor:
    """(npoint,) long indices by farthest point sampling (OpenPCDet's kernel: start at
    row 0, then repeatedly the point farthest from the chosen set, lowest row on ties).
    Once every point is chosen the kernel, and this, returns row 0 for the rest."""
    if xyz.shape[0] == 0:
        raise ValueError("farthest_point_sample: no points")
    pts = xyz[None, :, :3].detach()
    valid = torch.ones(1, xyz.shape[0], dtype=torch.bool, device=xyz.device)
    return _fps_padded(pts, valid, npoint)[0]


def farthest_point_sample_batched(points: Tensor, npoint: int,
                                  batch_size: int | None = None) -> Tensor:
    """(B, npoint) global row indices of FPS within each batch element of `points`
    (K, 4+) = [b, x, y, z, ...]. An element with fewer than `npoint` points repeats its
    points in FPS order (PV-RCNN's keypoint rule); an element without points raises."""
    bidx = points[:, 0].long()
    if batch_size is None:
        batch_size = int(bidx.max().item()) + 1 if points.shape[0] else 0
    counts = torch.bincount(bidx, minlength=batch_size)[:batch_size]
    if batch_size and int(counts.min().item()) == 0:
        raise ValueError("farthest_point_sample_batched: a batch element has no points")
    order = torch.sort(bidx, stable=True).indices  # rows of each element, in row order
    count_list = _counts(counts)
    p_max = max(count_list, default=0)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(points.shape[0], device=points.device) - starts[bidx[order]]
    padded = points.new_zeros(batch_size, p_max, 3)
    valid = torch.zeros(batch_size, p_max, dtype=torch.bool, device=points.device)
    padded[bidx[order], local] = points[order, 1:4].detach()
    valid[bidx[order], local] = True
    sel = _fps_padded(padded, valid, npoint)  # local positions
    for b, n in enumerate(count_list):
        if n < npoint:
            sel[b] = sel[b, :n].repeat(npoint // n + 1)[:npoint]
    return order[(starts[:, None] + sel).reshape(-1)].reshape(batch_size, npoint)
