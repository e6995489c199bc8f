"""Write a synthetic KITTI 3D object release in the official layout.

Each frame is a ray-cast street scene (`synth.lidar`) seen by a sensor mounted like
KITTI's (1.73 m above the ground) with a calibration that has the structure and values
of the real KITTI calib files plus small perturbations. Labels are made from the same
boxes the rays hit: the physical box is the label box shrunk by a few centimetres, so
every labelled object's points lie inside its (rounded) label box. Occlusion comes from
the rays (share of the rays that would reach an object alone but are blocked), truncation
and the 2D box from projecting the 3D corners through P2 and clipping to the image;
far, tiny or nearly hidden objects become DontCare regions, as in the real labels.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from refbench.datasets.kitti.geometry import (
    Calibration,
    box_corners_lidar,
    boxes_lidar_to_camera,
    count_points_in_boxes,
    format_calib,
    fov_mask,
    lidar_to_img,
)
from refbench.datasets.lidar_synth import (
    LidarSpec,
    SceneBox,
    cast,
    overlaps,
    random_object,
    street_background,
)
from refbench.io import atomic_write_bytes, atomic_write_text

#: lidar -> camera axes (x fwd, y left, z up -> x right, y down, z fwd) of the real rig
_AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
_CLASSES = ("Car", "Pedestrian", "Cyclist")
_CLASS_P = (0.6, 0.25, 0.15)
MIN_POINTS = 5  # fewer points inside the label box -> DontCare
MIN_BOX_HEIGHT = 18.0  # pixels; smaller -> DontCare


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def synth_calibration(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All seven calib matrices, KITTI-like (focal ~720 px, stereo baseline 0.54 m)."""
    f = float(rng.uniform(707.0, 721.6))
    cu, cv = float(rng.uniform(601.0, 610.0)), float(rng.uniform(172.0, 185.0))
    k = np.array([[f, 0, cu], [0, f, cv], [0, 0, 1.0]])

    def proj(tx: float, ty: float, tz: float) -> np.ndarray:
        return np.hstack([k, np.array([[f * tx + cu * tz], [f * ty + cv * tz], [tz]])])

    mats = {"P0": proj(0, 0, 0), "P1": proj(-0.537, 0, 0),
            "P2": proj(0.06 + rng.normal(0, 0.002), rng.normal(0, 0.001), 0.0027),
            "P3": proj(-0.47 + rng.normal(0, 0.002), rng.normal(0, 0.003), 0.0033)}
    mats["R0_rect"] = _rotation(*rng.normal(0, 0.006, 3))
    rot = _rotation(*rng.normal(0, 0.004, 3)) @ _AXES
    trans = np.array([-0.004, -0.076, -0.272]) + rng.normal(0, 0.02, 3)
    mats["Tr_velo_to_cam"] = np.hstack([rot, trans[:, None]])
    mats["Tr_imu_to_velo"] = np.hstack([_rotation(*rng.normal(0, 0.002, 3)),
                                        np.array([[-0.81], [0.32], [-0.80]])])
    return mats


def png_bytes(gray: np.ndarray) -> bytes:
    """A grayscale 8-bit PNG (no PIL needed)."""
    h, w = gray.shape
    raw = np.hstack([np.zeros((h, 1), np.uint8), gray.astype(np.uint8)]).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def _place_objects(rng: np.random.Generator, ground_z: float,
                   background: list[SceneBox]) -> list[SceneBox]:
    """3-10 objects in front of the car on and beside the road, not overlapping."""
    placed: list[SceneBox] = []
    want = int(rng.integers(3, 11))
    for _ in range(want * 6):
        if len(placed) == want:
            break
        kind = str(rng.choice(_CLASSES, p=_CLASS_P))
        x = float(rng.uniform(5.0, 50.0))
        y = float(rng.uniform(-0.75, 0.75) * min(x, 7.0))
        if kind == "Car":
            yaw = float(rng.choice([0.0, np.pi]) + rng.normal(0, 0.15))
        else:
            yaw = float(rng.uniform(-np.pi, np.pi))
        obj = random_object(kind, (x, y), yaw, ground_z, rng)
        if not overlaps(obj, placed + background):
            placed.append(obj)
    return placed


def _fmt(values: list) -> str:
    return " ".join(v if isinstance(v, str) else f"{v:.2f}" for v in values)


def synth_frame(rng: np.random.Generator, spec: LidarSpec
                ) -> tuple[np.ndarray, str, dict[str, np.ndarray], tuple[int, int], np.ndarray]:
    """(points, label text, calib matrices, image shape (h, w), image) of one frame."""
    mats = synth_calibration(rng)
    calib = Calibration(mats["P2"], mats["R0_rect"], mats["Tr_velo_to_cam"])
    shape = (int(rng.choice([370, 374, 375, 376])), int(rng.choice([1224, 1238, 1241, 1242])))
    ground_z = -spec.height
    background = street_background(rng, ground_z)
    objects = _place_objects(rng, ground_z, background)
    # label boxes: the physical boxes grown by 5 cm on each side and on top
    labels = np.array([[*o.center[:2], o.center[2] + 0.025, *(o.size + [0.1, 0.1, 0.05]), o.yaw]
                       for o in objects]).reshape(-1, 7)
    scan = cast(spec, objects + background, rng)
    points = scan.points
    fov = points[fov_mask(points, calib, shape)]
    counts = count_points_in_boxes(fov, labels) if len(labels) else np.zeros(0, np.int32)
    loc, dims, ry = boxes_lidar_to_camera(labels, calib)
    h, w = shape
    lines, dontcare, rects = [], [], []
    for i, obj in enumerate(objects):
        uv, depth = lidar_to_img(box_corners_lidar(labels[i])[0], calib)
        if (depth <= 0.1).any():
            continue
        full = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
        clip = np.array([max(full[0], 0), max(full[1], 0), min(full[2], w - 1),
                         min(full[3], h - 1)])
        if clip[2] <= clip[0] or clip[3] <= clip[1]:
            continue  # outside the image: KITTI does not label it
        area = (full[2] - full[0]) * (full[3] - full[1])
        trunc = float(np.clip(1 - (clip[2] - clip[0]) * (clip[3] - clip[1]) / area, 0, 1))
        visible = scan.first_hits[i] / max(scan.alone_hits[i], 1)
        occ = 0 if visible >= 0.8 else 1 if visible >= 0.4 else 2
        rects.append(clip)
        if (counts[i] < MIN_POINTS or clip[3] - clip[1] < MIN_BOX_HEIGHT or obj.center[0] > 45
                or trunc > 0.8):
            # written like the official DontCare lines (integers, only the 2D box is real)
            dontcare.append("DontCare -1 -1 -10 " + _fmt(list(clip))
                            + " -1 -1 -1 -1000 -1000 -1000 -10")
            continue
        x, _, z = loc[i]
        alpha = float((ry[i] - np.arctan2(x, z) + np.pi) % (2 * np.pi) - np.pi)
        yaw_cam = float((ry[i] + np.pi) % (2 * np.pi) - np.pi)
        lines.append(_fmt([obj.kind, trunc]) + f" {occ} "
                     + _fmt([alpha, *clip, *dims[i], *loc[i], yaw_cam]))
    text = "\n".join(lines + dontcare) + "\n" if lines or dontcare else ""
    image = _render(shape, rects)
    return points, text, mats, shape, image


def _render(shape: tuple[int, int], rects: list[np.ndarray]) -> np.ndarray:
    """A plain picture: sky above the horizon, road below, objects as grey blocks."""
    h, w = shape
    img = np.empty((h, w), np.uint8)
    img[: h // 2] = 200
    img[h // 2:] = np.linspace(90, 60, h - h // 2, dtype=np.uint8)[:, None]
    for l, t, r, b in rects:
        img[int(t):int(b) + 1, int(l):int(r) + 1] = 140
    return img


def synthesize_kitti(out: Path, n: int = 200, seed: int = 0,
                     spec: LidarSpec | None = None) -> Path:
    """Write `n` training frames (half train, half val) and n // 4 (at least 2) testing
    frames under `out` in the official layout; returns `out`."""
    out = Path(out)
    spec = spec or LidarSpec()
    rng = np.random.default_rng(seed)
    n_train = max(int(n), 2)
    n_test = max(n_train // 4, 2)
    ids = {"training": [f"{i:06d}" for i in range(n_train)],
           "testing": [f"{i:06d}" for i in range(n_test)]}
    for part, frame_ids in ids.items():
        for fid in frame_ids:
            points, text, mats, _, image = synth_frame(rng, spec)
            base = out / part
            atomic_write_bytes(base / "velodyne" / f"{fid}.bin", points.astype("<f4").tobytes())
            atomic_write_text(base / "calib" / f"{fid}.txt", format_calib(mats))
            atomic_write_bytes(base / "image_2" / f"{fid}.png", png_bytes(image))
            if part == "training":
                atomic_write_text(base / "label_2" / f"{fid}.txt", text)
    order = rng.permutation(n_train)
    half = n_train // 2
    train = sorted(ids["training"][i] for i in order[:half])
    val = sorted(ids["training"][i] for i in order[half:])
    for name, listed in (("train", train), ("val", val), ("test", ids["testing"])):
        atomic_write_text(out / "ImageSets" / f"{name}.txt", "\n".join(listed) + "\n")
    return out
