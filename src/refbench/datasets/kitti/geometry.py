"""KITTI calibration, frame conversions and box maths (numpy only).

Frames: the lidar frame (x forward, y left, z up), the rectified camera frame of
camera 2 (x right, y down, z forward; what the labels use) and image pixels of
camera 2. The conversions re-derive OpenPCDet's `calibration_kitti.py` and
`box_utils.boxes3d_kitti_camera_to_lidar` / `boxes3d_lidar_to_kitti_camera`,
including their quirk that the half-height shift between a label's bottom centre
and the box centre is applied along the lidar z axis (not the camera y axis), so
that boxes converted here match what every OpenPCDet-trained model expects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refbench.errors import RefbenchError

#: calib keys and their number of values, in file order
CALIB_KEYS: dict[str, int] = {"P0": 12, "P1": 12, "P2": 12, "P3": 12, "R0_rect": 9,
                              "Tr_velo_to_cam": 12, "Tr_imu_to_velo": 12}
#: official difficulty limits (easy, moderate, hard)
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)


@dataclass(frozen=True)
class Calibration:
    """The matrices of one KITTI calib file that the conversions need."""

    P2: np.ndarray  # (3, 4) projection of camera 2 (rectified)
    R0_rect: np.ndarray  # (3, 3) rectifying rotation
    Tr_velo_to_cam: np.ndarray  # (3, 4) lidar -> reference camera

    def to_row(self) -> dict[str, list[float]]:
        """The `calib` feature of a prepared row (flattened, row major)."""
        return {"P2": self.P2.reshape(-1).astype(float).tolist(),
                "R0_rect": self.R0_rect.reshape(-1).astype(float).tolist(),
                "Tr_velo_to_cam": self.Tr_velo_to_cam.reshape(-1).astype(float).tolist()}

    @classmethod
    def from_row(cls, row: dict) -> Calibration:
        """Inverse of `to_row` (a prepared row's `calib` back into matrices)."""
        return cls(np.asarray(row["P2"], np.float64).reshape(3, 4),
                   np.asarray(row["R0_rect"], np.float64).reshape(3, 3),
                   np.asarray(row["Tr_velo_to_cam"], np.float64).reshape(3, 4))


def parse_calib_text(text: str, path: str | Path = "<calib>") -> dict[str, np.ndarray]:
    """All `KEY: v v ...` lines of a calib file; errors name file:line and the key."""
    values: dict[str, np.ndarray] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep:
            raise RefbenchError("expected 'KEY: v v v ...'", path=path, line=number)
        try:
            vals = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            raise RefbenchError(f"non-numeric value in {key}", path=path, line=number,
                                key=key) from None
        want = CALIB_KEYS.get(key)
        if want is not None and vals.size != want:
            raise RefbenchError(f"{key} has {vals.size} values, expected {want}", path=path,
                                line=number, key=key)
        values[key] = vals
    return values


def read_calib(path: Path, text: str | None = None) -> Calibration:
    """Parse a calib file; every one of P0-P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo
    must be present (a missing key raises naming it)."""
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    values = parse_calib_text(text, path)
    for key in CALIB_KEYS:
        if key not in values:
            raise RefbenchError(f"calib file lacks the key {key}", path=path, key=key)
    return Calibration(values["P2"].reshape(3, 4), values["R0_rect"].reshape(3, 3),
                       values["Tr_velo_to_cam"].reshape(3, 4))


def format_calib(mats: dict[str, np.ndarray]) -> str:
    """A calib file's text from {key: matrix} (all of CALIB_KEYS, KITTI's number format)."""
    lines = [f"{key}: " + " ".join(f"{v:.12e}" for v in np.asarray(mats[key]).reshape(-1))
             for key in CALIB_KEYS]
    return "\n".join(lines) + "\n\n"


# -- frame conversions -------------------------------------------------------------------
def _hom(pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    return np.hstack([pts, np.ones((pts.shape[0], 1))])


def lidar_to_rect(pts: np.ndarray, calib: Calibration) -> np.ndarray:
    """(N, 3) lidar points -> rectified camera coordinates: R0 @ Tr_velo_to_cam @ [p; 1]."""
    return _hom(pts) @ (calib.Tr_velo_to_cam.T @ calib.R0_rect.T)


def rect_to_lidar(pts: np.ndarray, calib: Calibration) -> np.ndarray:
    """Inverse of `lidar_to_rect` (through the 4x4 extended R0 and Tr matrices)."""
    r0 = np.eye(4)
    r0[:3, :3] = calib.R0_rect
    tr = np.eye(4)
    tr[:3, :] = calib.Tr_velo_to_cam
    return (_hom(pts) @ np.linalg.inv(r0 @ tr).T)[:, :3]


def rect_to_img(pts: np.ndarray, calib: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, 2), depth (N,)) of rectified points projected through P2.

    Depth is z minus P2[2, 3] (the camera's offset), as OpenPCDet reports it."""
    proj = _hom(pts) @ calib.P2.T
    depth = proj[:, 2] - calib.P2[2, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = proj[:, :2] / proj[:, 2:3]
    return uv, depth


def lidar_to_img(pts: np.ndarray, calib: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, depth) of lidar points in the image of camera 2."""
    return rect_to_img(lidar_to_rect(pts, calib), calib)


def fov_mask(points: np.ndarray, calib: Calibration, image_shape: tuple[int, int]) -> np.ndarray:
    """Points in front of the camera whose projection lies inside the image (h, w).

    Same rule as OpenPCDet's `get_fov_flag`: 0 <= u < w, 0 <= v < h, depth >= 0."""
    uv, depth = lidar_to_img(np.asarray(points)[:, :3], calib)
    h, w = image_shape
    return ((uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
            & (depth >= 0))


# -- boxes -------------------------------------------------------------------------------
def boxes_camera_to_lidar(location: np.ndarray, dimensions_hwl: np.ndarray,
                          rotation_y: np.ndarray, calib: Calibration) -> np.ndarray:
    """Label boxes (camera bottom centre, file order h, w, l, ry) -> lidar (N, 7)
    boxes (x, y, z centre, l, w, h, yaw) with yaw = -(ry + pi/2)."""
    loc = np.asarray(location, np.float64).reshape(-1, 3)
    dims = np.asarray(dimensions_hwl, np.float64).reshape(-1, 3)
    ry = np.asarray(rotation_y, np.float64).reshape(-1)
    h, w, l = dims[:, 0], dims[:, 1], dims[:, 2]
    xyz = rect_to_lidar(loc, calib)
    xyz[:, 2] += h / 2
    return np.column_stack([xyz, l, w, h, -(ry + np.pi / 2)])


def boxes_lidar_to_camera(boxes: np.ndarray, calib: Calibration
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of `boxes_camera_to_lidar`: (location (N, 3), dimensions h, w, l (N, 3),
    rotation_y (N,))."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    xyz = boxes[:, :3].copy()
    l, w, h = boxes[:, 3], boxes[:, 4], boxes[:, 5]
    xyz[:, 2] -= h / 2
    return lidar_to_rect(xyz, calib), np.column_stack([h, w, l]), -boxes[:, 6] - np.pi / 2


def box_corners_lidar(boxes: np.ndarray) -> np.ndarray:
    """(N, 8, 3) corners of lidar boxes (x, y, z centre, l, w, h, yaw)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    signs = np.array([[1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1],
                      [1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]], np.float64) / 2
    local = signs[None] * boxes[:, None, 3:6]
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y, local[..., 2]], axis=-1) + boxes[:, None, :3]


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N_boxes, N_points) bool: point strictly inside a rotated lidar box.

    The rule of OpenPCDet's `points_in_boxes_cpu`: |dz| <= h/2, and the point turned
    into the box frame has |local x| < l/2 and |local y| < w/2."""
    pts = np.asarray(points, np.float64)[:, :3]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    out = np.zeros((boxes.shape[0], pts.shape[0]), dtype=bool)
    for i, (cx, cy, cz, l, w, h, yaw) in enumerate(boxes):
        dz = np.abs(pts[:, 2] - cz)
        near = np.nonzero(dz <= h / 2)[0]
        dx, dy = pts[near, 0] - cx, pts[near, 1] - cy
        c, s = np.cos(-yaw), np.sin(-yaw)
        lx, ly = dx * c - dy * s, dx * s + dy * c
        out[i, near] = (np.abs(lx) < l / 2) & (np.abs(ly) < w / 2)
    return out


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Number of points inside each lidar box (int32, one per box)."""
    return points_in_boxes(points, boxes).sum(axis=1).astype(np.int32)


def difficulty(bbox: np.ndarray, occluded: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """Per object 0 easy / 1 moderate / 2 hard / -1 none by the official limits.

    An object belongs to the first level whose limits it meets: 2D box height above
    MIN_HEIGHT (strictly, as the official python eval ignores `height <= min`),
    occlusion at most MAX_OCCLUSION, truncation at most MAX_TRUNCATION."""
    bbox = np.asarray(bbox, np.float64).reshape(-1, 4)
    height = np.abs(bbox[:, 3] - bbox[:, 1])
    occ = np.asarray(occluded).reshape(-1)
    trunc = np.asarray(truncated, np.float64).reshape(-1)
    level = np.full(bbox.shape[0], -1, dtype=np.int32)
    for lvl in (2, 1, 0):  # the easiest level met wins
        ok = (height > MIN_HEIGHT[lvl]) & (occ <= MAX_OCCLUSION[lvl]) & (trunc <= MAX_TRUNCATION[lvl])
        level[ok] = lvl
    return level


# -- images ------------------------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_shape(path: Path) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk, reading 24 bytes only."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise RefbenchError("not a PNG file (bad signature or no IHDR chunk)", path=path)
    width, height = struct.unpack(">II", head[16:24])
    return int(height), int(width)
