"""LiDAR box maths in torch: residual coding, rotated IoU, NMS, points in boxes.

Boxes are (..., 7) = (x, y, z centre, dx, dy, dz, heading), OpenPCDet's convention (see
`refbench.datasets.kitti.geometry`). Everything runs on the device and in the dtype of
its inputs, so the same code serves CPU tests and CUDA training. The rotated overlaps
re-derive OpenPCDet's `iou3d_nms` CUDA ops with exact convex polygon clipping
(Sutherland-Hodgman, batched over box pairs) instead of their float32 corner tests, so
shared edges and identical boxes get their exact IoU; they are differentiable with
respect to the box parameters almost everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

_MAX_VERTS = 8  # two convex quadrilaterals intersect in at most 8 vertices
_PAIR_CHUNK = 1 << 16  # box pairs clipped at once (bounds the clipping's memory)
_SIGNS = ((1, 1, -1), (1, -1, -1), (-1, -1, -1), (-1, 1, -1),
          (1, 1, 1), (1, -1, 1), (-1, -1, 1), (-1, 1, 1))


def limit_period(val: Any, offset: float = 0.5, period: float = 2 * math.pi) -> Any:
    """Wrap angles into [-offset * period, (1 - offset) * period), as OpenPCDet does
    (a tensor, or a NumPy array for the data pipeline and the prediction writers)."""
    floor = torch.floor if isinstance(val, Tensor) else np.floor
    return val - floor(val / period + offset) * period


def boxes_to_corners_3d(boxes: Tensor) -> Tensor:
    """(N, 8, 3) corners of (N, 7) boxes, in `kitti_geometry.box_corners_lidar`'s order
    (bottom face 0-3 then top face 4-7, starting at local (+dx/2, +dy/2))."""
    boxes = boxes.reshape(-1, boxes.shape[-1])
    signs = boxes.new_tensor(_SIGNS) / 2
    local = signs[None] * boxes[:, None, 3:6]
    c, s = torch.cos(boxes[:, 6:7]), torch.sin(boxes[:, 6:7])
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return torch.stack([x, y, local[..., 2]], dim=-1) + boxes[:, None, 0:3]


def enlarge_box(boxes: Tensor, extra: Sequence[float] = (0.0, 0.0, 0.0)) -> Tensor:
    """Boxes grown by `extra` = (ddx, ddy, ddz) in size (OpenPCDet's `enlarge_box3d`: the
    values are added to the full sizes, not to each side); a new tensor."""
    out = boxes.clone()
    out[..., 3:6] = out[..., 3:6] + boxes.new_tensor(list(extra))
    return out


class ResidualCoder:
    """OpenPCDet's `ResidualCoder`: box regression targets relative to anchors.

    Centres are scaled by the anchor's BEV diagonal (z by its height), sizes are log
    ratios, the heading is a plain difference (or the differences of cos and sin when
    `encode_angle_by_sincos`, which makes `code_size` one larger); columns past the 7th
    (e.g. velocities) are carried as differences."""

    def __init__(self, code_size: int = 7, encode_angle_by_sincos: bool = False) -> None:
        self.encode_angle_by_sincos = encode_angle_by_sincos
        self.code_size = code_size + (1 if encode_angle_by_sincos else 0)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """(..., code_size) targets of `boxes` (..., 7+) against `anchors` (..., 7+)."""
        anchors = torch.cat([anchors[..., :3], anchors[..., 3:6].clamp_min(1e-5),
                             anchors[..., 6:]], dim=-1)
        boxes = torch.cat([boxes[..., :3], boxes[..., 3:6].clamp_min(1e-5), boxes[..., 6:]],
                          dim=-1)
        xa, ya, za, dxa, dya, dza, ra, *cas = torch.split(anchors, 1, dim=-1)
        xg, yg, zg, dxg, dyg, dzg, rg, *cgs = torch.split(boxes, 1, dim=-1)
        diagonal = torch.sqrt(dxa ** 2 + dya ** 2)
        parts = [(xg - xa) / diagonal, (yg - ya) / diagonal, (zg - za) / dza,
                 torch.log(dxg / dxa), torch.log(dyg / dya), torch.log(dzg / dza)]
        if self.encode_angle_by_sincos:
            parts += [torch.cos(rg) - torch.cos(ra), torch.sin(rg) - torch.sin(ra)]
        else:
            parts.append(rg - ra)
        parts += [g - a for g, a in zip(cgs, cas)]
        return torch.cat(parts, dim=-1)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes (..., 7+) from regression outputs (..., code_size) and their anchors."""
        xa, ya, za, dxa, dya, dza, ra, *cas = torch.split(anchors, 1, dim=-1)
        if self.encode_angle_by_sincos:
            xt, yt, zt, dxt, dyt, dzt, cost, sint, *cts = torch.split(deltas, 1, dim=-1)
            rg = torch.atan2(sint + torch.sin(ra), cost + torch.cos(ra))
        else:
            xt, yt, zt, dxt, dyt, dzt, rt, *cts = torch.split(deltas, 1, dim=-1)
            rg = rt + ra
        diagonal = torch.sqrt(dxa ** 2 + dya ** 2)
        out = [xt * diagonal + xa, yt * diagonal + ya, zt * dza + za,
               torch.exp(dxt) * dxa, torch.exp(dyt) * dya, torch.exp(dzt) * dza, rg]
        out += [t + a for t, a in zip(cts, cas)]
        return torch.cat(out, dim=-1)


# -- rotated BEV overlap -----------------------------------------------------------------
def bev_corners(boxes: Tensor) -> Tensor:
    """(N, 4, 2) BEV corners of (N, 7+) boxes, counter-clockwise for positive sizes."""
    half_x, half_y = boxes[:, 3:4] / 2, boxes[:, 4:5] / 2
    lx = torch.cat([-half_x, half_x, half_x, -half_x], dim=1)
    ly = torch.cat([-half_y, -half_y, half_y, half_y], dim=1)
    c, s = torch.cos(boxes[:, 6:7]), torch.sin(boxes[:, 6:7])
    return torch.stack([lx * c - ly * s + boxes[:, 0:1], lx * s + ly * c + boxes[:, 1:2]],
                       dim=-1)


def _shoelace(poly: Tensor, count: Tensor) -> Tensor:
    """Signed areas of (P, K, 2) polygons whose first `count` vertices are valid."""
    k = torch.arange(poly.shape[1], device=poly.device)[None, :]
    nxt = torch.where(k + 1 < count[:, None], k + 1, torch.zeros_like(k))
    valid = k < count[:, None]
    x, y = poly[..., 0], poly[..., 1]
    xn, yn = torch.gather(x, 1, nxt), torch.gather(y, 1, nxt)
    return 0.5 * torch.where(valid, x * yn - xn * y, torch.zeros_like(x)).sum(dim=1)


def convex_intersection_area(subject: Tensor, clip: Tensor) -> Tensor:
    """(P,) areas of the intersections of P pairs of counter-clockwise quads (P, 4, 2).

    Sutherland-Hodgman clipping of `subject` by each edge of `clip`, all pairs at once
    (the same algorithm as `refbench.evaluation.kitti_iou.convex_intersection_area`)."""
    n = subject.shape[0]
    if n == 0:
        return subject.new_zeros(0)
    poly = torch.cat([subject, subject.new_zeros(n, _MAX_VERTS - 4, 2)], dim=1)
    count = torch.full((n,), 4, dtype=torch.long, device=subject.device)
    slots = torch.arange(_MAX_VERTS, device=subject.device)[None, :]
    for e in range(4):
        p0 = clip[:, e]
        edge = clip[:, (e + 1) % 4] - p0
        valid = slots < count[:, None]
        # > 0 left of the edge = inside for a counter-clockwise clip polygon
        dist = (edge[:, None, 0] * (poly[..., 1] - p0[:, None, 1])
                - edge[:, None, 1] * (poly[..., 0] - p0[:, None, 0]))
        nxt = torch.where(slots + 1 < count[:, None], slots + 1, torch.zeros_like(slots))
        dist_n = torch.gather(dist, 1, nxt)
        poly_n = torch.gather(poly, 1, nxt[..., None].expand(-1, -1, 2))
        inside, inside_n = dist >= 0, dist_n >= 0
        crossing = valid & (inside != inside_n)
        denom = torch.where(crossing, dist - dist_n, torch.ones_like(dist))
        cross_pt = poly + (dist / denom)[..., None] * (poly_n - poly)
        # each vertex emits itself (if inside) then the crossing point (if any)
        cand = torch.stack([poly, cross_pt], dim=2).reshape(n, 2 * _MAX_VERTS, 2)
        keep = torch.stack([valid & inside, crossing], dim=2).reshape(n, 2 * _MAX_VERTS)
        order = torch.sort((~keep).to(torch.int32), dim=1, stable=True).indices[:, :_MAX_VERTS]
        poly = torch.gather(cand, 1, order[..., None].expand(-1, -1, 2))
        count = keep.sum(dim=1).clamp_max(_MAX_VERTS)
    area = _shoelace(poly, count).abs()
    return torch.where(count >= 3, area, torch.zeros_like(area))


def _near_pairs(a: Tensor, b: Tensor, upper_only: bool = False) -> tuple[Tensor, Tensor]:
    """Index pairs (i, k) of boxes whose axis-aligned BEV bounding rectangles overlap
    (all others have no overlap); with `upper_only`, only i < k (a set against itself)."""
    def half_extent(boxes: Tensor) -> Tensor:  # axis-aligned half sizes of the BEV box
        c, s = torch.cos(boxes[:, 6]).abs(), torch.sin(boxes[:, 6]).abs()
        return torch.stack([c * boxes[:, 3] + s * boxes[:, 4],
                            s * boxes[:, 3] + c * boxes[:, 4]], dim=1) / 2

    ha, hb = half_extent(a), half_extent(b)
    ii_all, kk_all = [], []
    step = max(1, (1 << 22) // max(1, b.shape[0]))
    for start in range(0, a.shape[0], step):
        sa = a[start:start + step]
        reach = ha[start:start + step, None, :] + hb[None, :, :]
        near = ((sa[:, None, 0:2] - b[None, :, 0:2]).abs() < reach).all(dim=-1)
        if upper_only:
            rows = torch.arange(start, start + sa.shape[0], device=a.device)[:, None]
            near &= rows < torch.arange(b.shape[0], device=a.device)[None, :]
        ii, kk = torch.nonzero(near, as_tuple=True)
        ii_all.append(ii + start)
        kk_all.append(kk)
    if not ii_all:
        empty = torch.zeros(0, dtype=torch.long, device=a.device)
        return empty, empty
    return torch.cat(ii_all), torch.cat(kk_all)


def _pair_intersection(a: Tensor, b: Tensor, ii: Tensor, kk: Tensor) -> Tensor:
    """BEV intersection areas of the pairs (a[ii], b[kk]), clipped in chunks around the
    centre of a[ii] (keeps float32 precise far from the origin)."""
    ca, cb = bev_corners(a), bev_corners(b)
    out = []
    for start in range(0, ii.shape[0], _PAIR_CHUNK):
        i, k = ii[start:start + _PAIR_CHUNK], kk[start:start + _PAIR_CHUNK]
        centre = a[i, None, 0:2]
        out.append(convex_intersection_area(ca[i] - centre, cb[k] - centre))
    return torch.cat(out) if out else a.new_zeros(0)


def boxes_bev_intersection(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) rotated BEV intersection areas of (N, 7+) and (M, 7+) boxes."""
    a = boxes_a.reshape(-1, boxes_a.shape[-1])
    b = boxes_b.reshape(-1, boxes_b.shape[-1]).to(a.dtype)
    out = a.new_zeros(a.shape[0], b.shape[0])
    if a.shape[0] == 0 or b.shape[0] == 0:
        return out
    ii, kk = _near_pairs(a.detach(), b.detach())
    if ii.numel():
        out = out.index_put((ii, kk), _pair_intersection(a, b, ii, kk))
    return out


def boxes_bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) exact rotated BEV IoU (OpenPCDet `boxes_iou_bev`; union clamped at 1e-6)."""
    inter = boxes_bev_intersection(boxes_a, boxes_b)
    area_a = (boxes_a[:, 3] * boxes_a[:, 4])[:, None]
    area_b = (boxes_b[:, 3] * boxes_b[:, 4]).to(inter.dtype)[None, :]
    return inter / (area_a + area_b - inter).clamp_min(1e-6)


def boxes_iou3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) 3D IoU: BEV intersection times the overlap of the z extents over the union
    of the volumes (OpenPCDet `boxes_iou3d_gpu`; union clamped at 1e-6)."""
    inter = boxes_bev_intersection(boxes_a, boxes_b)
    b = boxes_b.to(inter.dtype)
    top = torch.minimum((boxes_a[:, 2] + boxes_a[:, 5] / 2)[:, None],
                        (b[:, 2] + b[:, 5] / 2)[None, :])
    bottom = torch.maximum((boxes_a[:, 2] - boxes_a[:, 5] / 2)[:, None],
                           (b[:, 2] - b[:, 5] / 2)[None, :])
    inter3 = inter * (top - bottom).clamp_min(0)
    vol_a = (boxes_a[:, 3] * boxes_a[:, 4] * boxes_a[:, 5])[:, None]
    vol_b = (b[:, 3] * b[:, 4] * b[:, 5])[None, :]
    return inter3 / (vol_a + vol_b - inter3).clamp_min(1e-6)


def boxes_nearest_bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) OpenPCDet `boxes3d_nearest_bev_iou`: each box is turned to its nearest
    axis-aligned pose (dx and dy swapped when |heading mod pi| >= pi/4), then the
    axis-aligned BEV IoU; cheap and what anchor target assignment uses."""
    def aligned(boxes: Tensor) -> Tensor:
        rot = limit_period(boxes[:, 6], offset=0.5, period=math.pi).abs()
        dims = torch.where(rot[:, None] < math.pi / 4, boxes[:, [3, 4]], boxes[:, [4, 3]])
        return torch.cat([boxes[:, 0:2] - dims / 2, boxes[:, 0:2] + dims / 2], dim=1)

    a, b = aligned(boxes_a), aligned(boxes_b.to(boxes_a.dtype))
    x_len = (torch.minimum(a[:, None, 2], b[None, :, 2])
             - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp_min(0)
    y_len = (torch.minimum(a[:, None, 3], b[None, :, 3])
             - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp_min(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter = x_len * y_len
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-6)


def rotated_nms(boxes: Tensor, scores: Tensor, iou_thresh: float,
                pre_max: int | None = None, post_max: int | None = None) -> Tensor:
    """Greedy NMS on rotated BEV IoU (OpenPCDet `nms_gpu`): boxes are visited by
    descending score (ties by index), the first `pre_max` only, and a box is dropped when
    its IoU with a kept box is > `iou_thresh`. Returns the kept indices into the input
    (descending score), at most `post_max` of them."""
    device = boxes.device
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    if pre_max is not None:
        order = order[:pre_max]
    ordered = boxes.detach()[order]
    n = ordered.shape[0]
    ii, kk = _near_pairs(ordered, ordered, upper_only=True)
    suppress = torch.zeros(n, n, dtype=torch.bool, device=device)
    if ii.numel():
        inter = _pair_intersection(ordered, ordered, ii, kk)
        area = ordered[:, 3] * ordered[:, 4]
        iou = inter / (area[ii] + area[kk] - inter).clamp_min(1e-6)
        hit = iou > iou_thresh
        suppress[ii[hit], kk[hit]] = True
    suppress_np = suppress.cpu().numpy()
    removed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        if post_max is not None and len(keep) >= post_max:
            break
        removed |= suppress_np[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=device)]


# -- points and boxes --------------------------------------------------------------------
def points_in_boxes(points: Tensor, boxes: Tensor) -> Tensor:
    """(M, N) bool: point n strictly inside box m, by the rule of OpenPCDet's
    `points_in_boxes_cpu` (and `kitti_geometry.points_in_boxes`): |dz| <= dz/2 and, in
    the box frame, |local x| < dx/2 and |local y| < dy/2."""
    pts = points[:, :3].to(boxes.dtype)
    boxes = boxes.reshape(-1, boxes.shape[-1])
    out = []
    step = max(1, (1 << 22) // max(1, pts.shape[0]))
    for start in range(0, boxes.shape[0], step):
        b = boxes[start:start + step]
        d = pts[None, :, :] - b[:, None, 0:3]
        c, s = torch.cos(-b[:, 6:7]), torch.sin(-b[:, 6:7])
        lx = d[..., 0] * c - d[..., 1] * s
        ly = d[..., 0] * s + d[..., 1] * c
        out.append((d[..., 2].abs() <= b[:, 5:6] / 2) & (lx.abs() < b[:, 3:4] / 2)
                   & (ly.abs() < b[:, 4:5] / 2))
    if not out:
        return torch.zeros(0, pts.shape[0], dtype=torch.bool, device=points.device)
    return torch.cat(out)


def points_in_boxes_indices(points: Tensor, boxes: Tensor) -> Tensor:
    """(N,) long: the lowest index of a box containing each point, -1 for none (the
    first-hit rule of OpenPCDet's `points_in_boxes_gpu`)."""
    inside = points_in_boxes(points, boxes)
    if inside.shape[0] == 0:
        return torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    first = torch.argmax(inside.to(torch.int32), dim=0)
    return torch.where(inside.any(dim=0), first, torch.full_like(first, -1))
