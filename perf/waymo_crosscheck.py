"""Cross-check refbench's Waymo 3D detection metric against the official Waymo op, and time
the whole `refbench evaluate waymo-3d` process against the op's compute.

refbench's `waymo_3d` metric (`refbench.evaluation.waymo.Waymo3DMetric`) re-implements the
Waymo Open Dataset AP / APH. The official implementation is a TensorFlow C++ op
(`waymo_open_dataset.metrics.ops.py_metrics_ops.detection_metrics`) whose package pins
numpy 1.23 / tensorflow 2.13, so it cannot live in refbench's environment. This script
therefore has two halves that talk through files in a work folder:

  (a) `--stage refbench` (refbench's venv): generate seeded random scenes (ground truth of
      VEHICLE / PEDESTRIAN / SIGN / CYCLIST with 0-50 lidar points and some explicit
      difficulties; predictions = jittered ground truth with some heading flips by pi,
      some turns by about pi/2 (square-ish pedestrians and signs still match, with a
      heading accuracy near 0.5), missed boxes, duplicates and false positives, uniform
      scores) and write them as `scenes.npz` and as the files a user scores: a v2
      `references/lidar_box/<segment>.parquet` folder (200 frames a segment) and a
      `predictions.parquet` submission. Then run `refbench evaluate waymo-3d` on them in
      a separate process (`--repeat` times; wall and CPU seconds, peak RSS from `wait4`)
      -> `result.json`, and score the same files in-process with the metric argument
      `min_heading_accuracy` set (`--min-heading-accuracy`, default 0.5)
      -> `refbench_heading.json`;
  (b) `--stage official` (the Waymo venv): read `scenes.npz`, apply OpenPCDet's ground
      truth preprocessing (drop boxes with 0 points; difficulty 0 -> LEVEL_2 when <= 5
      points else LEVEL_1), build OpenPCDet's default 3D config (plus the RANGE breakdown)
      and run the op as is (`--repeat` times, timed around the op call alone: its
      compute, without TF's import and the reading) and once with the config's
      `min_heading_accuracy` set; write `official.json`, `official_heading.json` and
      `official_time.json`.

The default stage `all` (refbench's venv) runs (a), then (b) in a subprocess with the
Waymo venv's Python (its peak RSS from `wait4` too), then prints both comparisons side by
side with the absolute difference per key and the maximum per metric family, and the
timing: refbench's whole process vs the op's compute (best of `--repeat` runs each; the
ratio in wall and in CPU seconds, which a shared machine disturbs less) and both peak
RSS. Without that Python it prints how to create it and exits 2. Typical use:

    python3 -m venv .venv-waymo
    .venv-waymo/bin/pip install waymo-open-dataset-tf-2-12-0==1.6.7
    .venv/bin/python perf/waymo_crosscheck.py --waymo-python .venv-waymo/bin/python
    # the timing of the issue: 4,000 busy frames (20-40 ground truth boxes each)
    .venv/bin/python perf/waymo_crosscheck.py --waymo-python .venv-waymo/bin/python \\
        --frames 4000 --min-boxes 20 --max-boxes 40 --repeat 3

or by hand: `--stage refbench --workdir D` (prints refbench's timing alone), then
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
import time
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
FRAMES_PER_SEGMENT = 200
#: the v2 `lidar_box` columns the references folder is written with (the official names)
SEGMENT_COL, TIME_COL, OBJECT_COL = ("key.segment_context_name", "key.frame_timestamp_micros",
                                     "key.laser_object_id")
BOX = "[LiDARBoxComponent]"
BOX_COLS = tuple(f"{BOX}.box.{p}" for p in ("center.x", "center.y", "center.z", "size.x",
                                           "size.y", "size.z", "heading"))
PRED_COLS = ("center_x", "center_y", "center_z", "length", "width", "height", "heading")


# -- scene generation (refbench venv, but plain numpy) -------------------------------------
def make_scenes(frames: int, seed: int, min_boxes: int = 3, max_boxes: int = 30
                ) -> dict[str, np.ndarray]:
    """Flat arrays of seeded random ground truth and predictions, with a frame id each;
    every frame has `min_boxes`..`max_boxes` ground truth boxes."""
    rng = np.random.default_rng(seed)
    gt: dict[str, list[Any]] = {k: [] for k in ("bbox", "type", "frame", "points", "diff")}
    pd: dict[str, list[Any]] = {k: [] for k in ("bbox", "type", "frame", "score")}
    for f in range(frames):
        n = int(rng.integers(min_boxes, max_boxes + 1))
        types = rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.3, 0.1, 0.15])
        size = np.array([SIZES[int(t)] for t in types]).reshape(n, 3) \
            * rng.uniform(0.8, 1.2, (n, 3))
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
        turn = rng.random(m)
        p_boxes[turn < 0.15, 6] += np.pi  # flipped: heading accuracy ~0
        # turned by ~pi/2: square-ish boxes still match, heading accuracy ~0.5 (the
        # `min_heading_accuracy` rule decides them)
        quarter = (turn >= 0.15) & (turn < 0.27)
        p_boxes[quarter, 6] += rng.choice([-1, 1], int(quarter.sum())) \
            * rng.uniform(np.pi / 2 - 0.3, np.pi / 2 + 0.3, int(quarter.sum()))
        dup = rng.random(m) < 0.1  # duplicates: a second, slightly shifted prediction
        d_boxes = p_boxes[dup].copy()
        d_boxes[:, :2] += rng.normal(0, 0.1, (int(dup.sum()), 2)) * d_boxes[:, 3:5]
        d_boxes[:, 6] += rng.normal(0, 0.5, int(dup.sum()))
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


def frame_key(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment names, timestamps in micros) of frame ids: 200 frames a segment, 10 Hz."""
    names = np.array([f"crosscheck_{s:04d}" for s in range(int(frame.max(initial=0)) //
                                                            FRAMES_PER_SEGMENT + 1)])
    return (names[frame // FRAMES_PER_SEGMENT],
            1_000_000 + (frame % FRAMES_PER_SEGMENT).astype(np.int64) * 100_000)


def write_files(scenes: dict[str, np.ndarray], work: Path) -> tuple[Path, Path]:
    """The scenes as a user scores them: (`predictions.parquet` in the `waymo_boxes` format,
    a v2 `references/lidar_box/` folder of one Parquet file per segment). The float32 boxes
    and scores are written as float64 columns, so both halves see the same values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seg, stamp = frame_key(scenes["pd_frame"])
    table = {"context_name": pa.array(seg, pa.string()), "timestamp": pa.array(stamp)}
    for c, name in enumerate(PRED_COLS):
        table[name] = pa.array(scenes["pd_bbox"][:, c].astype(np.float64))
    table["type"] = pa.array(scenes["pd_type"].astype(np.int8))
    table["score"] = pa.array(scenes["pd_score"].astype(np.float64))
    predictions = work / "predictions.parquet"
    pq.write_table(pa.table(table), predictions)

    folder = work / "references" / "lidar_box"
    folder.mkdir(parents=True, exist_ok=True)
    seg, stamp = frame_key(scenes["gt_frame"])
    for name in np.unique(seg):
        sel = np.nonzero(seg == name)[0]
        cols = {SEGMENT_COL: pa.array(seg[sel], pa.string()), TIME_COL: pa.array(stamp[sel]),
                OBJECT_COL: pa.array([f"obj{i}" for i in sel], pa.string())}
        for c, col in enumerate(BOX_COLS):
            cols[col] = pa.array(scenes["gt_bbox"][sel, c].astype(np.float64))
        cols[f"{BOX}.type"] = pa.array(scenes["gt_type"][sel].astype(np.int8))
        cols[f"{BOX}.num_lidar_points_in_box"] = pa.array(
            scenes["gt_num_points"][sel].astype(np.int32))
        cols[f"{BOX}.difficulty_level.detection"] = pa.array(
            scenes["gt_difficulty"][sel].astype(np.int8))
        pq.write_table(pa.table(cols), folder / f"{name}.parquet")
    return predictions, folder.parent


def run_measured(cmd: list[str], env: dict[str, str] | None = None, stdout: Any = None
                 ) -> dict[str, float]:
    """Wall seconds, CPU seconds (user + system), peak RSS in MiB and exit status of a
    child process, from `wait4`: the child's own figures, not this process's."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": time.perf_counter() - started,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "status": proc.returncode}


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """The fastest of repeated runs (wall and CPU each), and the largest peak RSS."""
    return {"seconds": min(r["seconds"] for r in runs),
            "cpu_seconds": min(r["cpu_seconds"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "runs": len(runs)}


def refbench_heading_scores(predictions: Path, references: Path, min_heading_accuracy: float
                            ) -> dict[str, float]:
    """The same files scored in-process by the `waymo-3d` benchmark with the metric
    argument `min_heading_accuracy` set."""
    from dataclasses import replace

    from refbench.benchmarks.scoring import evaluate_file
    from refbench.registry import get_spec

    spec = get_spec("waymo-3d")
    args = dict(spec.metric.args)
    args["min_heading_accuracy"] = min_heading_accuracy
    spec = replace(spec, metric=replace(spec.metric, args=tuple(args.items())))
    result = evaluate_file(spec, predictions, references=references)
    return {k: v for k, v in result.metrics.items() if k != "sampled_interval"}


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


def official_config(min_heading_accuracy: float | None = None) -> Any:
    """OpenPCDet's default 3D config (OBJECT_TYPE, LEVEL_1/2, Hungarian, IoU 0.7/0.5/0.5/0.5,
    cut-offs 0.00..0.99 + 1.0) with the RANGE breakdown added (same difficulties), and
    `min_heading_accuracy` when given (else the proto default, -1)."""
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
    if min_heading_accuracy is not None:
        config.min_heading_accuracy = min_heading_accuracy
    return config


def official_scores(scenes: dict[str, np.ndarray], min_heading_accuracy: float | None = None,
                    repeat: int = 1) -> tuple[dict[str, float], dict[str, float]]:
    """(the official op's AP / APH keyed like refbench's metric, the best wall and CPU
    seconds of `repeat` calls of the op: its compute, without imports and reading)."""
    import tensorflow as tf
    from waymo_open_dataset.metrics.ops import py_metrics_ops
    from waymo_open_dataset.protos import breakdown_pb2

    keep, diff = openpcdet_difficulty(scenes["gt_num_points"], scenes["gt_difficulty"])
    n_pd = len(scenes["pd_bbox"])
    inputs = {
        "prediction_bbox": tf.constant(scenes["pd_bbox"], tf.float32),
        "prediction_type": tf.constant(scenes["pd_type"], tf.uint8),
        "prediction_score": tf.constant(scenes["pd_score"], tf.float32),
        "prediction_frame_id": tf.constant(scenes["pd_frame"], tf.int64),
        "prediction_overlap_nlz": tf.zeros([n_pd], tf.bool),
        "ground_truth_bbox": tf.constant(scenes["gt_bbox"][keep], tf.float32),
        "ground_truth_type": tf.constant(scenes["gt_type"][keep], tf.uint8),
        "ground_truth_frame_id": tf.constant(scenes["gt_frame"][keep], tf.int64),
        "ground_truth_difficulty": tf.constant(diff[keep], tf.uint8),
        "config": official_config(min_heading_accuracy).SerializeToString()}
    runs = []
    for _ in range(max(repeat, 1)):
        started, cpu = time.perf_counter(), time.process_time()
        out = py_metrics_ops.detection_metrics(**inputs)
        ap, aph, breakdown = out[0].numpy(), out[1].numpy(), out[-1].numpy()
        runs.append({"seconds": time.perf_counter() - started,
                     "cpu_seconds": time.process_time() - cpu, "peak_rss_mib": 0.0})
    timing = best_of(runs)
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
    return result, timing


# -- driver -----------------------------------------------------------------------------
def _has_waymo(python: str) -> bool:
    """Whether `python` exists and can find the `waymo_open_dataset` package."""
    if not Path(python).exists():
        return False
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('waymo_open_dataset') is None)"
    result = subprocess.run([python, "-c", probe], check=False, capture_output=True)
    return result.returncode == 0


def compare(ref: dict[str, float], off: dict[str, float], title: str) -> dict[str, float]:
    """Print both side by side; return the max absolute difference per metric family."""
    print(f"\n== {title}\n{'key':40s} {'refbench':>10s} {'official':>10s} {'|diff|':>10s}")
    families: dict[str, float] = {}
    for key in sorted(set(ref) | set(off)):
        r, o = ref.get(key, math.nan), off.get(key, math.nan)
        d = abs(r - o)
        print(f"{key:40s} {r:10.6f} {o:10.6f} {d:10.2e}" + ("   <--" if d > 1e-4 else ""))
        parts = key.split("/")
        fam = f"{parts[1]}/{'RANGE' if len(parts) == 4 else 'ALL'}/{parts[-1]}"
        families[fam] = max(families.get(fam, 0.0), d if not math.isnan(d) else math.inf)
    print(f"\nmax |diff| per level / breakdown / kind ({title}):")
    for fam in sorted(families):
        print(f"  {fam:20s} {families[fam]:.3e}")
    print(f"overall max |diff| ({title}): {max(families.values()):.3e}")
    return families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["all", "refbench", "official", "compare"],
                        default="all", help="which half to run (default: all three steps)")
    parser.add_argument("--workdir", type=Path, help="folder for scenes.npz / *.json "
                        "(default: a new temp folder)")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--min-boxes", type=int, default=3,
                        help="fewest ground truth boxes a frame (default %(default)s)")
    parser.add_argument("--max-boxes", type=int, default=30,
                        help="most ground truth boxes a frame (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="time refbench's process and the op this many times each and "
                             "report the best (default %(default)s)")
    parser.add_argument("--min-heading-accuracy", type=float, default=0.5,
                        help="the config value of the second comparison (default "
                             "%(default)s; the first uses the proto default, -1)")
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
        plain, timing = official_scores(scenes, repeat=args.repeat)
        heading, _ = official_scores(scenes, args.min_heading_accuracy)
        (work / "official.json").write_text(json.dumps(plain, indent=1))
        (work / "official_heading.json").write_text(json.dumps(heading, indent=1))
        (work / "official_time.json").write_text(json.dumps(timing))
        return 0
    if args.stage in ("all", "refbench"):
        if args.stage == "all" and not _has_waymo(args.waymo_python):
            print(f"no waymo_open_dataset in {args.waymo_python}: {INSTALL_HINT}",
                  file=sys.stderr)
            return 2
        scenes = make_scenes(args.frames, args.seed, args.min_boxes, args.max_boxes)
        np.savez(work / "scenes.npz", **scenes)
        predictions, references = write_files(scenes, work)
        print(f"{len(scenes['gt_bbox'])} ground truth / {len(scenes['pd_bbox'])} predicted "
              f"boxes in {args.frames} frames; work folder {work}")
        cmd = [sys.executable, "-m", "refbench", "evaluate", "waymo-3d", "--predictions",
               str(predictions), "--references", str(references), "--output",
               str(work / "result.json"), "--json"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        runs = []
        for _ in range(max(args.repeat, 1)):
            with open(work / "refbench_stdout.json", "w") as out:
                runs.append(run_measured(cmd, env, stdout=out))
            if runs[-1]["status"] != 0:
                print(f"refbench evaluate failed: {' '.join(cmd)}", file=sys.stderr)
                return 1
        timing = best_of(runs)
        (work / "refbench_time.json").write_text(json.dumps(timing))
        print(f"refbench evaluate waymo-3d, whole process: {timing['seconds']:.2f} s wall, "
              f"{timing['cpu_seconds']:.2f} s CPU, peak RSS {timing['peak_rss_mib']:.0f} MiB")
        (work / "refbench_heading.json").write_text(json.dumps(refbench_heading_scores(
            predictions, references, args.min_heading_accuracy), indent=1))
    if args.stage == "all":
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        run = run_measured([args.waymo_python, __file__, "--stage", "official", "--workdir",
                            str(work), "--min-heading-accuracy",
                            repr(args.min_heading_accuracy), "--repeat", str(args.repeat)],
                           env)
        if run["status"] != 0:
            print("the official stage failed", file=sys.stderr)
            return 1
        (work / "official_process.json").write_text(json.dumps(run))
    if args.stage in ("all", "compare"):
        result = json.loads((work / "result.json").read_text())
        ref = {k: v for k, v in result["metrics"].items() if k != "sampled_interval"}
        compare(ref, json.loads((work / "official.json").read_text()),
                "refbench evaluate (result.json) vs the op, proto default config")
        compare(json.loads((work / "refbench_heading.json").read_text()),
                json.loads((work / "official_heading.json").read_text()),
                f"min_heading_accuracy {args.min_heading_accuracy}")
        mine = json.loads((work / "refbench_time.json").read_text())
        op = json.loads((work / "official_time.json").read_text())
        print(f"\ntiming, same scenes (best of {mine['runs']} / {op['runs']} runs):")
        print(f"  refbench evaluate waymo-3d, whole process: {mine['seconds']:.2f} s wall, "
              f"{mine['cpu_seconds']:.2f} s CPU, peak RSS {mine['peak_rss_mib']:.0f} MiB")
        print(f"  official op compute (the detection_metrics call only): "
              f"{op['seconds']:.2f} s wall, {op['cpu_seconds']:.2f} s CPU")
        official_process = work / "official_process.json"
        if official_process.is_file():
            proc = json.loads(official_process.read_text())
            print(f"  official stage process (TF import, reading, the op calls): "
                  f"{proc['seconds']:.2f} s wall, peak RSS {proc['peak_rss_mib']:.0f} MiB")
        print(f"  ratio refbench whole process / op compute: "
              f"{mine['seconds'] / op['seconds']:.2f} wall, "
              f"{mine['cpu_seconds'] / op['cpu_seconds']:.2f} CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
