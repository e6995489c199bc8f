"""Pi-NAS under two CPU processes (gloo, torch.multiprocessing spawn):

- `convert_sync_bn` turns every BatchNorm of the supernet and its teacher into a
  cross-process BN, and the statistics, outputs and (summed) gradients of a path equal one
  process normalising the whole batch;
- MoCo's shuffle BN (`SupernetLearner.keys`): the batch is shuffled across ranks, keys are
  computed with per-process BN on the shuffled sub-batches and unshuffled, so each rank gets
  the keys of its own images, in their original order, equal to one process doing the same
  permutation and chunking; with cross-process BN the keys equal the full-batch keys;
- `same_paths`: ranks seeded differently still train the same path, so one loss step runs
  (cross-process BN over layers of one width) and leaves identical queues on both ranks.
"""

from __future__ import annotations

import copy
import datetime
import os
import time
from pathlib import Path

import pytest
import torch

from refbench.baselines.nas.pinas.model import (
    ProcessGroupBatchNorm,
    Supernet,
    SupernetConfig,
    convert_sync_bn,
)
from refbench.baselines.nas.pinas.moco import MocoConfig, SupernetLearner, same_paths, sample_paths

#: two spawned interpreters importing torch take ~15-20 s on a loaded 2-core machine
pytestmark = pytest.mark.slow

WORLD, LOCAL_BATCH, SIZE = 2, 4, 16
ARCH = (1, 3, 2, 0)
NET = dict(layers=[1, 1, 1, 1], stem_width=8, base_planes=16, min_attn_channels=32)
MOCO = dict(queue_len=16, feat_dim=8, hidden_dim=16, momentum=0.9)
#: generous: two spawned interpreters importing torch on a loaded 2-core machine
DEADLINE_S = 120.0


def make_learner() -> SupernetLearner:
    """The same learner on every process (and in the test): seeded init, then random BN
    affine parameters so no branch starts at zero (zero_init_last_bn)."""
    torch.manual_seed(0)
    learner = SupernetLearner(SupernetConfig(**NET), MocoConfig(**MOCO), "pinas", 10)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in learner.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    return learner.double()  # float64: equalities hold to 1e-10, not to float32's noise


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(WORLD * LOCAL_BATCH, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    return images, images


def readout() -> torch.Tensor:
    """Fixed random weights of the pooled features: a loss whose gradient reaches every
    BN input (a plain sum of normalised outputs would have none)."""
    return torch.randn(WORLD * LOCAL_BATCH, SupernetConfig(**NET).out_channels,
                       generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def _bn_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def _worker(rank: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        images, _ = global_batch()
        mine = images[rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH]
        result: dict[str, object] = {}
        # 1. cross-process BN on a path of the supernet
        learner = convert_sync_bn(make_learner())
        kinds = {type(m).__name__ for m in learner.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        result["bn_kinds"] = sorted(kinds)
        net = learner.supernet.train()
        weights = readout()
        out_map = net(mine, ARCH)
        pooled = out_map.mean(dim=(2, 3))
        w = weights[rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH]
        (pooled * w).sum().backward()
        result["sync_out"] = pooled.detach()
        result["sync_stats"] = _bn_state(net)
        result["sync_grads"] = {k: p.grad.clone() for k, p in net.named_parameters()
                                if p.grad is not None}
        # 2. shuffle BN with per-process BN (MoCo's setting), and with cross-process BN
        plain = make_learner()
        result["rng_before_keys"] = torch.get_rng_state()
        result["keys_plain"] = plain.keys(mine, ARCH)
        result["keys_sync"] = learner.keys(mine, ARCH)
        # 3. differently seeded ranks agree on the paths; one full loss step runs
        torch.manual_seed(100 + rank)
        result["paths"] = same_paths(sample_paths(4, 4, 2))
        views = mine[:, None].repeat(1, 4, 1, 1, 1) + 0.01 * torch.randn(LOCAL_BATCH, 4, 3,
                                                                         SIZE, SIZE).double()
        loss = learner.loss(views, torch.arange(LOCAL_BATCH) + rank)["loss"]
        loss.backward()
        result["loss_finite"] = bool(torch.isfinite(loss))
        result["queue"] = learner.queue.clone()
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("pinas-ddp")
    init = folder / "init"
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        context = mp.spawn(_worker, args=(str(init), str(folder)), nprocs=WORLD, join=False)
        deadline = time.monotonic() + DEADLINE_S
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail(f"the two Pi-NAS processes did not finish in {DEADLINE_S:.0f} s")
    finally:
        if env["OMP_NUM_THREADS"] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env["OMP_NUM_THREADS"]
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_every_bn_is_cross_process(ranks: list[dict]) -> None:
    for rank in ranks:
        assert rank["bn_kinds"] == ["ProcessGroupBatchNorm"]
    # one process: nothing is converted
    single = convert_sync_bn(make_learner())
    assert not any(isinstance(m, ProcessGroupBatchNorm) for m in single.modules())


def test_sync_bn_equals_one_process_full_batch(ranks: list[dict]) -> None:
    net: Supernet = make_learner().supernet.train()
    images, _ = global_batch()
    weights = readout()
    pooled = net(images, ARCH).mean(dim=(2, 3))
    (pooled * weights).sum().backward()
    got = torch.cat([r["sync_out"] for r in ranks])
    torch.testing.assert_close(got, pooled.detach(), rtol=1e-9, atol=1e-9)
    expected = _bn_state(net)
    for rank in ranks:
        assert rank["sync_stats"].keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(rank["sync_stats"][key], value, rtol=1e-9, atol=1e-9,
                                       msg=key)
    moved = [k for k, v in expected.items() if k.endswith("running_mean") and v.abs().sum() > 0]
    assert len(moved) > 10  # the path's BNs did update (the other candidates' did not)
    grads = {k: p.grad for k, p in net.named_parameters() if p.grad is not None}
    assert grads.keys() == ranks[0]["sync_grads"].keys() == ranks[1]["sync_grads"].keys()
    for key, value in grads.items():
        summed = ranks[0]["sync_grads"][key] + ranks[1]["sync_grads"][key]
        torch.testing.assert_close(summed, value, rtol=1e-8, atol=1e-9, msg=key)


def test_shuffle_bn_returns_keys_in_order(ranks: list[dict]) -> None:
    images, _ = global_batch()
    torch.set_rng_state(ranks[0]["rng_before_keys"])  # rank 0's permutation is broadcast
    order = torch.randperm(WORLD * LOCAL_BATCH)
    teacher = make_learner().teacher.train()
    chunks = images[order].view(WORLD, LOCAL_BATCH, 3, SIZE, SIZE)
    shuffled_keys = torch.cat([torch.nn.functional.normalize(
        teacher["neck"](teacher["supernet"](c, ARCH)), dim=1) for c in chunks])
    expected = shuffled_keys[torch.argsort(order)]
    got = torch.cat([r["keys_plain"] for r in ranks])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    # the shuffle mattered: per-rank BN over unshuffled halves gives other keys
    teacher = make_learner().teacher.train()
    unshuffled = torch.cat([torch.nn.functional.normalize(
        teacher["neck"](teacher["supernet"](c, ARCH)), dim=1)
        for c in images.view(WORLD, LOCAL_BATCH, 3, SIZE, SIZE)])
    assert not torch.allclose(got, unshuffled, atol=1e-4)
    # with cross-process BN the keys are the whole batch's, in the original order
    teacher = make_learner().teacher.train()
    full = torch.nn.functional.normalize(teacher["neck"](teacher["supernet"](images, ARCH)), dim=1)
    torch.testing.assert_close(torch.cat([r["keys_sync"] for r in ranks]), full,
                               rtol=1e-9, atol=1e-9)


def test_ranks_train_the_same_paths(ranks: list[dict]) -> None:
    assert ranks[0]["paths"] == ranks[1]["paths"]
    assert all(len(set(pair)) == 2 for pair in zip(*ranks[0]["paths"]))  # differ per block
    assert all(r["loss_finite"] for r in ranks)
    torch.testing.assert_close(ranks[0]["queue"], ranks[1]["queue"], rtol=0, atol=0)
    paths = sample_paths(4, 4, 2)
    assert same_paths(copy.deepcopy(paths)) == paths  # one process: unchanged
