"""NASOA's joint block + macro code (vega's DNet grammar): parsing, every refusal in one
line, the channel plan and the plain-PyTorch network built from it."""

from __future__ import annotations

import random

import pytest
import torch

from refbench.baselines.nas.nasoa.encoding import (OPS, WIDTHS, EncodingError, layer_plan,
                                                   mutate_macro, parse, random_block,
                                                   random_macro)
from refbench.baselines.nas.nasoa.network import DNet, count_params
from refbench.errors import RefbenchError

EXAMPLE = "031-_64_12-1111-11211112-2"  # vega's fine_tune_torch.yml / the issue


def test_the_vega_example_parses_and_round_trips() -> None:
    arch = parse(EXAMPLE)
    assert str(arch) == EXAMPLE
    (block,) = arch.blocks
    assert block.ops == (0, 1) and block.widths == (3, 2) and block.connections == ()
    assert arch.channel == 64
    assert [m.multiplier for m in arch.macro] == [1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 2, 2]
    assert [i for i, m in enumerate(arch.macro) if m.stride == 2] == [2, 6, 14]
    assert arch.stages == 4
    plan = layer_plan(arch)
    # block 0: width 64 x1; conv3 to 64 * 2**3 // 4 = 128, then conv1 back to 64 (width 2)
    assert plan[0] == [("conv3", 64, 128, 1), ("conv1", 128, 64, 1)]
    # block 1 widens to 128; block 2 downsamples on its first (non-conv1) layer
    assert plan[1] == [("conv3", 64, 256, 1), ("conv1", 256, 128, 1)]
    assert plan[2] == [("conv3", 128, 256, 2), ("conv1", 256, 128, 1)]


def test_pinned_limits_of_the_grammar() -> None:
    assert OPS == ("conv3", "conv1", "conv3_grp2", "conv3_grp4", "conv3_base1",
                   "conv3_base32", "conv3_sep")
    assert WIDTHS == 5
    parse("646-_32_1")  # operation 6 (conv3_sep) and width 4 are the largest digits
    with pytest.raises(EncodingError, match="operation 7 is not one of 0-6"):
        parse("7-_32_1")
    with pytest.raises(EncodingError, match="width digit 5 is not one of 0-4"):
        parse("050-_32_1")
    parse("01010101010101010-_16_1")  # 9 layers: the most one-digit connections can name
    with pytest.raises(EncodingError, match="at most 9"):
        parse("0101010101010101010-_16_1")


def test_stride_sits_on_the_first_layer_that_is_not_conv1() -> None:
    assert parse("121-_16_-1").blocks[0].stride_layer == 1
    assert parse("021-_16_-1").blocks[0].stride_layer == 0
    assert parse("121-_16_-1").blocks[0].stride_layer == 1
    assert parse("12121-_16_-1").blocks[0].stride_layer == 2  # all conv1: the last layer
    assert layer_plan(parse("121-_16_-1"))[0] == [("conv1", 16, 16, 1), ("conv1", 16, 16, 2)]


def test_connections_apply_in_vega_order_and_concat_widens_the_target() -> None:
    arch = parse("011-c01_8_1")
    (block,) = arch.blocks
    assert [str(c) for c in block.ordered_connections()] == ["c01", "a02"]
    # conv3 to 8 * 2 // 4 = 4, concatenated with the 8-wide input -> the conv1 reads 12
    assert layer_plan(arch)[0] == [("conv3", 8, 4, 1), ("conv1", 12, 8, 1)]
    # sorted by target, stable: a13 stays before c13 even when written after a02
    later = parse("01011-a13a02_8_1").blocks[0]
    assert [str(c) for c in later.ordered_connections()] == ["a02", "a13", "a03"]


def test_the_network_has_the_hand_counted_parameters() -> None:
    # stem: 3x3 convs 3->2, 2->2, 2->4 (54 + 36 + 72) with BN (4 + 4 + 8); block: conv1
    # 4->4 (16) + BN (8); the residual a01 needs no projection; head 4->10 (50)
    model = DNet("1_4_1", 10)
    assert count_params(model) == 54 + 36 + 72 + 4 + 4 + 8 + 16 + 8
    assert count_params(model, head=True) == count_params(model) + 50
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("code", ["031-_16_12-11-112-2", "011-c01_8_-12", "031-a12_16_1-2-1",
                                  "101-*011-a01_16_1-2", "20312-c02a13_16_1-21"])
def test_networks_run_and_downsample_as_coded(code: str) -> None:
    model = DNet(code, 5)
    arch = parse(code)
    x = torch.randn(2, 3, 32, 32)
    feats = model.blocks(model.stem(x))
    assert feats.shape[-1] == 32 // 4 // 2 ** (arch.stages - 1)
    assert model(x).shape == (2, 5)
    model.reset_head(3)
    assert model(x).shape == (2, 3)


@pytest.mark.parametrize("code, message", [
    ("031-_64", "expected BLOCK_CHANNEL_MACRO (3 parts joined by '_'), got 2 part(s)"),
    ("03-_64_1", "layers alternate operation and width digits"),
    ("-a01_64_1", "has no layer"),
    ("0x1-_64_1", "layers must be digits"),
    ("031-a1_64_1", "connections are 3-character groups"),
    ("031-x01_64_1", "'x01' is not a|c + two digits"),
    ("031-a21_64_1", "must go from an earlier output to a later one (0 <= i < j <= 2)"),
    ("031-a13_64_1", "must go from an earlier output"),
    ("031-a02_64_1", "is the implicit block residual a02"),
    ("031-c12_64_1", "concatenation 'c12' into the last layer"),
    ("031-a01c01_64_1", "connection 0->1 is given twice"),
    ("031-_63_1", "channel 63 must be even"),
    ("031-_x_1", "channel 'x' is not a positive integer"),
    ("031-_64_", "the macro part is empty"),
    ("031-_64_12-", "must be followed by a digit"),
    ("031-_64_1--2", "must be followed by a digit"),
    ("031-_64_102", "'0' at position 1 is not a channel multiplier"),
    ("031-*011-_64_1-2-1", "2 block codes joined by '*' but the macro has 3 stages"),
    ("5-_16_1", "conv3_base32 needs widths divisible by its groups (16 -> 16, groups 0)"),
    ("3-_6_1", "conv3_grp4 needs widths divisible by its groups (6 -> 6, groups 4)"),
])
def test_malformed_codes_are_one_line_errors(code: str, message: str) -> None:
    with pytest.raises(RefbenchError) as info:
        parse(code)
    text = str(info.value)
    assert "\n" not in text and message in text and repr(code) in text


def test_samplers_follow_vegas_codecs() -> None:
    rng = random.Random(0)
    for _ in range(50):
        block = random_block(rng, 3, 1)
        layers, _, links = block.partition("-")
        assert len(layers) == 5 and len(links) == 3 and links[1:] != "03"
        macro = random_macro(rng, 12, 32, 128, 3)
        assert len(macro) == 12 and macro.count("-") == 3 and macro.count("2") == 2
        assert "--" not in macro and not macro.endswith("-")
        try:  # grammatical by construction; only grouped widths may not divide
            parse(f"{block}_32_{macro}")
        except EncodingError as exc:
            assert "divisible by its groups" in str(exc)
        mutated = mutate_macro(rng, macro)
        assert abs(len(mutated) - len(macro)) <= 1
    with pytest.raises(RefbenchError, match="too short"):
        random_macro(rng, 4, 32, 512, 3)
