"""The registered `waymo_3d` metric: streamed frames, its keys, counts and warnings."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS
from refbench.evaluation.waymo.boxes import (LEVELS, MIN_HEADING_ACCURACY, RANGES, TYPE_NAMES)
from refbench.evaluation.waymo.geometry import (mean_average_precision, pr_from_counts)
from refbench.evaluation.waymo.matching import (FrameBoxes, breakdown_names, measure_frames)


# -- the streaming metric ------------------------------------------------------------------
def _result_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for t in TYPE_NAMES.values():
        for level in LEVELS:
            for kind in ("mAP", "mAPH"):
                keys[f"{t}/L{level}/{kind}"] = f"{kind} of {t} at LEVEL_{level} (fraction)"
            for r, lo, hi in RANGES:
                for kind in ("mAP", "mAPH"):
                    keys[f"{t}/L{level}/RANGE_{r}/{kind}"] = (
                        f"{kind} of {t} at LEVEL_{level}, centre range [{lo}, {hi}) m")
    keys["sampled_interval"] = "every k-th frame of each segment was scored (1 = all)"
    return keys


@METRICS.register("waymo_3d", higher_is_better=True, version="2")
class Waymo3DMetric(Metric):
    """Waymo 3D detection AP/APH (see the module doc); `sampled_interval` scores every k-th
    frame of each segment (by timestamp), as OpenPCDet's default of 5 does;
    `min_heading_accuracy` is the official config field (default -1: off)."""

    keys: ClassVar[dict[str, str]] = _result_keys()
    directions: ClassVar[dict[str, bool | None]] = {"sampled_interval": None}

    def __init__(self, sampled_interval: int = 1,
                 min_heading_accuracy: float = MIN_HEADING_ACCURACY, **args: Any) -> None:
        super().__init__(sampled_interval=sampled_interval,
                         min_heading_accuracy=min_heading_accuracy, **args)
        if isinstance(sampled_interval, bool) or not isinstance(sampled_interval, int) \
                or sampled_interval < 1:
            raise RefbenchError(f"sampled_interval must be an integer >= 1, got "
                                f"{sampled_interval!r}", key="sampled_interval")
        if isinstance(min_heading_accuracy, bool) \
                or not isinstance(min_heading_accuracy, (int, float)) \
                or not math.isfinite(min_heading_accuracy):
            raise RefbenchError(f"min_heading_accuracy must be a finite number, got "
                                f"{min_heading_accuracy!r}", key="min_heading_accuracy")
        self.sampled_interval = sampled_interval
        self.min_heading_accuracy = float(min_heading_accuracy)
        #: (context_name, timestamp) -> (prediction frame, reference frame)
        self.frames: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._gathered: tuple[FrameBoxes, FrameBoxes, int] | None = None

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} prediction frames but {len(references)} "
                                f"reference frames")
        for pred, ref in zip(predictions, references):
            key = _frame_key(ref, len(self.frames))
            if key in self.frames:
                raise RefbenchError(f"frame {key[0]}@{key[1]} was added twice")
            self.frames[key] = (pred, ref)
        self._gathered = None

    def merge(self, other: Metric) -> None:
        if not isinstance(other, Waymo3DMetric):
            raise TypeError(f"cannot merge {type(other).__name__} into Waymo3DMetric")
        for key, value in other.frames.items():
            if key in self.frames:
                raise RefbenchError(f"frame {key[0]}@{key[1]} was added twice")
            self.frames[key] = value
        self._gathered = None

    def selected_frames(self) -> list[tuple[str, int]]:
        """Every `sampled_interval`-th frame of each segment, in timestamp order."""
        by_segment: dict[str, list[int]] = {}
        for context, stamp in self.frames:
            by_segment.setdefault(context, []).append(stamp)
        return [(context, stamp) for context in sorted(by_segment)
                for stamp in sorted(by_segment[context])[::self.sampled_interval]]

    def gathered(self) -> tuple[FrameBoxes, FrameBoxes, int]:
        """(predictions, references, frame count) of the selected frames, concatenated once
        per state (`compute()` and `counts()` share them)."""
        if self._gathered is None:
            selected = [self.frames[key] for key in self.selected_frames()]
            self._gathered = (FrameBoxes.gather([p for p, _ in selected], False),
                              FrameBoxes.gather([r for _, r in selected], True), len(selected))
        return self._gathered

    def measurements(self) -> np.ndarray:
        preds, refs, _ = self.gathered()
        return measure_frames(preds, refs, self.min_heading_accuracy)

    def compute(self) -> dict[str, float]:
        counts = self.measurements()
        out: dict[str, float] = {}
        names = breakdown_names()
        for t in TYPE_NAMES.values():
            for l_i, level in enumerate(LEVELS):
                for suffix in [""] + [f"|RANGE_{r[0]}" for r in RANGES]:
                    m = counts[names.index(t + suffix), l_i]
                    prec, prec_ha, rec = pr_from_counts(m[:, 0], m[:, 1], m[:, 2], m[:, 3])
                    prefix = f"{t}/L{level}" + suffix.replace("|", "/")
                    out[f"{prefix}/mAP"] = mean_average_precision(prec, rec)
                    out[f"{prefix}/mAPH"] = mean_average_precision(prec_ha, rec)
        out["sampled_interval"] = float(self.sampled_interval)
        return {k: out[k] for k in self.keys}

    def counts(self) -> dict[str, int]:
        """The ground truth the values were computed over: `{TYPE}/L{1|2}/gt_boxes`, the
        boxes of the scored frames that can be missed at that level (lidar points > 0,
        level <= k, so L2 includes L1), and `frames/scored` (after `sampled_interval`)."""
        _, refs, scored = self.gathered()
        out = {}
        for t, name in TYPE_NAMES.items():
            for level in LEVELS:
                out[f"{name}/L{level}/gt_boxes"] = int(np.sum((refs.types == t)
                                                              & (refs.value <= level)))
        out["frames/scored"] = scored
        return out


def _frame_key(ref: Any, counter: int) -> tuple[str, int]:
    """(context_name, timestamp) of a reference frame; a running number when absent."""
    get = ref.get if isinstance(ref, Mapping) else (lambda k, d=None: getattr(ref, k, d))
    context = get("context_name", None)
    stamp = get("timestamp", None)
    if context is None or stamp is None:
        return ("", counter)
    return (str(context), int(stamp))
