"""The registered `kitti_ap` metric: streamed frames, its keys, the valid-box counts
and the warnings of small sets."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS
from refbench.evaluation.kitti.frames import (DIFFICULTIES, Frames, METRIC_NAMES, MIN_OVERLAPS,
                                              N_SAMPLE_PTS, bulk_arrays, check_classes,
                                              concat_frames, frame_arrays, join_arrays,
                                              to_frames)
from refbench.evaluation.kitti.matching import (ap_r11, ap_r40, evaluate_frames,
                                                frames_valid_gt_counts, get_thresholds)


def perfect_ap(num_valid: int) -> tuple[float, float]:
    """(R40, R11) in percent of a perfect detector on `num_valid` valid boxes: below 41
    boxes the curve has fewer thresholds than sample points, so the AP cannot reach 100."""
    if num_valid <= 0:
        return 0.0, 0.0
    precision = np.zeros(N_SAMPLE_PTS)
    precision[:len(get_thresholds(np.ones(num_valid), num_valid))] = 1.0
    return ap_r40(precision), ap_r11(precision)


def quantisation_warnings(counts: Mapping[str, int]) -> list[str]:
    """One line per class/difficulty of `valid_gt_counts` with fewer valid boxes than the
    41 recall sample points: its AP moves in coarse steps and, as the port picks one score
    threshold per valid box, even a perfect detector stays below 100 (R40 97.5 with 40)."""
    out = []
    for key, n in counts.items():
        if n >= N_SAMPLE_PTS:
            continue
        where = key.rsplit("/", 1)[0]
        boxes = "box" if n == 1 else "boxes"
        if n == 0:
            out.append(f"{where} has 0 valid ground-truth boxes: its AP is 0 by convention, "
                       f"not a measurement")
            continue
        r40, r11 = perfect_ap(n)
        out.append(f"{where} has {n} valid ground-truth {boxes}: R40 and R11 are quantised "
                   f"(fewer boxes than the 41 recall sample points; a perfect detector "
                   f"scores R40 {r40:.2f}, R11 {r11:.2f})")
    return out


def _keys(classes: Sequence[str]) -> dict[str, str]:
    out = {}
    for who in list(classes) + ["mean"]:
        for kind in METRIC_NAMES + ("aos",):
            for difficulty in DIFFICULTIES:
                for r in ("R11", "R40"):
                    what = "mean over the classes" if who == "mean" else who
                    out[f"{who}/{kind}/{difficulty}/{r}"] = (
                        f"{kind} AP (%) of {what}, {difficulty}, {r} interpolation")
    return out


@METRICS.register("kitti_ap", higher_is_better=True, version="1")
class KittiAP(Metric):
    """Streaming KITTI AP: `update` keeps the frames, `compute` runs `kitti_eval`.

    Keys `{Class}/{bbox|bev|3d|aos}/{easy|moderate|hard}/R{11|40}` and
    `mean/...` over the requested classes, in percent. A prediction frame of None is a
    frame without detections (an id missing from the prediction folder). Counts
    `{Class}/{difficulty}/valid_gt`: the valid ground-truth boxes each AP is computed over;
    a warning for each below 41, where R40 and R11 are quantised.
    """

    keys: ClassVar[dict[str, str]] = _keys(["Car", "Pedestrian", "Cyclist"])

    def __init__(self, classes: Sequence[str] = ("Car",), overlap: str = "strict",
                 **args: Any) -> None:
        if args:
            raise RefbenchError(f"unknown kitti_ap argument(s) {sorted(args)}")
        if overlap not in MIN_OVERLAPS:
            raise RefbenchError(f"overlap must be 'strict' or 'loose', got {overlap!r}",
                                key="overlap")
        self.classes = check_classes(classes)
        self.overlap = overlap
        super().__init__(classes=self.classes, overlap=overlap)
        self.keys = _keys(self.classes)  # type: ignore[misc]
        self._gt: list[Frames] = []
        self._dt: list[Frames] = []
        self._stacked: tuple[Frames, Frames] | None = None

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} prediction frames but {len(references)} "
                                f"reference frames")
        start = sum(part.n_frames for part in self._gt)
        dt, gt = bulk_arrays(predictions, True), bulk_arrays(references, False)
        if dt is None or gt is None:  # check frame by frame: the first bad frame is named
            checked = [(frame_arrays(pred, True, f"prediction frame {start + i}"),
                        frame_arrays(ref, False, f"reference frame {start + i}"))
                       for i, (pred, ref) in enumerate(zip(predictions, references))]
            dt, gt = join_arrays([c[0] for c in checked]), join_arrays([c[1] for c in checked])
        self._dt.append(to_frames(dt))
        self._gt.append(to_frames(gt))
        self._stacked = None

    def merge(self, other: Metric) -> None:
        if not isinstance(other, KittiAP) or other.classes != self.classes \
                or other.overlap != self.overlap:
            raise RefbenchError("can only merge kitti_ap metrics of the same arguments")
        self._gt.extend(other._gt)
        self._dt.extend(other._dt)
        self._stacked = None

    def _frames(self) -> tuple[Frames, Frames]:
        if self._stacked is None:
            empty = [to_frames(join_arrays([]))]
            self._stacked = (concat_frames(self._gt or empty), concat_frames(self._dt or empty))
        return self._stacked

    def compute(self) -> dict[str, float]:
        gt, dt = self._frames()
        return evaluate_frames(gt, dt, self.classes, self.overlap)

    def counts(self) -> dict[str, int]:
        """Valid ground-truth boxes per class and difficulty (`Car/moderate/valid_gt`)."""
        return frames_valid_gt_counts(self._frames()[0], self.classes)

    def warnings(self) -> list[str]:
        """A line per reported class/difficulty with too few valid boxes (below 41)."""
        return quantisation_warnings(self.counts())
