"""The Pi-NAS search space and its architecture encoding.

Pi-NAS searches a ResNeSt-50-D (official `SuperResNet`, `configs/pinas_learning.py`):
stages of [3, 4, 6, 3] = 16 bottleneck blocks, each of which picks one of four
split-attention candidates (radix, cardinality, base width)

    0: (1, 1, 64)   1: (2, 1, 64)   2: (1, 2, 42)   3: (2, 2, 40)

all with `avd` (the 3x3 average pool that carries a block's stride). An architecture is
the list of the 16 choice indices, written as the official tools write it: one integer
per block separated by blanks (`verify.py --choice-indices 3 0 1 3 ...`); a comma list,
a YAML list of integers and a packed digit string (the search hook's lookup keys,
`''.join(...)`) are read too. The published architectures load by name (`PUBLISHED`).

A tiny space keeps the candidates and shrinks the stages (`SearchSpace(layers=(1, 1, 1, 1))`),
so every rule here is checked on CPU exactly as at full scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from refbench.errors import RefbenchError


@dataclass(frozen=True)
class Candidate:
    """One split-attention bottleneck choice: its group width is
    `int(planes * base_width / 64) * cardinality` and its 3x3 conv has `radix` splits."""

    radix: int
    cardinality: int
    base_width: int

    def group_width(self, planes: int) -> int:
        """Channels of the bottleneck's 3x3 conv (ResNeSt's `group_width`)."""
        return int(planes * (self.base_width / 64.0)) * self.cardinality

    def describe(self) -> str:
        return f"radix {self.radix}, cardinality {self.cardinality}, width {self.base_width}"


#: the four candidates of `configs/pinas_learning.py`, in choice-index order
CANDIDATES: tuple[Candidate, ...] = (Candidate(1, 1, 64), Candidate(2, 1, 64),
                                     Candidate(1, 2, 42), Candidate(2, 2, 40))
#: blocks per stage of ResNeSt-50 (`layers=[3, 4, 6, 3]`)
RESNEST50_LAYERS: tuple[int, ...] = (3, 4, 6, 3)
#: the published architectures (official README): ImageNet classification and transfer
PUBLISHED: dict[str, str] = {
    "pinas-cls": "3 0 1 3 2 3 1 2 0 3 2 1 3 0 3 2",
    "pinas-trans": "3 3 3 3 1 1 3 3 3 0 0 1 1 0 2 1",
}

Arch = tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    """Stages (`layers`, blocks per stage) x candidates per block."""

    layers: tuple[int, ...] = RESNEST50_LAYERS
    candidates: tuple[Candidate, ...] = field(default=CANDIDATES)

    def __post_init__(self) -> None:
        if not self.layers or any(int(n) < 1 for n in self.layers):
            raise RefbenchError(f"every stage needs at least one block, got {list(self.layers)}",
                                key="model.layers")
        if len(self.candidates) < 2:
            raise RefbenchError("a search space needs at least two candidates per block",
                                key="model.candidates")

    @property
    def num_blocks(self) -> int:
        return int(sum(self.layers))

    @property
    def num_choices(self) -> int:
        return len(self.candidates)

    @property
    def size(self) -> int:
        """How many architectures the space holds (4^16 ~ 4.3e9 for ResNeSt-50)."""
        return self.num_choices ** self.num_blocks

    def stage_of(self, block: int) -> tuple[int, int]:
        """(stage, index within the stage) of block `block` (0-based)."""
        start = 0
        for stage, count in enumerate(self.layers):
            if block < start + count:
                return stage, block - start
            start += count
        raise IndexError(block)

    # -- the encoding ------------------------------------------------------------------
    def parse(self, code: str | Sequence[Any], *, key: str = "model.arch") -> Arch:
        """An architecture code -> a checked tuple of choice indices.

        Accepts a published name (`pinas-cls`), blank- or comma-separated integers, a packed
        digit string (when every index is one digit), or a list of integers. A wrong length,
        an index out of range or a non-integer is a one-line `RefbenchError` naming `key`."""
        if isinstance(code, str):
            text = PUBLISHED.get(code.strip(), code).strip()
            tokens = [t for t in re.split(r"[\s,]+", text) if t]
            if len(tokens) == 1 and len(tokens[0]) == self.num_blocks and tokens[0].isdigit() \
                    and self.num_blocks > 1:
                tokens = list(tokens[0])
            values: list[Any] = tokens
        elif isinstance(code, (list, tuple, np.ndarray)):
            values = list(code)
        else:
            raise RefbenchError(f"expected an architecture code such as "
                                f"{PUBLISHED['pinas-cls']!r}, got {code!r}", key=key)
        if len(values) != self.num_blocks:
            raise RefbenchError(f"the code has {len(values)} choices but the space has "
                                f"{self.num_blocks} blocks (stages "
                                f"{'+'.join(str(n) for n in self.layers)})", key=key)
        arch = []
        for block, value in enumerate(values):
            index = _as_index(value)
            if index is None:
                raise RefbenchError(f"choice {value!r} of block {block} is not an integer",
                                    key=key)
            if not 0 <= index < self.num_choices:
                raise RefbenchError(f"choice {index} of block {block} is out of range "
                                    f"0..{self.num_choices - 1}", key=key)
            arch.append(index)
        return tuple(arch)

    @staticmethod
    def format(arch: Sequence[int]) -> str:
        """The official spelling: indices separated by one blank."""
        return " ".join(str(int(c)) for c in arch)

    # -- sampling ----------------------------------------------------------------------
    def random(self, rng: np.random.Generator) -> Arch:
        """A uniformly drawn architecture (SPOS's single-path sampling)."""
        return tuple(int(c) for c in rng.integers(0, self.num_choices, self.num_blocks))

    def two_paths(self, rng: np.random.Generator) -> tuple[Arch, Arch]:
        """Two paths that differ at every block (Pi-NAS's cross-path sampling: per block,
        two distinct candidates drawn without replacement)."""
        pairs = [rng.choice(self.num_choices, 2, replace=False) for _ in range(self.num_blocks)]
        return tuple(int(p[0]) for p in pairs), tuple(int(p[1]) for p in pairs)

    def one_hot(self, arch: Sequence[int]) -> np.ndarray:
        """`(blocks * choices,)` 0/1 features of an architecture (for learned partitions)."""
        out = np.zeros((self.num_blocks, self.num_choices), dtype=np.float32)
        out[np.arange(self.num_blocks), np.asarray(arch, dtype=np.int64)] = 1.0
        return out.reshape(-1)


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value)
    return None


def resnest50_space() -> SearchSpace:
    """The official 16-block space."""
    return SearchSpace()


def published(name: str) -> Arch:
    """A published architecture by name (`pinas-cls`, `pinas-trans`)."""
    if name not in PUBLISHED:
        raise RefbenchError(f"unknown published Pi-NAS architecture {name!r} (known: "
                            f"{', '.join(PUBLISHED)})")
    return resnest50_space().parse(PUBLISHED[name])
