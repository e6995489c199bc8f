"""A spinning multi-beam lidar ray-cast against simple street scenes (numpy only).

A scene is a flat ground plane plus yaw-oriented boxes: objects (cars, pedestrians,
cyclists with realistic sizes), walls along the road and clutter (poles, bins). The
sensor casts one ray per (beam, azimuth) of an HDL-64E-like head and keeps the nearest
hit, so objects occlude each other and the ground the way real scans do. Each hit gets a
reflectance from the surface it hit, and every object reports how many rays reached it
first against how many would have reached it alone (the visible fraction behind the
occlusion labels). Reused by the KITTI synthesizer and meant for Waymo later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: (l, w, h) mean and spread of each object class, metres (KITTI statistics, rounded)
CLASS_SIZES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "Car": ((3.9, 1.6, 1.56), (0.3, 0.1, 0.1)),
    "Pedestrian": ((0.8, 0.6, 1.73), (0.1, 0.08, 0.1)),
    "Cyclist": ((1.76, 0.6, 1.73), (0.15, 0.05, 0.08)),
}


@dataclass
class LidarSpec:
    """The sensor: beam elevations, azimuth step, range limits and mounting height."""

    n_beams: int = 64
    top_deg: float = 2.0
    bottom_deg: float = -24.8
    azimuth_step_deg: float = 0.35
    azimuth_range_deg: tuple[float, float] = (-180.0, 180.0)
    max_range: float = 80.0
    min_range: float = 1.0
    height: float = 1.73  # sensor above the ground, metres
    range_noise: float = 0.01

    def directions(self) -> np.ndarray:
        """(n_rays, 3) unit ray directions in the sensor frame."""
        elev = np.deg2rad(np.linspace(self.top_deg, self.bottom_deg, self.n_beams))
        lo, hi = self.azimuth_range_deg
        az = np.deg2rad(np.arange(lo, hi, self.azimuth_step_deg))
        e, a = np.meshgrid(elev, az, indexing="ij")
        return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)],
                        axis=-1).reshape(-1, 3)


@dataclass
class SceneBox:
    """One box of the scene in the sensor frame: centre, size (l, w, h), yaw."""

    center: np.ndarray
    size: np.ndarray
    yaw: float
    kind: str  # a class name of CLASS_SIZES, "Wall" or "Clutter"
    reflectance: float

    def as_array(self) -> np.ndarray:
        return np.array([*self.center, *self.size, self.yaw], dtype=np.float64)


@dataclass
class Scan:
    """A ray-cast scan: points (N, 4) float32 and per-box visibility counts."""

    points: np.ndarray
    first_hits: np.ndarray  # rays whose nearest hit is box i
    alone_hits: np.ndarray  # rays that would hit box i with nothing else in the scene
    boxes: list[SceneBox] = field(default_factory=list)


def ray_box_distance(origin: np.ndarray, dirs: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Entry distance of each ray into a yaw-oriented box (inf where it misses).

    Slab test in the box's own frame; a ray starting inside gets inf (not a surface)."""
    cx, cy, cz, l, w, h, yaw = box
    c, s = np.cos(-yaw), np.sin(-yaw)
    ox, oy = origin[0] - cx, origin[1] - cy
    o = np.array([ox * c - oy * s, ox * s + oy * c, origin[2] - cz])
    d = np.column_stack([dirs[:, 0] * c - dirs[:, 1] * s, dirs[:, 0] * s + dirs[:, 1] * c,
                         dirs[:, 2]])
    half = np.array([l, w, h]) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (-half - o) * inv
        t2 = (half - o) * inv
    near = np.nanmax(np.minimum(t1, t2), axis=1)
    far = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (near <= far) & (near > 0)
    return np.where(hit, near, np.inf)


def _candidate_rays(box: SceneBox, elev: np.ndarray, az: np.ndarray) -> np.ndarray:
    """Flat indices of the rays whose angles fall inside the box's angular footprint
    (culling that makes ray-casting cost scale with the hits, not the whole scan)."""
    from refbench.datasets.kitti.geometry import box_corners_lidar

    corners = box_corners_lidar(box.as_array())[0]
    centre = np.arctan2(box.center[1], box.center[0])
    ang = np.arctan2(corners[:, 1], corners[:, 0]) - centre
    ang = (ang + np.pi) % (2 * np.pi) - np.pi
    rng_xy = np.hypot(corners[:, 0], corners[:, 1])
    if np.hypot(box.center[0], box.center[1]) < np.hypot(*box.size[:2]) / 2 + 0.5:
        cols = np.arange(az.size)  # the sensor is (nearly) inside: test every column
    else:
        step = np.abs(az[1] - az[0]) if az.size > 1 else 0.0
        rel = (az - centre + np.pi) % (2 * np.pi) - np.pi
        cols = np.nonzero((rel >= ang.min() - step) & (rel <= ang.max() + step))[0]
    el = np.arctan2(corners[:, 2], np.maximum(rng_xy, 1e-6))
    pad = np.abs(elev[0] - elev[1]) if elev.size > 1 else 0.0
    rows = np.nonzero((elev >= el.min() - pad) & (elev <= el.max() + pad))[0]
    return (rows[:, None] * az.size + cols[None, :]).reshape(-1)


def cast(spec: LidarSpec, boxes: list[SceneBox], rng: np.random.Generator,
         ground_reflectance: float = 0.25) -> Scan:
    """Cast every ray of `spec` against the ground (z = -height) and `boxes`."""
    dirs = spec.directions()
    elev = np.deg2rad(np.linspace(spec.top_deg, spec.bottom_deg, spec.n_beams))
    lo, hi = spec.azimuth_range_deg
    az = np.deg2rad(np.arange(lo, hi, spec.azimuth_step_deg))
    origin = np.zeros(3)
    n = dirs.shape[0]
    with np.errstate(divide="ignore"):
        dist = np.where(dirs[:, 2] < -1e-6, -spec.height / dirs[:, 2], np.inf)
    owner = np.full(n, -1, dtype=np.int64)
    alone = np.zeros(len(boxes), dtype=np.int64)
    for i, box in enumerate(boxes):
        idx = _candidate_rays(box, elev, az)
        if idx.size == 0:
            continue
        t = ray_box_distance(origin, dirs[idx], box.as_array())
        t = np.where(t <= spec.max_range, t, np.inf)
        alone[i] = int(np.isfinite(t).sum())
        closer = t < dist[idx]
        dist[idx[closer]] = t[closer]
        owner[idx[closer]] = i
    keep = np.isfinite(dist) & (dist <= spec.max_range) & (dist >= spec.min_range)
    first = np.bincount(owner[keep & (owner >= 0)], minlength=len(boxes))
    r = dist[keep] + rng.normal(0.0, spec.range_noise, size=int(keep.sum()))
    xyz = dirs[keep] * r[:, None]
    refl_of = np.array([b.reflectance for b in boxes] + [ground_reflectance])
    refl = refl_of[owner[keep]]  # owner -1 indexes the ground entry
    refl = np.clip(refl + rng.normal(0.0, 0.05, size=refl.shape) - 0.002 * r, 0.0, 0.99)
    points = np.column_stack([xyz, refl]).astype(np.float32)
    return Scan(points=points, first_hits=first.astype(np.int64), alone_hits=alone,
                boxes=list(boxes))


def random_object(kind: str, center_xy: tuple[float, float], yaw: float, ground_z: float,
                  rng: np.random.Generator) -> SceneBox:
    """An object of class `kind` standing on the ground at `center_xy`."""
    mean, spread = CLASS_SIZES[kind]
    size = np.maximum(rng.normal(mean, spread), 0.3)
    center = np.array([center_xy[0], center_xy[1], ground_z + size[2] / 2])
    refl = float(rng.uniform(0.05, 0.6) if kind == "Car" else rng.uniform(0.1, 0.4))
    return SceneBox(center=center, size=size, yaw=float(yaw), kind=kind, reflectance=refl)


def street_background(rng: np.random.Generator, ground_z: float) -> list[SceneBox]:
    """Walls on both sides of a road along x, and a few poles and bins as clutter."""
    out = []
    for side in (-1, 1):
        offset = float(rng.uniform(9.0, 16.0))
        for start in np.arange(-60.0, 70.0, 20.0):
            length = float(rng.uniform(12.0, 19.0))
            height = float(rng.uniform(2.5, 8.0))
            center = np.array([start + length / 2, side * offset, ground_z + height / 2])
            out.append(SceneBox(center, np.array([length, 0.4, height]),
                                float(rng.normal(0, 0.02)), "Wall",
                                float(rng.uniform(0.15, 0.45))))
    for _ in range(int(rng.integers(4, 10))):
        x = float(rng.uniform(-40, 60))
        y = float(rng.choice([-1, 1]) * rng.uniform(6.5, 8.5))
        pole = rng.random() < 0.5
        size = np.array([0.3, 0.3, rng.uniform(3, 6)]) if pole else rng.uniform(0.5, 1.2, 3)
        out.append(SceneBox(np.array([x, y, ground_z + size[2] / 2]), size,
                            float(rng.uniform(-np.pi, np.pi)), "Clutter",
                            float(rng.uniform(0.2, 0.8))))
    return out


def overlaps(box: SceneBox, others: list[SceneBox], margin: float = 0.5) -> bool:
    """Whether `box` comes within `margin` of another box (bird's-eye circles)."""
    r = float(np.hypot(box.size[0], box.size[1]) / 2)
    for other in others:
        ro = float(np.hypot(other.size[0], other.size[1]) / 2)
        if other.kind == "Wall":
            # walls are long and thin: test against the wall's line instead
            if abs(box.center[1] - other.center[1]) < r + 0.2 + margin and \
                    abs(box.center[0] - other.center[0]) < other.size[0] / 2 + r:
                return True
            continue
        if np.hypot(*(box.center[:2] - other.center[:2])) < r + ro + margin:
            return True
    return False
