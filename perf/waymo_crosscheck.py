"""Cross-check refbench's numpy Waymo 3D detection metric against the official Waymo op.

refbench's `waymo_3d` metric (`refbench.evaluation.waymo.Waymo3DMetric`) re-implements the
Waymo Open Dataset AP / APH. The official implementation is a TensorFlow C++ op
(`waymo_open_dataset.metrics.ops.py_metrics_ops.detection_metrics`) whose package pins
numpy 1.23 / tensorflow 2.13, so it cannot live in refbench's environment. This script
therefore has two halves that talk through files in a work folder:

  (a) `--stage refbench` (refbench's venv): generate seeded random scenes (ground truth of
      VEHICLE / PEDESTRIAN / SIGN / CYCLIST with 0-50 lidar points and some explicit
      difficulties; predictions = jittered ground truth with some heading flips by pi,
      missed boxes, duplicates and false positives, uniform scores), score them with
      `Waymo3DMetric`, and write `scenes.npz` + `refbench.json`;
  (b) `--stage official` (the Waymo venv): read `scenes.npz`, apply OpenPCDet's ground
      truth preprocessing (drop boxes with 0 points; difficulty 0 -> LEVEL_2 when <= 5
      points else LEVEL_1), build OpenPCDet's default 3D config (plus the RANGE breakdown)
      and run the op; write `official.json`.

The default stage `all` (refbench's venv) runs (a), then (b) in a subprocess with the
Waymo venv's Python, then prints both side by side with the absolute difference per key
and the maximum per metric family. Without that Python it prints how to create it and
exits 2. Typical use:

    python3 -m venv .venv-waymo
    .venv-waymo/bin/pip install waymo-open-dataset-tf-2-12-0==1.6.7
    .venv/bin/python perf/waymo_crosscheck.py --waymo-python .venv-waymo/bin/python

or by hand: `--stage refbench --workdir D`, then
`.venv-waymo/bin/python perf/waymo_crosscheck.py --stage official --workdir D`, then
`--stage compare --workdir D`. The official half imports nothing from refbench.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

TYPE_NAMES = {1: "VEHICLE", 2: "PEDESTRIAN", 3: "SIGN", 4: "CYCLIST"}
#: type -> mean (length, width, height) in metres
SIZES = {1: (4.6, 2.0, 1.7), 2: (0.9, 0.8, 1.8), 3: (0.4, 0.7, 0.9), 4: (1.8, 0.8, 1.7)}
RANGE_NAMES = ("0_30", "30_50", "50_INF")
DEFAULT_WAYMO_PYTHON = ".venv-waymo/bin/python"
INSTALL_HINT = ("the official metric needs its own venv (it pins tensorflow 2.13 and numpy "
                "1.23.5):\n  python3 -m venv .venv-waymo\n  .venv-waymo/bin/pip install "
                "waymo-open-dataset-tf-2-12-0==1.6.7\nthen pass --waymo-python "
                ".venv-waymo/bin/python")


# -- scene generation (refbench venv, but plain numpy) -------------------------------------
def make_scenes(frames: int, seed: int) -> dict[str, np.ndarray]:
    """Flat arrays of seeded random ground truth and predictions, with a frame id each."""
    rng = np.random.default_rng(seed)
    gt: dict[str, list[Any]] = {k: [] for k in ("bbox", "type", "frame", "points", "diff")}
    pd: dict[str, list[Any]] = {k: [] for k in ("bbox", "type", "frame", "score")}
    for f in range(frames):
        n = int(rng.integers(3, 31))
        types = rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.3, 0.1, 0.15])
        size = np.array([SIZES[int(t)] for t in types]) * rng.uniform(0.8, 1.2, (n, 3))
        dist = rng.uniform(2.0, 75.0, n)
        azimuth = rng.uniform(-np.pi, np.pi, n)
        centre = np.column_stack([dist * np.cos(azimuth), dist * np.sin(azimuth),
                                  rng.uniform(-1.0, 3.0, n)])
        heading = rng.uniform(-np.pi, np.pi, n)
        boxes = np.column_stack([centre, size, heading])
        # half the boxes sparse (0-10 points) so the <= 5 rule and 0-point drop matter
        points = np.where(rng.random(n) < 0.5, rng.integers(0, 11, n), rng.integers(0, 51, n))
        diff = rng.choice([0, 1, 2], size=n, p=[0.7, 0.1, 0.2])
        gt["bbox"].append(boxes)
        gt["type"].append(types)
        gt["frame"].append(np.full(n, f))
        gt["points"].append(points)
        gt["diff"].append(diff)

        found = rng.random(n) > 0.15  # ~15 % missed
        p_boxes = boxes[found].copy()
        p_types = types[found].copy()
        m = len(p_boxes)
        p_boxes[:, :2] += rng.normal(0, 0.04, (m, 2)) * p_boxes[:, 3:5]
        p_boxes[:, 2] += rng.normal(0, 0.04, m) * p_boxes[:, 5]
        p_boxes[:, 3:6] *= rng.normal(1.0, 0.05, (m, 3)).clip(0.6, 1.4)
        p_boxes[:, 6] += rng.normal(0, 0.15, m)
        flip = rng.random(m) < 0.15
        p_boxes[flip, 6] += np.pi
        dup = rng.random(m) < 0.1  # duplicates: a second, slightly shifted prediction
        d_boxes = p_boxes[dup].copy()
        d_boxes[:, :2] += rng.normal(0, 0.1, (int(dup.sum()), 2)) * d_boxes[:, 3:5]
        k = int(rng.integers(0, 6))  # false positives anywhere
        fp_types = rng.choice([1, 2, 3, 4], size=k)
        fp_size = np.array([SIZES[int(t)] for t in fp_types]).reshape(k, 3)
        fp_dist, fp_az = rng.uniform(2, 75, k), rng.uniform(-np.pi, np.pi, k)
        fp_boxes = np.column_stack([fp_dist * np.cos(fp_az), fp_dist * np.sin(fp_az),
                                    rng.uniform(-1, 3, k), fp_size,
                                    rng.uniform(-np.pi, np.pi, k)]).reshape(k, 7)
        all_boxes = np.concatenate([p_boxes, d_boxes, fp_boxes])
        all_types = np.concatenate([p_types, p_types[dup], fp_types])
        pd["bbox"].append(all_boxes)
        pd["type"].append(all_types)
        pd["frame"].append(np.full(len(all_boxes), f))
        pd["score"].append(rng.uniform(0, 1, len(all_boxes)))
    return {
        "gt_bbox": np.concatenate(gt["bbox"]).astype(np.float32),
        "gt_type": np.concatenate(gt["type"]).astype(np.int64),
        "gt_frame": np.concatenate(gt["frame"]).astype(np.int64),
        "gt_num_points": np.concatenate(gt["points"]).astype(np.int64),
        "gt_difficulty": np.concatenate(gt["diff"]).astype(np.int64),
        "pd_bbox": np.concatenate(pd["bbox"]).astype(np.float32),
        "pd_type": np.concatenate(pd["type"]).astype(np.int64),
        "pd_frame": np.concatenate(pd["frame"]).astype(np.int64),
        "pd_score": np.concatenate(pd["score"]).astype(np.float32),
        "frames": np.array(frames),
    }


def refbench_scores(scenes: dict[str, np.ndarray]) -> dict[str, float]:
    """`Waymo3DMetric` over the scenes, one BoxFrame pair per frame (float32 inputs, the
    same values the official half feeds the op)."""
    from refbench.evaluation.waymo import BoxFrame, Waymo3DMetric

    preds, refs = [], []
    for f in range(int(scenes["frames"])):
        g, p = scenes["gt_frame"] == f, scenes["pd_frame"] == f
        refs.append(BoxFrame("crosscheck", f, boxes=scenes["gt_bbox"][g].astype(np.float64),
                             types=scenes["gt_type"][g],
                             num_points=scenes["gt_num_points"][g],
                             difficulty=scenes["gt_difficulty"][g]))
        preds.append(BoxFrame("crosscheck", f, boxes=scenes["pd_bbox"][p].astype(np.float64),
                              types=scenes["pd_type"][p], scores=scenes["pd_score"][p]))
    metric = Waymo3DMetric()
    metric.update(preds, refs)
    return {k: v for k, v in metric.compute().items() if k != "sampled_interval"}


# -- official half (Waymo venv; imports nothing from refbench) -------------------------------
def openpcdet_difficulty(num_points: np.ndarray, difficulty: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, difficulty) as OpenPCDet's `waymo_eval.py` prepares ground truth: boxes
    with 0 points are dropped; difficulty 0 becomes 1 (> 5 points) or 2 (<= 5 points)."""
    diff = difficulty.copy()
    zero = diff == 0
    diff[zero & (num_points > 5)] = 1
    diff[zero & (num_points <= 5)] = 2
    return num_points > 0, diff


def official_config() -> Any:
    """OpenPCDet's default 3D config (OBJECT_TYPE, LEVEL_1/2, Hungarian, IoU 0.7/0.5/0.5/0.5,
    cut-offs 0.00..0.99 + 1.0) with the RANGE breakdown added (same difficulties)."""
    from google.protobuf import text_format
    from waymo_open_dataset.protos import metrics_pb2

    config = metrics_pb2.Config()
    text_format.Merge("""
        breakdown_generator_ids: OBJECT_TYPE
        difficulties { levels: 1 levels: 2 }
        breakdown_generator_ids: RANGE
        difficulties { levels: 1 levels: 2 }
        matcher_type: TYPE_HUNGARIAN
        iou_thresholds: 0.0
        iou_thresholds: 0.7
        iou_thresholds: 0.5
        iou_thresholds: 0.5
        iou_thresholds: 0.5
        box_type: TYPE_3D
    """, config)
    for x in range(100):
        config.score_cutoffs.append(x * 0.01)
    config.score_cutoffs.append(1.0)
    return config


def official_scores(scenes: dict[str, np.ndarray]) -> dict[str, float]:
    """The official op's AP / APH, keyed like refbench's metric."""
    import tensorflow as tf
    from waymo_open_dataset.metrics.ops import py_metrics_ops
    from waymo_open_dataset.protos import breakdown_pb2

    keep, diff = openpcdet_difficulty(scenes["gt_num_points"], scenes["gt_difficulty"])
    n_pd = len(scenes["pd_bbox"])
    out = py_metrics_ops.detection_metrics(
        prediction_bbox=tf.constant(scenes["pd_bbox"], tf.float32),
        prediction_type=tf.constant(scenes["pd_type"], tf.uint8),
        prediction_score=tf.constant(scenes["pd_score"], tf.float32),
        prediction_frame_id=tf.constant(scenes["pd_frame"], tf.int64),
        prediction_overlap_nlz=tf.zeros([n_pd], tf.bool),
        ground_truth_bbox=tf.constant(scenes["gt_bbox"][keep], tf.float32),
        ground_truth_type=tf.constant(scenes["gt_type"][keep], tf.uint8),
        ground_truth_frame_id=tf.constant(scenes["gt_frame"][keep], tf.int64),
        ground_truth_difficulty=tf.constant(diff[keep], tf.uint8),
        config=official_config().SerializeToString())
    ap, aph, breakdown = out[0].numpy(), out[1].numpy(), out[-1].numpy()
    gen = breakdown_pb2.Breakdown.GeneratorId
    result: dict[str, float] = {}
    for i, (gen_id, shard, level) in enumerate(breakdown.tolist()):
        if gen_id == gen.Value("OBJECT_TYPE"):
            prefix = f"{TYPE_NAMES[shard + 1]}/L{level}"
        elif gen_id == gen.Value("RANGE"):
            prefix = f"{TYPE_NAMES[shard // 3 + 1]}/L{level}/RANGE_{RANGE_NAMES[shard % 3]}"
        else:
            continue
        result[f"{prefix}/mAP"] = float(ap[i])
        result[f"{prefix}/mAPH"] = float(aph[i])
    return result


# -- driver -----------------------------------------------------------------------------
def _has_waymo(python: str) -> bool:
    """Whether `python` exists and can find the `waymo_open_dataset` package."""
    if not Path(python).exists():
        return False
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('waymo_open_dataset') is None)"
    result = subprocess.run([python, "-c", probe], check=False, capture_output=True)
    return result.returncode == 0


def compare(ref: dict[str, float], off: dict[str, float]) -> dict[str, float]:
    """Print both side by side; return the max absolute difference per metric family."""
    print(f"{'key':40s} {'refbench':>10s} {'official':>10s} {'|diff|':>10s}")
    families: dict[str, float] = {}
    for key in sorted(set(ref) | set(off)):
        r, o = ref.get(key, math.nan), off.get(key, math.nan)
        d = abs(r - o)
        print(f"{key:40s} {r:10.6f} {o:10.6f} {d:10.2e}" + ("   <--" if d > 1e-4 else ""))
        parts = key.split("/")
        fam = f"{parts[1]}/{'RANGE' if len(parts) == 4 else 'ALL'}/{parts[-1]}"
        families[fam] = max(families.get(fam, 0.0), d if not math.isnan(d) else math.inf)
    print("\nmax |diff| per level / breakdown / kind:")
    for fam in sorted(families):
        print(f"  {fam:20s} {families[fam]:.3e}")
    print(f"overall max |diff|: {max(families.values()):.3e}")
    return families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["all", "refbench", "official", "compare"],
                        default="all", help="which half to run (default: all three steps)")
    parser.add_argument("--workdir", type=Path, help="folder for scenes.npz / *.json "
                        "(default: a new temp folder)")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--waymo-python", default=os.environ.get("WAYMO_PYTHON",
                        DEFAULT_WAYMO_PYTHON), help="Python of the venv with "
                        "waymo-open-dataset-tf-2-12-0 (default %(default)s or $WAYMO_PYTHON)")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="waymo_crosscheck_"))
    work.mkdir(parents=True, exist_ok=True)

    if args.stage == "official":
        if not _has_waymo(sys.executable):
            print(f"waymo_open_dataset is not importable here: {INSTALL_HINT}", file=sys.stderr)
            return 2
        with np.load(work / "scenes.npz") as data:
            scenes = {k: data[k] for k in data.files}
        (work / "official.json").write_text(json.dumps(official_scores(scenes), indent=1))
        return 0
    if args.stage in ("all", "refbench"):
        if args.stage == "all" and not _has_waymo(args.waymo_python):
            print(f"no waymo_open_dataset in {args.waymo_python}: {INSTALL_HINT}",
                  file=sys.stderr)
            return 2
        scenes = make_scenes(args.frames, args.seed)
        np.savez(work / "scenes.npz", **scenes)
        (work / "refbench.json").write_text(json.dumps(refbench_scores(scenes), indent=1))
        print(f"{len(scenes['gt_bbox'])} ground truth / {len(scenes['pd_bbox'])} predicted "
              f"boxes in {args.frames} frames; work folder {work}")
    if args.stage == "all":
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        subprocess.run([args.waymo_python, __file__, "--stage", "official", "--workdir",
                        str(work)], check=True, env=env)
    if args.stage in ("all", "compare"):
        ref = json.loads((work / "refbench.json").read_text())
        off = json.loads((work / "official.json").read_text())
        compare(ref, off)
    return 0


if __name__ == "__main__":
    sys.exit(main())
