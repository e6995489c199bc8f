"""KITTI 3D object detection AP (`kitti_ap`), re-derived from the official evaluation.

The numbers follow the Python port of the devkit that papers report
(`kitti_object_eval_python/eval.py` in second.pytorch / OpenPCDet), including its quirks:

- classes Car, Pedestrian, Cyclist, Van, Person_sitting, Truck (the port's class map; it
  has no Tram or Misc). For Car, Van ground truth is ignored (neither TP nor FN); for
  Pedestrian, Person_sitting is. DontCare regions: a detection whose 2D box lies inside
  a DontCare box (intersection over the detection's area > the overlap threshold) is not
  a false positive -- for the 2D `bbox` metric only, as in the port (the C++ devkit also
  applies it to BEV/3D).
- difficulty: ground truth is ignored when occluded > MAX_OCCLUSION, truncated >
  MAX_TRUNCATION or its 2D height <= MIN_HEIGHT of the level (easy, moderate, hard:
  40/25/25 px, occlusion 0/1/2, truncation 0.15/0.3/0.5); detections lower than
  MIN_HEIGHT (strictly) are ignored, whatever their class.
- matching (`compute_statistics_jit`): ground truth in file order takes, first, the
  highest-scoring unassigned detection over the threshold to collect the TP scores, from
  which `get_thresholds` picks 41 scores at recall steps of 1/40; then at each of those
  score thresholds the best-overlap detection (non-ignored ones preferred) to count TP,
  FP and FN. Precision at the i-th threshold is max over later ones.
- AP R11 = sum of precision at sample points 0, 4, ..., 40 / 11; R40 = sum over points
  1..40 / 40 (the KITTI server's metric since 2019). AOS uses (1 + cos(dalpha)) / 2 of
  each 2D TP. Values are percent. A class with no valid ground truth scores 0.
- small sets: the port picks one score threshold per valid ground-truth box, so with
  fewer than 41 valid boxes AP moves in coarse steps and even a perfect detector stays
  below 100 (1 box: R40 0, R11 9.09). The metric reports the valid boxes per class and
  difficulty (`counts()`) and warns for each count below 41.
- AOS is always computed (the port skips it when the first detection's alpha is -10),
  and a precision of 0 / 0 counts as 0 (the port would produce NaN).
- overlap thresholds (bbox, bev, 3d): "strict" Car 0.7/0.7/0.7, Pedestrian and Cyclist
  0.5/0.5/0.5, Van 0.7, Person_sitting 0.5, Truck 0.7; "loose" Car 0.7/0.5/0.5,
  Pedestrian and Cyclist 0.5/0.25/0.25, Van 0.7/0.5/0.5, Person_sitting 0.5/0.25/0.25,
  Truck 0.5/0.5/0.5.

Speed: the official loops run per frame and per threshold. Here frames only meet
through their candidate pairs (overlap > threshold), so the pairs are grouped into
connected components, components of one shape are stacked, and the same greedy rules run
vectorised over components. A component's counts change only where the score threshold
passes one of its own detections, so the second pass runs once per such level (one more
than its detections) instead of once per threshold, and the per-threshold sums are
cumulative sums of the changes. The ground-truth order inside a frame and the detection
order are kept, so ties resolve as in the official loops. Frames are validated and
concatenated in bulk; a frame the bulk checks cannot vouch for goes through the
per-frame checks, which name it in their error. All of it is numpy: on KITTI val (3,769
frames) the strict evaluation takes about 0.35 s of CPU, less than importing numba.
"""

from __future__ import annotations

from refbench.evaluation.kitti.frames import (CLASSES, CLASS_CODE, DIFFICULTIES, DONTCARE,
                                              FIELDS, Frames, MAX_OCCLUSION, MAX_TRUNCATION,
                                              METRIC_NAMES, MIN_HEIGHT, MIN_OVERLAPS, NEIGHBOUR,
                                              NEIGHBOUR_CODE, NO_DETECTION, N_SAMPLE_PTS, OTHER,
                                              bulk_arrays, check_classes, checked_arrays,
                                              class_codes, concat_frames, frame_arrays,
                                              join_arrays, stack_frames, to_frames)
from refbench.evaluation.kitti.matching import (Bucket, CandidateGroups, Pairs, ap_r11, ap_r40,
                                                class_groups, compute_pairs,
                                                dontcare_max_overlap, evaluate_frames,
                                                evaluate_one, frames_valid_gt_counts,
                                                get_thresholds, gt_ignore_flags, ignore_flags,
                                                interpolated, kitti_eval, valid_gt_counts)
from refbench.evaluation.kitti.metric import (KittiAP, perfect_ap, quantisation_warnings)

__all__ = ['annotations', 'CLASSES', 'CLASS_CODE', 'DIFFICULTIES', 'DONTCARE', 'FIELDS',
           'Frames', 'MAX_OCCLUSION', 'MAX_TRUNCATION', 'METRIC_NAMES', 'MIN_HEIGHT',
           'MIN_OVERLAPS', 'NEIGHBOUR', 'NEIGHBOUR_CODE', 'NO_DETECTION', 'N_SAMPLE_PTS',
           'OTHER', 'bulk_arrays', 'check_classes', 'checked_arrays', 'class_codes',
           'concat_frames', 'frame_arrays', 'join_arrays', 'stack_frames', 'to_frames',
           'Bucket', 'CandidateGroups', 'Pairs', 'ap_r11', 'ap_r40', 'class_groups',
           'compute_pairs', 'dontcare_max_overlap', 'evaluate_frames', 'evaluate_one',
           'frames_valid_gt_counts', 'get_thresholds', 'gt_ignore_flags', 'ignore_flags',
           'interpolated', 'kitti_eval', 'valid_gt_counts', 'KittiAP', 'perfect_ap',
           'quantisation_warnings']
