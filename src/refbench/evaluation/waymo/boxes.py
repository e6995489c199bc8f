"""Waymo boxes: the constants of the metric configuration and the columnar `BoxFrame` a
format hands to the metric (with numpy's array repr kept exact and fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np


TYPE_NAMES: dict[int, str] = {1: "VEHICLE", 2: "PEDESTRIAN", 3: "SIGN", 4: "CYCLIST"}
IOU_THRESHOLDS: dict[int, float] = {1: 0.7, 2: 0.5, 3: 0.5, 4: 0.5}
SCORE_CUTOFFS: np.ndarray = np.array([i * 0.01 for i in range(100)] + [1.0], dtype=np.float32)
RANGES: tuple[tuple[str, float, float], ...] = (("0_30", 0.0, 30.0), ("30_50", 30.0, 50.0),
                                                ("50_INF", 50.0, math.inf))
DESIRED_RECALL_DELTA = 0.05
MIN_BOX_DIM, MAX_BOX_DIM = 1e-2, 1e6  # `iou.cc`: degenerate boxes have IoU 0
MAX_IOU = 1_000_000  # `kMaxIoU`: matching weights are round(IoU * kMaxIoU)
LEVELS = (1, 2)
MIN_HEADING_ACCURACY = -1.0  # `metrics.proto` default: no match is dropped
#: candidate pairs (same frame and type) evaluated at once: bounds the working memory
CHUNK_PAIRS = 400_000
N_CUT = len(SCORE_CUTOFFS)
N_SHARDS = len(TYPE_NAMES) * (1 + len(RANGES))
IOU_THRESHOLDS_F32 = np.array([0.0] + [IOU_THRESHOLDS[t] for t in TYPE_NAMES], np.float32)
_PRINT_DEFAULTS = {"edgeitems": 3, "threshold": 1000, "floatmode": "maxprec", "precision": 8,
                   "suppress": False, "linewidth": 75, "nanstr": "nan", "infstr": "inf",
                   "sign": "-", "formatter": None, "legacy": False, "override_repr": None}


@dataclass(eq=False, repr=False)
class BoxFrame:
    """The boxes of one frame: a prediction (with `scores`) or a reference (with
    `num_points` and `difficulty`). Two frames are equal when they are the same frame with
    the same boxes and types (float32 tolerance) and agree on every field both carry:
    what a round trip through a prediction file must keep."""

    context_name: str
    timestamp: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 7)))
    types: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scores: np.ndarray | None = None
    num_points: np.ndarray | None = None
    difficulty: np.ndarray | None = None

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value

    def __repr__(self) -> str:
        """The dataclass repr, character for character (the label-set hash of a result is
        taken over it), with the arrays printed by `fast_array_repr`."""
        fast = np.get_printoptions() == _PRINT_DEFAULTS
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            text = _array_repr(value) if fast and isinstance(value, np.ndarray) \
                else repr(value)
            parts.append(f"{item.name}={text}")
        return f"{type(self).__qualname__}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoxFrame):
            return NotImplemented
        if (self.context_name, int(self.timestamp)) != (other.context_name, int(other.timestamp)):
            return False
        a, b = np.asarray(self.boxes, float), np.asarray(other.boxes, float)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-4):
            return False
        if not np.array_equal(np.asarray(self.types), np.asarray(other.types)):
            return False
        for name in ("scores", "num_points", "difficulty"):
            x, y = getattr(self, name), getattr(other, name)
            if x is not None and y is not None and not np.allclose(x, y, atol=1e-6):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


# -- repr -------------------------------------------------------------------------------
def _array_words(arr: np.ndarray) -> list[str] | None:
    """numpy's element strings of a small 1-D/2-D int or float64 array under the default
    print options (all of equal width), or None where this fast path does not apply."""
    if type(arr) is not np.ndarray or arr.ndim not in (1, 2) or not 0 < arr.size <= 1000 \
            or not arr.dtype.isnative:
        return None
    values = arr.ravel().tolist()
    if arr.dtype.kind in "iu":
        spec = f"%{max(len(str(max(values))), len(str(min(values))))}d"
        return [spec % v for v in values]
    if arr.dtype != np.float64 or not np.isfinite(arr).all():
        return None
    magnitudes = np.abs(arr[arr != 0])
    big, small = (magnitudes.max(), magnitudes.min()) if len(magnitudes) else (0.0, 1.0)
    if big >= 1e8 or small < 1e-4 or big / small > 1000.0:
        if big >= 1e100 or small < 1e-99:  # three exponent digits: numpy pads them
            return None
        spec = "% .8e" if np.signbit(arr).any() else "%.8e"  # a space pads like a '-'
        texts = [spec % v for v in values]  # numpy's digits, as many as the most needed
        if any(t[-5] != "0" for t in texts):  # some value needs all 8: no trimming
            return texts
        mantissas, exponents = zip(*(t.split("e") for t in texts))
        ints, fracs = zip(*(m.split(".") for m in mantissas))
        digits = max(len(f.rstrip("0")) for f in fracs)
        if digits == 0:
            return None
        return [f"{i}.{f[:digits]}e{e}" for i, f, e in zip(ints, fracs, exponents)]
    texts = ["%.8f" % v for v in values]  # noqa: UP031 (the fastest float formatting)
    if all(t[-1] != "0" for t in texts):  # nothing to trim: equal fractions, pad the left
        width = max(map(len, texts))
        return texts if min(map(len, texts)) == width else [t.rjust(width) for t in texts]
    ints, fracs = zip(*(t.rstrip("0").split(".") for t in texts))
    left, right = max(len(i) for i in ints), max(len(f) for f in fracs)
    return [f"{i.rjust(left)}.{f.ljust(right)}" for i, f in zip(ints, fracs)]


def _row_template(count: int, width: int, indent: int, limit: int) -> str:
    """A `str.format` template of one bracket-less row of `count` words of `width`
    characters, wrapped as numpy's `_formatArray` wraps them (`limit`: the last column a
    word may reach, `indent`: the continuation lines' indent)."""
    per_line = max(1, (limit - indent - width) // (width + 2) + 1)
    breaks = [", " if (j + 1) % per_line else ",\n" + " " * indent for j in range(count - 1)]
    return "".join("{}" + b for b in breaks) + "{}"


def fast_array_repr(arr: np.ndarray) -> str:
    """`repr(arr)`, character for character, several times faster for the small int and
    float64 arrays of a frame (numpy's own repr for anything else, or under non-default
    print options)."""
    return _array_repr(arr) if np.get_printoptions() == _PRINT_DEFAULTS else repr(arr)


def _array_repr(arr: np.ndarray) -> str:
    """`fast_array_repr` under numpy's default print options."""
    words = _array_words(arr)
    if words is None:
        return repr(arr)
    if arr.ndim == 1:
        body = "[" + _row_template(len(words), len(words[0]), 7, 73).format(*words) + "]"
    else:
        row = _row_template(arr.shape[1], len(words[0]), 8, 72)
        body = ("[[" + "],\n       [".join([row] * arr.shape[0]) + "]]").format(*words)
    if arr.dtype in (np.dtype(np.float64), np.dtype(np.int_)):
        return f"array({body})"
    text = f"array({body},"
    extra = f"dtype={arr.dtype.name})"
    last = len(text) - (text.rfind("\n") + 1)
    return text + ("\n      " if last + len(extra) + 1 > 75 else " ") + extra


