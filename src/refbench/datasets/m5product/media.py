"""The per-item video and audio feature files: `<dir>/<item_id>.npy`.

The SCALE loader reads `{video_feature_dir}/{id}.npy` (S3D features, T x 1024, keeps the
first `video_len = 12` frames) and `{audio_feature_dir}/{id}.npy` (80 x 751 MFCC-derived
features, used whole; its batch assertion needs exactly 80 rows), and zero-fills either
when the file is missing *or unreadable* (a bare `except`). refbench keeps a missing file
missing (0 rows, mask false) and refuses an unreadable one: a truncated file, a pickle, a
wrong shape or NaN is a `RefbenchError` naming the file, since zeros would silently train
the model on nothing.

`npy_info` reads only the header (for `check`); `read_video` / `read_audio` read the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from refbench.errors import RefbenchError

VIDEO_DIM = 1024
#: frames the official loader keeps (`video_len`)
VIDEO_FRAMES = 12
AUDIO_SHAPE = (80, 751)
#: folders of the release root holding the features (the scripts' names first)
VIDEO_DIRS = ("video_feature", "video_features")
AUDIO_DIRS = ("audio_feature", "audio_features")


def npy_info(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """`(shape, dtype)` from a `.npy` header, checking that the file holds all the data
    the header announces; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise RefbenchError("a folder, but it must be a .npy file", path=path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except FileNotFoundError:
        raise RefbenchError("missing file", path=path) from None
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise RefbenchError(f"not a .npy file ({str(exc).splitlines()[0][:80]})",
                            path=path) from None
    if dtype.hasobject:
        raise RefbenchError("holds Python objects (a pickle), not numbers", path=path)
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise RefbenchError(f"truncated: {size} bytes, the header {shape} {dtype} needs "
                            f"{need}", path=path)
    return tuple(int(s) for s in shape), dtype


def check_shape(shape: tuple[int, ...], dtype: np.dtype, kind: str, path: Path) -> None:
    """Refuse a shape or dtype the official loader cannot use."""
    if dtype.kind not in "fiu":
        raise RefbenchError(f"{kind} features must be numbers, found dtype {dtype}", path=path)
    if kind == "video" and (len(shape) != 2 or shape[1] != VIDEO_DIM):
        raise RefbenchError(f"video features must be T x {VIDEO_DIM}, found "
                            f"{' x '.join(map(str, shape)) or 'a scalar'}", path=path)
    if kind == "audio" and shape != AUDIO_SHAPE:
        raise RefbenchError(f"audio features must be {AUDIO_SHAPE[0]} x {AUDIO_SHAPE[1]}, "
                            f"found {' x '.join(map(str, shape)) or 'a scalar'}", path=path)


def _load(path: Path, kind: str) -> np.ndarray:
    shape, dtype = npy_info(path)
    check_shape(shape, dtype, kind, path)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise RefbenchError(f"unreadable .npy ({str(exc).splitlines()[0][:80]})",
                            path=path) from None
    if kind == "video":
        array = array[:VIDEO_FRAMES]
    out = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        row = int(np.argwhere(~np.isfinite(out))[0][0])
        raise RefbenchError(f"{kind} features hold NaN or infinite values (row {row})",
                            path=path)
    return out


def read_video(path: Path) -> np.ndarray:
    """The first `VIDEO_FRAMES` frames, `(min(T, 12), 1024)` float32."""
    return _load(path, "video")


def read_audio(path: Path) -> np.ndarray:
    """The `(80, 751)` float32 audio features."""
    return _load(path, "audio")


def media_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of the folders `names` present in `root` (None: none is)."""
    for name in names:
        if (Path(root) / name).exists():
            return Path(root) / name
    return None

