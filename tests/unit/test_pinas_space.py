"""The Pi-NAS search space and its architecture codes (official pinas_learning.py, README)."""

from __future__ import annotations

import numpy as np
import pytest

from refbench.baselines.nas.pinas.space import (CANDIDATES, PUBLISHED, RESNEST50_LAYERS, Candidate,
                                                SearchSpace, published, resnest50_space)
from refbench.errors import RefbenchError


def test_official_space_values() -> None:
    assert CANDIDATES == (Candidate(1, 1, 64), Candidate(2, 1, 64), Candidate(1, 2, 42),
                          Candidate(2, 2, 40))
    assert RESNEST50_LAYERS == (3, 4, 6, 3)
    space = resnest50_space()
    assert space.num_blocks == 16 and space.num_choices == 4 and space.size == 4 ** 16
    # ResNeSt group widths: int(planes * width / 64) * cardinality
    assert [c.group_width(64) for c in CANDIDATES] == [64, 64, 84, 80]
    assert [c.group_width(512) for c in CANDIDATES] == [512, 512, 672, 640]
    assert space.stage_of(0) == (0, 0) and space.stage_of(3) == (1, 0)
    assert space.stage_of(15) == (3, 2)


def test_published_codes_load() -> None:
    assert published("pinas-cls") == (3, 0, 1, 3, 2, 3, 1, 2, 0, 3, 2, 1, 3, 0, 3, 2)
    assert published("pinas-trans") == (3, 3, 3, 3, 1, 1, 3, 3, 3, 0, 0, 1, 1, 0, 2, 1)
    space = resnest50_space()
    for name, code in PUBLISHED.items():
        assert space.format(space.parse(name)) == code
    with pytest.raises(RefbenchError, match="unknown published"):
        published("pinas-det")


@pytest.mark.parametrize("code", ["3 0 1 3 2 3 1 2 0 3 2 1 3 0 3 2",
                                  "3,0,1,3,2,3,1,2,0,3,2,1,3,0,3,2",
                                  " 3, 0 1 3 2 3 1 2 0 3 2 1 3 0 3 2 ",
                                  "3013231203213032",
                                  [3, 0, 1, 3, 2, 3, 1, 2, 0, 3, 2, 1, 3, 0, 3, 2],
                                  np.array([3, 0, 1, 3, 2, 3, 1, 2, 0, 3, 2, 1, 3, 0, 3, 2])])
def test_parse_spellings(code: object) -> None:
    assert resnest50_space().parse(code) == published("pinas-cls")  # type: ignore[arg-type]


@pytest.mark.parametrize("code, message", [
    ("3 0 1 3 2 3 1 2 0 3 2 1 3 0 3", "has 15 choices but the space has 16 blocks"),
    ("3 0 1 3 2 3 1 2 0 3 2 1 3 0 3 2 1", "has 17 choices"),
    ("", "has 0 choices"),
    ("3 0 1 3 2 3 1 2 0 3 2 1 3 0 3 4", "choice 4 of block 15 is out of range 0..3"),
    ("-1 0 1 3 2 3 1 2 0 3 2 1 3 0 3 2", "choice -1 of block 0 is out of range"),
    ("3 x 1 3 2 3 1 2 0 3 2 1 3 0 3 2", "choice 'x' of block 1 is not an integer"),
    ([3, 0, 1, 3, 2, 3, 1, 2, 0, 3, 2, 1, 3, 0, 3, 1.5], "choice 1.5 of block 15"),
    ([True] * 16, "is not an integer"),
    (7, "expected an architecture code"),
])
def test_bad_codes_are_one_line_errors(code: object, message: str) -> None:
    with pytest.raises(RefbenchError, match=message) as info:
        resnest50_space().parse(code, key="model.arch")  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "[model.arch]" in str(info.value)


def test_tiny_space_and_sampling() -> None:
    space = SearchSpace(layers=(1, 1, 1, 1))
    assert space.num_blocks == 4 and space.size == 256
    assert space.parse("3013") == (3, 0, 1, 3)
    with pytest.raises(RefbenchError, match="stages 1\\+1\\+1\\+1"):
        space.parse(PUBLISHED["pinas-cls"])
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = space.two_paths(rng)
        assert all(x != y for x, y in zip(a, b))  # cross-path: different at every block
        assert all(0 <= c < 4 for c in space.random(rng))
    hot = space.one_hot((3, 0, 1, 3))
    assert hot.shape == (16,) and hot.sum() == 4 and hot[3] == 1 and hot[4] == 1
    with pytest.raises(RefbenchError, match="at least one block"):
        SearchSpace(layers=(1, 0))
