"""KITTI frames: the class map, the label fields and the stacked numpy arrays the
evaluation runs on (the rules are in the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError


CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist", "Van", "Person_sitting", "Truck")
#: class whose ground truth is ignored (not missed) when evaluating a class
NEIGHBOUR: dict[str, str] = {"car": "van", "pedestrian": "person_sitting"}
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
DIFFICULTIES = ("easy", "moderate", "hard")
METRIC_NAMES = ("bbox", "bev", "3d")
#: overlap set -> metric (bbox, bev, 3d) -> per class of CLASSES
MIN_OVERLAPS: dict[str, np.ndarray] = {
    "strict": np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.7]] * 3),
    "loose": np.array([[0.7, 0.5, 0.5, 0.7, 0.5, 0.5],
                       [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
                       [0.5, 0.25, 0.25, 0.5, 0.25, 0.5]]),
}
N_SAMPLE_PTS = 41
NO_DETECTION = -10000000.0
FIELDS = ("name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location",
          "rotation_y")
_WIDTH = {"bbox": 4, "dimensions": 3, "location": 3}
#: class code of an object: its index in CLASSES (names compared lower-cased), DONTCARE
#: for a region named exactly "DontCare", OTHER for any other name
DONTCARE, OTHER = -2, -1
CLASS_CODE = {c.lower(): i for i, c in enumerate(CLASSES)}
NEIGHBOUR_CODE = {CLASS_CODE[c]: CLASS_CODE[n] for c, n in NEIGHBOUR.items()}


# -- frames ------------------------------------------------------------------------------
@dataclass
class Frames:
    """All objects of many frames, concatenated; `frame` says which frame each is from."""

    frame: np.ndarray       # frame number of each object (non-decreasing)
    cls: np.ndarray         # class code (index in CLASSES, DONTCARE or OTHER)
    truncated: np.ndarray
    occluded: np.ndarray
    alpha: np.ndarray
    bbox: np.ndarray        # (n, 4) left, top, right, bottom
    dimensions: np.ndarray  # (n, 3) h, w, l
    location: np.ndarray    # (n, 3) x, y, z (bottom centre, camera frame)
    rotation_y: np.ndarray
    score: np.ndarray
    n_frames: int = 0

    def __len__(self) -> int:
        return len(self.frame)


def class_codes(names: Sequence[str]) -> np.ndarray:
    """The class code of each name (see DONTCARE), looked up once per distinct name."""
    table = {n: DONTCARE if n == "DontCare" else CLASS_CODE.get(n.lower(), OTHER)
             for n in set(names)}
    return np.fromiter(map(table.__getitem__, names), dtype=np.int64, count=len(names))


def frame_arrays(frame: Mapping[str, Any] | None, with_score: bool,
                 where: str = "frame") -> dict[str, np.ndarray]:
    """Validate one frame's objects (a mapping of label_2 fields or a `KittiObjects`; None =
    no objects) into float64 / str arrays; references get a score of 0."""
    if frame is None:
        frame = {}
    if hasattr(frame, "as_dict"):  # refbench.benchmarks.formats.kitti.KittiObjects
        frame = frame.as_dict()
    if not isinstance(frame, Mapping):
        raise RefbenchError(f"{where}: expected a mapping of label_2 fields, got "
                            f"{type(frame).__name__}")
    names = list(frame.get("name", []))
    n = len(names)
    out: dict[str, np.ndarray] = {"name": np.array([str(s) for s in names], dtype=object)}
    for key in FIELDS[1:] + (("score",) if with_score else ()):
        if key not in frame:
            if n == 0 or (key == "score" and not with_score):
                out[key] = np.zeros((0, _WIDTH[key]) if key in _WIDTH else 0)
                continue
            raise RefbenchError(f"{where}: missing field {key!r}", key=key)
        try:
            arr = np.asarray(frame[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise RefbenchError(f"{where}: field {key!r} is not numeric", key=key) from None
        shape = (n, _WIDTH[key]) if key in _WIDTH else (n,)
        if arr.size == 0 and n == 0:
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise RefbenchError(f"{where}: field {key!r} has shape {arr.shape}, expected "
                                f"{shape}", key=key)
        if not np.all(np.isfinite(arr)):
            raise RefbenchError(f"{where}: field {key!r} holds NaN or inf", key=key)
        out[key] = arr
    if not with_score:
        out["score"] = np.zeros(n)
    return out


def bulk_arrays(frames: Sequence[Mapping[str, Any] | None],
                with_score: bool) -> dict[str, Any] | None:
    """Every frame's fields concatenated and checked at once, as `frame_arrays` would check
    them frame by frame (`name` a list of str, `counts` the objects per frame); None when
    some frame needs the per-frame checks (which then raise the error naming it)."""
    keys = FIELDS[1:] + (("score",) if with_score else ())
    names: list[Any] = []
    counts: list[int] = []
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    for frame in frames:
        if frame is None:
            counts.append(0)
            continue
        if hasattr(frame, "as_dict"):
            frame = frame.as_dict()
        if not isinstance(frame, Mapping):
            return None
        try:
            frame_names = frame.get("name", [])
            n = len(frame_names)
        except TypeError:
            return None
        counts.append(n)
        if n == 0:  # empty frames are few: the per-frame rules decide what they may hold
            try:
                frame_arrays(frame, with_score)
            except RefbenchError:
                return None
            continue
        names.append(frame_names)
        for key in keys:
            if key not in frame:
                return None
            columns[key].append(frame[key])
    sizes = np.array(counts, dtype=np.int64)
    out: dict[str, Any] = {"counts": sizes}
    for key in keys:
        width = _WIDTH.get(key, 0)
        parts = columns[key]
        if not parts:
            out[key] = np.zeros((0, width) if width else 0)
            continue
        try:
            lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
            arr = np.concatenate(parts)
        except (TypeError, ValueError, OverflowError):
            return None
        if (arr.dtype.kind not in "biuf" or arr.ndim != (2 if width else 1)
                or (width and arr.shape[1] != width)
                or not np.array_equal(lengths, sizes[sizes > 0])):
            return None
        arr = arr.astype(np.float64, copy=False)
        if not np.isfinite(arr).all():
            return None
        out[key] = arr
    out["name"] = list(map(str, chain.from_iterable(names)))
    if not with_score:
        out["score"] = np.zeros(len(out["name"]))
    return out


def checked_arrays(frames: Sequence[Mapping[str, Any] | None], with_score: bool,
                   what: str = "frame", start: int = 0) -> dict[str, Any]:
    """`bulk_arrays`, or, when it cannot vouch for every frame, `frame_arrays` frame by
    frame (errors name `{what} {start + i}`)."""
    out = bulk_arrays(frames, with_score)
    if out is None:
        out = join_arrays([frame_arrays(f, with_score, f"{what} {start + i}")
                           for i, f in enumerate(frames)])
    return out


def join_arrays(frames: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Validated frames (`frame_arrays`) in `bulk_arrays`' form."""
    out: dict[str, Any] = {"counts": np.array([len(f["name"]) for f in frames], np.int64),
                           "name": [s for f in frames for s in f["name"]]}
    for key in FIELDS[1:] + ("score",):
        width = _WIDTH.get(key, 0)
        parts = [f[key] for f in frames]
        out[key] = (np.concatenate(parts).reshape((-1, width) if width else -1) if parts
                    else np.zeros((0, width) if width else 0))
    return out


def to_frames(arrays: Mapping[str, Any]) -> Frames:
    """`Frames` of concatenated, validated arrays (`checked_arrays`)."""
    counts = arrays["counts"]
    return Frames(frame=np.repeat(np.arange(len(counts)), counts),
                  cls=class_codes(arrays["name"]), n_frames=len(counts),
                  **{k: arrays[k] for k in FIELDS[1:] + ("score",)})


def stack_frames(frames: Sequence[Mapping[str, Any] | None], with_score: bool,
                 what: str = "frame", start: int = 0) -> Frames:
    """Validate and concatenate frames into one `Frames` (errors name `{what} {i}`)."""
    return to_frames(checked_arrays(frames, with_score, what, start))


def concat_frames(parts: Sequence[Frames]) -> Frames:
    """`Frames` of several batches of frames, in order."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [p.n_frames for p in parts])
    return Frames(frame=np.concatenate([p.frame + o for p, o in zip(parts, offsets)]),
                  n_frames=int(offsets[-1]),
                  **{k: np.concatenate([getattr(p, k) for p in parts])
                     for k in ("cls",) + FIELDS[1:] + ("score",)})


def check_classes(classes: Sequence[str] | str) -> list[str]:
    """The requested classes in their official spelling; unknown ones are an error."""
    if isinstance(classes, str):
        classes = [classes]
    by_lower = {c.lower(): c for c in CLASSES}
    out = []
    for cls in classes:
        if not isinstance(cls, str) or cls.lower() not in by_lower:
            raise RefbenchError(f"unknown KITTI class {cls!r} (known: {', '.join(CLASSES)})",
                                key="classes")
        if by_lower[cls.lower()] not in out:
            out.append(by_lower[cls.lower()])
    if not out:
        raise RefbenchError("classes must name at least one KITTI class", key="classes")
    return out

