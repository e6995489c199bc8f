"""The EfficientBERT FFN search space as a grammar: parse, format, validate, sample
(the modules an expression denotes are in `ffn`).

EfficientBERT (Dong et al., Findings of EMNLP 2021; code `cheneydon/efficient-bert`)
replaces each transformer layer's feed-forward network by a searched expression such as
`tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))`. Semantics, re-derived from the official
`utils/operator_utils.py`, `models/auto_bert.py`, `models/configs.py` and
`utils/action_space.py`:

- `x` is the layer input (width = hidden size H); `wb1`/`wb2` are the weight-bias pairs
  of the FFN's first (H -> I) and second (I -> H) dense layers. `linear{n}_{r}(t, wb)` is
  `t @ W + b`.
- `n` (1..4) is the number of stacked FFN blocks: the same expression is applied `n`
  times in sequence, each block with its own two dense layers and its own
  `LayerNorm(h + dropout(f(h)))`.
- `r` (1..4) picks the expansion ratio {1, 1/2, 1/3, 1/4} of the FFN width
  `ffn_hidden_size`, which equals the hidden size in every official `auto_bert*` config:
  inner width `I = int(ratio * ffn_hidden_size)` (540 -> 540/270/180/135).
- `add`, `mul`, `max` are element-wise; on operands of different widths both are cut to
  the smaller width (`sel_min=True`). Activations: gelu (tanh form), sigmoid, tanh,
  relu, leaky_relu (slope 0.01), elu, swish.

The constraints are those of `check_individual` (plus the runtime shape errors the
official training loop catches and scores as invalid); `validate` lists them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from typing import Iterator, Sequence, Union

from refbench.errors import RefbenchError

ACTIVATIONS = ("gelu", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "swish")
BINARY_OPS = ("add", "mul", "max")
LEAVES = ("x", "wb1", "wb2")
RATIOS = {1: 1.0, 2: 1 / 2, 3: 1 / 3, 4: 1 / 4}
#: `--min_height` / `--max_height` defaults of ffn_search.py (DEAP height: root at depth 0)
MIN_HEIGHT, MAX_HEIGHT = 3, 7


@dataclass(frozen=True)
class LinearType:
    """`linear{stacks}_{ratio_index}`: how many FFN blocks are stacked and how wide they are."""

    stacks: int
    ratio_index: int

    @property
    def name(self) -> str:
        return f"linear{self.stacks}_{self.ratio_index}"

    @property
    def id(self) -> str:
        """The official `linear_idx` key (`"4_2"`) of `expansion_ratio_map` / `param_list`."""
        return f"{self.stacks}_{self.ratio_index}"

    @property
    def ratio(self) -> float:
        return RATIOS[self.ratio_index]

    def inner_width(self, ffn_hidden: int) -> int:
        """`int(expansion_ratio * ffn_hidden_size)`, with the official float arithmetic."""
        return int(self.ratio * ffn_hidden)


def enumerate_linear_types() -> tuple[LinearType, ...]:
    """The 16 linear types in the official order (`pset.all_linear_ids`: 1_1, 1_2, ..., 4_4)."""
    return tuple(LinearType(n, r) for n in range(1, 5) for r in range(1, 5))


# -- the AST ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Var:
    name: str  # "x", "wb1" or "wb2"


@dataclass(frozen=True)
class Unary:
    op: str
    arg: "Expr"


@dataclass(frozen=True)
class Binary:
    op: str
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Linear:
    kind: LinearType
    arg: "Expr"
    wb: "Expr"


Expr = Union[Var, Unary, Binary, Linear]
Path = tuple[int, ...]


def format_expression(expr: Expr) -> str:
    """The official spelling: prefix calls, no spaces (`str(individual).replace(' ', '')`)."""
    if isinstance(expr, Var):
        return expr.name
    if isinstance(expr, Unary):
        return f"{expr.op}({format_expression(expr.arg)})"
    if isinstance(expr, Binary):
        return f"{expr.op}({format_expression(expr.left)},{format_expression(expr.right)})"
    return f"{expr.kind.name}({format_expression(expr.arg)},{format_expression(expr.wb)})"


def _head(expr: Expr) -> str:
    if isinstance(expr, Var):
        return expr.name
    return expr.kind.name if isinstance(expr, Linear) else expr.op


def _short(expr: Expr) -> str:
    """`tanh(gelu(...))`: an operator and its direct operator child, for error messages."""
    kids = children(expr)
    if not kids:
        return _head(expr)
    inner = ",".join(f"{_head(k)}(...)" if children(k) else _head(k) for k in kids)
    return f"{_head(expr)}({inner})"


def expression_error(expr: Expr | str, problem: str, key: str | None) -> RefbenchError:
    text = expr if isinstance(expr, str) else format_expression(expr)
    return RefbenchError(f"invalid FFN expression {text!r}: {problem}", key=key)


# -- parsing ------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\S))")
_LINEAR = re.compile(r"linear(\d+)_(\d+)")


def _tokenize(text: str, key: str | None) -> list[tuple[str, int]]:
    tokens: list[tuple[str, int]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # only trailing whitespace is left
            break
        word, char = match.groups()
        if char is not None and char not in "(),":
            raise expression_error(text, f"unexpected character {char!r} at position {match.start(2)}", key)
        tokens.append((word or char, match.start(1) if word else match.start(2)))
        pos = match.end()
    return tokens


def parse_expression(text: str, *, key: str | None = None) -> Expr:
    """Parse an official expression string into an `Expr` (syntax, operator names, arity).

    The constraints of the search space are checked by `validate`, not here, so a parsed
    but invalid expression can still be inspected and reported.
    """
    tokens = _tokenize(text, key)
    if not tokens:
        raise expression_error(text, "empty expression", key)
    pos = 0

    def expect(char: str) -> None:
        nonlocal pos
        if pos >= len(tokens):
            raise expression_error(text, f"expected {char!r} but the expression ended", key)
        tok, at = tokens[pos]
        if tok != char:
            raise expression_error(text, f"expected {char!r} at position {at}, got {tok!r}", key)
        pos += 1

    def node() -> Expr:
        nonlocal pos
        if pos >= len(tokens):
            raise expression_error(text, "the expression ended early", key)
        name, at = tokens[pos]
        if name in "(),":
            raise expression_error(text, f"unexpected {name!r} at position {at}", key)
        pos += 1
        is_call = pos < len(tokens) and tokens[pos][0] == "("
        if not is_call:
            if name in LEAVES:
                return Var(name)
            if name in ACTIVATIONS or name in BINARY_OPS or _LINEAR.fullmatch(name):
                raise expression_error(text, f"operator {name!r} needs arguments", key)
            raise expression_error(text, f"unknown name {name!r} (leaves are {', '.join(LEAVES)})", key)
        arity = _arity(name)
        if arity is None:
            raise expression_error(text, f"unknown op {name!r}", key)
        expect("(")
        args = [node()]
        while pos < len(tokens) and tokens[pos][0] == ",":
            pos += 1
            args.append(node())
        expect(")")
        if len(args) != arity:
            raise expression_error(text, f"{name!r} takes {arity} argument{'s' * (arity > 1)}, "
                               f"got {len(args)}", key)
        if name in ACTIVATIONS:
            return Unary(name, args[0])
        if name in BINARY_OPS:
            return Binary(name, args[0], args[1])
        n, r = (int(g) for g in _LINEAR.fullmatch(name).groups())  # type: ignore[union-attr]
        return Linear(LinearType(n, r), args[0], args[1])

    expr = node()
    if pos != len(tokens):
        tok, at = tokens[pos]
        raise expression_error(text, f"unexpected {tok!r} at position {at} after a complete expression", key)
    return expr


def _arity(name: str) -> int | None:
    if name in ACTIVATIONS:
        return 1
    if name in BINARY_OPS:
        return 2
    match = _LINEAR.fullmatch(name)
    if match and all(1 <= int(g) <= 4 for g in match.groups()) and name == \
            f"linear{int(match.group(1))}_{int(match.group(2))}":
        return 2
    return None


# -- tree helpers ---------------------------------------------------------------------------
def children(expr: Expr) -> tuple[Expr, ...]:
    if isinstance(expr, Var):
        return ()
    if isinstance(expr, Unary):
        return (expr.arg,)
    if isinstance(expr, Binary):
        return (expr.left, expr.right)
    return (expr.arg, expr.wb)


def _with_children(expr: Expr, kids: Sequence[Expr]) -> Expr:
    if isinstance(expr, Unary):
        return replace(expr, arg=kids[0])
    if isinstance(expr, Binary):
        return replace(expr, left=kids[0], right=kids[1])
    if isinstance(expr, Linear):
        return replace(expr, arg=kids[0], wb=kids[1])
    return expr


def nodes(expr: Expr, path: Path = ()) -> Iterator[tuple[Path, Expr]]:
    """Every node with its path, in prefix (string) order."""
    yield path, expr
    for i, child in enumerate(children(expr)):
        yield from nodes(child, path + (i,))


def replace_at(expr: Expr, path: Path, new: Expr) -> Expr:
    if not path:
        return new
    kids = list(children(expr))
    kids[path[0]] = replace_at(kids[path[0]], path[1:], new)
    return _with_children(expr, kids)


def height(expr: Expr) -> int:
    """DEAP's `PrimitiveTree.height`: the depth of the deepest node, the root at depth 0."""
    kids = children(expr)
    return 0 if not kids else 1 + max(height(k) for k in kids)


def linears(expr: Expr) -> list[Linear]:
    return [n for _, n in nodes(expr) if isinstance(n, Linear)]


def linear_type(expr: Expr) -> LinearType:
    """The linear type of a (valid) expression."""
    found = linears(expr)
    if not found:
        raise expression_error(expr, "no linear in the expression", None)
    return found[0].kind


def _is_wb(expr: Expr) -> bool:
    return isinstance(expr, Var) and expr.name in ("wb1", "wb2")


# -- validation -----------------------------------------------------------------------------
def validate(expr: Expr, *, key: str | None = None, min_height: int = MIN_HEIGHT,
             max_height: int = MAX_HEIGHT) -> LinearType:
    """Raise `RefbenchError` unless `expr` is in the search space; return its linear type.

    Rules, in the order checked (source in the official code):
    1. `wb1`/`wb2` only as the second argument of a linear, and a linear's second argument
       is `wb1` or `wb2` (the operators raise KeyError otherwise);
    2. exactly two linears, one with `wb1` and one with `wb2` (one `wb1`, one `wb2`);
    3. `wb1` comes before `wb2` in the expression;
    4. no activation applied directly to an activation (`act(act(`);
    5. no linear applied directly to a linear (`linear(linear(`);
    6. both linears of the same type (`res2[0] != res2[1]`);
    7. no `add`/`mul`/`max` of two identical operands that contain no comma (the official
       "rough" regex: `add(x,x)`, `max(tanh(x),tanh(x))`);
    8. tree height within [min_height, max_height] (3 and 7 in ffn_search.py);
    9. widths fit: the `wb1` linear reads the hidden width, the `wb2` linear reads the
       inner width (else the official forward raises a RuntimeError and the candidate is
       scored invalid).
    "x must appear" is implied by rules 1-2 (a linear's input bottoms out in `x`).
    """
    for _, node in nodes(expr):
        if isinstance(node, Linear) and not _is_wb(node.wb):
            raise expression_error(expr, f"{node.kind.name} needs wb1 or wb2 as its second argument, "
                               f"got {format_expression(node.wb)!r}", key)
        operands = children(node)[:1] if isinstance(node, Linear) else children(node)
        for operand in operands:
            if _is_wb(operand):
                raise expression_error(expr, f"{_head(operand)!r} used as a tensor operand in "
                                   f"{format_expression(node)!r}", key)
    found = linears(expr)
    if len(found) != 2:
        raise expression_error(expr, f"expected exactly two linears (one with wb1, one with wb2), "
                           f"found {len(found)}", key)
    order = [n.name for _, n in nodes(expr) if _is_wb(n)]  # type: ignore[union-attr]
    if sorted(order) != ["wb1", "wb2"]:
        raise expression_error(expr, f"both linears use {order[0]}; one must use wb1 and one wb2", key)
    if order[0] != "wb1":
        raise expression_error(expr, "wb2 appears before wb1", key)
    for _, node in nodes(expr):
        if isinstance(node, Unary) and isinstance(node.arg, Unary):
            raise expression_error(expr, f"nested activation {_short(node)!r}", key)
        if isinstance(node, Linear) and isinstance(node.arg, Linear):
            raise expression_error(expr, f"nested linear {_short(node)!r}", key)
    if found[0].kind != found[1].kind:
        raise expression_error(expr, f"linear pair mismatch {found[0].kind.name}/{found[1].kind.name}", key)
    for _, node in nodes(expr):
        if (isinstance(node, Binary) and node.left == node.right
                and all(isinstance(n, (Var, Unary)) for _, n in nodes(node.left))):
            raise expression_error(expr, f"identical operands {format_expression(node)!r}", key)
    h = height(expr)
    if not min_height <= h <= max_height:
        raise expression_error(expr, f"tree height {h} outside [{min_height}, {max_height}]", key)
    kind = found[0].kind
    _widths(expr, 12, kind.inner_width(12), key, sizes=False)  # only equal / smaller matters
    return kind


def check_widths(expr: Expr, hidden: int, inner: int, *, key: str | None = None) -> int:
    """Rule 9 of `validate` for concrete widths; returns the output width."""
    return _widths(expr, hidden, inner, key, sizes=True)


def _widths(expr: Expr, hidden: int, inner: int, key: str | None, sizes: bool) -> int:
    """The width of `expr`'s output, raising on a linear whose input width does not fit.

    Binary ops cut both operands to the smaller width. The output then always has the
    hidden width: the only inner-width value is the `wb1` linear's output, which either
    feeds the `wb2` linear or makes the `wb2` linear's (linear-free) input mismatch.
    """
    def label(w: int) -> str:
        return "the hidden width" if w == hidden else "the inner width"

    def width(node: Expr) -> int:
        if isinstance(node, Var):
            return hidden
        if isinstance(node, Unary):
            return width(node.arg)
        if isinstance(node, Binary):
            return min(width(node.left), width(node.right))
        got, first = width(node.arg), _head(node.wb) == "wb1"  # type: ignore[union-attr]
        want, out = (hidden, inner) if first else (inner, hidden)
        if got != want:
            raise expression_error(expr, f"width mismatch at {_short(node)!r}: its input has {label(got)}, "
                               f"{_head(node.wb)} expects {label(want)}"  # type: ignore[union-attr]
                               + (f" ({inner} of {hidden})" if sizes else ""), key)
        return out

    return width(expr)


def parse_valid(text: str, *, key: str | None = None) -> Expr:
    """`parse_expression` then `validate`."""
    expr = parse_expression(text, key=key)
    validate(expr, key=key)
    return expr


# -- sampling -------------------------------------------------------------------------------
def _as_type(kind: LinearType | str | None, rng: random.Random) -> LinearType:
    if kind is None:
        return rng.choice(enumerate_linear_types())
    if isinstance(kind, LinearType):
        return kind
    n, r = (int(v) for v in kind.removeprefix("linear").split("_"))
    return LinearType(n, r)


def _random_free(rng: random.Random, depth: int) -> Expr:
    """A random linear-free tensor expression over `x`."""
    if depth <= 0 or rng.random() < 0.4:
        return Var("x")
    if rng.random() < 0.6:
        return Unary(rng.choice(ACTIVATIONS), _random_free(rng, depth - 1))
    return Binary(rng.choice(BINARY_OPS), _random_free(rng, depth - 1),
                  _random_free(rng, depth - 1))


def _wrap(rng: random.Random, core: Expr, most: int) -> Expr:
    """Put 0..most random activations / binary ops with a linear-free operand around `core`."""
    for _ in range(rng.randint(0, most)):
        if rng.random() < 0.6:
            core = Unary(rng.choice(ACTIVATIONS), core)
        else:
            other = _random_free(rng, rng.randint(0, 1))
            op = rng.choice(BINARY_OPS)
            core = Binary(op, core, other) if rng.random() < 0.5 else Binary(op, other, core)
    return core


def _candidate(rng: random.Random, kind: LinearType) -> Expr:
    first = Linear(kind, _random_free(rng, rng.choice((0, 0, 1, 2))), Var("wb1"))
    if kind.ratio_index == 1 and rng.random() < 0.15:  # two parallel branches (only fits at r=1)
        second = Linear(kind, _random_free(rng, rng.randint(0, 1)), Var("wb2"))
        both = Binary(rng.choice(BINARY_OPS), _wrap(rng, first, 1), _wrap(rng, second, 1))
        return _wrap(rng, both, 1)
    return _wrap(rng, Linear(kind, _wrap(rng, first, 2), Var("wb2")), 2)


def random_expression(rng: random.Random, linear_type: LinearType | str | None = None) -> Expr:
    """A random valid expression (of `linear_type`, else of a random type)."""
    kind = _as_type(linear_type, rng)
    for _ in range(10_000):
        expr = _candidate(rng, kind)
        try:
            validate(expr)
        except RefbenchError:
            continue
        return expr
    raise RuntimeError(f"no valid expression of type {kind.name} found")  # pragma: no cover


def _tensor_paths(expr: Expr) -> list[Path]:
    return [p for p, n in nodes(expr) if not _is_wb(n)]


def _retype(expr: Expr, kind: LinearType) -> Expr:
    out = _with_children(expr, [_retype(c, kind) for c in children(expr)])
    return replace(out, kind=kind) if isinstance(out, Linear) else out


def _mutations(expr: Expr, rng: random.Random) -> Iterator[Expr]:
    """Endless random one-step edits of `expr` (valid or not)."""
    types = enumerate_linear_types()
    while True:
        paths = _tensor_paths(expr)
        path = rng.choice(paths)
        node = next(n for p, n in nodes(expr) if p == path)
        move = rng.randrange(7)
        if move == 0:  # change the linear type of both linears (search stage 3)
            yield _retype(expr, rng.choice([t for t in types if t != linear_type(expr)]))
        elif move == 1 and isinstance(node, Unary):  # swap an activation
            yield replace_at(expr, path, replace(node, op=rng.choice(ACTIVATIONS)))
        elif move == 2 and isinstance(node, Binary):  # swap a binary op
            yield replace_at(expr, path, replace(node, op=rng.choice(BINARY_OPS)))
        elif move == 3:  # insert an activation (DEAP mutInsert)
            yield replace_at(expr, path, Unary(rng.choice(ACTIVATIONS), node))
        elif move == 4 and isinstance(node, Unary):  # drop an activation (mutShrink)
            yield replace_at(expr, path, node.arg)
        elif move == 5:  # combine with a linear-free operand
            other, op = _random_free(rng, 1), rng.choice(BINARY_OPS)
            yield replace_at(expr, path, Binary(op, node, other) if rng.random() < 0.5
                             else Binary(op, other, node))
        elif move == 6 and not linears(node):  # regrow a linear-free subtree (mutUniform)
            yield replace_at(expr, path, _random_free(rng, rng.randint(0, 2)))
        elif isinstance(node, Binary):  # remove a binary op, keeping the side with linears
            keep = [c for c in (node.left, node.right) if linears(c)] or [node.left, node.right]
            yield replace_at(expr, path, rng.choice(keep))


def mutate(expr: Expr, rng: random.Random) -> Expr:
    """A random valid neighbour of `expr`, different from it."""
    original = format_expression(expr)
    for attempt, candidate in enumerate(_mutations(expr, rng)):
        if attempt >= 10_000:
            break
        if format_expression(candidate) == original or len(linears(candidate)) != 2:
            continue
        try:
            validate(candidate)
        except RefbenchError:
            continue
        return candidate
    raise RuntimeError(f"no valid mutation of {original!r} found")  # pragma: no cover
