"""Forward latency of the pure-PyTorch VoTr backbone against SECOND's sparse-conv backbone.

Builds one KITTI-like voxel set: a synthetic street scan (`refbench.datasets.synth`)
voxelised with VoTr's KITTI grid (0.05 x 0.05 x 0.1 m over [0, -40, -3, 70.4, 40, 1]), mean
point features; topped up with uniformly random voxels, or randomly subsampled, to
`--voxels`. Then times `VoxelTransformer` and `second.VoxelBackBone8x` on the same input,
interleaved in one process (eval mode, no_grad, 2 threads), and prints the median latency
of each and the ratio VoTr / SECOND.

    .venv/bin/python perf/votr.py [--voxels 16000] [--repeats 5] [--seed 0] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

VOXEL_SIZE = np.array([0.05, 0.05, 0.1])
PC_RANGE = np.array([0.0, -40.0, -3.0, 70.4, 40.0, 1.0])
GRID = np.round((PC_RANGE[3:] - PC_RANGE[:3]) / VOXEL_SIZE).astype(np.int64)  # nx, ny, nz


def scan_points(seed: int) -> np.ndarray:
    """One synthetic street scan (N, 4), or an empty array if the synthesizer is missing."""
    try:
        from refbench.datasets.kitti.synth import synth_frame
        from refbench.datasets.lidar_synth import LidarSpec
    except ImportError:
        return np.zeros((0, 4), np.float32)
    points = synth_frame(np.random.default_rng(seed), LidarSpec())[0]
    return np.asarray(points, dtype=np.float32)


def voxel_set(n_voxels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (V, 4), coords (V, 4) int32 [0, z, y, x]) with exactly `n_voxels` rows."""
    rng = np.random.default_rng(seed)
    pts = scan_points(seed)
    cell = np.floor((pts[:, :3] - PC_RANGE[:3]) / VOXEL_SIZE).astype(np.int64)
    keep = np.all((cell >= 0) & (cell < GRID), axis=1)
    pts, cell = pts[keep], cell[keep]
    uniq, inv = np.unique(cell, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    feats = np.zeros((len(uniq), 4))
    np.add.at(feats, inv, pts)
    feats /= np.bincount(inv, minlength=len(uniq))[:, None]
    if len(uniq) > n_voxels:
        pick = rng.choice(len(uniq), n_voxels, replace=False)
        uniq, feats = uniq[pick], feats[pick]
    elif len(uniq) < n_voxels:  # top up with random voxels not yet present
        seen = {tuple(c) for c in uniq}
        extra = []
        while len(extra) < n_voxels - len(uniq):
            c = tuple(int(rng.integers(0, g)) for g in GRID)
            if c not in seen:
                seen.add(c)
                extra.append(c)
        extra_arr = np.array(extra).reshape(-1, 3)
        centres = (extra_arr + 0.5) * VOXEL_SIZE + PC_RANGE[:3]
        uniq = np.concatenate([uniq, extra_arr])
        feats = np.concatenate([feats, np.column_stack([centres, rng.uniform(0, 0.5, len(extra_arr))])])
    zyx = uniq[:, ::-1]
    coords = np.column_stack([np.zeros(len(zyx), np.int64), zyx]).astype(np.int32)
    return torch.from_numpy(feats.astype(np.float32)), torch.from_numpy(coords)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voxels", type=int, default=16000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    from refbench.baselines.det3d.votr import VoxelTransformer
    feats, coords = voxel_set(args.voxels, args.seed)
    feats, coords = feats.to(device), coords.to(device)
    grid = [int(g) for g in GRID]
    models = {"votr": VoxelTransformer(4, grid).to(device).eval()}
    try:
        from refbench.baselines.det3d.second import VoxelBackBone8x
        models["second"] = VoxelBackBone8x(4, grid).to(device).eval()
    except ImportError as err:  # spconv or the module missing: time VoTr alone
        print(f"SECOND backbone unavailable ({err}); timing VoTr only")

    def run(name: str) -> float:
        batch = {"voxel_features": feats, "voxel_coords": coords, "batch_size": 1}
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        models[name](batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for name in models:  # warm-up
            run(name)
        for _ in range(args.repeats):
            for name in models:
                times[name].append(run(name))
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    print(f"voxels={len(coords)} repeats={args.repeats} threads={args.threads} device={device}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in models:
        print(f"{k:7s} median {med[k] * 1000:9.1f} ms   params {params[k]:,}")
    if "second" in med:
        print(f"ratio VoTr/SECOND {med['votr'] / med['second']:.2f}")


if __name__ == "__main__":
    main()
