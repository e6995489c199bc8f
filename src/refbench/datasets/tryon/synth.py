"""Synthetic try-on releases that a model can learn from, in the official layouts.

Each synthetic person is a front-facing body drawn from its pose (BODY_25 keypoints, or
COCO-18 for VITON): a head (face 13, hair 2), neck 10, torso and sleeves in the garment's
shape (upper clothes 5), bare arms (left 14 / right 15) with hands, pants 9 and shoes
18 / 19, on a light background. Every person has an in-shop garment: a T-shaped flat
garment whose category sets the sleeves (sleeveless, short, long), with a colour and a
texture (solid, stripes, checks, dots), on white, with its (JPEG, grey-edged) mask.

The person image *is* the garment pasted onto the parse's upper-clothes region: each
upper-clothes pixel takes the in-shop garment's colour at the point the bounding boxes of
(upper clothes + arms) and of the garment mask put in correspondence, the same map
M3D-VTON's pre-alignment makes. So warping (garment -> torso), try-on (person without
garment + garment -> person) and their errors are learnable and measurable; the paired
setting's ground truth is exact. MPV3D persons also get front/back viewport depth that is
consistent with the silhouette (a body thickness growing with the distance to the
outline; front `d = (1 - t) / 2`, the back map mirrored left-right as the back camera sees
it), palm masks from the hands, Sobel images and pre-aligned garments (`preprocess.py`).

Sizes are small (MPV3D 128 x 80, VITON 64 x 48, VITON-HD 128 x 96) so tests run in
seconds; three quarters of the persons are `train` (paired list), the rest `test`, whose
list pairs each person with another test person's garment (unpaired), as the official
test lists do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refbench.datasets.tryon import preprocess
from refbench.io import atomic_write_bytes, atomic_write_text

MPV3D_SIZE, VITON_SIZE, VITONHD_SIZE = (128, 80), (64, 48), (128, 96)
CATEGORIES = ("sleeveless", "short-sleeve", "long-sleeve")
TEXTURES = ("solid", "stripes", "checks", "dots")
BACKGROUND = (235, 235, 230)
#: BODY_25 index -> COCO-18 index for the points both have
COCO_FROM_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)


@dataclass
class Person:
    """One rendered person: RGB, parse, BODY_25 pose, palm mask, front/back depth."""

    rgb: np.ndarray
    parse: np.ndarray
    pose: np.ndarray
    palm: np.ndarray
    depth_front: np.ndarray
    depth_back: np.ndarray


@dataclass
class Garment:
    rgb: np.ndarray
    mask: np.ndarray
    category: str


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(30, 226, size=3)
    other = np.clip(base + rng.choice([-1, 1], size=3) * rng.integers(50, 110, size=3), 0, 255)
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    yy, xx = np.mgrid[0:height, 0:width]
    period = int(rng.integers(4, 9))
    if kind == "stripes":
        pick = (yy // period) % 2 == 0
    elif kind == "checks":
        pick = ((yy // period) + (xx // period)) % 2 == 0
    elif kind == "dots":
        pick = ((yy % period) - period / 2) ** 2 + ((xx % period) - period / 2) ** 2 < (period / 3.5) ** 2
    else:
        pick = np.zeros((height, width), bool)
    return np.where(pick[..., None], other, base).astype(np.uint8)


def make_garment(rng: np.random.Generator, height: int, width: int) -> Garment:
    """A flat T-shaped garment centred on white, its mask, and its category."""
    from PIL import Image, ImageDraw

    category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    cx = width / 2
    half = width * rng.uniform(0.2, 0.26)
    top, bottom = height * 0.22, height * rng.uniform(0.72, 0.8)
    draw.rectangle((cx - half, top, cx + half, bottom), fill=255)
    sleeve = {"sleeveless": 0.0, "short-sleeve": 0.12, "long-sleeve": 0.22}[category] * width
    if sleeve:
        length = height * (0.16 if category == "short-sleeve" else 0.4)
        for side in (-1, 1):
            x0 = cx + side * half
            draw.polygon([(x0, top), (x0 + side * sleeve, top + height * 0.03),
                          (x0 + side * sleeve, top + length), (x0, top + length * 0.6)],
                         fill=255)
    draw.ellipse((cx - half * 0.35, top - height * 0.03, cx + half * 0.35, top + height * 0.05),
                 fill=0)
    binary = np.asarray(mask) > 0
    rgb = np.where(binary[..., None], _texture(rng, height, width), 255).astype(np.uint8)
    return Garment(rgb, binary, category)


def _body25(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Front-facing BODY_25 keypoints (x, y, confidence); the person's right is image left."""
    cx = width / 2 + rng.uniform(-0.04, 0.04) * width
    u = height / 128
    neck_y = height * 0.25
    shoulder = width * rng.uniform(0.17, 0.21)
    hip = width * rng.uniform(0.1, 0.13)
    hip_y = height * 0.58
    pts = np.zeros((25, 3), np.float32)

    def put(i: int, x: float, y: float) -> None:
        pts[i] = (x, y, rng.uniform(0.7, 0.95))

    put(0, cx, neck_y - 10 * u)
    put(1, cx, neck_y)
    for side, (s, e, w) in ((-1, (2, 3, 4)), (1, (5, 6, 7))):
        sx, sy = cx + side * shoulder, neck_y + 2 * u
        angle = rng.uniform(0.15, 0.45)
        upper = 22 * u
        ex, ey = sx + side * upper * np.sin(angle), sy + upper * np.cos(angle)
        put(s, sx, sy)
        put(e, ex, ey)
        put(w, ex + side * upper * np.sin(angle * 0.6), ey + upper * np.cos(angle * 0.6))
    put(8, cx, hip_y)
    for side, (h, k, a) in ((-1, (9, 10, 11)), (1, (12, 13, 14))):
        put(h, cx + side * hip, hip_y)
        put(k, cx + side * hip * 1.1, hip_y + 22 * u)
        put(a, cx + side * hip * 1.15, hip_y + 44 * u)
    for i, dx in ((15, -3), (16, 3), (17, -6), (18, 6)):
        put(i, cx + dx * u, neck_y - 12 * u)
    for i, (a, dx) in ((19, (14, 4)), (20, (14, 6)), (21, (14, -1)), (22, (11, -4)),
                       (23, (11, -6)), (24, (11, 1))):
        put(i, pts[a, 0] + dx * u, pts[a, 1] + 2 * u)
    return pts


def render_person(rng: np.random.Generator, garment: Garment, height: int,
                  width: int) -> Person:
    """A person wearing `garment` (module docstring)."""
    from PIL import Image, ImageDraw
    from scipy.ndimage import distance_transform_edt

    pose = _body25(rng, height, width)
    u = height / 128
    parse_img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(parse_img)
    p = {i: (float(pose[i, 0]), float(pose[i, 1])) for i in range(25)}
    limb = max(2, round(6 * u))
    for a, b, label in ((9, 10, 9), (10, 11, 9), (12, 13, 9), (13, 14, 9)):
        draw.line([p[a], p[b]], fill=label, width=limb + 1)
    for a, label in ((11, 19), (14, 18)):
        x, y = p[a]
        draw.ellipse((x - 3 * u, y - u, x + 3 * u, y + 3 * u), fill=label)
    draw.polygon([p[9], p[12], (p[12][0], p[12][1] - 4 * u), (p[9][0], p[9][1] - 4 * u)], fill=9)
    hand = max(1.5, 3 * u)
    for (s, e, w), label in (((2, 3, 4), 15), ((5, 6, 7), 14)):
        draw.line([p[s], p[e], p[w]], fill=label, width=limb)
        x, y = p[w]
        draw.ellipse((x - hand, y - hand, x + hand, y + 2 * hand), fill=label)
    torso = [p[2], p[5], (p[12][0] + 2 * u, p[12][1]), (p[9][0] - 2 * u, p[9][1])]
    draw.polygon(torso, fill=5)
    sleeve = {"sleeveless": 0.0, "short-sleeve": 0.5, "long-sleeve": 0.95}[garment.category]
    if sleeve:
        for s, e, w in ((2, 3, 4), (5, 6, 7)):
            end = p[e] if sleeve < 0.9 else p[w]
            mid = (p[s][0] + (end[0] - p[s][0]) * sleeve * 1.6, p[s][1] + (end[1] - p[s][1]) *
                   sleeve * 1.6) if sleeve < 0.9 else end
            draw.line([p[s], mid], fill=5, width=limb + 2)
    draw.rectangle((p[1][0] - 3 * u, p[1][1] - 4 * u, p[1][0] + 3 * u, p[1][1] + u), fill=10)
    x, y = p[0]
    draw.ellipse((x - 7 * u, y - 9 * u, x + 7 * u, y + 8 * u), fill=13)
    draw.chord((x - 7.5 * u, y - 10 * u, x + 7.5 * u, y + 4 * u), 180, 360, fill=2)
    parse = np.asarray(parse_img, dtype=np.uint8).copy()
    palm = np.zeros_like(parse, dtype=bool)
    yy, xx = np.mgrid[0:height, 0:width]
    for w, label in ((4, 15), (7, 14)):
        x, y = p[w]
        palm |= ((xx - x) ** 2 + (yy - y - hand / 2) ** 2 <= (hand * 1.2) ** 2) & (parse == label)
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = BACKGROUND
    skin = rng.integers(150, 230, size=3)
    colours = {2: rng.integers(10, 80, size=3), 9: rng.integers(20, 120, size=3),
               18: (30, 30, 30), 19: (30, 30, 30)}
    for label in (10, 13, 14, 15):
        rgb[parse == label] = skin
    for label, colour in colours.items():
        rgb[parse == label] = colour
    aligned, _ = preprocess.prealign_cloth(Image.fromarray(garment.rgb),
                                           Image.fromarray(garment.mask.astype(np.uint8) * 255),
                                           parse)
    cloth_px = parse == 5
    rgb[cloth_px] = np.asarray(aligned)[cloth_px]
    body = parse > 0
    inside = distance_transform_edt(body)
    thickness = np.where(body, 0.08 + 0.3 * inside / max(inside.max(), 1.0), 0.0)
    front = np.where(body, (1.0 - thickness) / 2.0, 0.0).astype(np.float32)
    back = np.fliplr(front).copy()
    return Person(rgb, parse, pose, palm, front, back)


# -- writers ----------------------------------------------------------------------------
def _save(path: Path, array: np.ndarray, fmt: str) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    atomic_write_bytes(path, buffer.getvalue())


def _npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _pose_json(pose: np.ndarray, legacy: bool) -> str:
    key = "pose_keypoints" if legacy else "pose_keypoints_2d"
    values = [round(float(v), 3) for v in pose.reshape(-1)]
    return json.dumps({"version": 1.0 if legacy else 1.3,
                       "people": [{"person_id": [-1], key: values}]})


def _population(n: int, seed: int, height: int, width: int
                ) -> tuple[list[tuple[Person, Garment]], int]:
    rng = np.random.default_rng(seed)
    n = max(int(n), 4)
    people = []
    for _ in range(n):
        garment = make_garment(rng, height, width)
        people.append((render_person(rng, garment, height, width), garment))
    return people, max(1, (3 * n) // 4)


def _pairs(names: list[tuple[str, str]], train: int) -> tuple[str, str]:
    """(train list: paired, test list: each test person with the next one's garment)."""
    train_lines = [f"{p} {c}" for p, c in names[:train]]
    test = names[train:]
    test_lines = [f"{p} {test[(i + 1) % len(test)][1]}" for i, (p, _) in enumerate(test)]
    return "\n".join(train_lines) + "\n", "\n".join(test_lines) + "\n"


CAMERA_TXT = """Synthetic MPV3D double depth maps, with MPV3D's cameras:
1. front: camera_pose: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]]
   pyrender.camera.OrthographicCamera(xmag=1.0, ymag=1.0, znear=1.0, zfar=3.0)
2. back: camera_pose: [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, -2], [0, 0, 0, 1]]
   pyrender.camera.OrthographicCamera(xmag=1.0, ymag=1.0, znear=1.0, zfar=3.0)
"""


def synthesize_mpv3d(out: Path, n: int = 200, seed: int = 0) -> Path:
    """An MPV3D release in `out` (module docstring); returns its root."""
    from PIL import Image

    out = Path(out)
    people, train = _population(n, seed, *MPV3D_SIZE)
    names = []
    for i, (person, garment) in enumerate(people):
        product = f"SY{i:05d}A-Q11"
        p_name, c_name = f"{product}@1=person_whole_front.png", f"{product}@2=cloth_front.jpg"
        names.append((p_name, c_name))
        _save(out / "image" / p_name, person.rgb, "PNG")
        _save(out / "image-parse" / p_name.replace(".png", "_label.png"), person.parse, "PNG")
        atomic_write_text(out / "pose" / p_name.replace(".png", "_keypoints.json"),
                          _pose_json(person.pose, legacy=False))
        _npy(out / "depth" / p_name.replace(".png", "_depth.npy"), person.depth_front)
        _npy(out / "depth" / p_name.replace("front.png", "back_depth.npy"), person.depth_back)
        _save(out / "palm-mask" / p_name.replace("whole_front.png", "palm_mask.png"),
              person.palm.astype(np.uint8) * 255, "PNG")
        for axis, grey in preprocess.sobel_images(person.rgb).items():
            atomic_write_bytes(out / "image-sobel" / p_name.replace(".png", f"_sobel{axis}.png"),
                               preprocess.png_bytes(grey, rgba=True))
        _save(out / "cloth" / c_name, garment.rgb, "JPEG")
        _save(out / "cloth-mask" / c_name.replace(".jpg", "_mask.jpg"),
              garment.mask.astype(np.uint8) * 255, "JPEG")
    train_text, test_text = _pairs(names, train)
    atomic_write_text(out / "train_pairs.txt", train_text)
    atomic_write_text(out / "test_pairs.txt", test_text)
    atomic_write_text(out / "camera.txt", CAMERA_TXT)
    parses = {p: person.parse for (p, _), (person, _) in zip(names, people)}
    for split, text in (("train", train_text), ("test", test_text)):
        for line in text.split("\n"):
            if not line:
                continue
            p_name, c_name = line.split()
            folder = out / "aligned" / f"{split}_pairs"
            with Image.open(out / "cloth" / c_name) as c, \
                    Image.open(out / "cloth-mask" / c_name.replace(".jpg", "_mask.jpg")) as m:
                aligned, mask = preprocess.prealign_cloth(c, m, parses[p_name])
            _save(folder / "cloth" / c_name, np.asarray(aligned), "JPEG")
            _save(folder / "cloth-mask" / c_name.replace(".jpg", "_mask.jpg"),
                  np.asarray(mask), "JPEG")
    return out


def synthesize_viton(out: Path, n: int = 200, seed: int = 0) -> Path:
    """A VITON release (PF-AFN / CP-VTON layout) in `out`; returns its root."""
    out = Path(out)
    people, train = _population(n, seed, *VITON_SIZE)
    names = [(f"{i:06d}_0.jpg", f"{i:06d}_1.jpg") for i in range(len(people))]
    for i, ((person, garment), (p_name, c_name)) in enumerate(zip(people, names)):
        split = "train" if i < train else "test"
        stem = p_name[:-4]
        _save(out / f"{split}_img" / p_name, person.rgb, "JPEG")
        _save(out / f"{split}_label" / f"{stem}.png", person.parse, "PNG")
        atomic_write_text(out / f"{split}_pose" / f"{stem}_keypoints.json",
                          _pose_json(person.pose[list(COCO_FROM_BODY25)], legacy=True))
        _save(out / f"{split}_clothes" / c_name, garment.rgb, "JPEG")
        _save(out / f"{split}_edge" / c_name, garment.mask.astype(np.uint8) * 255, "JPEG")
    train_text, test_text = _pairs(names, train)
    atomic_write_text(out / "train_pairs.txt", train_text)
    atomic_write_text(out / "test_pairs.txt", test_text)
    return out


def synthesize_viton_hd(out: Path, n: int = 200, seed: int = 0) -> Path:
    """A VITON-HD release (HR-VITON layout) in `out`; returns its root. Its cloth-agnostic
    parse is HR-VITON's derivation from the parse and pose (`agnostic.parse_agnostic`)."""
    from PIL import Image, ImageDraw

    from refbench.datasets.tryon.agnostic import parse_agnostic

    out = Path(out)
    people, train = _population(n, seed, *VITONHD_SIZE)
    names = [(f"{i:05d}_00.jpg", f"{i:05d}_00.jpg") for i in range(len(people))]
    for i, ((person, garment), (p_name, _)) in enumerate(zip(people, names)):
        base = out / ("train" if i < train else "test")
        stem = p_name[:-4]
        _save(base / "image" / p_name, person.rgb, "JPEG")
        _save(base / "cloth" / p_name, garment.rgb, "JPEG")
        _save(base / "cloth-mask" / p_name, garment.mask.astype(np.uint8) * 255, "JPEG")
        _save(base / "image-parse-v3" / f"{stem}.png", person.parse, "PNG")
        agnostic = parse_agnostic(person.parse, person.pose)
        _save(base / "image-parse-agnostic-v3.2" / f"{stem}.png", agnostic.astype(np.uint8), "PNG")
        atomic_write_text(base / "openpose_json" / f"{stem}_keypoints.json",
                          _pose_json(person.pose, legacy=False))
        skeleton = Image.new("RGB", (person.rgb.shape[1], person.rgb.shape[0]))
        draw = ImageDraw.Draw(skeleton)
        for a, b in ((1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
                     (10, 11), (8, 12), (12, 13), (13, 14), (0, 1)):
            draw.line([tuple(person.pose[a, :2]), tuple(person.pose[b, :2])],
                      fill=(255, 80 + 10 * a, 40), width=2)
        _save(base / "openpose_img" / f"{stem}_rendered.png", np.asarray(skeleton), "PNG")
    train_text, test_text = _pairs(names, train)
    atomic_write_text(out / "train_pairs.txt", train_text)
    atomic_write_text(out / "test_pairs.txt", test_text)
    return out
