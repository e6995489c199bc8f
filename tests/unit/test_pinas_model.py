"""The Pi-NAS supernet in plain PyTorch: split attention, ResNeSt-D blocks, sub-networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from refbench.baselines.nas.pinas.model import (SplitAttnConv, SubNet, Supernet, SupernetConfig,
                                                attn_channels, count_parameters)
from refbench.baselines.nas.pinas.space import published
from refbench.errors import RefbenchError

TINY = SupernetConfig(layers=[1, 1, 1, 1], stem_width=8, base_planes=16, min_attn_channels=32)


def test_parameter_counts_match_resnest50() -> None:
    """All-candidate-1 (radix 2, cardinality 1, width 64) is ResNeSt-50-D: 27,483,240
    parameters with the 1000-class head (ResNeSt's published 27.5M); Pi-NAS-cls has
    27,046,278 (the README rounds to 27.1M)."""
    head = 2048 * 1000 + 1000
    cfg = SupernetConfig()
    assert count_parameters(SubNet(cfg, [1] * 16)) + head == 27_483_240
    assert count_parameters(SubNet(cfg, published("pinas-cls"))) + head == 27_046_278


def test_split_attention_matches_definition() -> None:
    torch.manual_seed(0)
    assert attn_channels(64, 2, 32) == 32 and attn_channels(256, 2, 32) == 128
    for radix, card in ((1, 1), (2, 1), (1, 2), (2, 2)):
        conv = SplitAttnConv(16, 1, card, radix, min_attn_channels=8).eval()
        x = torch.randn(2, 16, 5, 5)
        with torch.no_grad():
            y = conv(x)
            z = F.relu(conv.bn0(conv.conv(x)))
            splits = list(z.split(16, dim=1))
            gap = F.adaptive_avg_pool2d(sum(splits), 1)
            a = conv.fc2(F.relu(conv.bn1(conv.fc1(gap))))
            if radix == 1:
                expected = z * torch.sigmoid(a)
            else:  # ResNeSt rSoftMax: view (B, card, radix, -1), softmax over the radix
                a = F.softmax(a.view(2, card, radix, -1).transpose(1, 2), dim=1).reshape(2, -1)
                attens = a.view(2, -1, 1, 1).split(16, dim=1)
                expected = sum(att * s for att, s in zip(attens, splits))
        assert y.shape == (2, 16, 5, 5)
        torch.testing.assert_close(y, expected)
        assert conv.conv.groups == card * radix and conv.fc1.groups == card


def test_supernet_structure_and_paths() -> None:
    torch.manual_seed(0)
    net = Supernet(TINY)
    assert len(net.blocks) == 4 and all(len(b.candidates) == 4 for b in net.blocks)
    # one shortcut per block, shared by its candidates; avg-down when strided
    assert all(b.downsample is not None for b in net.blocks)
    assert isinstance(net.blocks[1].downsample[0], nn.AvgPool2d)
    assert isinstance(net.blocks[0].downsample[0], nn.Identity)
    # avd: the stride is a 3x3 average pool after the split attention
    avd = net.blocks[1].candidates[3].avd
    assert isinstance(avd, nn.AvgPool2d) and avd.kernel_size == 3 and avd.stride == 2
    assert isinstance(net.blocks[0].candidates[0].avd, nn.Identity)
    # zero-init of the last BN: every residual branch starts as the identity
    assert all(float(c.bn3.weight.abs().sum()) == 0 for b in net.blocks for c in b.candidates)
    x = torch.randn(2, 3, 32, 32)
    assert net(x, (0, 1, 2, 3)).shape == (2, 512, 1, 1)
    assert net.features(x, (3, 3, 3, 3)).shape == (2, 512)
    mods = net.path_modules((0, 1, 2, 3))
    assert mods[0] is net.stem and net.blocks[2].candidates[2] in mods
    assert net.blocks[2].candidates[1] not in mods and net.blocks[3].downsample in mods
    with pytest.raises(ValueError):
        net(x, (0, 1, 2))


def test_subnet_inherits_the_path() -> None:
    torch.manual_seed(1)
    net = Supernet(TINY)
    for p in net.parameters():  # leave the zero init so every branch matters
        nn.init.normal_(p, std=0.1) if p.dim() > 1 else None
    net.eval()
    arch = (2, 0, 3, 1)
    sub = SubNet.from_supernet(net, arch).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), net.features(x, arch))
    assert count_parameters(sub) < count_parameters(net)


def test_config_checks() -> None:
    TINY.check()
    SupernetConfig().check()
    with pytest.raises(RefbenchError, match="base_planes"):
        SupernetConfig(layers=[1, 1], base_planes=8).check()
    with pytest.raises(RefbenchError, match="min_attn_channels"):
        SupernetConfig(layers=[1, 1, 1], base_planes=16, min_attn_channels=8).check()
    with pytest.raises(RefbenchError, match="stem_width"):
        SupernetConfig(stem_width=0).check()
