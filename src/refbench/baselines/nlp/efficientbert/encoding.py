"""EfficientBERT architectures as integer codes: the key a ranking benchmark files them under.

An architecture of the search is one FFN expression per layer
(`tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))`, ...). Its official spelling (the layers
joined by ", ") is long and full of the commas and spaces that the `nas_ranking` submission
format splits scores off with, so the ranking benchmark files architectures under a compact
integer code instead:

- each expression is written in prefix order (the order DEAP stores an individual in), one
  integer per node: leaves `x wb1 wb2` are 0-2, the activations 3-9 (`ACTIVATIONS` order),
  `add mul max` 10-12, the 16 linear types 13-28 (`enumerate_linear_types` order:
  `linear1_1` = 13 ... `linear4_4` = 28);
- the integers of a layer are joined by `.`, the layers by `/`:
  `5.26.3.26.0.1.2/...` is `tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))/...`.

Every node's arity is fixed, so a prefix sequence decodes without brackets and the whole
architecture is one flat tuple of integers (`parse`), the layers one after the other. A JSON
list of expression strings (`["tanh(linear4_2(...))", ...]`) is accepted wherever a code is
and is filed under its integer code. Every decoded expression must be in the search space
(`space.validate`: two linears of one type, wb1 before wb2, height 3-7, widths that fit);
anything else is an `ArchitectureError` whose one line says what is wrong.
"""

from __future__ import annotations

import json
from typing import Sequence

from refbench.baselines.nlp.efficientbert.space import (
    ACTIVATIONS,
    BINARY_OPS,
    LEAVES,
    Binary,
    Expr,
    Linear,
    LinearType,
    Unary,
    Var,
    enumerate_linear_types,
    format_expression,
    parse_expression,
    validate,
)
from refbench.datasets.nasbench.spaces import ArchitectureError, SearchSpace
from refbench.errors import RefbenchError

LINEAR_TYPES: tuple[LinearType, ...] = enumerate_linear_types()
#: integer of every node label, in the order of the module docstring
TOKENS: tuple[str, ...] = (*LEAVES, *ACTIVATIONS, *BINARY_OPS, *(t.name for t in LINEAR_TYPES))
_INDEX = {name: i for i, name in enumerate(TOKENS)}
_LINEAR_OF = {t.name: t for t in LINEAR_TYPES}
LAYER_SEP, TOKEN_SEP = "/", "."


def _arity(token: int) -> int:
    name = TOKENS[token]
    if name in LEAVES:
        return 0
    if name in ACTIVATIONS:
        return 1
    return 2


def encode_expression(expr: Expr) -> tuple[int, ...]:
    """One expression in prefix order (module docstring)."""
    if isinstance(expr, Var):
        return (_INDEX[expr.name],)
    if isinstance(expr, Unary):
        return (_INDEX[expr.op], *encode_expression(expr.arg))
    if isinstance(expr, Binary):
        return (_INDEX[expr.op], *encode_expression(expr.left), *encode_expression(expr.right))
    return (_INDEX[expr.kind.name], *encode_expression(expr.arg), *encode_expression(expr.wb))


def decode_expression(tokens: Sequence[int], start: int = 0) -> tuple[Expr, int]:
    """The expression whose prefix code starts at `tokens[start]`, and where it ends."""
    if start >= len(tokens):
        raise ArchitectureError(f"code ends inside an expression (after {len(tokens)} "
                                f"integers, an operator still needs an operand)")
    token = tokens[start]
    if not 0 <= token < len(TOKENS):
        raise ArchitectureError(f"integer {token} at position {start} is not a node "
                                f"(0-{len(TOKENS) - 1})")
    name, arity = TOKENS[token], _arity(token)
    if arity == 0:
        return Var(name), start + 1
    first, end = decode_expression(tokens, start + 1)
    if arity == 1:
        return Unary(name, first), end
    second, end = decode_expression(tokens, end)
    if name in _LINEAR_OF:
        return Linear(_LINEAR_OF[name], first, second), end
    return Binary(name, first, second), end


def _checked(expr: Expr, layer: int) -> Expr:
    try:
        validate(expr)
    except RefbenchError as exc:
        raise ArchitectureError(f"layer {layer}: {exc.message}") from None
    return expr


def decode(tokens: Sequence[int], layers: int | None) -> list[Expr]:
    """The `layers` valid expressions of a flat code (`None`: as many as it holds); the code
    must end with the last one."""
    if not tokens:
        raise ArchitectureError("empty architecture code")
    exprs: list[Expr] = []
    at = 0
    while at < len(tokens) if layers is None else len(exprs) < layers:
        if at >= len(tokens):
            raise ArchitectureError(f"code holds {len(exprs)} expression(s), expected {layers}")
        expr, at = decode_expression(tokens, at)
        exprs.append(_checked(expr, len(exprs) + 1))
    if at != len(tokens):
        raise ArchitectureError(f"code has {len(tokens) - at} integer(s) after the {layers} "
                                f"expressions")
    return exprs


def _from_text(text: str, layers: int | None) -> list[Expr]:
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError(f"malformed JSON architecture ({exc.msg} at column "
                                    f"{exc.colno})") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ArchitectureError("a JSON architecture is a list of expression strings")
        if layers is not None and len(items) != layers:
            raise ArchitectureError(f"{len(items)} expression(s), expected {layers}")
        out = []
        for layer, item in enumerate(items, 1):
            try:
                out.append(_checked(parse_expression(item), layer))
            except RefbenchError as exc:
                raise ArchitectureError(f"layer {layer}: {exc.message}") from None
        return out
    parts = text.split(LAYER_SEP)
    if layers is not None and len(parts) != layers:
        raise ArchitectureError(f"code {text[:60]!r} has {len(parts)} layer(s) separated by "
                                f"{LAYER_SEP!r}, expected {layers}")
    out = []
    for layer, part in enumerate(parts, 1):
        try:
            tokens = [int(t) for t in part.split(TOKEN_SEP)]
        except ValueError:
            raise ArchitectureError(f"layer {layer}: {part[:40]!r} is not integers joined by "
                                    f"{TOKEN_SEP!r}") from None
        expr, end = decode_expression(tokens)
        if end != len(tokens):
            raise ArchitectureError(f"layer {layer}: {len(tokens) - end} integer(s) after "
                                    f"the expression")
        out.append(_checked(expr, layer))
    return out


def parse_code(text: str, layers: int | None) -> tuple[int, ...]:
    """The flat integer code of an integer code or a JSON list of expressions (checked)."""
    if not isinstance(text, str):
        raise ArchitectureError(f"an EfficientBERT code is a string, got {type(text).__name__}")
    return tuple(t for expr in _from_text(text, layers) for t in encode_expression(expr))


def format_code(tokens: Sequence[int], layers: int | None) -> str:
    """The canonical spelling of a flat code: `.` between integers, `/` between layers."""
    return LAYER_SEP.join(TOKEN_SEP.join(map(str, encode_expression(e)))
                          for e in decode(tokens, layers))


def code_of(expressions: Sequence[Expr | str]) -> str:
    """The code of an architecture given as expressions (or their official strings)."""
    exprs = [parse_expression(e) if isinstance(e, str) else e for e in expressions]
    return LAYER_SEP.join(TOKEN_SEP.join(map(str, encode_expression(e))) for e in exprs)


def expressions_of(code: str, layers: int | None) -> list[str]:
    """The official expression strings of a code (the inverse of `code_of`)."""
    return [format_expression(e) for e in _from_text(code, layers)]


def code_space(layers: int | None) -> SearchSpace:
    """The `SearchSpace` the ranking formats check codes with: of exactly `layers` layers, or
    (`None`) of any number, as many as the code spells (a file's codes must then agree, which
    the ranking format checks with `layers_of`)."""
    example = code_of(["linear1_1(gelu(linear1_1(x,wb1)),wb2)"] * (layers or 2))
    name = f"efficientbert-{layers}-layers" if layers is not None else "efficientbert"
    return SearchSpace(name, lambda text: parse_code(text, layers),
                       lambda tokens: format_code(tokens, layers), example)


def layers_of(code: str) -> int:
    """The number of layers of a canonical code (`/`-separated)."""
    return code.count(LAYER_SEP) + 1
