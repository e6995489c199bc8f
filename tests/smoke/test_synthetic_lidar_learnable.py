"""A tiny detector must be able to learn from the synthetic KITTI scenes.

The synthesizer is only useful for pipeline tests if its labels agree with its points:
a detector trained on `train` frames has to find the cars of held-out `val` frames.
This test trains a CenterNet-style bird's-eye-view heatmap network (pure PyTorch, a few
convolutions, no spconv) for a couple of hundred steps on CPU and checks that

* the focal loss falls clearly, and
* on `val`, heatmap peaks find most well-observed cars (recall) without many
  spurious peaks on walls, poles, bins, pedestrians or cyclists (precision),

while the same network before training does far worse, so the check can fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

# bird's-eye-view grid of the front area: x 0..40 m (forward), y -20..20 m (left)
X_RANGE = (0.0, 40.0)
Y_RANGE = (-20.0, 20.0)
CELL = 0.5
NX = int((X_RANGE[1] - X_RANGE[0]) / CELL)
NY = int((Y_RANGE[1] - Y_RANGE[0]) / CELL)
GROUND_Z = -1.73  # the synthetic sensor sits 1.73 m above a flat ground
SIGMA = 1.0  # Gaussian target radius, cells
MIN_POINTS = 20  # cars with fewer points inside their box are not scored
MATCH_DIST = 1.5  # metres between a peak and a car centre
THRESHOLD = 0.3  # heatmap score of a detection
STEPS = 200
BATCH = 8
FRAMES = 80


# -- data --------------------------------------------------------------------------------
def bev_features(points: np.ndarray) -> np.ndarray:
    """(3, NX, NY) per-cell features: log point count, max height above ground, mean
    reflectance (zero in empty cells)."""
    pts = points[(points[:, 0] >= X_RANGE[0]) & (points[:, 0] < X_RANGE[1])
                 & (points[:, 1] >= Y_RANGE[0]) & (points[:, 1] < Y_RANGE[1])]
    ix = ((pts[:, 0] - X_RANGE[0]) / CELL).astype(np.int64)
    iy = ((pts[:, 1] - Y_RANGE[0]) / CELL).astype(np.int64)
    flat = ix * NY + iy
    count = np.bincount(flat, minlength=NX * NY).astype(np.float32)
    refl = np.bincount(flat, weights=pts[:, 3], minlength=NX * NY).astype(np.float32)
    height = np.zeros(NX * NY, np.float32)
    np.maximum.at(height, flat, np.clip(pts[:, 2] - GROUND_Z, 0.0, 4.0).astype(np.float32))
    feats = np.stack([np.log1p(count), height / 2.0, refl / np.maximum(count, 1.0)])
    return feats.reshape(3, NX, NY)


def car_centres(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """(centres (K, 2) in metres, scored (K,) bool) of the Cars inside the grid; a car is
    scored when at least MIN_POINTS lidar points lie inside its box."""
    boxes = np.asarray(row["boxes_lidar"], np.float64).reshape(-1, 7)
    names = np.asarray(row["name"])
    npts = np.asarray(row["num_points"])
    keep = (names == "Car") & (boxes[:, 0] >= X_RANGE[0]) & (boxes[:, 0] < X_RANGE[1]) \
        & (boxes[:, 1] >= Y_RANGE[0]) & (boxes[:, 1] < Y_RANGE[1])
    return boxes[keep, :2], npts[keep] >= MIN_POINTS


def heatmap_target(centres: np.ndarray) -> np.ndarray:
    """(1, NX, NY) CenterNet target: a Gaussian around each car centre, exactly 1 at the
    centre's cell."""
    target = np.zeros((NX, NY), np.float32)
    gx, gy = np.meshgrid(np.arange(NX), np.arange(NY), indexing="ij")
    for x, y in centres:
        cx, cy = (x - X_RANGE[0]) / CELL, (y - Y_RANGE[0]) / CELL
        ci, cj = int(cx), int(cy)
        g = np.exp(-((gx - ci) ** 2 + (gy - cj) ** 2) / (2 * SIGMA ** 2))
        target = np.maximum(target, g.astype(np.float32))
    return target[None]


def frames(root: Path, split: str) -> list[dict]:
    from refbench.datasets.base import load_prepared

    ds = load_prepared("kitti", split=split, cache_dir=str(root / "cache")).with_format("numpy")
    return [ds[i] for i in range(len(ds))]


# -- model -------------------------------------------------------------------------------
class TinyBEVNet(nn.Module):
    """Four 3x3 convolutions (the third dilated, receptive field 13 cells = 6.5 m, enough
    to see a whole car) ending in a one-channel car-centre logit map."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1),
        )
        nn.init.constant_(self.body[-1].bias, -2.19)  # CenterNet prior: p = 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the car count."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


# -- evaluation --------------------------------------------------------------------------
def peaks(heat: torch.Tensor, threshold: float) -> list[np.ndarray]:
    """Per frame, (M, 3) detections x, y (metres), score: local maxima of the heatmap
    (3x3 max-pool NMS) above `threshold`."""
    local = heat.eq(F.max_pool2d(heat, 3, stride=1, padding=1)) & (heat > threshold)
    out = []
    for b in range(heat.shape[0]):
        ii, jj = torch.nonzero(local[b, 0], as_tuple=True)
        score = heat[b, 0, ii, jj]
        xy = torch.stack([(ii.float() + 0.5) * CELL + X_RANGE[0],
                          (jj.float() + 0.5) * CELL + Y_RANGE[0]], dim=1)
        out.append(torch.cat([xy, score[:, None]], dim=1).numpy())
    return out


def match(dets: np.ndarray, centres: np.ndarray, scored: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, scored cars) of one frame. Detections are
    matched greedily, best score first, to the nearest free car within MATCH_DIST; a
    detection on an unscored car (too few points) counts neither way."""
    free = np.ones(len(centres), bool)
    tp = fp = 0
    for det in dets[np.argsort(-dets[:, 2])]:
        dist = np.hypot(*(centres - det[:2]).T) if len(centres) else np.zeros(0)
        dist = np.where(free, dist, np.inf)
        k = int(np.argmin(dist)) if len(dist) else -1
        if k >= 0 and dist[k] <= MATCH_DIST:
            free[k] = False
            tp += int(scored[k])
        else:
            fp += 1
    return tp, fp, int(scored.sum())


def evaluate(model: nn.Module, feats: torch.Tensor, gts: list[tuple[np.ndarray, np.ndarray]]
             ) -> dict[str, float]:
    """Recall and precision of the heatmap peaks over the given frames."""
    model.eval()
    with torch.no_grad():
        heat = torch.sigmoid(model(feats))
    model.train()
    tp = fp = n = ranked = 0
    for dets, (centres, scored) in zip(peaks(heat, THRESHOLD), gts):
        t, f, k = match(dets, centres, scored)
        tp, fp, n = tp + t, fp + f, n + k
    # threshold-free: the k best peaks of a frame with k cars (an untrained network's
    # scores are all low, so this shows it does not rank car centres first either)
    for dets, (centres, scored) in zip(peaks(heat, -1.0), gts):
        best = dets[np.argsort(-dets[:, 2])[:len(centres)]]
        ranked += match(best, centres, scored)[0]
    return {"recall": tp / max(n, 1), "precision": tp / max(tp + fp, 1), "cars": n,
            "detections": tp + fp, "top_k_recall": ranked / max(n, 1)}


# -- the test ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0])
def test_tiny_bev_detector_learns_cars(tmp_path: Path, seed: int) -> None:
    from refbench.datasets.kitti.builder import KittiBuilder

    builder = KittiBuilder()
    builder.synthesize(tmp_path / "raw", n=FRAMES, seed=seed)
    builder.prepare(tmp_path / "raw", cache=tmp_path / "cache")
    train, val = frames(tmp_path, "train"), frames(tmp_path, "val")

    x_train = torch.from_numpy(np.stack([bev_features(r["points"]) for r in train]))
    y_train = torch.from_numpy(np.stack([heatmap_target(car_centres(r)[0]) for r in train]))
    x_val = torch.from_numpy(np.stack([bev_features(r["points"]) for r in val]))
    gt_val = [car_centres(r) for r in val]
    assert y_train.eq(1).sum() >= 30, "too few training cars for a meaningful test"
    assert sum(int(s.sum()) for _, s in gt_val) >= 30, "too few scored val cars"

    before_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = TinyBEVNet()
        untrained = evaluate(model, x_val, gt_val)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(seed)
        losses = []
        for _ in range(STEPS):
            idx = torch.randint(len(x_train), (BATCH,), generator=gen)
            xb, yb = x_train[idx], y_train[idx]
            flip = torch.rand(BATCH, generator=gen) < 0.5  # mirror y: left <-> right
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yb = torch.where(flip[:, None, None, None], yb.flip(-1), yb)
            loss = focal_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        trained = evaluate(model, x_val, gt_val)
    finally:
        torch.set_num_threads(before_threads)

    first, last = float(np.mean(losses[:20])), float(np.mean(losses[-20:]))
    summary = (f"loss {first:.3f} -> {last:.3f}; untrained {untrained}; trained {trained}")
    print(summary)
    assert last < 0.5 * first, summary
    assert trained["recall"] > 0.7 and trained["precision"] > 0.5, summary
    # the same network before training fails the check, and does not even rank car
    # centres first (threshold-free), so the check can fail
    assert untrained["recall"] < 0.3 and untrained["top_k_recall"] < 0.5, summary
    assert trained["top_k_recall"] > untrained["top_k_recall"] + 0.4, summary
