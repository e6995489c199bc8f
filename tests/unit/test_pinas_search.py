"""LaNAS-style search (official search_phase.py / learning_phase.py) and the fitness
(BN recalibration + linear probe, official search_hook.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refbench.baselines.nas.pinas import fitness as fit
from refbench.baselines.nas.pinas import lanas
from refbench.baselines.nas.pinas.lanas import LanasConfig, LanasSearch, Node, in_region, tree_height
from refbench.baselines.nas.pinas.model import Supernet, SupernetConfig
from refbench.baselines.nas.pinas.space import SearchSpace
from refbench.errors import RefbenchError

TINY = SupernetConfig(layers=[1, 1, 1, 1], stem_width=8, base_planes=16, min_attn_channels=32)


def test_official_search_settings() -> None:
    assert (lanas.INITIAL_SAMPLE, lanas.SELECTS, lanas.MAX_SAMPLES) == (80, 8, 1000)
    assert lanas.HEIGHT_LEVELS == (400, 800, 1600, 3200)
    assert lanas.REJECTION_TRIES == 200_000
    assert fit.BN_RECALIBRATION_ITERS == 49
    assert (fit.PROBE_LR, fit.PROBE_MOMENTUM, fit.PROBE_EPOCHS, fit.PROBE_MILESTONES) == \
        (30.0, 0.9, 100, (60, 80))
    # SearchPhase.height: searchsorted(levels, n) + 1
    assert [tree_height(n, lanas.HEIGHT_LEVELS) for n in (80, 400, 401, 800, 1000, 5000)] == \
        [1, 1, 2, 2, 3, 5]


def _target(code: tuple[int, ...]) -> float:
    """A fitness that rewards candidate 3 at every block (a learnable partition)."""
    return float(sum(c == 3 for c in code)) + 0.01 * code[0]


def test_tree_splits_good_from_bad() -> None:
    space = SearchSpace(layers=(2, 2, 2, 2))
    rng = np.random.default_rng(0)
    codes = [space.random(rng) for _ in range(200)]
    X = np.stack([space.one_hot(c) for c in codes])
    y = np.asarray([_target(c) for c in codes])
    root = Node(X, y, 1, "logistic", 0)
    assert not root.is_leaf and root.left.is_leaf and root.right.is_leaf
    assert root.left.median >= root.median > root.right.median
    assert root.threshold == root.right.median and root.error is not None and root.error < 0.3
    path = root.select(0.0)  # official UCB (no exploration): the good side
    assert [left for _n, left in path] == [True]
    good = tuple([3] * 8)
    assert in_region(path, space.one_hot(good))
    assert Node(X, y, 0, "logistic", 0).is_leaf


def test_search_finds_good_architectures() -> None:
    space = SearchSpace(layers=(2, 2, 2, 2))
    cfg = LanasConfig(initial_sample=30, selects=5, max_samples=60, seeds=["0 0 0 0 0 0 0 0"],
                      tries=2000)
    search = LanasSearch(space, cfg, seed=1)
    scored = search.run(_target)
    assert len(scored) == 60 and len({s.code for s in scored}) == 60
    assert scored[0].code == (0,) * 8 and scored[0].source == "seed"
    assert [s.source for s in scored[1:30]] == ["random"] * 29
    assert all(s.source == "tree" and s.leaf for s in scored[30:])
    random_mean = np.mean([s.fitness for s in scored[1:30]])
    tree_mean = np.mean([s.fitness for s in scored[30:]])
    assert tree_mean > random_mean + 0.5  # the learned partition steers the sampling
    assert search.best().fitness == max(s.fitness for s in scored)


def test_search_settings_are_checked() -> None:
    space = SearchSpace(layers=(1, 1, 1, 1))
    with pytest.raises(RefbenchError, match="initial_sample"):
        LanasSearch(space, LanasConfig(initial_sample=0), 0)
    with pytest.raises(RefbenchError, match="out of range"):
        LanasSearch(space, LanasConfig(seeds=["0 1 2 4"]), 0)
    with pytest.raises(RefbenchError, match="increasing"):
        LanasSearch(space, LanasConfig(height_levels=[10, 5]), 0)
    with pytest.raises(RefbenchError, match="not finite"):
        LanasSearch(space, LanasConfig(initial_sample=2, max_samples=2), 0).run(
            lambda code: float("nan"))


def _batches(images: torch.Tensor, labels: torch.Tensor, size: int):  # type: ignore[no-untyped-def]
    def make():  # type: ignore[no-untyped-def]
        for start in range(0, len(images), size):
            yield images[start:start + size], labels[start:start + size]
    return make


def test_bn_recalibration_is_the_mean_of_batch_statistics() -> None:
    torch.manual_seed(0)
    net = Supernet(TINY)
    arch = (1, 2, 3, 0)
    images = torch.randn(12, 3, 32, 32) * 2 + 1
    batches = list(_batches(images, torch.zeros(12, dtype=torch.long), 4)())
    bn = net.stem[1]
    with torch.no_grad():
        means = [net.stem[0](x).mean(dim=(0, 2, 3)) for x, _ in batches]
    used = fit.recalibrate_bn(net, arch, iter(batches), 3)
    assert used == 3 and bn.momentum == 0.1 and net.training  # settings restored
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)
    off_path = net.blocks[0].candidates[0].bn1  # not on the path: untouched
    assert float(off_path.running_mean.abs().sum()) == 0
    with pytest.raises(RefbenchError, match="needs 5 batches but the calibration subset gives 3"):
        fit.recalibrate_bn(net, arch, iter(batches), 5)


def test_fitness_shared_and_per_arch_probe() -> None:
    torch.manual_seed(0)
    net = Supernet(TINY)
    labels = torch.arange(40) % 2
    images = torch.randn(40, 3, 32, 32) + labels.view(-1, 1, 1, 1).float() * 2.0
    data = _batches(images, labels, 10)
    cfg = fit.FitnessConfig(bn_iters=2, probe_epochs=3, probe_lr=0.5)
    head = fit.train_shared_probe(net, data, 2, cfg, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    shared = fit.fitness(net, (0, 1, 2, 3), data, data, cfg, head)
    per_arch = fit.fitness(net, (0, 1, 2, 3), data, data,
                           fit.FitnessConfig(bn_iters=2, probe="per_arch"), probe_train=data)
    assert 0.0 <= shared <= 100.0 and per_arch >= 90.0  # separable by brightness
    for key, value in net.state_dict().items():  # running statistics restored
        torch.testing.assert_close(value, before[key])
    assert fit.top1(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 50.0
    with pytest.raises(RefbenchError, match="bn_iters"):
        fit.check_fitness(fit.FitnessConfig(bn_iters=-1))
