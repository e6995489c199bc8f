"""Search fitness: BatchNorm recalibration of a path, then linear-probe accuracy.

The official search (`hooks/search_hook.py`, `contrastive_search_hook.update_bn_stats`,
`configs/pinas_linear_*.py`):

1. a linear classifier is trained once on the frozen supernet (`frozen_stages=4`), a
   random path per batch, BN layers in training mode (`norm_eval='all_false'`),
   SGD lr 30, momentum 0.9, no weight decay, steps at epochs 60 and 80 of 100;
2. per candidate architecture, the BN statistics of its path are re-estimated on a
   subset of the training set (`train_labeled_50000_random_shuffle.txt`: 49 iterations
   of 128 images on 8 GPUs), as the average of the per-batch statistics (precise BN);
3. the fitness is the top-1 accuracy (percent) of that classifier on a held-out list
   (`my_val_labeled.txt`).

`probe: shared` does exactly this; `probe: per_arch` instead fits a logistic regression
(scikit-learn) on the candidate's own recalibrated features of a probe-training subset,
a cleaner linear probe that costs one feature pass more per candidate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from refbench.baselines.nas.pinas.model import Supernet
from refbench.errors import RefbenchError

#: official `update_bn_stats(..., num_iters=49)` of the search hook
BN_RECALIBRATION_ITERS = 49
#: official linear training: SGD lr 30, momentum 0.9, no decay, steps at 60 / 80 of 100 epochs
PROBE_LR, PROBE_MOMENTUM, PROBE_EPOCHS, PROBE_MILESTONES = 30.0, 0.9, 100, (60, 80)

Batches = Callable[[], Iterator[tuple[Tensor, Tensor]]]


@dataclass
class FitnessConfig:
    """How a candidate is scored (`search.fitness.*`)."""

    probe: Literal["shared", "per_arch"] = "shared"
    bn_iters: int = BN_RECALIBRATION_ITERS
    probe_epochs: int = PROBE_EPOCHS
    probe_lr: float = PROBE_LR
    probe_milestones: list[int] | None = None  # default: 60% and 80% of probe_epochs
    #: inverse regularisation of the per-arch logistic regression
    probe_c: float = 1.0


def check_fitness(cfg: FitnessConfig, key: str = "search.fitness") -> None:
    if cfg.bn_iters < 0:
        raise RefbenchError(f"must be >= 0, got {cfg.bn_iters}", key=f"{key}.bn_iters")
    if cfg.probe_epochs < 1:
        raise RefbenchError(f"must be >= 1, got {cfg.probe_epochs}", key=f"{key}.probe_epochs")
    if not cfg.probe_lr > 0 or not cfg.probe_c > 0:
        raise RefbenchError("probe_lr and probe_c must be > 0", key=key)


def path_batchnorms(net: Supernet, arch: Sequence[int]) -> list[_BatchNorm]:
    return [m for module in net.path_modules(arch) for m in module.modules()
            if isinstance(m, _BatchNorm)]


@torch.no_grad()
def recalibrate_bn(net: Supernet, arch: Sequence[int], batches: Iterable[tuple[Tensor, Tensor]],
                   iters: int) -> int:
    """Re-estimate the BN statistics of `arch`'s path over `iters` batches as the mean of
    the per-batch statistics (momentum None = cumulative average, the same as the
    official momentum-1 accumulation). Fewer batches than `iters` is an error, as the
    official hook asserts; returns the batches used."""
    bns = path_batchnorms(net, arch)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    was_training = net.training
    net.train()
    used = 0
    try:
        for images, _labels in itertools.islice(batches, iters):
            net(images, arch)
            used += 1
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
        net.train(was_training)
    if used < iters:
        raise RefbenchError(f"BN recalibration needs {iters} batches but the calibration subset "
                            f"gives {used}", key="search.fitness.bn_iters")
    return used


@torch.no_grad()
def extract(net: Supernet, arch: Sequence[int], batches: Iterable[tuple[Tensor, Tensor]]
            ) -> tuple[Tensor, Tensor]:
    """Pooled features and labels of every batch, in eval mode."""
    was_training = net.training
    net.eval()
    feats, labels = [], []
    for images, y in batches:
        feats.append(net.features(images, arch))
        labels.append(y)
    net.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def train_shared_probe(net: Supernet, batches: Batches, num_classes: int, cfg: FitnessConfig,
                       generator: torch.Generator | None = None) -> nn.Linear:
    """The official linear training: frozen supernet, a random path per batch, BN in
    training mode (batch statistics; the running ones are restored afterwards), SGD."""
    head = nn.Linear(net.cfg.out_channels, num_classes)
    nn.init.normal_(head.weight, std=0.01)  # OpenSelfSup ClsHead init
    nn.init.zeros_(head.bias)
    milestones = cfg.probe_milestones or [int(cfg.probe_epochs * 0.6), int(cfg.probe_epochs * 0.8)]
    opt = torch.optim.SGD(head.parameters(), lr=cfg.probe_lr, momentum=PROBE_MOMENTUM,
                          weight_decay=0.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    was_training = net.training
    net.train()
    space = net.space
    for _epoch in range(cfg.probe_epochs):
        for images, labels in batches():
            arch = tuple(int(c) for c in torch.randint(0, space.num_choices, (space.num_blocks,),
                                                       generator=generator))
            with torch.no_grad():
                feats = net.features(images, arch)
            loss = F.cross_entropy(head(feats), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    net.load_state_dict(saved)  # the running BN statistics are the recalibration's business
    net.train(was_training)
    return head


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent (`encoding.utils.accuracy`, OpenSelfSup's evaluate)."""
    if len(labels) == 0:
        raise RefbenchError("the held-out set is empty", key="search.heldout")
    return float((logits.argmax(dim=1) == labels).float().mean().item() * 100.0)


def fitness(net: Supernet, arch: Sequence[int], calib: Batches, heldout: Batches,
            cfg: FitnessConfig, head: nn.Linear | None = None,
            probe_train: Batches | None = None) -> float:
    """Top-1 (percent) of `arch` on the held-out batches after BN recalibration; with
    `head` (shared probe) its logits, else a per-architecture logistic regression fitted
    on `probe_train`. The supernet's running statistics are restored afterwards."""
    saved = {k: v.clone() for k, v in net.state_dict().items() if "running" in k
             or "num_batches" in k}
    try:
        if cfg.bn_iters:
            recalibrate_bn(net, arch, calib(), cfg.bn_iters)
        feats, labels = extract(net, arch, heldout())
        if head is not None:
            with torch.no_grad():
                return top1(head(feats), labels)
        if probe_train is None:
            raise ValueError("a per-architecture probe needs probe_train batches")
        train_feats, train_labels = extract(net, arch, probe_train())
        return per_arch_probe(train_feats, train_labels, feats, labels, cfg.probe_c)
    finally:
        net.load_state_dict(saved, strict=False)


def per_arch_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                   c: float = 1.0) -> float:
    """Logistic-regression probe on standardised features; top-1 percent."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x.numpy())
    model = LogisticRegression(C=c, max_iter=1000)
    if len(np.unique(train_y.numpy())) < 2:
        raise RefbenchError("the probe-training subset holds a single class", key="search")
    model.fit(scaler.transform(train_x.numpy()), train_y.numpy())
    pred = model.predict(scaler.transform(test_x.numpy()))
    return float((pred == test_y.numpy()).mean() * 100.0)
