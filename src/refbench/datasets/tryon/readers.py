"""Readers of the files try-on releases share, strict where the official loaders crash or
silently read something else.

- pairs lists (`test_pairs.txt`, PF-AFN's `demo.txt`): one `person cloth` pair a line, read
  as every official loader reads it (`line.strip().split()` must give two names); a blank
  line (the loaders crash on it) or a third field is an error naming the line;
- OpenPose JSON: `people[0].pose_keypoints_2d` (OpenPose >= 1.2, BODY_25 in MPV3D and
  VITON-HD: 75 values) or `people[0].pose_keypoints` (OpenPose 1.0, COCO-18 in VITON: 54
  values), `x, y, confidence` per point. A file without people is an error (PF-AFN's
  training loader substitutes zeros; M3D-VTON, VITON-HD and HR-VITON crash);
- parse label maps (LIP's 20 labels, L- or P-mode PNG, the pixel value/palette index is the
  label): a value above 19 is an error naming the values;
- masks (cloth masks, PF-AFN's `edge`, palm masks): JPEG-compressed, so grey at the edges;
  every official loader thresholds at `>= 128` (M3D-VTON, VITON-HD and HR-VITON
  `(cm >= 128)`; PF-AFN `edge / 255 > 0.5`, the same set of 8-bit values);
- MPV3D depth: float32 `.npy` viewport depth in [0, 1], 0 = background; NaN/infinity, values
  outside [0, 1], a wrong shape are errors;
- MPV3D `camera.txt`: the two camera poses and the orthographic camera, checked against the
  convention the depth metric assumes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refbench.errors import RefbenchError

#: LIP's labels, as M3D-VTON, VITON-HD and HR-VITON use them (10 is "neck" in their code)
LIP_LABELS: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat",
    "socks", "pants", "neck", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg",
    "right-leg", "left-shoe", "right-shoe")
MAX_LABEL = len(LIP_LABELS) - 1
#: the official loaders' threshold of 8-bit masks
MASK_THRESHOLD = 128
BODY_25, COCO_18 = 25, 18


@dataclass(frozen=True)
class Pair:
    """One line of a pairs list: person and cloth file names, and the 1-based line."""

    person: str
    cloth: str
    line: int


def _file(path: Path, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise RefbenchError(f"expected a {what} file, found a folder", path=path)
    if not path.is_file():
        raise RefbenchError(f"{what} not found", path=path)
    return path


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a list, in file order (module docstring)."""
    path = _file(path, "pairs list")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split()
        if len(fields) != 2:
            what = "a blank line" if not fields else f"{len(fields)} field(s)"
            raise RefbenchError(f"expected 'person cloth' (two file names), got {what}",
                                path=path, line=number)
        out.append(Pair(fields[0], fields[1], number))
    if not out:
        raise RefbenchError("empty pairs list", path=path)
    return out


def read_pose(path: Path, points: int) -> np.ndarray:
    """`(points, 3)` `x, y, confidence` of the first person of an OpenPose JSON, float64 as
    `json` reads them (the preprocessing compares confidences with 0.1 as the script does;
    the dataset stores float32)."""
    path = _file(path, "pose JSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise RefbenchError(f"not valid JSON ({getattr(exc, 'msg', exc)})", path=path,
                            line=line) from None
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise RefbenchError("not an OpenPose JSON: no 'people' list", path=path)
    if not people:
        raise RefbenchError("OpenPose found no person in this image ('people' is empty)",
                            path=path)
    first = people[0]
    key = next((k for k in ("pose_keypoints_2d", "pose_keypoints") if k in first), None)
    if key is None:
        raise RefbenchError("people[0] has no pose_keypoints_2d (or OpenPose 1.0 "
                            "pose_keypoints)", path=path, key="people[0]")
    values = first[key]
    if not isinstance(values, list) or len(values) != 3 * points:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise RefbenchError(f"expected {3 * points} values ({points} keypoints x, y, "
                            f"confidence), got {got}", path=path, key=f"people[0].{key}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise RefbenchError("keypoints must be numbers", path=path,
                            key=f"people[0].{key}") from None
    if not np.isfinite(array).all():
        raise RefbenchError("keypoints hold NaN or infinity", path=path, key=f"people[0].{key}")
    return array.reshape(points, 3)


def _open(path: Path, what: str):  # -> PIL.Image.Image
    from PIL import Image

    path = _file(path, what)
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RefbenchError(f"cannot decode {what}: {reason}", path=path) from None
    return image


def image_size(path: Path, what: str = "image") -> tuple[int, int]:
    """`(height, width)` of an image file, decoded fully so a cut file fails here."""
    width, height = _open(path, what).size
    return height, width


def read_parse(path: Path) -> np.ndarray:
    """The label map (H x W uint8) of an L- or P-mode parse PNG; labels must be LIP's."""
    image = _open(path, "parse label map")
    if image.mode not in ("L", "P"):
        raise RefbenchError(f"a parse map is an L- or P-mode PNG of label ids, got mode "
                            f"{image.mode}", path=path)
    labels = np.asarray(image, dtype=np.uint8)
    bad = np.unique(labels[labels > MAX_LABEL])
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise RefbenchError(f"unknown parse label(s) {shown}: LIP labels are 0..{MAX_LABEL}",
                            path=path)
    return labels


def read_mask(path: Path, what: str = "mask") -> np.ndarray:
    """A boolean mask: the grey levels of an 8-bit mask image `>= 128`."""
    grey = np.asarray(_open(path, what).convert("L"))
    return grey >= MASK_THRESHOLD


def read_rgb(path: Path, what: str = "image") -> np.ndarray:
    """uint8 H x W x 3 RGB pixels (`Image.open(p).convert("RGB")`, as the loaders read)."""
    return np.asarray(_open(path, what).convert("RGB"), dtype=np.uint8)


def read_depth(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """An MPV3D viewport depth map: 2-D float32 in [0, 1], 0 = background."""
    path = _file(path, "depth map")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy's errors for cut or foreign files
        raise RefbenchError(f"cannot read depth map: {' '.join(str(exc).split())[:160]}",
                            path=path) from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise RefbenchError(f"expected an H x W float depth map, got {array.dtype} of shape "
                            f"{array.shape}", path=path)
    if shape is not None and array.shape != tuple(shape):
        raise RefbenchError(f"depth map is {array.shape[0]}x{array.shape[1]} (HxW), its person "
                            f"image is {shape[0]}x{shape[1]}", path=path)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise RefbenchError(f"depth holds {bad} NaN/infinite value(s)", path=path)
    if array.min() < 0 or array.max() > 1:
        raise RefbenchError(f"viewport depth must lie in [0, 1] (0 = background), found "
                            f"{float(array.min()):g}..{float(array.max()):g}", path=path)
    return array.astype(np.float32)


@dataclass(frozen=True)
class Camera:
    """MPV3D's depth cameras (`camera.txt`): both 4 x 4 poses and the orthographic volume."""

    front_pose: tuple[tuple[float, ...], ...]
    back_pose: tuple[tuple[float, ...], ...]
    xmag: float
    ymag: float
    znear: float
    zfar: float


#: what the depth conversion (`refbench.evaluation.tryon.depth`) assumes
EXPECTED_CAMERA = Camera(
    front_pose=((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 2), (0, 0, 0, 1)),
    back_pose=((-1, 0, 0, 0), (0, 1, 0, 0), (0, 0, -1, -2), (0, 0, 0, 1)),
    xmag=1.0, ymag=1.0, znear=1.0, zfar=3.0)
_NUMBER = r"[-+]?\d+(?:\.\d*)?"
_POSE = re.compile(r"camera_pose:\s*(\[.*?\]\s*\])", re.S)
_ORTHO = re.compile(r"OrthographicCamera\(\s*xmag\s*=\s*(?P<xmag>{n})\s*,\s*ymag\s*=\s*"
                    r"(?P<ymag>{n})\s*,\s*znear\s*=\s*(?P<znear>{n})\s*,\s*zfar\s*=\s*"
                    r"(?P<zfar>{n})\s*\)".format(n=_NUMBER))


def read_camera(path: Path) -> Camera:
    """The cameras of `camera.txt` (the authors' prose with two poses and two cameras)."""
    path = _file(path, "camera description")
    text = path.read_text(encoding="utf-8", errors="replace")
    poses = []
    for match in _POSE.finditer(text):
        numbers = [float(v) for v in re.findall(_NUMBER, match.group(1))]
        if len(numbers) != 16:
            line = text.count("\n", 0, match.start()) + 1
            raise RefbenchError(f"a camera_pose must hold 4 x 4 numbers, found {len(numbers)}",
                                path=path, line=line)
        poses.append(tuple(tuple(numbers[r * 4:r * 4 + 4]) for r in range(4)))
    cameras = list(_ORTHO.finditer(text))
    if len(poses) != 2 or len(cameras) != 2:
        raise RefbenchError(f"expected a front and a back camera_pose and OrthographicCamera, "
                            f"found {len(poses)} pose(s) and {len(cameras)} camera(s)", path=path)
    values = [{k: float(v) for k, v in m.groupdict().items()} for m in cameras]
    if values[0] != values[1]:
        raise RefbenchError("the front and back OrthographicCamera differ", path=path)
    return Camera(poses[0], poses[1], **values[0])


def check_camera(camera: Camera, path: Path) -> None:
    """Refuse cameras other than the ones the official depth conversion is written for."""
    if camera != EXPECTED_CAMERA:
        raise RefbenchError(f"cameras differ from MPV3D's (front at z=+2, back at z=-2 turned "
                            f"180 degrees, orthographic xmag=ymag=1, znear=1, zfar=3): the "
                            f"loader's depth mapping -(2d-1) / 2d-1 would be wrong; got "
                            f"{camera}", path=path)
