"""A synthetic Waymo v2 release: ray-cast range images of a simple moving scene.

Writes `{training,validation,testing}/{lidar,lidar_calibration,lidar_box,stats}/<segment>
.parquet` with the official v2 column names and types. Each frame is a flat ground
(z = 0 in the vehicle frame) with upright boxes (vehicles, pedestrians, cyclists, signs)
moving at constant velocity; their bottoms float 5 cm above the ground so a ground point is
never inside a box. Two lidars are simulated: TOP (per-row beam inclination `values`, a
small yaw in its extrinsic, a second return on the ground behind every box hit) and FRONT
(uniform inclinations from `min`/`max`, `values` null). Every ray is cast exactly with the
official range-image geometry, so the reader's points lie on the surfaces, and
`num_lidar_points_in_box` counts the points (both returns) inside each box. `testing` has
no `lidar_box`. Output is a pure function of (n, seed).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from refbench.datasets.waymo.reader import azimuths, beam_inclinations
from refbench.io import atomic_write_bytes

#: type -> (length, width, height)
SIZES = {1: (4.5, 2.0, 1.6), 2: (0.8, 0.8, 1.8), 3: (0.6, 0.15, 0.8), 4: (1.8, 0.8, 1.7)}
LIFT = 0.05
MAX_RANGE = 75.0
START_MICROS = 1552440195362591


def _rotation_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _transform(yaw: float, t: tuple[float, float, float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = _rotation_z(yaw)
    out[:3, 3] = t
    return out


#: laser name -> (extrinsic, height, width, inclination min, max, per-row values or None)
LASERS: dict[int, tuple[np.ndarray, int, int, float, float, np.ndarray | None]] = {
    1: (_transform(0.05, (1.4, 0.0, 2.2)), 32, 480, -0.30, 0.04,
        np.sort(np.concatenate([np.linspace(-0.30, -0.08, 20), np.linspace(-0.07, 0.04, 12)]))),
    2: (_transform(0.0, (4.0, 0.0, 0.8)), 8, 64, -0.50, 0.10, None),
}


def ray_box(origin: np.ndarray, dirs: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entry t, exit t) of rays against one upright box (inf where missed)."""
    rot = _rotation_z(box[6])
    o = rot.T @ (origin - box[:3])
    d = dirs @ rot  # R^T d for each row
    half = box[3:6] / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (near <= far) & (near > 0)
    return np.where(hit, near, np.inf), np.where(hit, far, np.inf)


def cast(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first range, hit box index or -1 for ground / -2 none, second range) per ray."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = np.where(dirs[:, 2] < 0, -origin[2] / dirs[:, 2], np.inf)
    best = ground.copy()
    which = np.where(np.isfinite(ground), -1, -2)
    exits = np.full(len(dirs), np.inf)
    for i, box in enumerate(boxes):
        near, far = ray_box(origin, dirs, box)
        closer = near < best
        best = np.where(closer, near, best)
        which = np.where(closer, i, which)
        exits = np.where(closer, far, exits)
    first = np.where(best <= MAX_RANGE, best, 0.0)
    which = np.where(best <= MAX_RANGE, which, -2)
    second = np.where((which >= 0) & (ground > exits) & (ground <= MAX_RANGE), ground, 0.0)
    return first, which, second


def _scene(rng: np.random.Generator, n_objects: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes at t=0 [K, 7], velocities [K, 2], types [K]) of one segment."""
    types = rng.choice([1, 1, 2, 4, 3], size=n_objects)
    boxes = []
    for t in types:
        length, width, height = SIZES[int(t)]
        dist, ang = rng.uniform(6.0, 45.0), rng.uniform(-np.pi, np.pi)
        z = (2.0 if t == 3 else 0.0) + height / 2 + LIFT
        boxes.append([dist * np.cos(ang), dist * np.sin(ang), z, length, width, height,
                      rng.uniform(-np.pi, np.pi)])
    speed = np.where(types == 1, 5.0, np.where(types == 3, 0.0, 1.2))
    boxes_arr = np.array(boxes)
    vel = np.stack([np.cos(boxes_arr[:, 6]), np.sin(boxes_arr[:, 6])], 1) * speed[:, None]
    return boxes_arr, vel, types


def _frame(boxes: np.ndarray) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """({laser: (return1 [H, W, 4], return2)}, points per box) of one frame."""
    images = {}
    counts = np.zeros(len(boxes), dtype=np.int64)
    for laser, (ext, height, width, low, high, values) in LASERS.items():
        incl = beam_inclinations(height, low, high, values)[:, None]
        az = azimuths(width, ext)[None, :]
        d_sensor = np.stack([np.cos(az) * np.cos(incl), np.sin(az) * np.cos(incl),
                             np.sin(incl) + 0 * az], -1).reshape(-1, 3)
        dirs = d_sensor @ ext[:3, :3].T
        first, which, second = cast(ext[:3, 3], dirs, boxes)
        if laser != 1:
            second = np.zeros_like(second)
        counts += np.bincount(which[which >= 0], minlength=len(boxes))
        r1 = np.stack([first, np.where(which >= 0, 0.8, 0.2), np.full_like(first, 0.05),
                       np.full_like(first, -1.0)], -1)
        r2 = np.stack([second, np.full_like(second, 0.1), np.full_like(second, 0.3),
                       np.full_like(second, -1.0)], -1)
        r1[first == 0, :3] = [-1.0, 0.0, 0.0]
        r2[second == 0, :3] = [-1.0, 0.0, 0.0]
        images[laser] = (r1.reshape(height, width, 4), r2.reshape(height, width, 4))
    return images, counts


def _write(path: Path, columns: dict[str, Any], schema: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: pa.array(v, type=schema[k]) for k, v in columns.items()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def write_segment(root: Path, split: str, seg: str, n_frames: int, seed: int) -> None:
    """Write every component of one synthetic segment."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    boxes0, vel, types = _scene(rng, int(rng.integers(4, 8)))
    key = {"key.segment_context_name": pa.string(), "key.frame_timestamp_micros": pa.int64()}
    img = {"values": pa.list_(pa.float32()), "shape": pa.list_(pa.int32(), 3)}
    lidar: dict[str, list] = {k: [] for k in ("seg", "t", "laser", "v1", "s1", "v2", "s2")}
    box_cols: dict[str, list] = {}
    stats: dict[str, list] = {"seg": [], "t": [], "types": [], "counts": []}
    for f in range(n_frames):
        stamp = START_MICROS + seed * 10**8 + f * 100_000
        boxes = boxes0.copy()
        boxes[:, :2] += vel * 0.1 * f
        images, counts = _frame(boxes)
        for laser, (r1, r2) in images.items():
            for name, value in (("seg", seg), ("t", stamp), ("laser", laser),
                                ("v1", r1.ravel()), ("s1", list(r1.shape)),
                                ("v2", r2.ravel()), ("s2", list(r2.shape))):
                lidar[name].append(value)
        keep = counts > 0
        rows = {"key.segment_context_name": [seg] * int(keep.sum()),
                "key.frame_timestamp_micros": [stamp] * int(keep.sum()),
                "key.laser_object_id": [f"obj{i:03d}" for i in np.nonzero(keep)[0]]}
        for j, part in enumerate(("center.x", "center.y", "center.z", "size.x", "size.y",
                                  "size.z", "heading")):
            rows[f"[LiDARBoxComponent].box.{part}"] = boxes[keep, j].tolist()
        rows["[LiDARBoxComponent].type"] = types[keep].tolist()
        rows["[LiDARBoxComponent].num_lidar_points_in_box"] = counts[keep].tolist()
        rows["[LiDARBoxComponent].num_top_lidar_points_in_box"] = counts[keep].tolist()
        rows["[LiDARBoxComponent].difficulty_level.detection"] = (
            np.where(counts[keep] <= 5, 2, 0).tolist())
        rows["[LiDARBoxComponent].difficulty_level.tracking"] = [0] * int(keep.sum())
        for k, v in rows.items():
            box_cols.setdefault(k, []).extend(v)
        present = sorted(set(types[keep].tolist()))
        stats["seg"].append(seg)
        stats["t"].append(stamp)
        stats["types"].append(present)
        stats["counts"].append([int((types[keep] == t).sum()) for t in present])
    folder = Path(root) / split
    _write(folder / "lidar" / f"{seg}.parquet", {
        "key.segment_context_name": lidar["seg"], "key.frame_timestamp_micros": lidar["t"],
        "key.laser_name": lidar["laser"],
        "[LiDARComponent].range_image_return1.values": lidar["v1"],
        "[LiDARComponent].range_image_return1.shape": lidar["s1"],
        "[LiDARComponent].range_image_return2.values": lidar["v2"],
        "[LiDARComponent].range_image_return2.shape": lidar["s2"]},
        {**key, "key.laser_name": pa.int8(),
         "[LiDARComponent].range_image_return1.values": img["values"],
         "[LiDARComponent].range_image_return1.shape": img["shape"],
         "[LiDARComponent].range_image_return2.values": img["values"],
         "[LiDARComponent].range_image_return2.shape": img["shape"]})
    calib = "[LiDARCalibrationComponent]"
    _write(folder / "lidar_calibration" / f"{seg}.parquet", {
        "key.segment_context_name": [seg] * len(LASERS), "key.laser_name": list(LASERS),
        f"{calib}.extrinsic.transform": [v[0].ravel() for v in LASERS.values()],
        f"{calib}.beam_inclination.min": [v[3] for v in LASERS.values()],
        f"{calib}.beam_inclination.max": [v[4] for v in LASERS.values()],
        f"{calib}.beam_inclination.values": [None if v[5] is None else v[5].tolist()
                                             for v in LASERS.values()]},
        {"key.segment_context_name": pa.string(), "key.laser_name": pa.int8(),
         f"{calib}.extrinsic.transform": pa.list_(pa.float64(), 16),
         f"{calib}.beam_inclination.min": pa.float64(),
         f"{calib}.beam_inclination.max": pa.float64(),
         f"{calib}.beam_inclination.values": pa.list_(pa.float64())})
    stat = "[StatsComponent]"
    _write(folder / "stats" / f"{seg}.parquet", {
        "key.segment_context_name": stats["seg"], "key.frame_timestamp_micros": stats["t"],
        f"{stat}.time_of_day": ["Day"] * n_frames, f"{stat}.location": ["location_synth"] *
        n_frames, f"{stat}.weather": ["sunny"] * n_frames,
        f"{stat}.lidar_object_counts.types": stats["types"],
        f"{stat}.lidar_object_counts.counts": stats["counts"]},
        {**key, f"{stat}.time_of_day": pa.string(), f"{stat}.location": pa.string(),
         f"{stat}.weather": pa.string(), f"{stat}.lidar_object_counts.types": pa.list_(pa.int8()),
         f"{stat}.lidar_object_counts.counts": pa.list_(pa.int32())})
    if split != "testing":
        box = "[LiDARBoxComponent]"
        schema = {**key, "key.laser_object_id": pa.string(), f"{box}.type": pa.int8(),
                  f"{box}.num_lidar_points_in_box": pa.int64(),
                  f"{box}.num_top_lidar_points_in_box": pa.int64(),
                  f"{box}.difficulty_level.detection": pa.int8(),
                  f"{box}.difficulty_level.tracking": pa.int8()}
        schema.update({f"{box}.box.{p}": pa.float64() for p in (
            "center.x", "center.y", "center.z", "size.x", "size.y", "size.z", "heading")})
        _write(folder / "lidar_box" / f"{seg}.parquet", box_cols, schema)


def synthesize_waymo(out: Path, n: int = 200, seed: int = 0) -> Path:
    """Write the synthetic release under `out`: `n` frames in all, in segments of up to 10
    (at least one segment of two frames per split); returns `out`."""
    out = Path(out)
    per_split = {"training": max(2, n // 2), "validation": max(2, n // 4),
                 "testing": max(2, n // 4)}
    for s_i, (split, frames) in enumerate(per_split.items()):
        seg_i = 0
        while frames > 0:
            count = min(frames, 10)
            seg_seed = seed * 1000 + s_i * 100 + seg_i
            seg = f"{10**18 + seg_seed * 7919:019d}_{1000 + seg_i}_000_{1020 + seg_i}_000"
            write_segment(out, split, seg, max(count, 2), seg_seed)
            frames -= count
            seg_i += 1
    return out
