"""The Waymo Open Dataset 3D detection metric (AP / APH, LEVEL_1 / LEVEL_2), in numpy.

Re-derived from the official C++ (`metrics_utils.cc`, `detection_metrics.cc`,
`breakdown_generator.cc`, `protos/metrics.proto`) with the configuration OpenPCDet and
the leaderboard use:

- ground truth: boxes with 0 lidar points are dropped; a box whose detection difficulty
  is 0 (unset) is LEVEL_2 when it holds <= 5 points, else LEVEL_1. Matching sees every
  ground truth box of the type; at LEVEL_k only an *unmatched* box of level <= k is a
  false negative (so LEVEL_2 includes LEVEL_1), while every matched prediction is a TP.
- matching: per frame, per breakdown shard and per score cut-off (0.00, 0.01 ... 0.99,
  1.0; a prediction is kept when score >= cut-off), Hungarian matching maximizing the
  summed IoU (quantized to round(IoU * 1e6), like `matcher.cc`) over the pairs whose IoU
  >= threshold (0.7 vehicle, 0.5 pedestrian, sign, cyclist). 3D IoU of upright boxes
  rotated around z: exact BEV polygon intersection times the z overlap (0 for a box
  dimension <= 1 cm). Arithmetic is float64 where the official code uses float32, so
  values agree to ~1e-6.
- heading rule (`min_heading_accuracy`, the config field of that name, default -1 = off):
  a match whose heading accuracy is at or below the limit (both float32, computed as the
  op does: `official_heading_accuracy`) is neither a true nor a false positive, and its
  ground truth box is not a false negative either; the rule is applied after matching
  (a dropped match does not free its box for another prediction), at each cut-off.
- APH weights each TP by its heading accuracy `1 - min(|d|, 2pi - |d|) / pi`.
- PR curve: precision = TP / (TP + FP) (0 when there is none), recall = TP / (TP + FN),
  precision forced to 1 where recall is 0; AP is the area under the max-interpolated
  curve sampled with `desired_recall_delta` 0.05 (`ComputeMeanAveragePrecision`).
- breakdowns: OBJECT_TYPE, and RANGE by the 3D distance of each box's own centre
  (ground truth and predictions alike) to the origin: [0, 30), [30, 50), [50, inf) m.

How it is computed (fast, and still exact): frames are processed in chunks of about
`CHUNK_PAIRS` same-type box pairs with whole-array numpy (bounded memory); IoUs only for
the pairs of a frame and type whose BEV circumcircles touch. A maximum-weight matching
decomposes over the connected components of the graph of above-threshold pairs, so a
lone pair is matched at exactly the cut-offs that keep its prediction, a component with
one box or one prediction takes its heaviest kept pair, and only the rest run the
Hungarian solver (`assign_max`, scipy's algorithm), once per distinct set of kept
predictions. Among equal-weight assignments the earlier prediction / box wins, as in the
official op on every tie probed. No numba: numpy alone is faster than the op.

Version 2 (benchmark `waymo-3d@2`): equal-weight assignments are broken as the official op
breaks them; version 1 could pick the other prediction of an exact tie, moving APH (never
AP) by up to 6e-3 in such cases. Every other value is unchanged.

Values are fractions in [0, 1], as the official tool prints them. Keys:
`{TYPE}/L{1|2}/{mAP|mAPH}` and `{TYPE}/L{1|2}/RANGE_{0_30|30_50|50_INF}/{mAP|mAPH}` with
TYPE in VEHICLE, PEDESTRIAN, SIGN, CYCLIST, plus `sampled_interval` (not a score: every
k-th frame of each segment, by timestamp, was scored; 1 = all frames). Counts (`counts()`,
in the result's `counts`): `{TYPE}/L{1|2}/gt_boxes`, the ground-truth boxes each AP's
recall is computed over, and `frames/scored`.

A frame is a mapping with `boxes` [N, 7] (cx, cy, cz, length, width, height, heading),
`types` [N] (1 vehicle, 2 pedestrian, 3 sign, 4 cyclist; 0 unknown is ignored), and
`scores` [N] for predictions or `num_points` [N] and `difficulty` [N] for references;
optional `context_name` and `timestamp` identify it (needed for `sampled_interval` > 1).
"""

from __future__ import annotations

from refbench.evaluation.waymo.boxes import (BoxFrame, CHUNK_PAIRS, DESIRED_RECALL_DELTA,
                                             IOU_THRESHOLDS, IOU_THRESHOLDS_F32, LEVELS,
                                             MAX_BOX_DIM, MAX_IOU, MIN_BOX_DIM,
                                             MIN_HEADING_ACCURACY, N_CUT, N_SHARDS, RANGES,
                                             SCORE_CUTOFFS, TYPE_NAMES, fast_array_repr)
from refbench.evaluation.waymo.geometry import (bev_corners, circles_touch,
                                                convex_intersection_area, heading_accuracy,
                                                hungarian_match, iou_3d, iou_matrix, iou_pairs,
                                                mean_average_precision,
                                                official_heading_accuracy, pr_from_counts)
from refbench.evaluation.waymo.matching import (FrameBoxes, assign_max, breakdown_names,
                                                chunk_measurements, component_labels,
                                                component_matches, frame_measurements,
                                                measure_frames)
from refbench.evaluation.waymo.metric import (Waymo3DMetric)

__all__ = ['TYPE_NAMES', 'IOU_THRESHOLDS', 'SCORE_CUTOFFS', 'RANGES', 'DESIRED_RECALL_DELTA',
           'MIN_BOX_DIM', 'MAX_BOX_DIM', 'MAX_IOU', 'LEVELS', 'MIN_HEADING_ACCURACY',
           'CHUNK_PAIRS', 'N_CUT', 'N_SHARDS', 'IOU_THRESHOLDS_F32', 'BoxFrame',
           'fast_array_repr', 'bev_corners', 'convex_intersection_area', 'iou_pairs', 'iou_3d',
           'circles_touch', 'iou_matrix', 'heading_accuracy', 'official_heading_accuracy',
           'hungarian_match', 'mean_average_precision', 'pr_from_counts', 'breakdown_names',
           'FrameBoxes', 'component_matches', 'assign_max', 'component_labels',
           'chunk_measurements', 'measure_frames', 'frame_measurements', 'Waymo3DMetric']
