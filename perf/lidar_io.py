"""KITTI frame loading + voxelisation: refbench's readers against a plain `np.fromfile`.

Three ways to get a frame's points, each followed by the same numpy voxelisation
(0.05 x 0.05 x 0.1 m voxels in the usual KITTI range [0, 70.4] x [-40, 40] x [-3, 1],
at most 5 points per voxel and 40000 voxels, as VoTr's and SECOND's KITTI configs use):

- raw: `np.fromfile(path, np.float32).reshape(-1, 4)` (the baseline every repo uses);
- reader: `refbench.datasets.kitti.read_velodyne` (checks the size, same points);
- cache: the prepared Arrow cache through `load_prepared(...).with_format("numpy")`
  (points already cropped to the camera's field of view), compared against raw +
  the same FOV crop so both sides produce the same points.

All in one process, files warm in the page cache (one untimed pass first); the median
of `--repeats` passes is reported with the ratios. Without `--root` a synthetic release
is written to a temporary folder.

Then Waymo v1 records: a `--record-mb` TFRecord file (1 MB records of random bytes) read
and checksum-verified by `refbench.datasets.waymo.v1.scan` against plain chunked reading of
the same file, with the CRC32C backend in use (google-crc32c's C code, or the pure-Python
fallback when the package is missing).

    python perf/lidar_io.py [--root KITTI_ROOT] [--frames 40] [--repeats 5] [--record-mb 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from refbench.datasets.kitti import geometry as geo
from refbench.datasets.base import load_prepared
from refbench.datasets.kitti.builder import KittiBuilder, read_image_set, read_velodyne

VOXEL = np.array([0.05, 0.05, 0.1])
RANGE = np.array([0.0, -40.0, -3.0, 70.4, 40.0, 1.0])


def voxelize(points: np.ndarray, max_points: int = 5, max_voxels: int = 40000
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(voxels (V, max_points, 4), coords (V, 3) z/y/x, points per voxel (V,)).

    Points outside RANGE are dropped; voxels are ordered by their linear index and the
    first `max_points` points (in file order) of each voxel are kept."""
    lo, hi = RANGE[:3], RANGE[3:]
    inside = np.all((points[:, :3] >= lo) & (points[:, :3] < hi), axis=1)
    pts = points[inside]
    grid = np.round((hi - lo) / VOXEL).astype(np.int64)
    idx = ((pts[:, :3] - lo) / VOXEL).astype(np.int64)
    idx = np.minimum(idx, grid - 1)
    key = (idx[:, 2] * grid[1] + idx[:, 1]) * grid[0] + idx[:, 0]
    order = np.argsort(key, kind="stable")
    uniq, start, counts = np.unique(key[order], return_index=True, return_counts=True)
    vox_id = np.repeat(np.arange(uniq.size), counts)
    rank = np.arange(order.size) - np.repeat(start, counts)
    sel = (rank < max_points) & (vox_id < max_voxels)
    n_vox = min(uniq.size, max_voxels)
    voxels = np.zeros((n_vox, max_points, 4), np.float32)
    voxels[vox_id[sel], rank[sel]] = pts[order[sel]]
    u = uniq[:n_vox]
    coords = np.column_stack([u // (grid[0] * grid[1]), (u // grid[0]) % grid[1], u % grid[0]])
    return voxels, coords, np.minimum(counts[:n_vox], max_points)


def _time(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    fn()  # warm-up: page cache, imports, Arrow memory map
    runs, voxels = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        voxels = fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), voxels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="a KITTI root (default: synthetic)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--record-mb", type=int, default=100,
                        help="size of the TFRecord file for the v1 reading check (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        builder = KittiBuilder()
        root = args.root or builder.synthesize(Path(tmp) / "src", n=args.frames, seed=0)
        cache = Path(tmp) / "cache"
        builder.prepare(root, cache)
        split = "train"
        ids = read_image_set(root, split)[: args.frames]
        paths = [root / "training" / "velodyne" / f"{fid}.bin" for fid in ids]
        rows = load_prepared("kitti", split=split, cache_dir=str(cache)).with_format("numpy")
        meta = [(geo.Calibration.from_row(rows[i]["calib"]), tuple(rows[i]["image_shape"]))
                for i in range(len(ids))]

        def raw() -> int:
            return sum(len(voxelize(np.fromfile(p, np.float32).reshape(-1, 4))[0]) for p in paths)

        def reader() -> int:
            return sum(len(voxelize(read_velodyne(p))[0]) for p in paths)

        def raw_fov() -> int:
            total = 0
            for p, (calib, shape) in zip(paths, meta):
                pts = np.fromfile(p, np.float32).reshape(-1, 4)
                total += len(voxelize(pts[geo.fov_mask(pts, calib, shape)])[0])
            return total

        def cached() -> int:
            return sum(len(voxelize(rows[i]["points"])[0]) for i in range(len(ids)))

        results = {name: _time(fn, args.repeats) for name, fn in
                   (("raw np.fromfile", raw), ("refbench read_velodyne", reader),
                    ("raw np.fromfile + FOV crop", raw_fov), ("refbench prepared cache", cached))}
    n = len(ids)
    for name, (seconds, voxels) in results.items():
        print(f"{name:28s} {seconds / n * 1e3:8.2f} ms/frame  {n / seconds:8.1f} frames/s  "
              f"{voxels / n:9.0f} voxels/frame")
    base, fov = results["raw np.fromfile"][0], results["raw np.fromfile + FOV crop"][0]
    print(f"ratio read_velodyne / np.fromfile:            "
          f"{results['refbench read_velodyne'][0] / base:.3f}")
    print(f"ratio prepared cache / (np.fromfile + FOV crop): "
          f"{results['refbench prepared cache'][0] / fov:.3f}")
    assert results["raw np.fromfile"][1] == results["refbench read_velodyne"][1]
    assert results["raw np.fromfile + FOV crop"][1] == results["refbench prepared cache"][1]
    if args.record_mb > 0:
        records_check(args.record_mb, args.repeats)


def records_check(megabytes: int, repeats: int) -> None:
    """Reading + verifying a TFRecord file against reading its bytes in 1 MB chunks."""
    import os

    from refbench.datasets.waymo import v1

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "segment.tfrecord"
        v1.write_records(path, [os.urandom(1 << 20) for _ in range(megabytes)])

        def plain() -> int:
            total = 0
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    total += len(chunk)
            return total

        def verified() -> int:
            return sum(info.length for info in v1.scan(path))

        plain_s, _ = _time(plain, repeats)
        scan_s, data_bytes = _time(verified, max(1, repeats if v1.CRC32C_BACKEND != "pure Python"
                                                  else 1))
    size = megabytes * (1 << 20)
    print(f"TFRecord {megabytes} MB, CRC32C backend: {v1.CRC32C_BACKEND}")
    print(f"plain read                   {plain_s * 1e3:8.1f} ms  {size / plain_s / 1e6:8.0f} MB/s")
    print(f"refbench v1.scan (verified)  {scan_s * 1e3:8.1f} ms  {size / scan_s / 1e6:8.0f} MB/s")
    print(f"ratio v1.scan / plain read: {scan_s / plain_s:.2f}")
    assert data_bytes == size


if __name__ == "__main__":
    main()
