"""The EfficientBERT FFN search space: grammar, constraints, modules, sampling and hashing."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch

from refbench.baselines.nlp.efficientbert.encoder import (
    PUBLISHED_EFFICIENTBERT,
    PUBLISHED_EFFICIENTBERT_PLUSPLUS,
    PUBLISHED_EFFICIENTBERT_TINY,
)
from refbench.baselines.nlp.efficientbert.ffn import build_ffn, expression_hash, ffn_parameter_count
from refbench.baselines.nlp.efficientbert.space import (
    MAX_HEIGHT,
    LinearType,
    enumerate_linear_types,
    format_expression,
    height,
    linear_type,
    mutate,
    parse_expression,
    random_expression,
    validate,
)
from refbench.errors import RefbenchError

# `param_list` of AutoBertConfig (hidden 540) and AutoBertSmallConfig (hidden 360) in the
# official models/configs.py: parameters (millions, 4 decimals) of one layer's FFN per type.
OFFICIAL_FFN_PARAMS = {
    540: {"1_1": 0.5854, "1_2": 0.2935, "1_3": 0.1962, "1_4": 0.1476,
          "2_1": 1.1707, "2_2": 0.5870, "2_3": 0.3924, "2_4": 0.2951,
          "3_1": 1.7561, "3_2": 0.8805, "3_3": 0.5886, "3_4": 0.4427,
          "4_1": 2.3414, "4_2": 1.1740, "4_3": 0.7848, "4_4": 0.5902},
    360: {"1_1": 0.2606, "1_2": 0.1309, "1_3": 0.0876, "1_4": 0.0660,
          "2_1": 0.5213, "2_2": 0.2617, "2_3": 0.1752, "2_4": 0.1319,
          "3_1": 0.7819, "3_2": 0.3926, "3_3": 0.2628, "3_4": 0.1979,
          "4_1": 1.0426, "4_2": 0.5234, "4_3": 0.3504, "4_4": 0.2639},
}


@pytest.mark.parametrize("text", PUBLISHED_EFFICIENTBERT)
def test_published_expressions_round_trip_validate_and_build(text: str) -> None:
    expr = parse_expression(text)
    assert format_expression(expr) == text
    kind = validate(expr)
    ffn = build_ffn(expr, hidden=540)
    assert len(ffn.blocks) == kind.stacks
    assert ffn.blocks[0].dense1.out_features == kind.inner_width(540)
    out = ffn(torch.randn(2, 5, 540))
    assert out.shape == (2, 5, 540) and torch.isfinite(out).all()


def test_published_variants_and_linear_types() -> None:
    assert [linear_type(parse_expression(e)).name for e in PUBLISHED_EFFICIENTBERT] == [
        "linear4_2", "linear2_1", "linear1_2", "linear2_2", "linear1_2", "linear2_3"]
    assert PUBLISHED_EFFICIENTBERT_TINY == PUBLISHED_EFFICIENTBERT
    assert PUBLISHED_EFFICIENTBERT_PLUSPLUS[::2] == PUBLISHED_EFFICIENTBERT
    assert PUBLISHED_EFFICIENTBERT_PLUSPLUS[1::2] == PUBLISHED_EFFICIENTBERT
    types = enumerate_linear_types()
    assert [t.id for t in types][:5] == ["1_1", "1_2", "1_3", "1_4", "2_1"] and len(types) == 16
    assert [LinearType(1, r).inner_width(540) for r in range(1, 5)] == [540, 270, 180, 135]


def test_whitespace_is_accepted_and_formatting_is_canonical() -> None:
    text = " linear1_2( relu( mul( linear1_2(x , wb1), x)) ,wb2 ) "
    assert format_expression(parse_expression(text)) == PUBLISHED_EFFICIENTBERT[4]


@pytest.mark.parametrize("size", [540, 360])
def test_ffn_parameter_counts_equal_the_official_param_list(size: int) -> None:
    for kind in enumerate_linear_types():
        assert round(ffn_parameter_count(kind, size) / 1e6, 4) == OFFICIAL_FFN_PARAMS[size][kind.id]
        expr = random_expression(random.Random(kind.stacks * 10 + kind.ratio_index), kind)
        module = build_ffn(expr, hidden=size)
        assert sum(p.numel() for p in module.parameters()) == ffn_parameter_count(kind, size)


def test_ffn_computes_the_expression_with_residual_layernorm_and_width_cut() -> None:
    """`linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)` by hand: mul cuts x to the inner width."""
    torch.manual_seed(0)
    ffn = build_ffn(PUBLISHED_EFFICIENTBERT[4], hidden=8).eval()
    block = ffn.blocks[0]
    x = torch.randn(3, 4, 8)
    inner = x @ block.dense1.weight.T + block.dense1.bias  # (.., 4)
    f = torch.relu(inner * x[..., :4]) @ block.dense2.weight.T + block.dense2.bias
    expected = torch.nn.functional.layer_norm(x + f, (8,), block.layernorm.weight,
                                              block.layernorm.bias)
    assert torch.allclose(ffn(x), expected, atol=1e-6)


def test_stacked_blocks_apply_in_sequence() -> None:
    torch.manual_seed(0)
    ffn = build_ffn("elu(linear3_1(gelu(linear3_1(x,wb1)),wb2))", hidden=6).eval()
    x = torch.randn(2, 3, 6)
    assert len(ffn.blocks) == 3
    assert torch.allclose(ffn(x), ffn.blocks[2](ffn.blocks[1](ffn.blocks[0](x))))


# one case per rule: the parser's syntax errors, then each constraint of `validate`
@pytest.mark.parametrize("text, message", [
    ("linear5_2(gelu(linear5_2(x,wb1)),wb2)", "unknown op 'linear5_2'"),
    ("linear(gelu(linear(x,wb1)),wb2)", "unknown op 'linear'"),
    ("linear1_1(gelu(linear1_1(y,wb1)),wb2)", "unknown name 'y'"),
    ("linear1_1(gelu,wb2)", "operator 'gelu' needs arguments"),
    ("linear1_1(gelu(x,x),wb2)", "'gelu' takes 1 argument, got 2"),
    ("linear1_1(gelu(linear1_1(x,wb1)),wb2", "expected ')' but the expression ended"),
    ("gelu(x))", "unexpected ')' at position 7 after a complete expression"),
    ("gelu(x)+x", "unexpected character '+' at position 7"),
    ("", "empty expression"),
])
def test_syntax_errors_name_the_offending_token(text: str, message: str) -> None:
    with pytest.raises(RefbenchError) as err:
        parse_expression(text, key="model.ffn_expressions[0]")
    line = str(err.value)
    assert message in line and repr(text) in line and "[model.ffn_expressions[0]]" in line
    assert "\n" not in line


@pytest.mark.parametrize("text, message", [
    ("linear1_1(gelu(add(linear1_1(x,wb1),wb1)),wb2)",
     "'wb1' used as a tensor operand in 'add(linear1_1(x,wb1),wb1)'"),
    ("linear1_1(gelu(linear1_1(x,wb1)),x)", "linear1_1 needs wb1 or wb2 as its second argument"),
    ("tanh(gelu(linear1_1(x,wb1)))", "expected exactly two linears (one with wb1, one with wb2), "
                                     "found 1"),
    ("linear1_1(gelu(linear1_1(relu(linear1_1(x,wb1)),wb2)),wb2)", "found 3"),
    ("linear1_1(gelu(linear1_1(x,wb1)),wb1)", "both linears use wb1"),
    ("linear1_2(gelu(linear1_2(x,wb2)),wb1)", "wb2 appears before wb1"),
    ("tanh(gelu(linear1_1(gelu(linear1_1(x,wb1)),wb2)))", "nested activation 'tanh(gelu(...))'"),
    ("tanh(linear1_1(linear1_1(x,wb1),wb2))", "nested linear 'linear1_1(linear1_1(...),wb2)'"),
    ("tanh(linear4_2(gelu(linear2_1(x,wb1)),wb2))", "linear pair mismatch linear4_2/linear2_1"),
    ("linear1_1(gelu(linear1_1(add(x,x),wb1)),wb2)", "identical operands 'add(x,x)'"),
    ("linear1_1(gelu(linear1_1(max(tanh(x),tanh(x)),wb1)),wb2)",
     "identical operands 'max(tanh(x),tanh(x))'"),
    ("add(linear1_1(x,wb1),linear1_1(x,wb2))", "tree height 2 outside [3, 7]"),
    ("linear1_1(gelu(linear1_1(sigmoid(add(x,tanh(add(x,relu(add(x,elu(x))))))),wb1)),wb2)",
     "tree height 10 outside [3, 7]"),
    ("add(gelu(linear1_2(x,wb1)),linear1_2(tanh(x),wb2))",
     "width mismatch at 'linear1_2(tanh(...),wb2)': its input has the hidden width, "
     "wb2 expects the inner width"),
])
def test_each_constraint_has_its_own_error(text: str, message: str) -> None:
    expr = parse_expression(text)
    with pytest.raises(RefbenchError) as err:
        validate(expr, key="model.ffn_expressions[2]")
    line = str(err.value)
    assert message in line, line
    assert repr(text) in line and "[model.ffn_expressions[2]]" in line


def test_the_rules_are_as_loose_as_the_official_ones() -> None:
    # the official identical-operand regex only catches comma-free operands
    validate(parse_expression(
        "linear1_1(gelu(linear1_1(add(max(x,tanh(x)),max(x,tanh(x))),wb1)),wb2)"))
    # two parallel linears fit when the ratio is 1 (no width change)
    validate(parse_expression("add(gelu(linear1_1(x,wb1)),linear1_1(tanh(x),wb2))"))
    with pytest.raises(RefbenchError, match="width mismatch"):
        build_ffn("add(gelu(linear1_1(x,wb1)),linear1_1(tanh(x),wb2))", hidden=8, ffn_hidden=16)


def test_build_ffn_rejects_invalid_expressions() -> None:
    with pytest.raises(RefbenchError, match="nested activation"):
        build_ffn("tanh(gelu(linear1_1(gelu(linear1_1(x,wb1)),wb2)))", hidden=8)


def test_random_expressions_and_mutations_are_always_valid() -> None:
    rng = random.Random(1234)
    seen, kinds = set(), set()
    for _ in range(300):
        expr = random_expression(rng)
        kinds.add(validate(expr))
        assert height(expr) <= MAX_HEIGHT
        child = mutate(expr, rng)
        validate(child)
        assert format_expression(child) != format_expression(expr)
        assert parse_expression(format_expression(child)) == child
        seen.add(format_expression(expr))
    assert len(seen) > 250 and len(kinds) == 16
    fixed = LinearType(2, 3)
    assert all(validate(random_expression(rng, fixed)) == fixed for _ in range(50))
    assert all(validate(random_expression(rng, "linear4_1")) == LinearType(4, 1) for _ in range(20))


def test_mutation_walks_reach_other_linear_types() -> None:
    rng = random.Random(7)
    expr = parse_expression(PUBLISHED_EFFICIENTBERT[0])
    kinds = set()
    for _ in range(200):
        expr = mutate(expr, rng)
        kinds.add(linear_type(expr))
    assert len(kinds) > 4


@pytest.mark.parametrize("op", ["add", "mul", "max"])
def test_hash_is_equal_for_commuted_operands(op: str) -> None:
    a = f"linear1_1(gelu(linear1_1({op}(x,tanh(x)),wb1)),wb2)"
    b = f"linear1_1(gelu(linear1_1({op}(tanh(x),x),wb1)),wb2)"
    assert expression_hash(a) == expression_hash(parse_expression(b))


def test_hash_differs_for_different_functions_and_types() -> None:
    hashes = {expression_hash(e) for e in PUBLISHED_EFFICIENTBERT}
    assert len(hashes) == len(PUBLISHED_EFFICIENTBERT)
    base = "linear1_1(gelu(linear1_1(add(x,tanh(x)),wb1)),wb2)"
    others = [base.replace("gelu", "relu"), base.replace("add", "mul"),
              base.replace("linear1_1", "linear2_1"), base.replace("linear1_1", "linear1_2")]
    assert len({expression_hash(e) for e in [base, *others]}) == 5


def test_hash_is_stable_across_processes() -> None:
    code = ("from refbench.baselines.nlp.efficientbert.ffn import expression_hash as h; "
            "from refbench.baselines.nlp.efficientbert.encoder import "
            "PUBLISHED_EFFICIENTBERT as P; print(h(P[3]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expression_hash(PUBLISHED_EFFICIENTBERT[3])
