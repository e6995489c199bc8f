"""The offline preprocessing of M3D-VTON (`util/data_preprocessing.py`), as functions and
as a step that writes the official layout.

M3D-VTON's networks read three things no camera gives: the in-shop garment pre-aligned to
the person's torso (`aligned/{train,test}_pairs/{cloth,cloth-mask}/`), the palms cut out of
the arm labels (`palm-mask/`), and the Sobel gradients of the person (`image-sobel/`). The
official script computes them once, offline; here each is a function whose output equals
the script's (checked on the authors' example folder), so `prepare` can derive what a
release lacks and `preprocess_release` can write the files where the script writes them.

- `prealign_cloth`: scale the garment (bilinear; its mask nearest) so that its mask's
  bounding box fits the box of the parse's upper-clothes and arms (labels 5, 14, 15): the
  height ratio when the garment is relatively wider than the region, else the width ratio
  (`align_factor` 1.0), and paste it centred on the region, onto white (mask: black). The
  script's bounding boxes are `max - min` (one pixel short) and the paste offset is
  truncated toward zero (`int`), both kept.
- `palm_mask`: per arm, the arm label (left 14, right 15) minus the upper-arm quadrilateral
  (shoulder -> elbow, half as wide as long, dilated by a 20 x 20 square) and minus the
  forearm quadrilateral (elbow -> wrist), from BODY_25 keypoints (right arm 2, 3, 4; left
  5, 6, 7); a segment with a keypoint of confidence <= 0.1 removes the whole arm (the
  script's all-ones mask), so no palm is kept. Quadrilaterals are rasterized by
  pycocotools as in the script (`[detection]` extra).
- `sobel_images`: OpenCV's 5 x 5 Sobel x and y of the grey person image (reflect-101
  border), saved as matplotlib's `imsave(..., cmap="gray")` saves them: scaled from the
  image's own minimum to maximum onto 256 grey levels, written as RGBA PNG.

The script's constants (a 512 x 320 canvas, a 20-pixel dilation) are MPV3D's; other sizes
scale the dilation with the image height so the synthetic releases get the same geometry.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from refbench.errors import RefbenchError, require

#: parse labels of the region the garment is aligned to (upper clothes, left/right arm)
ALIGN_LABELS = (5, 14, 15)
LEFT_ARM, RIGHT_ARM = 14, 15
#: BODY_25 shoulder, elbow, wrist of each arm (the script's `keypoints[[5,6,7]]`, `[[2,3,4]]`)
LEFT_ARM_POINTS, RIGHT_ARM_POINTS = (5, 6, 7), (2, 3, 4)
CONFIDENCE = 0.1
#: the script's dilation of the upper-arm quadrilateral, at MPV3D's height of 512
DILATION, DILATION_HEIGHT = 20, 512


# -- pre-alignment ------------------------------------------------------------------------
def _box(mask: np.ndarray, what: str) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise RefbenchError(f"{what} is empty: nothing to align")
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def prealign_cloth(cloth: Any, cloth_mask: Any, parse: np.ndarray, align_factor: float = 1.0,
                   name: str = "cloth") -> tuple[Any, Any]:
    """The pre-aligned garment and mask (PIL images of the parse's size), as the script."""
    from PIL import Image

    mask_array = np.asarray(cloth_mask)
    top, bottom, left, right = _box(mask_array != 0, f"{name}: the cloth mask")
    region = np.isin(parse, ALIGN_LABELS)
    r_top, r_bottom, r_left, r_right = _box(region, f"{name}: the parse's upper clothes and "
                                                    f"arms (labels 5, 14, 15)")
    c_h, c_w = bottom - top, right - left
    r_h, r_w = r_bottom - r_top, r_right - r_left
    if min(c_h, c_w, r_h, r_w) <= 0:
        raise RefbenchError(f"{name}: a one-pixel-wide cloth mask or parse region cannot be "
                            f"aligned (the script divides by its box size)")
    ratio = r_h / c_h if c_w / c_h > r_w / r_h else r_w / c_w
    scale = ratio * align_factor
    paste_x = int((r_left + r_right) / 2 - (left + right) / 2 * scale)
    paste_y = int((r_top + r_bottom) / 2 - (top + bottom) / 2 * scale)
    height, width = parse.shape
    size = (int(cloth.size[0] * scale), int(cloth.size[1] * scale))
    aligned = Image.fromarray(np.full((height, width, 3), 255, np.uint8))
    aligned.paste(cloth.resize(size, Image.BILINEAR), (paste_x, paste_y))
    msize = (int(cloth_mask.size[0] * scale), int(cloth_mask.size[1] * scale))
    aligned_mask = Image.fromarray(np.zeros((height, width), np.uint8))
    aligned_mask.paste(cloth_mask.resize(msize, Image.NEAREST), (paste_x, paste_y))
    return aligned, aligned_mask


# -- palm masks ---------------------------------------------------------------------------
def _quadrilateral(a: float, b: float, c: float, d: float, height: int,
                   width: int) -> np.ndarray:
    """The script's rectangle around the segment (a, b) -> (c, d): corners offset by a
    quarter of the segment's normal at each end, ordered so the polygon does not cross."""
    x1, y1 = a + (b - d) / 4, b + (c - a) / 4
    x2, y2 = a - (b - d) / 4, b - (c - a) / 4
    x3, y3 = c + (b - d) / 4, d + (c - a) / 4
    x4, y4 = c - (b - d) / 4, d - (c - a) / 4
    v0 = (c - a, d - b)
    v1, v2 = (x3 - x1, y3 - y1), (x4 - x1, y4 - y1)
    norm0 = math.hypot(*v0)
    cos1 = (v0[0] * v1[0] + v0[1] * v1[1]) / (norm0 * math.hypot(*v1))
    cos2 = (v0[0] * v2[0] + v0[1] * v2[1]) / (norm0 * math.hypot(*v2))
    corners = [x1, y1, x2, y2] + ([x3, y3, x4, y4] if cos1 < cos2 else [x4, y4, x3, y3])
    require("pycocotools", "detection")
    import pycocotools.mask as mask_utils

    rles = mask_utils.frPyObjects([corners], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _arm_parts(points: np.ndarray, height: int, width: int, dilation: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Upper-arm (dilated) and forearm masks; all True when a keypoint is unsure."""
    from scipy.ndimage import maximum_filter

    (sx, sy, sc), (ex, ey, ec), (wx, wy, wc) = points.astype(np.float64)
    upper = np.ones((height, width), bool)
    lower = np.ones((height, width), bool)
    if sc > CONFIDENCE and ec > CONFIDENCE:
        quad = _quadrilateral(sx, sy, ex, ey, height, width).astype(np.uint8)
        upper = maximum_filter(quad, size=dilation, mode="constant", cval=0) > 0
    if ec > CONFIDENCE and wc > CONFIDENCE:
        lower = _quadrilateral(ex, ey, wx, wy, height, width)
    return upper, lower


def palm_mask(parse: np.ndarray, pose: np.ndarray, dilation: int | None = None) -> np.ndarray:
    """The palm mask (H x W bool) of a person from the parse and BODY_25 keypoints."""
    if pose.shape != (25, 3):
        raise RefbenchError(f"palm masks need BODY_25 keypoints (25 x 3), got {pose.shape}")
    height, width = parse.shape
    if dilation is None:
        dilation = max(1, round(DILATION * height / DILATION_HEIGHT))
    out = np.zeros((height, width), bool)
    for label, ids in ((LEFT_ARM, LEFT_ARM_POINTS), (RIGHT_ARM, RIGHT_ARM_POINTS)):
        upper, lower = _arm_parts(pose[list(ids)], height, width, dilation)
        out |= (parse == label) & ~upper & ~lower
    return out


# -- Sobel images -------------------------------------------------------------------------
def grey_like_opencv(rgb: np.ndarray) -> np.ndarray:
    """`cv2.imread(path, 0)` of an RGB PNG: libpng's RGB -> grey with OpenCV's weights
    (0.299, 0.587) in 15-bit fixed point, rounded."""
    red, green = 9798, 19235  # round(0.299 * 32768), round(0.587 * 32768)
    blue = 32768 - red - green
    rgb = rgb.astype(np.uint32)
    grey = (rgb[..., 0] * red + rgb[..., 1] * green + rgb[..., 2] * blue + 16384) >> 15
    return grey.astype(np.uint8)


def sobel(grey: np.ndarray, axis: str) -> np.ndarray:
    """`cv2.Sobel(grey, cv2.CV_64F, dx, dy, ksize=5)` with its reflect-101 border."""
    from scipy.ndimage import correlate1d

    derivative = np.array([-1.0, -2.0, 0.0, 2.0, 1.0])
    smooth = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
    image = grey.astype(np.float64)
    across, along = (1, 0) if axis == "x" else (0, 1)
    out = correlate1d(image, derivative, axis=across, mode="mirror")
    return correlate1d(out, smooth, axis=along, mode="mirror")


def grey_levels(values: np.ndarray) -> np.ndarray:
    """matplotlib's `imsave(..., cmap="gray")` of a float image, as uint8 grey levels: the
    image's minimum..maximum mapped onto 256 colormap entries (truncating), each entry's
    grey `linspace(0, 1, 256) * 255` truncated to uint8."""
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    index = scaled * 256
    index[index == 256] = 255
    index = np.clip(index, 0, 255).astype(np.int64)
    lut = (np.linspace(0.0, 1.0, 256) * 255).astype(np.uint8)
    return lut[index]


def sobel_images(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """`{"x": grey, "y": grey}` uint8 Sobel images of a person, as the script saves them."""
    grey = grey_like_opencv(rgb)
    return {axis: grey_levels(sobel(grey, axis)) for axis in ("x", "y")}


def png_bytes(array: np.ndarray, rgba: bool = False) -> bytes:
    """PNG bytes of a uint8 grey image (as an RGBA grey image when `rgba`, matplotlib's)."""
    from PIL import Image

    if rgba:
        alpha = np.full(array.shape, 255, np.uint8)
        image = Image.fromarray(np.stack([array, array, array, alpha], axis=-1), mode="RGBA")
    else:
        image = Image.fromarray(array.astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: Any) -> bytes:
    """JPEG bytes of a PIL image, as `Image.save(path.jpg)` writes them (quality 75)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


# -- writing the official layout ----------------------------------------------------------
def preprocess_release(root: Path, steps: tuple[str, ...] = ("align", "palm", "sobel"),
                       overwrite: bool = False) -> dict[str, int]:
    """Run the script's steps on an MPV3D release and write their files where it writes
    them (`aligned/`, `palm-mask/`, `image-sobel/`); files already there are kept unless
    `overwrite`. Everything is computed first: a bad input raises before any file is
    written, and each file is written atomically. Returns how many files each step wrote."""
    from refbench.datasets.tryon.mpv3d import derived_files

    unknown = sorted(set(steps) - {"align", "palm", "sobel"})
    if unknown:
        raise RefbenchError(f"unknown preprocessing step(s) {unknown} (steps: align, palm, "
                            f"sobel)")
    planned = derived_files(Path(root), steps, overwrite)
    from refbench.io import atomic_write_bytes

    counts = {step: 0 for step in steps}
    for step, path, data in planned:
        atomic_write_bytes(path, data)
        counts[step] += 1
    return counts
