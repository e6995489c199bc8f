"""Synthetic chest X-rays and chest CT volumes whose findings are visible in the pixels.

The report synthesizers (IU X-ray in English, CX-CHR and COVID-19 CT in Chinese) draw a
set of findings per study, render them here and write the report from the same set, so a
model that learns to see the finding can learn to write it. The shapes follow chest
anatomy coarsely (lungs, heart, spine, diaphragm; the patient's right on the image's
left, as radiographs and axial CT are displayed) and the intensities follow real
attenuation: CT volumes are in Hounsfield units (air -1000, lung about -850, fat -100,
soft tissue 40, bone 700), X-rays are 8-bit with dense tissue bright.

Finding codes (language-free; the synthesizers phrase them):

* X-ray: `cardiomegaly` (a heart wider than half the thorax), `effusion_{left,right}`
  (fluid filling the lung base with a meniscus), `nodule_{left,right}` (a round dense
  spot in the upper lung), `opacity_{left,right}` (patchy airspace opacity in the lower
  lung).
* CT: `ggo_{left,right}` (ground-glass opacity, about -550 HU, over several slices),
  `consolidation_{left,right}` (about +30 HU), `effusion_{left,right}` (fluid, about
  10 HU, in the dependent posterior lung).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

XRAY_FINDINGS = ("cardiomegaly", "effusion_left", "effusion_right", "nodule_left",
                 "nodule_right", "opacity_left", "opacity_right")
CT_FINDINGS = ("ggo_left", "ggo_right", "consolidation_left", "consolidation_right",
               "effusion_left", "effusion_right")

AIR_HU, LUNG_HU, FAT_HU, TISSUE_HU, BONE_HU = -1000.0, -850.0, -100.0, 40.0, 700.0
GGO_HU, CONSOLIDATION_HU, FLUID_HU = -550.0, 30.0, 10.0


def draw_findings(rng: np.random.Generator, codes: Sequence[str], normal_rate: float = 0.3,
                  max_findings: int = 2) -> list[str]:
    """A random finding set, sorted: empty (a normal study) with probability
    `normal_rate`, else 1 to `max_findings` distinct codes of `codes`."""
    if rng.random() < normal_rate:
        return []
    count = int(rng.integers(1, max_findings + 1))
    picked = [str(c) for c in rng.choice(np.array(codes), size=count, replace=False)]
    return sorted(picked)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _texture(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Mild noise so that two studies with the same findings differ."""
    return rng.normal(0.0, scale, size=shape).astype(np.float32)


# -- chest X-ray ------------------------------------------------------------------------
def _lung_boxes(size: int) -> dict[str, tuple[float, float, float, float]]:
    """Lung ellipses (cy, cx, ry, rx) per patient side; patient right = image left."""
    s = float(size)
    return {"right": (0.50 * s, 0.31 * s, 0.30 * s, 0.14 * s),
            "left": (0.50 * s, 0.69 * s, 0.30 * s, 0.14 * s)}


def render_xray(findings: Sequence[str], rng: np.random.Generator, size: int = 128,
                lateral: bool = False) -> np.ndarray:
    """A uint8 size x size radiograph (PA frontal, or lateral) showing `findings`."""
    shape = (size, size)
    img = np.full(shape, 20.0, np.float32)                       # air around the body
    img[_ellipse(shape, 0.55 * size, 0.5 * size, 0.48 * size, 0.44 * size)] = 120.0
    lungs = _lung_boxes(size)
    if lateral:                                                  # one projected lung field
        cy, _, ry, _ = lungs["right"]
        img[_ellipse(shape, cy, 0.5 * size, ry, 0.26 * size)] = 45.0
    else:
        for cy, cx, ry, rx in lungs.values():
            img[_ellipse(shape, cy, cx, ry, rx)] = 45.0
        img[:, int(0.47 * size):int(0.53 * size)] = 170.0        # spine
    heart_rx = (0.20 if "cardiomegaly" in findings else 0.12) * size
    heart_cx = 0.5 * size if lateral else 0.55 * size
    img[_ellipse(shape, 0.66 * size, heart_cx, 0.13 * size, heart_rx)] = 150.0
    img[int(0.80 * size):, :] = np.maximum(img[int(0.80 * size):, :], 140.0)  # diaphragm
    for side in ("left", "right"):
        cy, cx, ry, rx = lungs[side]
        if lateral:
            cx, rx = 0.5 * size, 0.26 * size
        lung = _ellipse(shape, cy, cx, ry, rx)
        if f"effusion_{side}" in findings:                       # fluid with a meniscus
            yy, xx = np.mgrid[0:size, 0:size]
            level = cy + 0.35 * ry - 0.25 * ry * np.abs(xx - cx) / rx
            img[lung & (yy >= level)] = 130.0
        if f"nodule_{side}" in findings:
            img[_ellipse(shape, cy - 0.45 * ry, cx, 0.06 * size, 0.06 * size)] = 200.0
        if f"opacity_{side}" in findings:
            for k in range(4):
                oy = cy + 0.15 * ry + 0.12 * ry * (k % 2)
                ox = cx + (k - 1.5) * 0.35 * rx
                img[lung & _ellipse(shape, oy, ox, 0.05 * size, 0.05 * size)] = 105.0
    img += _texture(rng, shape, 4.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# -- chest CT ---------------------------------------------------------------------------
def render_ct(findings: Sequence[str], rng: np.random.Generator, slices: int = 12,
              size: int = 64) -> np.ndarray:
    """A float32 (slices, size, size) HU volume, head-first (slice 0 at the apex),
    anterior at the top of each slice, showing `findings` in the lower lungs."""
    shape = (size, size)
    vol = np.full((slices, size, size), AIR_HU, np.float32)
    s = float(size)
    lungs = {"right": (0.48 * s, 0.30 * s, 0.24 * s, 0.15 * s),
             "left": (0.48 * s, 0.70 * s, 0.24 * s, 0.15 * s)}
    lesion_slices = range(slices // 3, slices - max(1, slices // 6))
    for z in range(slices):
        body = _ellipse(shape, 0.5 * s, 0.5 * s, 0.38 * s, 0.47 * s)
        vol[z][body] = FAT_HU
        vol[z][_ellipse(shape, 0.5 * s, 0.5 * s, 0.34 * s, 0.43 * s)] = TISSUE_HU
        grow = 0.6 + 0.4 * min(1.0, (z + 1) / (0.4 * slices))    # lungs widen downward
        for side, (cy, cx, ry, rx) in lungs.items():
            lung = _ellipse(shape, cy, cx, ry * grow, rx * grow)
            vol[z][lung] = LUNG_HU
            if z not in lesion_slices:
                continue
            if f"ggo_{side}" in findings:
                vol[z][lung & _ellipse(shape, cy - 0.05 * s, cx, 0.09 * s, 0.08 * s)] = GGO_HU
            if f"consolidation_{side}" in findings:
                vol[z][lung & _ellipse(shape, cy + 0.02 * s, cx + 0.04 * s * (1 if side ==
                       "left" else -1), 0.07 * s, 0.06 * s)] = CONSOLIDATION_HU
            if f"effusion_{side}" in findings:                   # dependent = posterior
                yy = np.arange(size)[:, None] * np.ones((1, size))
                vol[z][lung & (yy >= cy + 0.55 * ry * grow)] = FLUID_HU
        vol[z][_ellipse(shape, 0.40 * s, 0.53 * s, 0.10 * s, 0.11 * s)] = TISSUE_HU  # heart
        vol[z][_ellipse(shape, 0.80 * s, 0.5 * s, 0.06 * s, 0.06 * s)] = BONE_HU     # spine
    vol += _texture(rng, vol.shape, 12.0)
    return vol
