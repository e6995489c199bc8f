"""Box overlaps of the KITTI evaluation, exact and vectorised on CPU (numpy only).

Three overlaps are used by `refbench.evaluation.kitti`:

- `image_iou` / `image_overlap`: axis-aligned image boxes (left, top, right, bottom) in
  pixels. Like the Python port of the devkit (`kitti_object_eval_python/eval.py`,
  `image_box_overlap`) there is NO "+1 pixel" in widths and heights; the criterion
  "area of the first box" is what the DontCare rule uses.
- `bev_intersection` / `bev_iou`: rotated rectangles in the camera x-z plane (bird's eye
  view). A box is (x, z, l, w, ry); its corners are the local corners (+-l/2, +-w/2)
  turned by the rotation about the camera y axis, x' = cos(ry) x + sin(ry) z,
  z' = -sin(ry) x + cos(ry) z, which is the convention of the official rotated IoU.
- `iou_3d`: BEV intersection times the overlap of the vertical extents. KITTI's camera y
  axis points down and `location` is the bottom centre, so a box spans [y - h, y].

The official code computes the rotated intersection in float32 (on GPU or with numba);
here it is float64 polygon clipping (Sutherland-Hodgman of one convex quad by the other),
batched over all pairs, with pairs whose bounding circles do not touch skipped. The
evaluation asks only for pairs whose overlap can pass a threshold
(`candidate_pair_overlaps`): every same-frame pair is screened with cheap bounds first
(image boxes that do not meet, the BEV IoU bounded through axis-aligned extents), so the
clipping runs for few pairs and gives them the same values as for all. On
general boxes the results agree with the official port to float32 rounding (checked by
`perf/kitti_crosscheck.py` against mmdet3d's copy of the port: every key within 1e-13 %).
They differ where the port is wrong: its float32 corner-in-box test misses intersection
points of boxes that share edges or corners, so identical rotated boxes can get IoU 0,
1/3 or even a negative value there (a known upstream bug, reported against second.pytorch,
kitti-object-eval-python, mmdet3d and OpenPCDet); here such boxes get their exact IoU.
"""

from __future__ import annotations

import numpy as np

_MAX_VERTS = 8  # the intersection of two convex quadrilaterals has at most 8 vertices


# -- image boxes -------------------------------------------------------------------------
def image_overlap(boxes: np.ndarray, query: np.ndarray, criterion: int = -1) -> np.ndarray:
    """(N, K) overlaps of image boxes: IoU (criterion -1), intersection over the area of
    `boxes[n]` (0), over the area of `query[k]` (1). Zero where the boxes do not overlap."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    if criterion == -1:
        denom = area_a + area_b - inter
    elif criterion == 0:
        denom = np.broadcast_to(area_a, inter.shape)
    elif criterion == 1:
        denom = np.broadcast_to(area_b, inter.shape)
    else:
        denom = np.ones_like(inter)
    out = np.zeros_like(inter)
    np.divide(inter, denom, out=out, where=inter > 0)
    return out


def image_iou(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(N, K) IoU of image boxes (left, top, right, bottom), no +1 pixel."""
    return image_overlap(boxes, query, -1)


# -- rotated rectangles ------------------------------------------------------------------
def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners, counter-clockwise in (x, z), of BEV boxes (x, z, l, w, ry)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    half_l, half_w = b[:, 2:3] / 2, b[:, 3:4] / 2
    local_x = np.concatenate([-half_l, -half_l, half_l, half_l], axis=1)
    local_z = np.concatenate([-half_w, half_w, half_w, -half_w], axis=1)
    cos, sin = np.cos(b[:, 4:5]), np.sin(b[:, 4:5])
    x = cos * local_x + sin * local_z + b[:, 0:1]
    z = -sin * local_x + cos * local_z + b[:, 1:2]
    corners = np.stack([x, z], axis=-1)
    # the corner order above is clockwise or counter-clockwise depending on the signs of
    # l and w; the clipping below wants counter-clockwise (positive signed area)
    flip = _signed_area(corners, np.full(len(b), 4)) < 0
    corners[flip] = corners[flip, ::-1]
    return corners


def _signed_area(poly: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Shoelace signed area of (N, M, 2) polygons whose first `count` vertices are valid."""
    m = poly.shape[1]
    k = np.arange(m)[None, :]
    nxt = np.where(k + 1 < count[:, None], k + 1, 0)
    valid = k < count[:, None]
    x, y = poly[..., 0], poly[..., 1]
    xn = np.take_along_axis(x, nxt, axis=1)
    yn = np.take_along_axis(y, nxt, axis=1)
    return 0.5 * np.sum(np.where(valid, x * yn - xn * y, 0.0), axis=1)


def convex_intersection_area(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Areas of the intersections of N pairs of counter-clockwise convex quads (N, 4, 2)."""
    n = subject.shape[0]
    if n == 0:
        return np.zeros(0)
    # x and y of the clipped polygon, one row per pair; slot _MAX_VERTS collects the
    # vertices that a step drops, so that the kept ones can be scattered into place
    px, py = np.zeros((n, _MAX_VERTS + 1)), np.zeros((n, _MAX_VERTS + 1))
    px[:, :4], py[:, :4] = subject[..., 0], subject[..., 1]
    count = np.full(n, 4)
    slots = np.arange(_MAX_VERTS)
    rows = np.arange(n)[:, None]
    clip_x, clip_y = np.ascontiguousarray(clip[..., 0]), np.ascontiguousarray(clip[..., 1])
    for e in range(4):
        x, y = px[:, :_MAX_VERTS], py[:, :_MAX_VERTS]
        x0, y0 = clip_x[:, e, None], clip_y[:, e, None]          # the clip edge p0 -> p1
        edge_x, edge_y = clip_x[:, (e + 1) % 4, None] - x0, clip_y[:, (e + 1) % 4, None] - y0
        valid = slots < count[:, None]
        wraps = slots + 1 >= count[:, None]  # the last vertex's successor is the first
        # > 0 left of the edge = inside for a counter-clockwise clip polygon
        dist = edge_x * (y - y0) - edge_y * (x - x0)
        dist_n = _successor(dist, wraps)
        inside = dist >= 0
        crossing = valid & (inside != (dist_n >= 0))
        t = dist / np.where(crossing, dist - dist_n, 1.0)
        # each vertex emits itself (if inside) then the crossing point (if any)
        keep = np.empty((n, 2 * _MAX_VERTS), bool)
        keep[:, 0::2], keep[:, 1::2] = valid & inside, crossing
        target = np.cumsum(keep, axis=1) - 1
        target = np.where(keep & (target < _MAX_VERTS), target, _MAX_VERTS)
        new_x, new_y = np.zeros_like(px), np.zeros_like(py)
        for new, old in ((new_x, x), (new_y, y)):
            cand = np.empty((n, 2 * _MAX_VERTS))
            cand[:, 0::2] = old
            cand[:, 1::2] = old + t * (_successor(old, wraps) - old)
            new[rows, target] = cand
        px, py = new_x, new_y
        count = np.minimum(keep.sum(axis=1), _MAX_VERTS)
    area = _signed_area(np.stack([px[:, :_MAX_VERTS], py[:, :_MAX_VERTS]], axis=-1), count)
    return np.where(count >= 3, np.abs(area), 0.0)


def _successor(values: np.ndarray, wraps: np.ndarray) -> np.ndarray:
    """Each polygon slot's next vertex value: the next slot's, or the first slot's where the
    polygon wraps around."""
    out = np.empty_like(values)
    out[:, :-1] = values[:, 1:]
    out[:, -1] = values[:, 0]
    return np.where(wraps, values[:, :1], out)


def bev_intersection(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(N, K) intersection areas of BEV boxes (x, z, l, w, ry); pairs whose bounding
    circles are apart are not clipped (their intersection is 0)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 5)
    out = np.zeros((len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return out
    ra = 0.5 * np.hypot(a[:, 2], a[:, 3])
    rb = 0.5 * np.hypot(b[:, 2], b[:, 3])
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    ii, kk = np.nonzero(dist < ra[:, None] + rb[None, :])
    if ii.size:
        ca, cb = bev_corners(a), bev_corners(b)
        out[ii, kk] = convex_intersection_area(ca[ii], cb[kk])
    return out


def same_frame_pairs(frame_a: np.ndarray, keep_a: np.ndarray, frame_b: np.ndarray,
                     keep_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) index pair of kept objects from the same frame; `frame_*` are the
    frame numbers of concatenated objects (non-decreasing)."""
    ai, bi = np.flatnonzero(keep_a), np.flatnonzero(keep_b)
    if ai.size == 0 or bi.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n_frames = int(max(frame_a.max(), frame_b.max())) + 1
    b_count = np.bincount(frame_b[bi], minlength=n_frames)
    b_start = np.concatenate(([0], np.cumsum(b_count)[:-1]))
    reps = b_count[frame_a[ai]]
    a_pair = np.repeat(ai, reps)
    offsets = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    b_pair = bi[np.repeat(b_start[frame_a[ai]], reps) + offsets]
    return a_pair, b_pair


def pair_image_overlap(boxes: np.ndarray, query: np.ndarray, criterion: int = -1) -> np.ndarray:
    """`image_overlap` of aligned pairs (N, 4) and (N, 4): IoU (-1) or over the first's
    area (0)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    denom = area_a if criterion == 0 else area_a + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.divide(inter, denom, out=np.zeros_like(inter), where=inter > 0)


def pair_bev_3d_iou(boxes: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(BEV IoU, 3D IoU) of aligned pairs of camera boxes (x, y, z, h, w, l, ry)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 7)
    bev_a, bev_b = a[:, [0, 2, 5, 4, 6]], b[:, [0, 2, 5, 4, 6]]
    inter = pair_intersection(bev_a, bev_b)
    union = bev_a[:, 2] * bev_a[:, 3] + bev_b[:, 2] * bev_b[:, 3] - inter
    bev = np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)
    ih = height_overlap(a[:, 1], a[:, 3], b[:, 1], b[:, 3])
    inter3 = np.where((inter > 0) & (ih > 0), inter * ih, 0.0)
    union3 = np.prod(a[:, 3:6], axis=1) + np.prod(b[:, 3:6], axis=1) - inter3
    iou3 = np.divide(inter3, union3, out=np.zeros_like(inter3), where=inter3 > 0)
    return bev, iou3


#: objects of one side of `candidate_pair_overlaps`: frame number, kept or not, bbox,
#: location, dimensions, rotation_y (the label_2 fields, concatenated over frames)
ObjectArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: how far below a threshold a bound must be to prune a pair (far above rounding)
_MARGIN = 1e-9


def _screen_columns(objects: ObjectArrays) -> dict[str, np.ndarray]:
    """Per object: the image box sides, the axis-aligned extent of its rotated BEV box
    (x, z, l, w, ry turned as in `bev_corners`), the BEV area, and whether every size is
    positive (only then do the bounds hold)."""
    _, _, bbox, loc, dims, ry = objects
    length, width = np.abs(dims[:, 2]), np.abs(dims[:, 1])
    cos, sin = np.abs(np.cos(ry)), np.abs(np.sin(ry))
    half_x, half_z = (cos * length + sin * width) / 2, (sin * length + cos * width) / 2
    return {"left": bbox[:, 0], "top": bbox[:, 1], "right": bbox[:, 2], "bottom": bbox[:, 3],
            "x0": loc[:, 0] - half_x, "x1": loc[:, 0] + half_x,
            "z0": loc[:, 2] - half_z, "z1": loc[:, 2] + half_z,
            "area": dims[:, 2] * dims[:, 1], "proper": (dims > 0).all(axis=1)}


def frame_blocks(frame_a: np.ndarray, keep_a: np.ndarray, frame_b: np.ndarray,
                 keep_b: np.ndarray, pairs: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Runs of whole frames with about `pairs` same-frame pairs of kept objects each, as
    index ranges of both sides (`frame_*` non-decreasing); a bigger frame is a run alone."""
    if len(frame_a) == 0 or len(frame_b) == 0:
        return []
    n_frames = int(max(frame_a[-1], frame_b[-1])) + 1
    per_frame = (np.bincount(frame_a[keep_a], minlength=n_frames)
                 * np.bincount(frame_b[keep_b], minlength=n_frames))
    block = (np.cumsum(per_frame) - per_frame) // max(pairs, 1)
    edges = np.concatenate([[0], np.flatnonzero(np.diff(block)) + 1, [n_frames]])
    starts_a = np.searchsorted(frame_a, edges)
    starts_b = np.searchsorted(frame_b, edges)
    return [((int(starts_a[j]), int(starts_a[j + 1])), (int(starts_b[j]), int(starts_b[j + 1])))
            for j in range(len(edges) - 1)]


def candidate_pair_overlaps(boxes: ObjectArrays, query: ObjectArrays,
                            floors: tuple[float, float, float], chunk: int = 1 << 17
                            ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """The kept same-frame pairs (i of `boxes`, k of `query`) with an image IoU, BEV IoU or
    3D IoU above its floor (`floors`, in that order), and those three overlaps.

    Every pair is first screened with cheap bounds (image boxes that do not intersect;
    the BEV IoU bounded through the axis-aligned extents of the rotated boxes, which also
    bounds the 3D IoU, used only where every size is positive), so that the exact
    overlaps (`pair_image_overlap`, `pair_bev_3d_iou`, the same values as for all pairs)
    are computed for few. An overlap left out by a bound is at or below its floor and
    stored as 0. Pairs go frame block by frame block (`frame_blocks`, about `chunk`
    pairs each), which bounds the memory."""
    a, b = _screen_columns(boxes), _screen_columns(query)
    floor_2d, floor_bev, floor_3d = floors
    floor_rotated = min(floor_bev, floor_3d) - _MARGIN
    box_a = np.column_stack([boxes[3], boxes[4], boxes[5]])
    box_b = np.column_stack([query[3], query[4], query[5]])
    out_i, out_k, out_ov = [], [], []
    for (a0, a1), (b0, b1) in frame_blocks(boxes[0], boxes[1], query[0], query[1], chunk):
        i, k = same_frame_pairs(boxes[0][a0:a1], boxes[1][a0:a1], query[0][b0:b1],
                                query[1][b0:b1])
        i, k = i + a0, k + b0
        touch_2d = ((np.minimum(a["right"][i], b["right"][k])
                     > np.maximum(a["left"][i], b["left"][k]))
                    & (np.minimum(a["bottom"][i], b["bottom"][k])
                       > np.maximum(a["top"][i], b["top"][k])))
        ix = np.minimum(a["x1"][i], b["x1"][k]) - np.maximum(a["x0"][i], b["x0"][k])
        iz = np.minimum(a["z1"][i], b["z1"][k]) - np.maximum(a["z0"][i], b["z0"][k])
        area_a, area_b = a["area"][i], b["area"][k]
        inter = np.minimum(np.where((ix > 0) & (iz > 0), ix * iz, 0.0),
                           np.minimum(area_a, area_b))
        proper = a["proper"][i] & b["proper"][k]
        bound = np.divide(inter, area_a + area_b - inter, out=np.ones_like(inter),
                          where=proper & (inter > 0))
        rotated = (bound > floor_rotated) & (~proper | (inter > 0))
        iou2d = np.zeros(len(i))
        sel = np.flatnonzero(touch_2d)
        iou2d[sel] = pair_image_overlap(boxes[2][i[sel]], query[2][k[sel]])
        bev, iou3 = np.zeros(len(i)), np.zeros(len(i))
        sel = np.flatnonzero(rotated)
        bev[sel], iou3[sel] = pair_bev_3d_iou(box_a[i[sel]], box_b[k[sel]])
        keep = (iou2d > floor_2d) | (bev > floor_bev) | (iou3 > floor_3d)
        out_i.append(i[keep])
        out_k.append(k[keep])
        out_ov.append((iou2d[keep], bev[keep], iou3[keep]))
    if not out_i:
        empty = np.zeros(0)
        return np.zeros(0, np.int64), np.zeros(0, np.int64), (empty, empty, empty)
    return (np.concatenate(out_i), np.concatenate(out_k),
            tuple(np.concatenate([ov[m] for ov in out_ov]) for m in range(3)))


def pair_intersection(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Intersection areas of aligned pairs of BEV boxes (N, 5) and (N, 5)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 5)
    out = np.zeros(len(a))
    near = np.hypot(a[:, 0] - b[:, 0], a[:, 1] - b[:, 1]) < 0.5 * (
        np.hypot(a[:, 2], a[:, 3]) + np.hypot(b[:, 2], b[:, 3]))
    if near.any():
        out[near] = convex_intersection_area(bev_corners(a[near]), bev_corners(b[near]))
    return out


def bev_iou(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(N, K) IoU of BEV boxes (x, z, l, w, ry)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 5)
    inter = bev_intersection(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=inter > 0)
    return out


def height_overlap(y_a: np.ndarray, h_a: np.ndarray, y_b: np.ndarray,
                   h_b: np.ndarray) -> np.ndarray:
    """Overlap of the vertical extents [y - h, y] (camera y points down; y is the bottom);
    broadcasts like numpy."""
    return np.minimum(y_a, y_b) - np.maximum(y_a - h_a, y_b - h_b)


def iou_3d(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(N, K) 3D IoU of camera boxes (x, y, z, h, w, l, ry): `location` then `dimensions`
    in the label file's order, then `rotation_y`."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(query, dtype=np.float64).reshape(-1, 7)
    inter = bev_intersection(a[:, [0, 2, 5, 4, 6]], b[:, [0, 2, 5, 4, 6]])
    ih = height_overlap(a[:, None, 1], a[:, None, 3], b[None, :, 1], b[None, :, 3])
    inter = np.where((inter > 0) & (ih > 0), inter * ih, 0.0)
    vol_a = (a[:, 3] * a[:, 4] * a[:, 5])[:, None]
    vol_b = (b[:, 3] * b[:, 4] * b[:, 5])[None, :]
    out = np.zeros_like(inter)
    np.divide(inter, vol_a + vol_b - inter, out=out, where=inter > 0)
    return out
