"""WAS-VTON's networks: every sampled path of the supernet runs and trains its weights,
an untrained warp is the identity, the fixed network of an architecture builds only its
parts and routes each pair through its category's warping stack, and the baselines'
config checks refuse bad settings in one line."""

from __future__ import annotations

import random

import pytest
import torch

from refbench.baselines.tryon.wasvton import space
from refbench.baselines.tryon.wasvton.supernet import (AGNOSTIC_NC, FusionNet, WasVtonNet,
                                                       flow_warp)
from refbench.errors import RefbenchError

H, W, C = 32, 32, 4


def _batch(n: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"agnostic": torch.rand(n, AGNOSTIC_NC, H, W, generator=g) * 2 - 1,
            "cloth": torch.rand(n, 3, H, W, generator=g) * 2 - 1,
            "cloth_mask": (torch.rand(n, 1, H, W, generator=g) > 0.5).float()}


def test_zero_flow_is_the_identity() -> None:
    image = torch.rand(2, 3, 8, 6)
    assert torch.allclose(flow_warp(image, torch.zeros(2, 2, 4, 3)), image, atol=1e-6)


def test_untrained_supernet_warps_nothing() -> None:
    net = WasVtonNet(C)
    batch = _batch()
    out = net(batch, list(space.CATEGORIES), space.largest_arch())
    assert torch.allclose(out["warped_cloth"], batch["cloth"], atol=1e-5)
    assert out["tryon"].shape == (3, 3, H, W) and out["flow"].abs().max() == 0


def test_every_sampled_path_runs_and_touches_only_its_operations() -> None:
    torch.manual_seed(0)
    net = WasVtonNet(C)
    rng = random.Random(1)
    for _ in range(6):
        arch = space.Arch({c: space.sample_warp(rng) for c in space.CATEGORIES},
                          space.sample_fusion(rng))
        net.zero_grad(set_to_none=True)
        out = net(_batch(), ["long-sleeve"] * 3, arch)
        (out["tryon"].mean() + out["warped_cloth"].mean()).backward()
        ops = arch.warp["long-sleeve"]
        cells = net.warp["shared"].cells
        for i, cell in enumerate(cells):
            for name, op in cell.ops.items():
                used = i < len(ops) and ops[i] == name
                has_grad = any(p.grad is not None for p in op.parameters())
                assert has_grad == used, (i, name, ops)


def test_fusion_supernet_and_fixed_agree_in_shape_and_refuse_other_codes() -> None:
    for skips in (("none", "none", "none"), ("both", "person", "garment")):
        fixed = FusionNet(C, skips)
        out = fixed(_batch()["agnostic"], _batch()["cloth"], _batch()["cloth_mask"], skips)
        assert out["tryon"].shape == (3, 3, H, W)
        assert 0 <= float(out["composition_mask"].detach().min()) <= float(out["composition_mask"].detach().max()) <= 1
    fewer = sum(p.numel() for p in FusionNet(C, ("none",) * 3).parameters())
    more = sum(p.numel() for p in FusionNet(C, ("both",) * 3).parameters())
    assert fewer < more == sum(p.numel() for p in FusionNet(C).parameters())
    with pytest.raises(RefbenchError, match="fixed"):
        FusionNet(C, ("none",) * 3)(*_batch().values(), ("both",) * 3)


def test_fixed_network_routes_pairs_by_category() -> None:
    torch.manual_seed(0)
    arch = space.parse_arch("sleeveless=conv3;short-sleeve=sep5,dil3;long-sleeve=conv5,conv5,"
                            "conv5,conv5|fusion=both,none,garment")
    net = WasVtonNet(C, arch)
    assert set(net.warp) == set(space.CATEGORIES)
    assert len(net.warp["long-sleeve"].cells) == 4 and list(net.warp["sleeveless"].cells[0].ops) == ["conv3"]
    for cell in net.warp["short-sleeve"].cells:  # break the identity start so routing shows
        torch.nn.init.normal_(cell.head.weight, 0, 0.1)
    batch = _batch(3)
    cats = ["short-sleeve", "sleeveless", "short-sleeve"]
    out = net(batch, cats, arch)
    alone = net({k: v[1:2] for k, v in batch.items()}, ["sleeveless"], arch)
    assert torch.allclose(out["warped_cloth"][1:2], alone["warped_cloth"], atol=1e-6)
    assert not torch.allclose(out["warped_cloth"][0], batch["cloth"][0], atol=1e-3)
    assert torch.allclose(out["warped_cloth"][1], batch["cloth"][1], atol=1e-5)


def test_baseline_config_checks() -> None:
    from refbench.baselines.tryon.wasvton.baseline import WasVton, WasVtonSupernet
    from refbench.registry import get_spec

    spec = get_spec("viton-tryon")
    cfg = WasVton.validate_config({"height": 64, "width": 48}, spec)
    assert cfg.perceptual == "pyramid" and space.parse_arch(cfg.arch) == space.largest_arch()
    for bad, key in (({"height": 60}, "model.height"), ({"max_cells": 5}, "model.max_cells"),
                     ({"max_cells": 0}, "model.max_cells"), ({"channels": 0}, "model.channels")):
        with pytest.raises(RefbenchError) as info:
            WasVtonSupernet.validate_config(bad, spec)
        assert info.value.key == key
    with pytest.raises(RefbenchError) as info:
        WasVton.validate_config({"arch": "sleeveless=conv9|fusion=none"}, spec)
    assert info.value.key.startswith("model.arch")
    with pytest.raises(RefbenchError) as info:
        WasVton.validate_config({}, get_spec("mpv3d-tryon-depth"))
    assert info.value.key == "benchmark"


def test_search_settings_and_evolution() -> None:
    from refbench.baselines.tryon.wasvton.search import _parse, evolve

    cfg = _parse(["search.population=6", "search.generations=3", "search.parents=2"])
    assert (cfg.population, cfg.generations, cfg.parents, cfg.heldout_ratio) == (6, 3, 2, 0.2)
    for bad, key in ((["search.parents=20"], "search.parents"),
                     (["search.heldout_ratio=1"], "search.heldout_ratio"),
                     (["search.mutation_prob=1.5"], "search.mutation_prob"),
                     (["search.population=0"], "search.population"),
                     (["model.channels=3"], "model")):
        with pytest.raises(RefbenchError) as info:
            _parse(bad)
        assert info.value.key == key
    # fitness prefers many sep5 cells: evolution must find the optimum of the 780-code space
    target = ("sep5",) * 4

    def score(code: tuple[str, ...]) -> float:
        return sum(op == "sep5" for op in code) + 0.1 * len(code)

    cfg = _parse(["search.population=20", "search.generations=12", "search.mutation_prob=0.4"])
    scored = evolve(score, space.sample_warp,
                    lambda c, r: space.mutate_warp(c, r, cfg.mutation_prob), cfg,
                    random.Random(0), space.warp_space_size())
    assert max(scored, key=scored.get) == target
    assert len(scored) <= 20 * 12
    # a space smaller than the budget is scored once per code, never more
    few = evolve(lambda c: 0.0, space.sample_fusion,
                 lambda c, r: space.mutate_fusion(c, r, 1.0), _parse(["search.population=50",
                                                                      "search.generations=3"]),
                 random.Random(0), space.fusion_space_size())
    assert len(few) == space.fusion_space_size()


def test_real_viton_pairs_without_parse_are_refused_in_one_line(shared_data, tmp_path) -> None:
    """PF-AFN's real VITON test folder has no parse or pose: WAS-VTON's person
    representation cannot be built, and says so naming the pair and the column; the
    garment masks, real JPEG masks, still get a category."""
    import numpy as np

    from refbench.baselines.tryon.wasvton.baseline import decode_pair
    from refbench.datasets.tryon import VitonBuilder

    root = shared_data / "viton" / "PF-AFN_test"
    if not root.is_dir():
        pytest.skip(f"VITON sample not found at {root}")
    VitonBuilder().prepare(root, tmp_path / "cache")
    rows = VitonBuilder().load("test", config="unpaired", cache=tmp_path / "cache")
    with pytest.raises(RefbenchError) as info:
        decode_pair(rows[0], 256, 192)
    assert info.value.key == "parse" and "000066_0" in str(info.value)
    from PIL import Image
    import io

    for row in rows:
        mask = np.asarray(Image.open(io.BytesIO(row["cloth_mask"]["bytes"])).convert("L")) >= 128
        assert space.garment_category(mask) in space.CATEGORIES
