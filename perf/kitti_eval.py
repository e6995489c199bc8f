"""Speed of the KITTI evaluation (`kitti_ap`) on a val-sized synthetic set.

Generates 3769 frames (the size of KITTI val) with about 10 ground-truth objects and 30
detections each over Car / Pedestrian / Cyclist (seeded): detections are jittered copies
of most ground truth, some duplicates, and random false positives; then times
`kitti_eval` over the three classes and prints frames/s. Target: < 10 s on 2 cores.

    .venv/bin/python perf/kitti_eval.py [--frames 3769] [--seed 0] [--overlap strict]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

#: class -> (h, w, l) mean size in metres
SIZES = {"Car": (1.5, 1.6, 3.9), "Pedestrian": (1.75, 0.6, 0.8), "Cyclist": (1.7, 0.6, 1.8)}
FOCAL, CX, CY = 721.5, 609.6, 172.9


def _project(loc: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """A rough 2D box of a camera-frame box (pinhole with KITTI's P2 intrinsics)."""
    x, y, z = loc[:, 0], loc[:, 1], np.maximum(loc[:, 2], 2.0)
    h, half = dims[:, 0], np.maximum(dims[:, 1], dims[:, 2]) / 2
    left = FOCAL * (x - half) / z + CX
    right = FOCAL * (x + half) / z + CX
    top = FOCAL * (y - h) / z + CY
    bottom = FOCAL * y / z + CY
    return np.column_stack([left, top, right, bottom])


def random_objects(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n ground-truth objects of one frame with label_2 fields."""
    names = rng.choice(list(SIZES), size=n, p=[0.7, 0.2, 0.1])
    dims = np.array([SIZES[c] for c in names]) * rng.uniform(0.85, 1.15, (n, 3))
    loc = np.column_stack([rng.uniform(-15, 15, n), rng.normal(1.6, 0.1, n),
                           rng.uniform(5, 60, n)])
    ry = rng.uniform(-np.pi, np.pi, n)
    return {"name": names, "truncated": rng.choice([0.0, 0.1, 0.4], n, p=[0.7, 0.2, 0.1]),
            "occluded": rng.choice([0, 1, 2, 3], n, p=[0.5, 0.3, 0.15, 0.05]).astype(float),
            "alpha": ry - np.arctan2(loc[:, 0], loc[:, 2]), "bbox": _project(loc, dims),
            "dimensions": dims, "location": loc, "rotation_y": ry}


def detections_of(rng: np.random.Generator, gt: dict[str, np.ndarray],
                  n: int) -> dict[str, np.ndarray]:
    """About n detections: jittered copies of ~85% of gt, ~15% duplicates, then random FPs."""
    keep = np.flatnonzero(rng.random(len(gt["name"])) < 0.85)
    dup = keep[rng.random(len(keep)) < 0.15]
    src = np.concatenate([keep, dup])
    m = len(src)
    loc = gt["location"][src] + rng.normal(0, [0.15, 0.05, 0.25], (m, 3))
    dims = gt["dimensions"][src] * rng.normal(1, 0.05, (m, 3))
    ry = gt["rotation_y"][src] + rng.normal(0, 0.1, m)
    fp = random_objects(rng, max(n - m, 0))
    det = {"name": np.concatenate([gt["name"][src], fp["name"]]),
           "truncated": np.full(m + len(fp["name"]), -1.0),
           "occluded": np.full(m + len(fp["name"]), -1.0),
           "alpha": np.concatenate([ry - np.arctan2(loc[:, 0], loc[:, 2]), fp["alpha"]]),
           "bbox": np.concatenate([_project(loc, dims), fp["bbox"]]),
           "dimensions": np.concatenate([dims, fp["dimensions"]]),
           "location": np.concatenate([loc, fp["location"]]),
           "rotation_y": np.concatenate([ry, fp["rotation_y"]])}
    det["score"] = np.concatenate([rng.uniform(0.3, 1.0, m),
                                   rng.uniform(0.0, 0.7, len(fp["name"]))])
    return det


def make_scenes(frames: int, seed: int, n_gt: int = 10, n_dt: int = 30) -> tuple[list, list]:
    """(ground-truth frames, detection frames), seeded."""
    rng = np.random.default_rng(seed)
    gts, dts = [], []
    for _ in range(frames):
        gt = random_objects(rng, int(rng.integers(n_gt - 3, n_gt + 4)))
        gts.append(gt)
        dts.append(detections_of(rng, gt, int(rng.integers(n_dt - 5, n_dt + 6))))
    return gts, dts


def main() -> None:
    from refbench.evaluation.kitti import kitti_eval

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3769)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overlap", default="strict", choices=["strict", "loose"])
    args = parser.parse_args()
    gts, dts = make_scenes(args.frames, args.seed)
    n_gt = sum(len(g["name"]) for g in gts)
    n_dt = sum(len(d["name"]) for d in dts)
    start = time.perf_counter()
    result = kitti_eval(gts, dts, ["Car", "Pedestrian", "Cyclist"], args.overlap)
    seconds = time.perf_counter() - start
    print(f"frames={args.frames} gt={n_gt} detections={n_dt} overlap={args.overlap}")
    print(f"Car/3d/moderate/R40={result['Car/3d/moderate/R40']:.2f} "
          f"mean/3d/moderate/R40={result['mean/3d/moderate/R40']:.2f}")
    print(f"time={seconds:.2f}s frames/s={args.frames / seconds:.0f} "
          f"target<10s: {'met' if seconds < 10 else f'missed by {seconds / 10:.1f}x'}")


if __name__ == "__main__":
    main()
