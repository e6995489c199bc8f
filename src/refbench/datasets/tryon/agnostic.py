"""The cloth-agnostic inputs VITON-HD and HR-VITON derive from a person's parse and pose.

Both official loaders hide the garment to be replaced before the generator sees the
person; the release ships some of these derivations and leaves others to the loader:

- **agnostic parse** (`image-parse-agnostic-v3.2/`, shipped with the HR-VITON copy of the
  release, computed on the fly by VITON-HD's `datasets.py`): the LIP parse with the
  upper-clothes, dress, coat (5, 6, 7) and neck (10) labels set to background, and the
  arm labels (14 left, 15 right) set to background where they fall inside the arm
  "sleeve" drawn from the pose: per arm, lines of width `10 r` from the opposite shoulder
  to the shoulder, elbow and wrist (a segment is skipped, keeping its start, when either
  end is the OpenPose "not found" point (0, 0)), a disc of radius `15 r` at every reached
  joint but the wrist, `4 r` at the wrist. `r = 10` at the release's 1024 x 768, the
  keypoints in its pixels (HR-VITON's `get_parse_agnostic.py`, VITON-HD's
  `get_parse_agnostic`, identical);
- **agnostic person image** (HR-VITON's `agnostic-v3.2/`, which the release mirror here
  lacks): the person image with the torso, arms and neck painted PIL "gray"
  (128, 128, 128) from the pose, then the head (4, 13) and lower body (9, 12, 16-19)
  pasted back from the image. Two official conventions:
  `hrviton` (HR-VITON's `cp_dataset.py` `get_agnostic`: `r = int(|shoulder_l -
  shoulder_r| / 16) + 1`, hips rescaled to the shoulder width, a 10r x 9r neck box above the
  neck point, arm pixels outside the drawn arm pasted back) and `viton_hd` (VITON-HD's
  `get_img_agnostic`: `r = 20`, a 14r square neck box, nothing of the arms pasted back).

Both need the parse and the pose. A parse cannot be derived here (the release made it with
the CIHP-PGN human-parsing network, which refbench does not ship), nor a pose (OpenPose);
`require` names what is missing. The drawing goes through PIL's `ImageDraw` with the
official shapes, so the result is pixel-exact with the official code at the same Pillow.
At another resolution than 768 wide, the fixed radii (parse `r = 10`, `viton_hd` `r = 20`)
are scaled by width / 768 (the official code only runs at 1024 x 768).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from refbench.errors import RefbenchError

#: the release's width, at which the official radii hold
OFFICIAL_WIDTH = 768
#: HR-VITON `get_parse_agnostic.py` / VITON-HD `get_parse_agnostic`
PARSE_RADIUS = 10
#: VITON-HD `get_img_agnostic`
VITON_HD_IMAGE_RADIUS = 20
#: PIL's "gray"
GREY = (128, 128, 128)
UPPER_LABELS = (5, 6, 7)
NECK_LABEL = 10
HEAD_LABELS = (4, 13)
LOWER_LABELS = (9, 12, 16, 17, 18, 19)
LEFT_ARM, RIGHT_ARM = 14, 15
#: BODY_25 / COCO-18 share these indices: 1 neck, 2-4 right arm, 5-7 left arm, 9/12 hips
NECK, R_SHOULDER, L_SHOULDER, R_HIP, L_HIP = 1, 2, 5, 9, 12
CONVENTIONS = ("hrviton", "viton_hd")


def require(what: str, parse: np.ndarray | None, pose: np.ndarray | None,
            path: Path | None = None) -> None:
    """Refuse a derivation whose inputs the release lacks, with what would be needed."""
    lacking = [name for name, value in (("parse (image-parse-v3)", parse),
                                        ("pose (openpose_json)", pose)) if value is None]
    if lacking:
        raise RefbenchError(f"cannot derive the {what}: it needs the {' and '.join(lacking)}; "
                            f"a parse comes from a human-parsing network (CIHP-PGN) and a pose "
                            f"from OpenPose, which refbench does not run", path=path)


def _points(pose: np.ndarray, path: Path | None) -> np.ndarray:
    """The x, y of an OpenPose array (confidence dropped, as the loaders' `[:, :2]`)."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim != 2 or pose.shape[1] not in (2, 3) or pose.shape[0] < 13:
        raise RefbenchError(f"expected an OpenPose keypoint array of shape (25 or 18, 2 or 3), "
                            f"got {pose.shape}", path=path)
    if not np.isfinite(pose).all():
        raise RefbenchError("keypoints hold NaN or infinity", path=path)
    return pose[:, :2].copy()


def _absent(point: np.ndarray) -> bool:
    return bool(point[0] == 0.0 and point[1] == 0.0)


def _scale(width: int) -> float:
    return width / OFFICIAL_WIDTH


def _labels(parse: np.ndarray, path: Path | None) -> np.ndarray:
    parse = np.asarray(parse)
    if parse.ndim != 2:
        raise RefbenchError(f"a parse map is H x W label ids, got shape {parse.shape}", path=path)
    if parse.size and int(parse.max()) > 19:
        raise RefbenchError(f"unknown parse label(s) {sorted(set(np.unique(parse[parse > 19])))}"
                            f": LIP labels are 0..19", path=path)
    return parse.astype(np.uint8)


def arm_sleeve(shape: tuple[int, int], pose: np.ndarray, chain: Sequence[int],
               r: float) -> np.ndarray:
    """The region `parse_agnostic` clears of one arm label (module docstring): `chain` is
    (other shoulder, shoulder, elbow, wrist)."""
    from PIL import Image, ImageDraw

    height, width = shape
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    previous = chain[0]
    for joint in chain[1:]:
        if _absent(pose[previous]) or _absent(pose[joint]):
            continue
        draw.line([tuple(pose[previous]), tuple(pose[joint])], 255, width=int(round(r * 10)))
        x, y = pose[joint]
        radius = r * 4 if joint == chain[-1] else r * 15
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), 255, 255)
        previous = joint
    return np.asarray(canvas) == 255


def parse_agnostic(parse: np.ndarray, pose: np.ndarray, path: Path | None = None
                   ) -> np.ndarray:
    """The cloth-agnostic parse (H x W uint8 LIP labels) of `parse` and its OpenPose `pose`
    (module docstring); `path` names the parse in errors."""
    labels = _labels(parse, path)
    points = _points(pose, path)
    r = PARSE_RADIUS * _scale(labels.shape[1])
    out = labels.copy()
    for label, chain in ((LEFT_ARM, (R_SHOULDER, L_SHOULDER, 6, 7)),
                         (RIGHT_ARM, (L_SHOULDER, R_SHOULDER, 3, 4))):
        out[arm_sleeve(labels.shape, points, chain, r) & (labels == label)] = 0
    out[np.isin(labels, UPPER_LABELS + (NECK_LABEL,))] = 0
    return out


def _rescaled_hips(points: np.ndarray, path: Path | None) -> np.ndarray:
    """Both loaders move the hips to the shoulder width about their midpoint (in place in
    the official code, so every later shape uses the moved hips)."""
    shoulders = np.linalg.norm(points[L_SHOULDER] - points[R_SHOULDER])
    hips = np.linalg.norm(points[L_HIP] - points[R_HIP])
    if hips == 0:
        raise RefbenchError("the two hip keypoints coincide (OpenPose found neither hip): "
                            "the agnostic image rescales the hips to the shoulder width", path=path)
    middle = (points[R_HIP] + points[L_HIP]) / 2
    points = points.copy()
    points[R_HIP] = middle + (points[R_HIP] - middle) / hips * shoulders
    points[L_HIP] = middle + (points[L_HIP] - middle) / hips * shoulders
    return points


def _limbs(draw, points: np.ndarray, r: float, line: float, disc: tuple[float, float]) -> None:
    for joint in (3, 4, 6, 7):
        if _absent(points[joint - 1]) or _absent(points[joint]):
            continue
        draw.line([tuple(points[joint - 1]), tuple(points[joint])], "gray", width=int(line))
        x, y = points[joint]
        draw.ellipse((x - disc[0], y - disc[1], x + disc[0], y + disc[1]), "gray", "gray")


def _torso(draw, points: np.ndarray, r: float) -> None:
    for joint in (R_HIP, L_HIP):
        x, y = points[joint]
        draw.ellipse((x - r * 3, y - r * 6, x + r * 3, y + r * 6), "gray", "gray")
    draw.line([tuple(points[i]) for i in (R_SHOULDER, R_HIP)], "gray", width=int(r * 6))
    draw.line([tuple(points[i]) for i in (L_SHOULDER, L_HIP)], "gray", width=int(r * 6))
    draw.line([tuple(points[i]) for i in (R_HIP, L_HIP)], "gray", width=int(r * 12))
    draw.polygon([tuple(points[i]) for i in (R_SHOULDER, L_SHOULDER, L_HIP, R_HIP)], "gray",
                 "gray")


def _paste(target, source, mask: np.ndarray) -> None:
    from PIL import Image

    target.paste(source, None, Image.fromarray(mask.astype(np.uint8) * np.uint8(255), "L"))


def image_agnostic(image: np.ndarray, parse: np.ndarray, pose: np.ndarray,
                   convention: str = "hrviton", path: Path | None = None) -> np.ndarray:
    """The cloth-agnostic person image (H x W x 3 uint8) of an RGB `image`, its parse and its
    OpenPose `pose`, in HR-VITON's or VITON-HD's convention (module docstring)."""
    from PIL import Image, ImageDraw

    if convention not in CONVENTIONS:
        raise RefbenchError(f"unknown agnostic convention {convention!r} (known: "
                            f"{', '.join(CONVENTIONS)})", key="agnostic")
    labels = _labels(parse, path)
    image = np.asarray(image, dtype=np.uint8)
    if image.shape[:2] != labels.shape or image.ndim != 3 or image.shape[2] != 3:
        raise RefbenchError(f"person image {image.shape} and parse {labels.shape} differ in "
                            f"size", path=path)
    points = _rescaled_hips(_points(pose, path), path)
    person = Image.fromarray(image, "RGB")
    out = person.copy()
    draw = ImageDraw.Draw(out)
    if convention == "hrviton":
        r = int(np.linalg.norm(points[L_SHOULDER] - points[R_SHOULDER]) / 16) + 1
        _torso(draw, points, r)
        x, y = points[NECK]
        draw.rectangle((x - r * 5, y - r * 9, x + r * 5, y), "gray", "gray")
        draw.line([tuple(points[i]) for i in (R_SHOULDER, L_SHOULDER)], "gray", width=r * 12)
        for joint in (R_SHOULDER, L_SHOULDER):
            x, y = points[joint]
            draw.ellipse((x - r * 5, y - r * 6, x + r * 5, y + r * 6), "gray", "gray")
        _limbs(draw, points, r, r * 10, (r * 5, r * 5))
        for label, chain in ((LEFT_ARM, (5, 6, 7)), (RIGHT_ARM, (2, 3, 4))):
            _paste(out, person, ~_drawn_arm(labels.shape, points, chain, r)
                   & (labels == label))
    else:
        r = VITON_HD_IMAGE_RADIUS * _scale(labels.shape[1])
        draw.line([tuple(points[i]) for i in (R_SHOULDER, L_SHOULDER)], "gray",
                  width=int(round(r * 10)))
        for joint in (R_SHOULDER, L_SHOULDER):
            x, y = points[joint]
            draw.ellipse((x - r * 5, y - r * 5, x + r * 5, y + r * 5), "gray", "gray")
        _limbs(draw, points, r, round(r * 10), (r * 5, r * 5))
        _torso(draw, points, r)
        x, y = points[NECK]
        draw.rectangle((x - r * 7, y - r * 7, x + r * 7, y + r * 7), "gray", "gray")
    _paste(out, person, np.isin(labels, HEAD_LABELS))
    _paste(out, person, np.isin(labels, LOWER_LABELS))
    return np.asarray(out, dtype=np.uint8)


def _drawn_arm(shape: tuple[int, int], points: np.ndarray, chain: Sequence[int],
               r: int) -> np.ndarray:
    """HR-VITON's `get_agnostic` arm shape (black on white there): the arm's joints as
    ellipses and lines, whose outside is pasted back from the person."""
    from PIL import Image, ImageDraw

    height, width = shape
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    x, y = points[chain[0]]
    draw.ellipse((x - r * 5, y - r * 6, x + r * 5, y + r * 6), 255, 255)
    for joint in chain[1:]:
        if _absent(points[joint - 1]) or _absent(points[joint]):
            continue
        draw.line([tuple(points[joint - 1]), tuple(points[joint])], 255, width=r * 10)
        x, y = points[joint]
        if joint != chain[-1]:
            draw.ellipse((x - r * 5, y - r * 5, x + r * 5, y + r * 5), 255, 255)
    draw.ellipse((x - r * 4, y - r * 4, x + r * 4, y + r * 4), 255, 255)
    return np.asarray(canvas) == 255
