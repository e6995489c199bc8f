"""Back-projection of double depth maps, Chamfer distance, and M3D-VTON's coloured `.ply`.

Pixel -> world, as M3D-VTON's `rgbd2pcd.py` does for a 512 x 320 map: the orthographic
cameras of `camera.txt` (xmag = ymag = 1) see [-1, 1]^2 over 512 pixels, i.e. 256 pixels per
unit, and the 320-wide image is the middle of that square (the script offsets columns by
95):

    X = (w + 95) / 256 - 1,   Y = (512 - 1 - h) / 256 - 1,   Z = world z of the pixel

for every pixel whose world z is not 0 (0 is background), front points first, then back,
each in row-major order. Back maps are the loader's mirrored ones, so both sides share
(h, w).

Chamfer distance (`chamfer`): the mean over each cloud of the squared Euclidean distance to
the nearest point of the other, summed over both directions (pytorch3d's
`chamfer_distance` with its default mean reductions), in squared world (NDC) units.

`export_ply` reproduces the script's `__main__` for a predicted try-on: front depth minus
0.02, both depths zeroed where front - back < 0, person mask = parse label > 0, front
colours = the try-on RGB, back colours = the RGB with the face (LIP 13) and label 10
inpainted, multiplied by the 3 x 3-eroded person mask and grown twice by the script's
`dilate_rgb` (3-pixel shifts); vertices written `"%f %f %f %d %d %d"`. Two deliberate
differences, both documented in the file it writes: the header lines are not indented
(the script's triple-quoted header puts four spaces before each keyword, which the PLY
grammar does not allow), and the inpainting is OpenCV's Telea (radius 3) when `cv2`
is installed, else a nearest-pixel fill (`inpaint="nearest"`), which OpenCV does not do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.tryon.depth import gt_back_to_world, gt_front_to_world
from refbench.io import atomic_open

PIXELS_PER_UNIT = 256.0
COLUMN_OFFSET = 95
FRONT_OFFSET = 0.02
#: LIP labels the script inpaints on the back (13 face; 10 as in the script)
INPAINT_LABELS: tuple[int, ...] = (13, 10)
DILATE_STEPS = 2
DILATE_SHIFT = 3


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """World X and Y of every pixel centre (rgbd2pcd's formulas), each H x W."""
    w = np.arange(width, dtype=np.float64)
    h = np.arange(height, dtype=np.float64)
    xs = (w + COLUMN_OFFSET) / PIXELS_PER_UNIT - 1.0
    ys = (height - 1 - h) / PIXELS_PER_UNIT - 1.0
    return np.broadcast_to(xs, (height, width)), np.broadcast_to(ys[:, None], (height, width))


def back_project(front_world: np.ndarray, back_world: np.ndarray) -> np.ndarray:
    """N x 3 points of the non-zero pixels of both world-z maps (front first, row-major)."""
    front, back = np.asarray(front_world), np.asarray(back_world)
    if front.ndim != 2 or front.shape != back.shape:
        raise RefbenchError(f"front {front.shape} and back {back.shape} depth must be two H x W "
                            f"maps of one size")
    xs, ys = pixel_grid(*front.shape)
    parts = []
    for z in (front, back):
        keep = z != 0
        parts.append(np.stack([xs[keep], ys[keep], z[keep].astype(np.float64)], axis=1))
    return np.concatenate(parts)


def gt_points(gt_front_viewport: np.ndarray, gt_back_viewport: np.ndarray,
              mask: np.ndarray | None = None) -> np.ndarray:
    """Points of MPV3D ground truth (the script's `label='gt'` path)."""
    front, back = gt_front_to_world(gt_front_viewport), gt_back_to_world(gt_back_viewport)
    if mask is not None:
        front, back = front * mask, back * mask
    return back_project(front, back)


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance of two point clouds (module docstring)."""
    from scipy.spatial import cKDTree

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 3 or b.shape[1] != 3:
        raise RefbenchError(f"Chamfer distance needs two N x 3 point clouds, got {a.shape} and "
                            f"{b.shape}")
    if len(a) == 0 or len(b) == 0:
        raise RefbenchError(f"Chamfer distance of an empty point cloud ({len(a)} and {len(b)} "
                            f"points)")
    da, _ = cKDTree(b).query(a, k=1)
    db, _ = cKDTree(a).query(b, k=1)
    return float(np.mean(da ** 2) + np.mean(db ** 2))


# -- the rgbd2pcd export ------------------------------------------------------------------------
#: LIP human-parsing labels (MPV3D's `image-parse`): 0 background .. 19 right shoe
LIP_LABELS = 20


def check_parse(parse: np.ndarray, name: str = "parse") -> np.ndarray:
    """An H x W integer label map with every label a LIP label (0..19)."""
    parse = np.asarray(parse)
    if parse.ndim != 2 or not np.issubdtype(parse.dtype, np.integer):
        raise RefbenchError(f"{name}: expected an H x W integer label map, got {parse.dtype} "
                            f"{parse.shape}")
    unknown = np.unique(parse[(parse < 0) | (parse >= LIP_LABELS)])
    if unknown.size:
        raise RefbenchError(f"{name}: unknown parse label(s) {unknown[:5].tolist()} (LIP labels "
                            f"are 0..{LIP_LABELS - 1})")
    return parse


def load_parse(path: str | Path) -> np.ndarray:
    """Labels of an `image-parse` PNG (mode L or P: the pixel values are the labels)."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise RefbenchError("parse map not found", path=path)
    if path.is_dir():
        raise RefbenchError("expected a parse PNG, found a folder", path=path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "P"):
                raise RefbenchError(f"parse map must be a one-channel label PNG (mode L or P), "
                                    f"got mode {image.mode}", path=path)
            labels = np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"cannot decode parse map: {' '.join(str(exc).split())}",
                            path=path) from None
    return check_parse(labels, str(path))


def erode3(mask: np.ndarray) -> np.ndarray:
    """`cv2.erode` with a 3 x 3 rectangle (the border does not erode)."""
    from scipy import ndimage

    return ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=1)


def dilate_rgb(rgb: np.ndarray, steps: int = DILATE_STEPS) -> np.ndarray:
    """The script's `dilate_rgb`: per step, each channel value that is 0 takes the value 3
    pixels below, then above, right, left (each shift sees the previous ones' writes)."""
    out = np.array(rgb, copy=True)
    s = DILATE_SHIFT
    for _ in range(steps):
        d1, d2 = out[s:, :, :], out[:-s, :, :]
        d3, d4 = out[:, s:, :], out[:, :-s, :]
        out[:-s] = np.where(out[:-s] > 0, out[:-s], d1)
        out[s:] = np.where(out[s:] > 0, out[s:], d2)
        out[:, :-s] = np.where(out[:, :-s] > 0, out[:, :-s], d3)
        out[:, s:] = np.where(out[:, s:] > 0, out[:, s:], d4)
    return out


def inpaint_back(rgb: np.ndarray, parse: np.ndarray, method: str = "auto") -> tuple[np.ndarray, str]:
    """(back colours before masking, method used): the labels `INPAINT_LABELS` filled in."""
    region = np.isin(parse, INPAINT_LABELS)
    if method in ("auto", "telea"):
        try:
            import cv2  # type: ignore[import-not-found]
        except ImportError:
            if method == "telea":
                raise RefbenchError("inpaint='telea' needs OpenCV (pip install "
                                    "opencv-python-headless); use inpaint='nearest'") from None
        else:
            mask = region.astype(np.uint8) * 255
            return cv2.inpaint(np.ascontiguousarray(rgb), mask, 3, cv2.INPAINT_TELEA), "telea"
    elif method != "nearest":
        raise RefbenchError(f"unknown inpainting {method!r}; choose auto, telea or nearest")
    if not region.any() or region.all():
        return np.array(rgb, copy=True), "nearest"
    from scipy import ndimage

    _, (rows, cols) = ndimage.distance_transform_edt(region, return_indices=True)
    return rgb[rows, cols], "nearest"


def ply_lines(points: np.ndarray, colors: np.ndarray) -> list[str]:
    return ["%f %f %f %d %d %d\n" % (x, y, z, r, g, b)
            for (x, y, z), (r, g, b) in zip(points.tolist(), colors.tolist())]


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray, comment: str = "") -> int:
    """An ASCII coloured PLY (x y z float, red green blue uchar), written atomically."""
    points, colors = np.asarray(points), np.asarray(colors)
    if points.shape[0] != colors.shape[0]:
        raise RefbenchError(f"{points.shape[0]} points but {colors.shape[0]} colours")
    header = ["ply", "format ascii 1.0"]
    header += [f"comment {c}" for c in comment.splitlines() if c]
    header += [f"element vertex {len(points)}", "property float x", "property float y",
               "property float z", "property uchar red", "property uchar green",
               "property uchar blue", "end_header"]
    with atomic_open(path, "w", encoding="ascii", newline="\n") as handle:
        handle.write("\n".join(header) + "\n")
        handle.writelines(ply_lines(points, colors))
    return int(len(points))


def export_ply(path: str | Path, rgb: np.ndarray, front_depth: np.ndarray, back_depth: np.ndarray,
               parse: np.ndarray, inpaint: str = "auto") -> int:
    """rgbd2pcd for one predicted try-on (module docstring): uint8 H x W x 3 RGB, world-z
    front/back depth (the DRM's output, back aligned with front), the parse labels. Returns
    the number of points written."""
    rgb, parse = np.asarray(rgb), np.asarray(parse)
    fd = np.array(front_depth, copy=True)
    bd = np.array(back_depth, copy=True)
    shape = fd.shape
    if fd.ndim != 2 or bd.shape != shape or parse.shape != shape or rgb.shape != (*shape, 3):
        raise RefbenchError(f"rgbd2pcd needs RGB H x W x 3 and depth/parse H x W of one size, "
                            f"got rgb {rgb.shape}, front {fd.shape}, back {bd.shape}, parse "
                            f"{parse.shape}")
    if rgb.dtype != np.uint8:
        raise RefbenchError(f"rgbd2pcd needs uint8 RGB, got {rgb.dtype}")
    parse = check_parse(parse)
    if not (np.isfinite(fd).all() and np.isfinite(bd).all()):
        raise RefbenchError("rgbd2pcd: depth holds NaN or infinity")
    fd = fd - FRONT_OFFSET
    behind = (fd - bd) < 0
    fd[behind] = 0
    bd[behind] = 0
    shape_mask = (parse > 0).astype(np.float64)
    eroded = erode3(parse > 0)
    back_rgb, used = inpaint_back(rgb, parse, inpaint)
    back_rgb = back_rgb * eroded[..., None].astype(np.uint8)
    back_rgb = dilate_rgb(back_rgb)
    fd, bd = fd * shape_mask, bd * shape_mask
    xs, ys = pixel_grid(*shape)
    points, colors = [], []
    for z, colour in ((fd, rgb), (bd, back_rgb)):
        keep = z != 0
        points.append(np.stack([xs[keep], ys[keep], z[keep]], axis=1))
        colors.append(colour[keep])
    return write_ply(path, np.concatenate(points), np.concatenate(colors),
                     comment=f"refbench rgbd2pcd export (M3D-VTON conventions), inpaint={used}")
