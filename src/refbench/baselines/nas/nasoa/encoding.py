"""The joint block-level + macro-level architecture code of NASOA's search space, written
in the grammar of vega's DNet (`vega/networks/dnet.py`, codecs in
`vega/algorithms/nas/dnet_nas/`), the closest public relative of NASOA (no NASOA code is
public). A code has three `_`-separated parts, e.g. `031-_64_12-1111-11211112-2`:

BLOCK  `LAYERS[-CONNECTIONS]`, or several of them joined by `*` (one per stage, a "big
       model": stage k uses the k-th block code). LAYERS alternates an operation digit and a
       width digit and ends with an operation digit (`031`: conv3 at width 3, then conv1);
       the last layer's width digit is implicitly 2. A layer's output width is
       `base * 2**w // 4` (w in 0..4, so 1/4x..4x the block's width), `base` being the
       block's input width times its macro digit. Operations (index = digit):
       conv3, conv1, conv3_grp2, conv3_grp4, conv3_base1, conv3_base32, conv3_sep.
       CONNECTIONS are 3-character groups `tij`: t = `a` (add) or `c` (concatenate), from
       output i to output j (0 = the block input, k = layer k), i < j; vega applies them
       sorted by j (a stable sort) and always adds the implicit residual `a0L` (L = the
       number of layers), so `a0L` itself is not a legal group.
CHANNEL the width after the 3-conv stem (which has two stride-2 convs); an even integer.
MACRO  one character per block: a digit = the block's channel multiplier (1 keeps the width,
       2 doubles it); `-` before a digit makes that block downsample (stride 2).

Within a block, the stride sits on the first layer whose operation is not conv1 (the last
layer when all are conv1). Codes that vega would build but that cannot run are refused
here with one line: a concatenation into the last layer (the block's output width would
no longer match the macro's), a grouped convolution whose widths do not divide, a
trailing or doubled `-`, a channel multiplier of 0, a stage without a block code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from refbench.errors import RefbenchError

#: vega's `op_names` (DNet); the digit of an operation is its index here
OPS = ("conv3", "conv1", "conv3_grp2", "conv3_grp4", "conv3_base1", "conv3_base32", "conv3_sep")
#: layer width digits: `base * 2**w // 4` (vega's codec draws from 5 choices)
WIDTHS = 5
#: the implicit width digit of a block's last layer (its output = the block's width)
LAST_WIDTH = 2


class EncodingError(RefbenchError):
    """A malformed or unbuildable architecture code (one line naming the code and the part)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, key=f"arch {code!r}")


@dataclass(frozen=True)
class Connection:
    """A skip connection inside a block: `kind` 'a' (add) or 'c' (concat), outputs i -> j."""

    kind: str
    source: int
    target: int

    def __str__(self) -> str:
        return f"{self.kind}{self.source}{self.target}"


@dataclass(frozen=True)
class BlockCode:
    """One block: operations and width digits per layer, and its skip connections."""

    ops: tuple[int, ...]
    widths: tuple[int, ...]  # one per layer; the last is LAST_WIDTH
    connections: tuple[Connection, ...]
    has_dash: bool = True  # vega's codecs always write the `-`, even with no connection

    @property
    def depth(self) -> int:
        return len(self.ops)

    @property
    def stride_layer(self) -> int:
        """The layer (0-based) that carries a block's stride: the first that is not conv1."""
        place = 0
        while place < self.depth - 1 and OPS[self.ops[place]] == "conv1":
            place += 1
        return place

    def ordered_connections(self) -> list[Connection]:
        """The connections as vega applies them: sorted by target (stable), then `a0L`."""
        return sorted(self.connections, key=lambda c: c.target) + \
            [Connection("a", 0, self.depth)]

    def __str__(self) -> str:
        digits = "".join(f"{o}{w}" for o, w in zip(self.ops[:-1], self.widths[:-1]))
        text = digits + str(self.ops[-1])
        if self.has_dash or self.connections:
            text += "-" + "".join(str(c) for c in self.connections)
        return text


@dataclass(frozen=True)
class MacroBlock:
    """One position of the macro string: the channel multiplier and whether it downsamples."""

    multiplier: int
    stride: int


@dataclass(frozen=True)
class Architecture:
    """A parsed code: the block code(s), the stem width and the macro sequence."""

    blocks: tuple[BlockCode, ...]
    channel: int
    macro: tuple[MacroBlock, ...]

    @property
    def stages(self) -> int:
        return 1 + sum(1 for m in self.macro if m.stride == 2)

    def block_for(self, index: int) -> BlockCode:
        """The block code of macro position `index` (big models: one per stage)."""
        if len(self.blocks) == 1:
            return self.blocks[0]
        stage = sum(1 for m in self.macro[: index + 1] if m.stride == 2)
        return self.blocks[stage]

    @property
    def macro_string(self) -> str:
        return "".join(("-" if m.stride == 2 else "") + str(m.multiplier) for m in self.macro)

    def __str__(self) -> str:
        return f"{'*'.join(str(b) for b in self.blocks)}_{self.channel}_{self.macro_string}"


def parse_block(text: str, code: str) -> BlockCode:
    """One block code (`LAYERS[-CONNECTIONS]`)."""
    layers, dash, links = text.partition("-")
    if not layers:
        raise EncodingError(code, f"block {text!r} has no layer")
    if not layers.isdigit():
        raise EncodingError(code, f"block {text!r}: layers must be digits, got {layers!r}")
    if len(layers) % 2 == 0:
        raise EncodingError(code, f"block {text!r}: layers alternate operation and width "
                                  f"digits and end with an operation ({len(layers)} digits)")
    ops = tuple(int(c) for c in layers[0::2])
    widths = tuple(int(c) for c in layers[1::2]) + (LAST_WIDTH,)
    for op in ops:
        if op >= len(OPS):
            raise EncodingError(code, f"block {text!r}: operation {op} is not one of 0-"
                                      f"{len(OPS) - 1} ({', '.join(OPS)})")
    for width in widths:
        if width >= WIDTHS:
            raise EncodingError(code, f"block {text!r}: width digit {width} is not one of "
                                      f"0-{WIDTHS - 1}")
    if len(ops) > 9:
        raise EncodingError(code, f"block {text!r}: {len(ops)} layers; connections name "
                                  f"outputs with one digit, so at most 9")
    if len(links) % 3:
        raise EncodingError(code, f"block {text!r}: connections are 3-character groups "
                                  f"(a|c, from, to), got {links!r}")
    found: list[Connection] = []
    depth = len(ops)
    for start in range(0, len(links), 3):
        part = links[start:start + 3]
        if part[0] not in "ac" or not part[1:].isdigit():
            raise EncodingError(code, f"block {text!r}: connection {part!r} is not "
                                      f"a|c + two digits")
        link = Connection(part[0], int(part[1]), int(part[2]))
        if not 0 <= link.source < link.target <= depth:
            raise EncodingError(code, f"block {text!r}: connection {part!r} must go from an "
                                      f"earlier output to a later one (0 <= i < j <= {depth})")
        if (link.source, link.target) == (0, depth):
            raise EncodingError(code, f"block {text!r}: connection {part!r} is the implicit "
                                      f"block residual a0{depth}")
        if link.kind == "c" and link.target == depth:
            raise EncodingError(code, f"block {text!r}: concatenation {part!r} into the last "
                                      f"layer would change the block's output width")
        if any((c.source, c.target) == (link.source, link.target) for c in found):
            raise EncodingError(code, f"block {text!r}: connection {link.source}->"
                                      f"{link.target} is given twice")
        found.append(link)
    return BlockCode(ops, widths, tuple(found), has_dash=bool(dash))


def parse_macro(text: str, code: str) -> tuple[MacroBlock, ...]:
    """The macro string: digits, each optionally preceded by one `-`."""
    if not text:
        raise EncodingError(code, "the macro part is empty")
    out: list[MacroBlock] = []
    index = 0
    while index < len(text):
        stride = 1
        if text[index] == "-":
            stride, index = 2, index + 1
            if index == len(text) or text[index] == "-":
                raise EncodingError(code, f"macro {text!r}: '-' at position {index} must be "
                                          f"followed by a digit")
        char = text[index]
        if not char.isdigit() or char == "0":
            raise EncodingError(code, f"macro {text!r}: {char!r} at position {index} is not "
                                      f"a channel multiplier 1-9 or '-'")
        out.append(MacroBlock(int(char), stride))
        index += 1
    return tuple(out)


def parse(code: str) -> Architecture:
    """Parse and validate a code (`BLOCK_CHANNEL_MACRO`); every fault is one line."""
    if not isinstance(code, str):
        raise EncodingError(str(code), f"an architecture code is a string, got "
                                       f"{type(code).__name__}")
    parts = code.strip().split("_")
    if len(parts) != 3:
        raise EncodingError(code, f"expected BLOCK_CHANNEL_MACRO (3 parts joined by '_'), got "
                                  f"{len(parts)} part(s)")
    block_text, channel_text, macro_text = parts
    if not channel_text.isdigit():
        raise EncodingError(code, f"channel {channel_text!r} is not a positive integer")
    channel = int(channel_text)
    if channel < 2 or channel % 2:
        raise EncodingError(code, f"channel {channel} must be even and >= 2 (the stem's first "
                                  f"convolutions have channel/2 filters)")
    blocks = tuple(parse_block(b, code) for b in block_text.split("*"))
    macro = parse_macro(macro_text, code)
    arch = Architecture(blocks, channel, macro)
    if len(blocks) > 1 and len(blocks) != arch.stages:
        raise EncodingError(code, f"{len(blocks)} block codes joined by '*' but the macro has "
                                  f"{arch.stages} stages (one block code per stage)")
    layer_plan(arch, code)  # widths and groups must divide
    return arch


def layer_plan(arch: Architecture, code: str = "") -> list[list[tuple[str, int, int, int]]]:
    """Per block, per layer: (operation, in width, out width, stride); checks that every
    grouped convolution's widths divide (vega's `conv33` raises, here one line)."""
    code = code or str(arch)
    plan: list[list[tuple[str, int, int, int]]] = []
    width = arch.channel
    for index, macro in enumerate(arch.macro):
        block = arch.block_for(index)
        base = width * macro.multiplier
        sizes = [width]
        layers: list[tuple[str, int, int, int]] = []
        links = block.ordered_connections()
        for i, (op, w) in enumerate(zip(block.ops, block.widths)):
            name, c_in, c_out = OPS[op], sizes[-1], base * 2 ** w // 4
            if c_out < 1:
                raise EncodingError(code, f"block {index}: layer {i + 1} would have 0 channels "
                                          f"(width digit {w} of {base})")
            groups = {"conv3_grp2": 2, "conv3_grp4": 4, "conv3_base1": c_in,
                      "conv3_base32": c_in // 32}.get(name, 1)
            if groups < 1 or c_in % groups or c_out % groups:
                raise EncodingError(code, f"block {index}: layer {i + 1} {name} needs widths "
                                          f"divisible by its groups ({c_in} -> {c_out}, "
                                          f"groups {groups})")
            layers.append((name, c_in, c_out, macro.stride if i == block.stride_layer else 1))
            sizes.append(c_out)
            for link in links:
                if link.target == i + 1 and link.kind == "c":
                    sizes[i + 1] += sizes[link.source]
        plan.append(layers)
        width = base
    return plan


def is_valid(code: str) -> bool:
    """True when `parse(code)` succeeds."""
    try:
        parse(code)
    except RefbenchError:
        return False
    return True


# -- sampling and mutation (vega's DblockNasCodec / DnetNasCodec / DnetNas.ea_sample) -------
def random_block(rng: random.Random, op_num: int, skip_num: int) -> str:
    """A random block code as vega's `decode_d_block_str` draws it: `op_num` layers with
    random operations and widths, `skip_num` connections of random kind. (vega picks the
    connections with `np.random.permutation(skip_num)`, i.e. always the first `skip_num`
    of its list; here they are drawn from the whole list, which is what the codec means.)"""
    digits = ""
    for i in range(op_num):
        digits += str(rng.randrange(len(OPS)))
        if i < op_num - 1:
            digits += str(rng.randrange(WIDTHS))
    pairs = [(i, j) for i in range(op_num + 1) for j in range(i + 1, op_num + 1)
             if not (i == 0 and j == op_num)]
    chosen = sorted(rng.sample(range(len(pairs)), min(skip_num, len(pairs))))
    links = ""
    for index in chosen:
        i, j = pairs[index]
        kind = "a" if j == op_num else rng.choice("ac")  # no concat into the last layer
        links += f"{kind}{i}{j}"
    return f"{digits}-{links}"


def random_macro(rng: random.Random, code_length: int, base_channel: int,
                 final_channel: int, downsample: int) -> str:
    """A macro string as vega's `DnetNasCodec.encode` draws it: `code_length` positions of
    '1', log2(final/base) of them '2' (widen) and `downsample` of them '-' (stride 2), no
    two downsamples adjacent; a '-' is followed by the next position's digit. Unlike vega,
    the last position is never a '-' (vega would build a broken network)."""
    import math

    widen = int(math.log2(final_channel // base_channel))
    if widen + downsample > code_length - 1:
        raise RefbenchError(f"code_length {code_length} is too short for {widen} widenings and "
                            f"{downsample} downsamplings", key="code_length")
    while True:
        positions = sorted(rng.sample(range(code_length - 1), widen + downsample))
        down = set(rng.sample(positions, downsample))
        if not any(p + 1 in down for p in down):
            break
    chars = ["1"] * code_length
    for p in positions:
        chars[p] = "-" if p in down else "2"
    return "".join(chars)


def mutate_macro(rng: random.Random, macro: str) -> str:
    """One of vega's three macro mutations, chosen at random: insert a '1', remove a '1',
    or swap two neighbouring different characters (never moving a '-' to the end)."""
    chars = list(macro)
    move = rng.randrange(3)
    if move == 0:
        chars.insert(rng.randrange(len(chars)), "1")
    elif move == 1 and "1" in chars[:-1] and len(chars) > 2:
        ones = [i for i, c in enumerate(chars) if c == "1" and i < len(chars) - 1]
        chars.pop(rng.choice(ones))
    else:
        swaps = [i for i in range(len(chars) - 1) if chars[i] != chars[i + 1]
                 and not (i == len(chars) - 2 and chars[i] == "-")]
        if swaps:
            i = rng.choice(swaps)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)
