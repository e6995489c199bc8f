"""The modules an EfficientBERT FFN expression denotes, and the output hash that
de-duplicates expressions computing the same function.

The grammar (what an expression may be) is `space`; this module gives an expression its
meaning in PyTorch, re-derived from the official `models/auto_bert.py` (stacked blocks,
each `LayerNorm(h + dropout(f(h)))`, the inner width a slice of `ffn_hidden_size`) and
`utils/operator_utils.py` (the operators; `add`/`mul`/`max` cut both operands to the
smaller width).
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.nlp.efficientbert.space import (
    Binary,
    Expr,
    LinearType,
    Unary,
    Var,
    check_widths,
    expression_error,
    format_expression,
    linear_type,
    parse_expression,
    validate,
)


# -- evaluation and modules -------------------------------------------------------------------
def _gelu(t: Tensor) -> Tensor:
    return F.gelu(t, approximate="tanh")  # models.gelu of the official code is the tanh form


ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": _gelu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu,
    "leaky_relu": F.leaky_relu, "elu": F.elu, "swish": lambda t: t * torch.sigmoid(t)}
BINARY_FNS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "add": torch.add, "mul": torch.mul, "max": torch.maximum}


def evaluate(expr: Expr, x: Tensor, linear: Callable[[Tensor, str], Tensor]) -> Tensor:
    """Compute `expr` on `x`; `linear(t, "wb1"|"wb2")` applies the named dense layer."""
    if isinstance(expr, Var):
        return x
    if isinstance(expr, Unary):
        return ACTIVATION_FNS[expr.op](evaluate(expr.arg, x, linear))
    if isinstance(expr, Binary):
        a, b = evaluate(expr.left, x, linear), evaluate(expr.right, x, linear)
        w = min(a.size(-1), b.size(-1))
        return BINARY_FNS[expr.op](a[..., :w], b[..., :w])
    return linear(evaluate(expr.arg, x, linear), expr.wb.name)  # type: ignore[union-attr]


class FFNBlock(nn.Module):
    """One stacked block: `LayerNorm(h + dropout(expr(h)))` with dense1 H->I, dense2 I->H.

    Only the used slice exists: the official model allocates `ffn_hidden_size` columns and
    slices the first `I` (`dense1.weight.t()[:, :I]`), which are the rows kept here.
    """

    def __init__(self, expr: Expr, hidden: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.expr = expr
        self.dense1 = nn.Linear(hidden, inner)
        self.dense2 = nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(dropout)
        self.layernorm = nn.LayerNorm(hidden)

    def _linear(self, t: Tensor, which: str) -> Tensor:
        return (self.dense1 if which == "wb1" else self.dense2)(t)

    def forward(self, hidden_states: Tensor) -> Tensor:
        out = evaluate(self.expr, hidden_states, self._linear)
        return self.layernorm(hidden_states + self.dropout(out))


class SearchedFFN(nn.Module):
    """The FFN an expression denotes: `stacks` blocks applied in sequence."""

    def __init__(self, expr: Expr, hidden: int, ffn_hidden: int | None = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        kind = validate(expr)
        inner = kind.inner_width(ffn_hidden or hidden)
        if inner < 1:
            raise expression_error(expr, f"inner width {inner} < 1 for FFN width {ffn_hidden or hidden}",
                         None)
        check_widths(expr, hidden, inner)
        self.expression = format_expression(expr)
        self.kind, self.inner = kind, inner
        self.blocks = nn.ModuleList(FFNBlock(expr, hidden, inner, dropout)
                                    for _ in range(kind.stacks))

    def extra_repr(self) -> str:
        return f"{self.expression!r}, inner={self.inner}"

    def forward(self, hidden_states: Tensor) -> Tensor:
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return hidden_states


def build_ffn(expr: Expr | str, hidden: int, ffn_hidden: int | None = None,
              dropout: float = 0.1) -> SearchedFFN:
    """The FFN module of one layer (`ffn_hidden` defaults to `hidden`, as in auto_bert)."""
    return SearchedFFN(parse_expression(expr) if isinstance(expr, str) else expr,
                       hidden, ffn_hidden, dropout)


def ffn_parameter_count(kind: LinearType | str, hidden: int, ffn_hidden: int | None = None) -> int:
    """Parameters of one layer's FFN (the official `param_list[linear_idx]`, unrounded)."""
    if isinstance(kind, str):
        n, r = (int(v) for v in kind.removeprefix("linear").split("_"))
        kind = LinearType(n, r)
    inner = kind.inner_width(ffn_hidden or hidden)
    return kind.stacks * (hidden * inner + inner + inner * hidden + hidden + 2 * hidden)


# -- de-duplication by output hash ----------------------------------------------------------
def _fixed_weights(kind: LinearType, layer: int, width: int) -> dict[str, tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(10_000 + 100 * layer + 10 * kind.stacks + kind.ratio_index)
    w = torch.randn(2, width, width, generator=gen, dtype=torch.float64) / math.sqrt(width)
    b = torch.randn(2, width, generator=gen, dtype=torch.float64)
    return {"wb1": (w[0], b[0]), "wb2": (w[1], b[1])}


def architecture_hash(exprs: Sequence[Expr | str], width: int = 16) -> str:
    """Hash of what a stack of FFN expressions computes (the repo's `get_hash_key_acc`).

    As in the official search, a fixed random input goes through the layers' functions in
    turn, each with fixed random square weights drawn per (layer, linear type), and the
    output is hashed; so expressions computing the same function (`add(a,b)`, `add(b,a)`)
    collide and different functions or linear types do not. The official code hashes the
    output sum rounded to 2 decimals; here three float64 statistics rounded to 9 digits.
    """
    x = torch.randn(2, 8, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ids = []
    for layer, item in enumerate(exprs):
        expr = parse_expression(item) if isinstance(item, str) else item
        kind = linear_type(expr)
        weights = _fixed_weights(kind, layer, width)
        x = evaluate(expr, x, lambda t, which: t @ weights[which][0] + weights[which][1])
        ids.append(kind.id)
    stats = (x.sum().item(), x.abs().sum().item(), x.square().sum().item())
    text = "|".join(ids) + ";" + ",".join(f"{v:.9g}" for v in stats)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expression_hash(expr: Expr | str, width: int = 16) -> str:
    """`architecture_hash` of a single layer."""
    return architecture_hash([expr], width)
