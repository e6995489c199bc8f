"""WAS-VTON's search spaces: the encoding round trip, one-line errors naming the field, the
space limits pinned, sampling / mutation staying inside the space, and the garment category
derived from the mask agreeing with the category the synthesizer drew."""

from __future__ import annotations

import random

import numpy as np
import pytest

from refbench.baselines.tryon.wasvton import space
from refbench.datasets.tryon.synth import make_garment
from refbench.errors import RefbenchError

GOOD = ("sleeveless=conv3,sep5;short-sleeve=dil3;long-sleeve=conv5,conv3,sep3,dil3"
        "|fusion=both,garment,none")


def test_limits_pinned() -> None:
    assert space.OPS == ("conv3", "conv5", "dil3", "sep3", "sep5")
    assert space.SKIPS == ("none", "person", "garment", "both")
    assert space.CATEGORIES == ("sleeveless", "short-sleeve", "long-sleeve")
    assert (space.MIN_CELLS, space.MAX_CELLS, space.FUSION_LEVELS) == (1, 4, 3)
    assert space.warp_space_size() == 5 + 25 + 125 + 625
    assert space.fusion_space_size() == 64


def test_round_trip() -> None:
    arch = space.parse_arch(GOOD)
    assert arch.warp["long-sleeve"] == ("conv5", "conv3", "sep3", "dil3")
    assert arch.cells("short-sleeve") == 1 and arch.fusion == ("both", "garment", "none")
    assert space.format_arch(arch) == GOOD
    # categories in any order, spaces tolerated; written back in the canonical order
    shuffled = " long-sleeve=conv5,conv3,sep3,dil3;sleeveless=conv3, sep5;short-sleeve=dil3 | fusion=both,garment,none"
    assert space.format_arch(space.parse_arch(shuffled)) == GOOD
    assert space.parse_arch(space.format_arch(space.largest_arch())) == space.largest_arch()


@pytest.mark.parametrize("text, key, words", [
    ("sleeveless=conv3", "model.arch", "CATEGORY=OPS"),
    (GOOD.replace("dil3;", "conv7;"), "model.arch.short-sleeve", "conv7"),
    (GOOD.replace("conv5,conv3,sep3,dil3", "conv5,conv3,sep3,dil3,conv3"),
     "model.arch.long-sleeve", "5 warping cells"),
    (GOOD.replace("short-sleeve=dil3;", ""), "model.arch", "short-sleeve"),
    (GOOD.replace("short-sleeve", "sleeveless"), "model.arch", "twice"),
    (GOOD.replace("sleeveless=", "dress="), "model.arch", "dress"),
    (GOOD.replace("fusion=both,garment,none", "fusion=both,garment"), "model.arch.fusion", "2 fusion skips"),
    (GOOD.replace("garment,none", "garment,all"), "model.arch.fusion", "'all'"),
    (GOOD.replace("fusion=", "skips="), "model.arch", "fusion=SKIPS"),
    (GOOD.replace("short-sleeve=dil3", "short-sleeve="), "model.arch.short-sleeve", "''"),
])
def test_bad_encodings_name_the_field(text: str, key: str, words: str) -> None:
    with pytest.raises(RefbenchError) as info:
        space.parse_arch(text)
    assert info.value.key == key and words in str(info.value) and "\n" not in str(info.value)


def test_max_cells_is_enforced_below_the_space() -> None:
    with pytest.raises(RefbenchError, match="3 warping cells"):
        space.parse_arch(GOOD.replace("conv5,conv3,sep3,dil3", "conv5,conv3,sep3"), max_cells=2)


def test_sampling_and_mutation_stay_valid() -> None:
    rng = random.Random(0)
    counts = set()
    for _ in range(400):
        ops = space.sample_warp(rng)
        space.check_warp(ops, "x")
        counts.add(len(ops))
        child = space.mutate_warp(ops, rng, 0.5)
        space.check_warp(child, "x")
        other = space.crossover(ops, space.sample_warp(rng), rng)
        space.check_warp(other, "x")
        space.check_fusion(space.mutate_fusion(space.sample_fusion(rng), rng, 0.5))
    assert counts == {1, 2, 3, 4}  # the network level is sampled over its whole range
    assert space.mutate_warp(("conv3",) * 4, rng, 0.0) == ("conv3",) * 4


def test_category_from_the_synthesizer_garments() -> None:
    rng = np.random.default_rng(3)
    seen = set()
    for size in ((64, 48), (128, 80), (256, 192)):
        for _ in range(40):
            garment = make_garment(rng, *size)
            assert space.garment_category(garment.mask) == garment.category
            seen.add(garment.category)
    assert seen == set(space.CATEGORIES)


def test_category_thresholds_and_empty_mask() -> None:
    mask = np.zeros((40, 30), bool)
    mask[5:35, 10:20] = True  # a plain rectangle: no sleeves
    assert space.sleeve_share(mask) == 0.0 and space.garment_category(mask) == "sleeveless"
    mask[5:15, 4:26] = True  # 10 of 30 rows wider than the hem
    assert space.sleeve_share(mask) == pytest.approx(1 / 3)
    assert space.garment_category(mask) == "short-sleeve"
    mask[5:25, 4:26] = True  # 20 of 30
    assert space.garment_category(mask) == "long-sleeve"
    with pytest.raises(RefbenchError, match="empty"):
        space.garment_category(np.zeros((8, 8), bool))
