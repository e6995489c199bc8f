"""Reading try-on images the way the reference evaluation scripts read them.

Every try-on metric starts from 8-bit RGB pixels: HR-VITON's `evaluate.py`, pytorch-fid and
LPIPS all open files with PIL and convert to RGB (`Image.open(p).convert("RGB")`, or
`convert("L")` for HR-VITON's SSIM). Keeping one reader here means the SSIM, PSNR, LPIPS
and FID of a pair are computed from the same pixels, and a bad file (missing, a folder,
truncated, not an image, the wrong size) is one `RefbenchError` that names it.

An image is given as a path, a uint8 array `H x W x 3` (RGB), or an `EncodedImage` (the
still-encoded bytes of a prepared dataset row, decoded only when scored, so a test split of
2,032 VITON-HD images at 1024 x 768 is not held decoded: 4.8 GB); arrays are checked the
same way as decoded files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from refbench.errors import RefbenchError

class EncodedImage:
    """An encoded image file's bytes with a name, decoded on use (`np.asarray` works).

    `str()` is the name, the dtype and shape and the sha256 of the decoded pixels, the same
    line a decoded reference prints, so a result's label-set hash covers the content and
    does not depend on how the reference was held; the digest is computed once."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = bytes(data)
        self.name = name
        self._line: str | None = None

    def decode(self) -> np.ndarray:
        """uint8 `H x W x 3` RGB pixels (PIL `convert("RGB")`), or a one-line error."""
        import io

        try:
            with _pil().open(io.BytesIO(self.data)) as handle:
                handle.load()
                return np.asarray(handle.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise RefbenchError(f"{self.name}: cannot decode image: {reason}") from None

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.decode()
        return array if dtype is None else array.astype(dtype)

    def __str__(self) -> str:
        if self._line is None:
            import hashlib

            pixels = self.decode()
            digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
            self._line = f"{self.name} {pixels.dtype}{list(pixels.shape)} sha256:{digest}"
        return self._line

    __repr__ = __str__


ImageLike = Union[str, "os.PathLike[str]", np.ndarray, EncodedImage]


def describe(image: ImageLike, what: str = "image") -> str:
    """A short name of an image for an error line: its path or name, or `what` for an
    array."""
    if isinstance(image, EncodedImage):
        return image.name
    return str(image) if isinstance(image, (str, os.PathLike)) else what


def _pil() -> Any:
    from PIL import Image

    return Image


def open_pil(image: ImageLike, what: str = "image") -> Any:
    """The image as a PIL RGB image (what the reference scripts hold before any transform).

    Paths are decoded fully here, so a truncated file fails now and names itself."""
    Image = _pil()
    if isinstance(image, EncodedImage):
        image = image.decode()
    if isinstance(image, np.ndarray):
        return Image.fromarray(check_rgb(image, what), mode="RGB")
    path = Path(image)
    if not path.exists():
        raise RefbenchError("image not found", path=path)
    if path.is_dir():
        raise RefbenchError("expected an image file, found a folder", path=path)
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for bad or cut files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RefbenchError(f"cannot decode image: {reason}", path=path) from None


def check_rgb(array: np.ndarray, what: str = "image") -> np.ndarray:
    """A uint8 `H x W x 3` array, or a one-line error naming `what`."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise RefbenchError(f"{what}: expected uint8 RGB pixels, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise RefbenchError(f"{what}: expected an H x W x 3 RGB array, got shape "
                            f"{tuple(array.shape)}")
    return array


def load_rgb(image: ImageLike, what: str = "image") -> np.ndarray:
    """uint8 `H x W x 3` RGB pixels of a path, array or encoded image."""
    if isinstance(image, EncodedImage):
        return check_rgb(image.decode(), what)
    if isinstance(image, np.ndarray):
        return check_rgb(image, what)
    return np.asarray(open_pil(image, what), dtype=np.uint8)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma by PIL's own `convert("L")` (ITU-R 601-2 in fixed point:
    L = (19595 R + 38470 G + 7471 B + 2^15) >> 16), which is what HR-VITON's SSIM compares."""
    rgb = check_rgb(rgb)
    return np.asarray(_pil().fromarray(rgb, mode="RGB").convert("L"), dtype=np.uint8)


def resize_bilinear(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL's `resize((width, height), Image.BILINEAR)`: the resize HR-VITON applies to the
    ground truth for a lower output resolution and torchvision's `Resize` applies to a PIL
    image before LPIPS (PIL's bilinear filter widens with the scale, i.e. antialiases)."""
    rgb = check_rgb(rgb)
    if rgb.shape[:2] == (height, width):
        return rgb
    Image = _pil()
    resized = Image.fromarray(rgb, mode="RGB").resize((int(width), int(height)), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def same_size(pred: np.ndarray, ref: np.ndarray, pred_name: str, ref_name: str) -> None:
    """Refuse a pair whose images differ in size (HR-VITON asserts the same)."""
    if pred.shape[:2] != ref.shape[:2]:
        raise RefbenchError(f"{pred_name}: result is {pred.shape[1]}x{pred.shape[0]} (WxH) but "
                            f"its reference {ref_name} is {ref.shape[1]}x{ref.shape[0]}")
