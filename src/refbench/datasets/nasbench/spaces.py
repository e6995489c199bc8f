"""Architecture encodings of the tabular NAS benchmarks, and their canonical ids.

Every table keys an architecture by a string; refbench keeps the official string as the
architecture's id (so a row, a submission line and the official file agree) and checks it
against its search space, so a malformed code (wrong length, a choice out of range, a
non-digit) is refused with a message that says which position is wrong.

- NAS-Bench-Macro (Su et al., CVPR 2021): 8 searchable layers, each one of 3 blocks,
  written as 8 digits, e.g. `02012100`: 0 Identity, 1 MB3_K3 (MobileNetV2 block, kernel 3,
  expansion 3), 2 MB6_K5 (kernel 5, expansion 6); 3^8 = 6,561 architectures.
- NAS-Bench-201 as NASLib writes it: a tuple of the 6 cell edges' operations,
  `(0, 2, 3, 2, 3, 1)`, each 0-4 (NASLib's order: none, skip_connect, nor_conv_1x1,
  nor_conv_3x3, avg_pool_3x3); 5^6 = 15,625 cells.
- NAS-Bench-101 as NASLib writes it: a 56-tuple, the 7x7 adjacency matrix flattened row
  by row (0/1, strictly upper triangular: a DAG in topological order) then the 7 node
  operations (0 input first, 1 output last, 2-4 in between: conv3x3-bn-relu,
  conv1x1-bn-relu, maxpool3x3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

#: NAS-Bench-Macro block names by choice
MACRO_BLOCKS = ("Identity", "MB3_K3", "MB6_K5")
MACRO_LAYERS = 8
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = 6
NB101_NODES = 7
NB101_OPS = {0: "input", 1: "output", 2: "conv3x3-bn-relu", 3: "conv1x1-bn-relu",
             4: "maxpool3x3"}

_TUPLE = re.compile(r"\(\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*,?\s*\)")


class ArchitectureError(ValueError):
    """A malformed architecture code; the message says what is wrong (callers add where)."""


def parse_macro(text: str) -> tuple[int, ...]:
    """The 8 choices of a NAS-Bench-Macro code such as `02012100`."""
    if not isinstance(text, str):
        raise ArchitectureError(f"a NAS-Bench-Macro code is a string of {MACRO_LAYERS} digits, "
                                f"got {type(text).__name__}")
    if len(text) != MACRO_LAYERS:
        raise ArchitectureError(f"NAS-Bench-Macro code {text!r} has length {len(text)}, "
                                f"expected {MACRO_LAYERS} (one digit per searchable layer)")
    choices = []
    for position, char in enumerate(text, start=1):
        if char not in "0123456789" or not char.isascii():
            raise ArchitectureError(f"NAS-Bench-Macro code {text!r}: layer {position} is "
                                    f"{char!r}, not a digit")
        if int(char) >= len(MACRO_BLOCKS):
            raise ArchitectureError(f"NAS-Bench-Macro code {text!r}: layer {position} choice "
                                    f"{char} is out of range 0-{len(MACRO_BLOCKS) - 1} "
                                    f"({', '.join(MACRO_BLOCKS)})")
        choices.append(int(char))
    return tuple(choices)


def format_macro(choices: tuple[int, ...]) -> str:
    return "".join(str(c) for c in choices)


def parse_int_tuple(text: str, what: str) -> tuple[int, ...]:
    """The integers of a Python tuple literal as NASLib writes keys: `(0, 2, 3)`."""
    if not isinstance(text, str):
        raise ArchitectureError(f"a {what} code is a tuple string such as '(0, 2, 3, 2, 3, 1)', "
                                f"got {type(text).__name__}")
    match = _TUPLE.fullmatch(text.strip())
    if match is None:
        raise ArchitectureError(f"{what} code {text!r} is not a tuple of integers such as "
                                f"'(0, 2, 3, 2, 3, 1)'")
    return tuple(int(x) for x in match.group(1).split(","))


def format_tuple(values: tuple[int, ...]) -> str:
    """NASLib's spelling: `str(tuple)`."""
    return str(tuple(values))


def parse_nb201(text: str) -> tuple[int, ...]:
    ops = parse_int_tuple(text, "NAS-Bench-201")
    if len(ops) != NB201_EDGES:
        raise ArchitectureError(f"NAS-Bench-201 code {text!r} has {len(ops)} operations, "
                                f"expected {NB201_EDGES} (one per cell edge)")
    for edge, op in enumerate(ops, start=1):
        if not 0 <= op < len(NB201_OPS):
            raise ArchitectureError(f"NAS-Bench-201 code {text!r}: edge {edge} operation {op} is "
                                    f"out of range 0-{len(NB201_OPS) - 1}")
    return ops


def parse_nb101(text: str) -> tuple[int, ...]:
    values = parse_int_tuple(text, "NAS-Bench-101")
    size = NB101_NODES * NB101_NODES + NB101_NODES
    if len(values) != size:
        raise ArchitectureError(f"NAS-Bench-101 code has {len(values)} numbers, expected {size} "
                                f"(7x7 adjacency matrix, then 7 operations)")
    for index, bit in enumerate(values[:NB101_NODES ** 2]):
        row, col = divmod(index, NB101_NODES)
        if bit not in (0, 1):
            raise ArchitectureError(f"NAS-Bench-101 code: adjacency [{row}][{col}] is {bit}, "
                                    f"not 0 or 1")
        if bit and col <= row:
            raise ArchitectureError(f"NAS-Bench-101 code: adjacency [{row}][{col}] is set below "
                                    f"the diagonal (the matrix must be strictly upper "
                                    f"triangular)")
    ops = values[NB101_NODES ** 2:]
    if ops[0] != 0 or ops[-1] != 1:
        raise ArchitectureError(f"NAS-Bench-101 code: operations {ops} must start with 0 (input) "
                                f"and end with 1 (output)")
    for node, op in enumerate(ops[1:-1], start=1):
        if op not in (2, 3, 4):
            raise ArchitectureError(f"NAS-Bench-101 code: node {node} operation {op} is out of "
                                    f"range 2-4")
    return values


@dataclass(frozen=True)
class SearchSpace:
    """One encoding: how a code is checked (`parse`) and written back (`format`)."""

    name: str
    parse: Callable[[str], tuple[int, ...]]
    format: Callable[[tuple[int, ...]], str]
    example: str

    def canonical(self, text: str) -> str:
        """The official spelling of a valid code (raises `ArchitectureError`)."""
        return self.format(self.parse(text))


SPACES: dict[str, SearchSpace] = {
    "nas-bench-macro": SearchSpace("nas-bench-macro", parse_macro, format_macro, "02012100"),
    "nas-bench-201": SearchSpace("nas-bench-201", parse_nb201, format_tuple,
                                 "(0, 2, 3, 2, 3, 1)"),
    "nas-bench-101": SearchSpace("nas-bench-101", parse_nb101, format_tuple,
                                 format_tuple(tuple(int(i in (1, 13)) for i in range(49))
                                              + (0, 2, 3, 4, 2, 3, 1))),
}
