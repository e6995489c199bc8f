"""Waymo Open Dataset v2 Parquet components read with pyarrow alone (no TensorFlow):
range images to vehicle-frame points, calibrations, poses and 7-DOF boxes.

Shared by the builder, the synthesizer and the `waymo_boxes` submission format; see
`refbench.datasets.waymo.builder` for the release layout and the prepared rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

SPLITS = ("training", "validation", "testing")
REQUIRED: dict[str, tuple[str, ...]] = {
    "training": ("lidar", "lidar_calibration", "lidar_box"),
    "validation": ("lidar", "lidar_calibration", "lidar_box"),
    "testing": ("lidar", "lidar_calibration"),
}
OPTIONAL = ("lidar_pose", "vehicle_pose", "stats")
KEY_SEGMENT = "key.segment_context_name"
KEY_TIME = "key.frame_timestamp_micros"
KEY_LASER = "key.laser_name"
KEY_OBJECT = "key.laser_object_id"
LIDAR = "[LiDARComponent]"
CALIB = "[LiDARCalibrationComponent]"
BOX = "[LiDARBoxComponent]"
POSE = "[LiDARPoseComponent]"
VEHICLE_POSE = "[VehiclePoseComponent].world_from_vehicle.transform"
BOX_FIELDS = tuple(f"{BOX}.box.{part}" for part in (
    "center.x", "center.y", "center.z", "size.x", "size.y", "size.z", "heading"))


def segments(root: Path, split: str) -> dict[str, set[str]]:
    """{context_name: {components present}} of one split folder."""
    found: dict[str, set[str]] = {}
    folder = Path(root) / split
    if folder.is_dir():
        for comp in sorted(p for p in folder.iterdir() if p.is_dir()):
            for file in comp.glob("*.parquet"):
                found.setdefault(file.stem, set()).add(comp.name)
    return found


def missing_components(root: Path, split: str) -> list[tuple[str, list[str], list[str]]]:
    """[(segment, missing required components, components present)] of one split."""
    out = []
    for seg, present in sorted(segments(root, split).items()):
        missing = [c for c in REQUIRED[split] if c not in present]
        if missing:
            out.append((seg, missing, sorted(present)))
    return out


def read_table(path: Path, columns: list[str] | None = None) -> "pa.Table":
    """One component file as a table, checking that `columns` are present. Read through
    `ParquetFile` (one file), not `read_table`, which imports pyarrow.dataset and pandas
    (~0.3 s, ~70 MB) for nothing here."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path).read()
    except (OSError, ValueError) as exc:
        raise RefbenchError(f"not a readable Parquet file: {exc}", path=path) from None
    if columns:
        absent = [c for c in columns if c not in table.column_names]
        if absent:
            raise RefbenchError(f"missing column(s) {absent} of the v2 schema", path=path,
                                key=absent[0])
    return table


def column_numpy(table: "pa.Table", name: str) -> np.ndarray:
    """A numeric column as numpy, straight from the Arrow buffers when it has no nulls:
    pyarrow's own `to_numpy` imports pandas on first use (~0.3 s, ~35 MB), which a bulk
    read of boxes does not need. With nulls, `to_numpy` (nulls become NaN)."""
    import pyarrow as pa

    column = table.column(name)
    kind = column.type
    if column.null_count or not (pa.types.is_integer(kind) or pa.types.is_float32(kind)
                                 or pa.types.is_float64(kind)):
        return column.to_numpy(zero_copy_only=False)
    dtype = np.dtype(kind.to_pandas_dtype())
    parts = [np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk),
                           offset=chunk.offset * dtype.itemsize)
             for chunk in column.chunks if len(chunk)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _list_rows(table: "pa.Table", column: str, dtype: Any) -> list[np.ndarray | None]:
    """A list<...> column as one numpy array per row (None where null)."""
    import pyarrow as pa

    arr = table.column(column).combine_chunks()
    if isinstance(arr, (pa.FixedSizeListArray, pa.ListArray)):
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        flat = arr.flatten().to_numpy(zero_copy_only=False).astype(dtype)
        if isinstance(arr, pa.FixedSizeListArray):
            size = arr.type.list_size
            offsets = np.arange(len(arr) + 1) * size
        else:
            offsets = arr.offsets.to_numpy()
            offsets = offsets - offsets[0]
        return [flat[offsets[i]:offsets[i + 1]] if valid[i] else None for i in range(len(arr))]
    raise RefbenchError(f"column {column!r} is not a list column")


def read_vehicle_pose(path: Path) -> dict[int, np.ndarray]:
    """{timestamp: 4x4 world_from_vehicle} of a `vehicle_pose` component file."""
    table = read_table(Path(path), [KEY_TIME, VEHICLE_POSE])
    stamps = table.column(KEY_TIME).to_numpy()
    mats = _list_rows(table, VEHICLE_POSE, np.float64)
    out = {}
    for stamp, mat in zip(stamps, mats):
        if mat is None or mat.size != 16:
            raise RefbenchError(f"frame {stamp}: world_from_vehicle is not a 4x4 transform",
                                path=path, key=VEHICLE_POSE)
        out[int(stamp)] = mat.reshape(4, 4)
    return out


# -- range image -> points ------------------------------------------------------------------
def beam_inclinations(height: int, low: float, high: float,
                      values: np.ndarray | None = None) -> np.ndarray:
    """Per-row inclinations, row 0 the highest beam (the calibration order reversed)."""
    if values is not None and len(values) > 0:
        incl = np.asarray(values, np.float64)
        if len(incl) != height:
            raise RefbenchError(f"{len(incl)} beam inclinations for a range image of {height} "
                                f"rows")
    else:
        incl = low + (0.5 + np.arange(height)) / height * (high - low)
    return incl[::-1]


def azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """Per-column azimuths in the sensor frame (corrected by the extrinsic's yaw)."""
    correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (width - 0.5 - np.arange(width)) / width
    return (ratios * 2.0 - 1.0) * np.pi - correction


def euler_to_rotation(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotations of 3-2-1 (yaw, pitch, roll) Euler angles."""
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch),
                              np.cos(yaw), np.sin(yaw))
    return np.stack([np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
                     np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
                     np.stack([-sp, cp * sr, cp * cr], -1)], -2)


def range_image_to_points(image: np.ndarray, extrinsic: np.ndarray, inclination: np.ndarray,
                          pixel_pose: np.ndarray | None = None,
                          frame_pose: np.ndarray | None = None) -> np.ndarray:
    """[N, 5] (x, y, z, intensity, elongation) vehicle-frame points of a [H, W, >=3] image."""
    width = image.shape[1]
    rng = image[..., 0].astype(np.float64)
    az = azimuths(width, extrinsic)[None, :]
    incl = inclination[:, None]
    xyz = np.stack([np.cos(az) * np.cos(incl) * rng, np.sin(az) * np.cos(incl) * rng,
                    np.sin(incl) * rng + 0 * az], axis=-1)
    xyz = xyz @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    if pixel_pose is not None:
        if frame_pose is None:
            raise RefbenchError("a per-pixel lidar pose needs the frame's vehicle_pose")
        rot = euler_to_rotation(pixel_pose[..., 0], pixel_pose[..., 1], pixel_pose[..., 2])
        world = np.einsum("hwij,hwj->hwi", rot, xyz) + pixel_pose[..., 3:6]
        inv = np.linalg.inv(frame_pose)
        xyz = world @ inv[:3, :3].T + inv[:3, 3]
    mask = rng > 0
    feats = np.concatenate([xyz[mask], image[..., 1][mask][:, None],
                            image[..., 2][mask][:, None]], axis=1)
    return feats.astype(np.float32)


def _images(table: "pa.Table", ret: str) -> list[np.ndarray | None]:
    values = _list_rows(table, f"{LIDAR}.{ret}.values", np.float32)
    shapes = _list_rows(table, f"{LIDAR}.{ret}.shape", np.int64)
    out = []
    for v, s in zip(values, shapes):
        out.append(None if v is None or s is None else v.reshape(tuple(int(d) for d in s)))
    return out


def read_calibration(path: Path) -> dict[int, tuple[np.ndarray, float, float, np.ndarray | None]]:
    """{laser_name: (extrinsic 4x4, inclination min, max, per-row values or None)}."""
    cols = [KEY_LASER, f"{CALIB}.extrinsic.transform", f"{CALIB}.beam_inclination.min",
            f"{CALIB}.beam_inclination.max"]
    table = read_table(path, cols)
    lasers = table.column(KEY_LASER).to_numpy()
    ext = _list_rows(table, cols[1], np.float64)
    low = table.column(cols[2]).to_numpy(zero_copy_only=False)
    high = table.column(cols[3]).to_numpy(zero_copy_only=False)
    vcol = f"{CALIB}.beam_inclination.values"
    values = (_list_rows(table, vcol, np.float64) if vcol in table.column_names
              else [None] * len(lasers))
    return {int(lasers[i]): (ext[i].reshape(4, 4), float(low[i]), float(high[i]), values[i])
            for i in range(len(lasers))}


def read_lidar_points(lidar: Path, calibration: Path, lidar_pose: Path | None = None,
                      vehicle_pose: Path | None = None) -> dict[int, np.ndarray]:
    """{timestamp: [N, 5] points of every laser and both returns} of one segment."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    calib = read_calibration(calibration)
    needed = [KEY_TIME, KEY_LASER, f"{LIDAR}.range_image_return1.values",
              f"{LIDAR}.range_image_return1.shape"]
    _read_schema(lidar, needed)
    poses: dict[tuple[int, int], np.ndarray] = {}
    frames: dict[int, np.ndarray] = {}
    if lidar_pose is not None and vehicle_pose is not None:
        ptab = read_table(lidar_pose, [KEY_TIME, KEY_LASER, f"{POSE}.range_image_return1.values",
                                  f"{POSE}.range_image_return1.shape"])
        pv = _list_rows(ptab, f"{POSE}.range_image_return1.values", np.float64)
        ps = _list_rows(ptab, f"{POSE}.range_image_return1.shape", np.int64)
        for t, las, v, s in zip(ptab.column(KEY_TIME).to_numpy(),
                                ptab.column(KEY_LASER).to_numpy(), pv, ps):
            if v is not None and s is not None:
                poses[(int(t), int(las))] = v.reshape(tuple(int(d) for d in s))
        frames = read_vehicle_pose(vehicle_pose)
    out: dict[int, list[np.ndarray]] = {}
    # a few rows at a time: a whole segment's decompressed range images would take GBs
    for batch in pq.ParquetFile(lidar).iter_batches(batch_size=8):
        table = pa.Table.from_batches([batch])
        _add_points(out, table, calib, calibration, poses, frames)
    return {t: np.concatenate(v) for t, v in out.items()}


def _read_schema(path: Path, columns: list[str]) -> None:
    """Fail early, naming the first v2 column a component file lacks."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as exc:
        raise RefbenchError(f"not a readable Parquet file: {exc}", path=path) from None
    absent = [c for c in columns if c not in names]
    if absent:
        raise RefbenchError(f"missing column(s) {absent} of the v2 schema", path=path,
                            key=absent[0])


def _add_points(out: dict[int, list[np.ndarray]], table: "pa.Table", calib: dict,
                calibration: Path, poses: dict[tuple[int, int], np.ndarray],
                frames: dict[int, np.ndarray]) -> None:
    """Append the points of every row (frame x laser, both returns) of a lidar batch."""
    stamps = table.column(KEY_TIME).to_numpy()
    lasers = table.column(KEY_LASER).to_numpy()
    returns = [_images(table, "range_image_return1")]
    if f"{LIDAR}.range_image_return2.values" in table.column_names:
        returns.append(_images(table, "range_image_return2"))
    for i, (stamp, laser) in enumerate(zip(stamps, lasers)):
        if int(laser) not in calib:
            raise RefbenchError(f"laser {int(laser)} has no calibration", path=calibration)
        extrinsic, low, high, values = calib[int(laser)]
        pixel_pose = poses.get((int(stamp), int(laser)))
        for images in returns:
            image = images[i]
            if image is None or image.size == 0:
                continue
            incl = beam_inclinations(image.shape[0], low, high, values)
            out.setdefault(int(stamp), []).append(range_image_to_points(
                image, extrinsic, incl, pixel_pose,
                frames.get(int(stamp)) if pixel_pose is not None else None))


def read_boxes(path: Path) -> dict[int, dict[str, Any]]:
    """{timestamp: {boxes, types, difficulty, num_points, ids}} of a `lidar_box` file."""
    cols = [KEY_TIME, KEY_OBJECT, *BOX_FIELDS, f"{BOX}.type", f"{BOX}.num_lidar_points_in_box"]
    table = read_table(Path(path), cols)
    diff_col = f"{BOX}.difficulty_level.detection"
    n = table.num_rows
    stamps = column_numpy(table, KEY_TIME)
    boxes = np.stack([column_numpy(table, c).astype(np.float64) for c in BOX_FIELDS],
                     axis=1) if n else np.zeros((0, 7))
    types = column_numpy(table, f"{BOX}.type").astype(np.int32)
    points = column_numpy(table, f"{BOX}.num_lidar_points_in_box").astype(np.int32)
    diff = (np.nan_to_num(column_numpy(table, diff_col).astype(float)).astype(np.int32)
            if diff_col in table.column_names else np.zeros(n, np.int32))
    ids = table.column(KEY_OBJECT).to_pylist()
    out: dict[int, dict[str, Any]] = {}
    for stamp in np.unique(stamps):
        sel = np.nonzero(stamps == stamp)[0]
        out[int(stamp)] = {"boxes": boxes[sel], "types": types[sel], "difficulty": diff[sel],
                           "num_points": points[sel], "ids": [ids[i] for i in sel]}
    return out
