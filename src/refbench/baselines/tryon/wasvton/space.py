"""WAS-VTON's two search spaces, the clothing categories they are searched for, and the
text encoding of an architecture (parser, validator, sampler, mutation).

From the paper (abstract, ACM MM 2021; the official repository is empty):
- NAS-Warping: a bilevel hierarchical space for flow estimation: the network level is the
  number of repeatable warping cells, the operation level the convolution each cell uses;
  an architecture is searched per clothing category;
- NAS-Fusion: which skip connections carry features into the decoder that fuses the warped
  garment with the unchanged person part;
- a one-shot search over both.

refbench's choices (the paper's tables are not available here): at most `MAX_CELLS = 4`
cells; the operation set `OPS` (plain 3x3 / 5x5, dilated 3x3, depthwise-separable 3x3 /
5x5: the usual candidates of one-shot spaces); one skip choice per encoder level of the
fusion U-Net among `SKIPS` (none, the person stream, the warped-garment stream, both).

Encoding, one line (`format_arch` writes it, `parse_arch` reads it)::

    sleeveless=conv3,sep5;short-sleeve=dil3;long-sleeve=conv5,conv3,sep3|fusion=both,garment,none

Left of `|`: per category, its cells' operations (the cell count is how many are listed).
Right: the fusion skip of each encoder level, outermost first. A malformed encoding is a
one-line `RefbenchError` naming the field.

Categories: the VITON releases do not label garments, so `garment_category` derives one
from the in-shop garment mask, a lay-flat T shape: the share of the garment's height over
which it is wider than its torso (sleeves), below `SLEEVE_SHORT` sleeveless, below
`SLEEVE_LONG` short-sleeve, else long-sleeve. On the synthesizer's garments it recovers
the category the synthesizer drew (tested); on real garments it is a documented heuristic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from refbench.errors import RefbenchError

CATEGORIES = ("sleeveless", "short-sleeve", "long-sleeve")
OPS = ("conv3", "conv5", "dil3", "sep3", "sep5")
SKIPS = ("none", "person", "garment", "both")
MAX_CELLS = 4
MIN_CELLS = 1
#: fusion U-Net encoder levels (one skip choice each)
FUSION_LEVELS = 3
#: sleeve share thresholds of `garment_category`
SLEEVE_SHORT, SLEEVE_LONG = 0.12, 0.5
#: a row is "wider than the torso" beyond this factor of the torso's median width
TORSO_MARGIN = 1.15
#: the lowest share of the garment's rows taken as its torso width
HEM_SHARE = 0.1


@dataclass(frozen=True)
class Arch:
    """One architecture: per category the warping cells' operations, and the fusion skips."""

    warp: Mapping[str, tuple[str, ...]]
    fusion: tuple[str, ...]

    def cells(self, category: str) -> int:
        return len(self.warp[category])


def _fail(message: str, key: str) -> RefbenchError:
    return RefbenchError(message, key=key)


def check_warp(ops: Sequence[str], key: str, max_cells: int = MAX_CELLS) -> tuple[str, ...]:
    """A category's cell operations, validated: 1..max_cells known operations."""
    ops = tuple(ops)
    if not MIN_CELLS <= len(ops) <= max_cells:
        raise _fail(f"{len(ops)} warping cells; the space has {MIN_CELLS} to {max_cells}", key)
    for op in ops:
        if op not in OPS:
            raise _fail(f"unknown warping operation {op!r} (one of {', '.join(OPS)})", key)
    return ops


def check_fusion(skips: Sequence[str], levels: int = FUSION_LEVELS) -> tuple[str, ...]:
    skips = tuple(skips)
    if len(skips) != levels:
        raise _fail(f"{len(skips)} fusion skips for {levels} encoder levels", "fusion")
    for skip in skips:
        if skip not in SKIPS:
            raise _fail(f"unknown fusion skip {skip!r} (one of {', '.join(SKIPS)})", "fusion")
    return skips


def parse_arch(text: str, *, max_cells: int = MAX_CELLS, levels: int = FUSION_LEVELS,
               key: str = "model.arch") -> Arch:
    """The encoding (module docstring) -> `Arch`; every category exactly once."""
    if not isinstance(text, str) or text.count("|") != 1:
        raise _fail(f"an architecture is 'CATEGORY=OPS;...|fusion=SKIPS', got {text!r}", key)
    warp_text, fusion_text = (part.strip() for part in text.split("|"))
    warp: dict[str, tuple[str, ...]] = {}
    for item in warp_text.split(";"):
        name, sep, ops = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise _fail(f"warping entry {item!r} is not CATEGORY=OPS", key)
        if name not in CATEGORIES:
            raise _fail(f"unknown clothing category {name!r} (one of {', '.join(CATEGORIES)})", key)
        if name in warp:
            raise _fail(f"category {name!r} given twice", key)
        warp[name] = check_warp([o.strip() for o in ops.split(",")], f"{key}.{name}", max_cells)
    missing = [c for c in CATEGORIES if c not in warp]
    if missing:
        raise _fail(f"no warping cells for {', '.join(missing)}", key)
    name, sep, skips = fusion_text.partition("=")
    if name.strip() != "fusion" or not sep:
        raise _fail(f"the part after '|' is 'fusion=SKIPS', got {fusion_text!r}", key)
    try:
        fusion = check_fusion([s.strip() for s in skips.split(",")], levels)
    except RefbenchError as exc:
        raise _fail(exc.message, f"{key}.fusion") from None
    return Arch({c: warp[c] for c in CATEGORIES}, fusion)


def format_arch(arch: Arch) -> str:
    warp = ";".join(f"{c}={','.join(arch.warp[c])}" for c in CATEGORIES)
    return f"{warp}|fusion={','.join(arch.fusion)}"


def largest_arch(max_cells: int = MAX_CELLS, levels: int = FUSION_LEVELS) -> Arch:
    """The supernet's default path: every cell (plain 3x3) and every skip (`both`)."""
    return Arch({c: ("conv3",) * max_cells for c in CATEGORIES}, ("both",) * levels)


def warp_space_size(max_cells: int = MAX_CELLS) -> int:
    """Architectures of one category's NAS-Warping space: sum over n of |OPS|^n."""
    return sum(len(OPS) ** n for n in range(MIN_CELLS, max_cells + 1))


def fusion_space_size(levels: int = FUSION_LEVELS) -> int:
    return len(SKIPS) ** levels


def sample_warp(rng: random.Random, max_cells: int = MAX_CELLS) -> tuple[str, ...]:
    """Uniform over the network level (cell count), then over each cell's operation: the
    single-path sampling of the one-shot supernet."""
    return tuple(rng.choice(OPS) for _ in range(rng.randint(MIN_CELLS, max_cells)))


def sample_fusion(rng: random.Random, levels: int = FUSION_LEVELS) -> tuple[str, ...]:
    return tuple(rng.choice(SKIPS) for _ in range(levels))


def mutate_warp(ops: tuple[str, ...], rng: random.Random, prob: float,
                max_cells: int = MAX_CELLS) -> tuple[str, ...]:
    """Each cell's operation resampled with `prob`; with `prob` the cell count moves by one
    (a new cell draws its operation uniformly). Always returns a valid code."""
    out = [rng.choice(OPS) if rng.random() < prob else op for op in ops]
    if rng.random() < prob:
        if len(out) < max_cells and (len(out) == MIN_CELLS or rng.random() < 0.5):
            out.append(rng.choice(OPS))
        elif len(out) > MIN_CELLS:
            out.pop()
    return tuple(out)


def mutate_fusion(skips: tuple[str, ...], rng: random.Random, prob: float) -> tuple[str, ...]:
    return tuple(rng.choice(SKIPS) if rng.random() < prob else s for s in skips)


def crossover(a: tuple[str, ...], b: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    """Per position from either parent; the length is one parent's (both are valid)."""
    length = len(a) if rng.random() < 0.5 else len(b)
    return tuple(rng.choice([x[i] for x in (a, b) if i < len(x)]) for i in range(length))


# -- clothing category ------------------------------------------------------------------
def sleeve_share(mask: np.ndarray) -> float:
    """Share of the garment's rows (top to bottom of the mask) that are wider than
    `TORSO_MARGIN` x the torso's width (the median row width of the garment's lowest
    `HEM_SHARE` of rows: the hem, below any sleeve)."""
    mask = np.asarray(mask) > 0
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size < 2:
        raise RefbenchError("the garment mask is empty or one row high: no category")
    top, bottom = rows[0], rows[-1] + 1
    widths = np.array([np.ptp(np.flatnonzero(r)) + 1 if r.any() else 0 for r in mask[top:bottom]])
    torso = float(np.median(widths[-max(1, int(round(len(widths) * HEM_SHARE))):]))
    return float(np.mean(widths > TORSO_MARGIN * torso))


def garment_category(mask: np.ndarray) -> str:
    """The garment's category from its lay-flat mask (module docstring)."""
    share = sleeve_share(mask)
    if share < SLEEVE_SHORT:
        return CATEGORIES[0]
    return CATEGORIES[1] if share < SLEEVE_LONG else CATEGORIES[2]
