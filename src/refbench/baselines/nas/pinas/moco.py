"""Supernet training: Pi-NAS's cross-path MoCo v2 with the path-wise mean teacher, and the
single-path one-shot (SPOS) comparison behind one switch (`method`).

Re-derived from the official `openselfsup/models/pinas.py` and OpenSelfSup's `MOCO`:

- the query encoder is the supernet plus the MoCo v2 projection MLP (global pool,
  2048 -> 2048 -> 128 with ReLU); the key encoder (the *teacher*) is a copy of both
  that never receives gradients; a queue of `queue_len` L2-normalised keys provides the
  negatives; the loss is InfoNCE (cross-entropy over `[l_pos, l_neg] / temperature`
  with the positive at index 0);
- `method: pinas`: each step draws two paths that differ at every block; the query of
  path 0 is matched to the key of path 1 and the query of path 1 to the key of path 0
  (**cross-path learning**), the two losses are summed, and the mean of the two keys is
  enqueued. Before each key is computed, the teacher takes an EMA step *only on the
  modules of that path* (stem, chosen candidates, their shared shortcuts, the
  projection MLP: the **nontrivial mean teacher**, official `ema_blocks`);
- `method: spos-moco`: one uniformly drawn path per step; query and key on that same
  path and plain MoCo v2 (the teacher is an EMA of every parameter);
- `method: spos-supervised`: one uniformly drawn path per step, cross-entropy of a
  linear classifier on the labels (no teacher, no queue).

The MoCo methods also train a linear classifier on *detached* pooled features of the
query path (an online probe: no gradient reaches the supernet), so the run can be
scored on an image-classification benchmark like any baseline. Paths are drawn from
torch's global generator, which the engine seeds and checkpoints, so a resumed run
replays the same paths.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.nas.pinas.model import Supernet, SupernetConfig
from refbench.errors import RefbenchError

Method = Literal["pinas", "spos-moco", "spos-supervised"]
METHODS: tuple[str, ...] = ("pinas", "spos-moco", "spos-supervised")
#: views per image each method needs (pinas: a query and a key view for each path)
VIEWS = {"pinas": 4, "spos-moco": 2, "spos-supervised": 1}


@dataclass
class MocoConfig:
    """MoCo v2 settings (official `pinas_learning.py` values)."""

    queue_len: int = 49152
    feat_dim: int = 128
    hidden_dim: int = 2048
    momentum: float = 0.999
    temperature: float = 0.2


def check_moco(cfg: MocoConfig, key: str = "model.moco") -> None:
    for name in ("queue_len", "feat_dim", "hidden_dim"):
        if getattr(cfg, name) < 1:
            raise RefbenchError(f"must be >= 1, got {getattr(cfg, name)}", key=f"{key}.{name}")
    if not 0.0 <= cfg.momentum < 1.0:
        raise RefbenchError(f"must be in [0, 1), got {cfg.momentum}", key=f"{key}.momentum")
    if not cfg.temperature > 0:
        raise RefbenchError(f"must be > 0, got {cfg.temperature}", key=f"{key}.temperature")


class ProjectionMLP(nn.Module):
    """MoCo v2's neck (OpenSelfSup `NonLinearNeckV1`): pool, fc, ReLU, fc."""

    def __init__(self, in_dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, out)
        for fc in (self.fc1, self.fc2):  # init_linear='kaiming'
            nn.init.kaiming_normal_(fc.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(fc.bias)

    def forward(self, feature_map: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(feature_map.mean(dim=(2, 3)))))


def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo's InfoNCE: `q, k (N, C)` normalised, `queue (C, K)`; positive at index 0."""
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def labelled_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the rows with a label (-1: a list file gave none)."""
    if bool((labels >= 0).any()):
        return F.cross_entropy(logits, labels, ignore_index=-1)
    return logits.sum() * 0.0


def sample_paths(num_blocks: int, num_choices: int, count: int,
                 generator: torch.Generator | None = None) -> list[tuple[int, ...]]:
    """`count` paths; with two, they differ at every block (per block, distinct candidates
    drawn without replacement); with one, uniform single-path sampling (SPOS)."""
    if count > num_choices:
        raise ValueError(f"cannot draw {count} distinct candidates out of {num_choices}")
    picks = [torch.randperm(num_choices, generator=generator)[:count].tolist()
             for _ in range(num_blocks)]
    return [tuple(int(p[i]) for p in picks) for i in range(count)]


class SupernetLearner(nn.Module):
    """The supernet, its teacher, the queue and the classifier; `loss(views, labels)`."""

    def __init__(self, net: SupernetConfig, moco: MocoConfig, method: Method,
                 num_classes: int) -> None:
        super().__init__()
        if method not in METHODS:
            raise RefbenchError(f"unknown method {method!r} (known: {', '.join(METHODS)})",
                                key="model.method")
        self.method, self.moco_cfg = method, moco
        self.supernet = Supernet(net)
        self.space = self.supernet.space
        channels = net.out_channels
        self.classifier = nn.Linear(channels, num_classes)
        self.uses_moco = method != "spos-supervised"
        if self.uses_moco:
            self.neck = ProjectionMLP(channels, moco.hidden_dim, moco.feat_dim)
            self.teacher = copy.deepcopy(nn.ModuleDict({"supernet": self.supernet,
                                                        "neck": self.neck}))
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            queue = F.normalize(torch.randn(moco.feat_dim, moco.queue_len), dim=0)
            self.register_buffer("queue", queue)
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    # -- the mean teacher ---------------------------------------------------------------
    @torch.no_grad()
    def momentum_update(self, arch: Sequence[int] | None) -> None:
        """EMA of the student into the teacher: only the modules of `arch` (Pi-NAS), or
        every parameter when `arch` is None (plain MoCo). Buffers are not averaged."""
        m = self.moco_cfg.momentum
        if arch is None:
            pairs = [(self.supernet, self.teacher["supernet"]), (self.neck, self.teacher["neck"])]
        else:
            pairs = list(zip(self.supernet.path_modules(arch),
                             self.teacher["supernet"].path_modules(arch)))
            pairs.append((self.neck, self.teacher["neck"]))
        for student, teacher in pairs:
            for p_s, p_t in zip(student.parameters(), teacher.parameters()):
                p_t.mul_(m).add_(p_s.detach(), alpha=1.0 - m)

    @torch.no_grad()
    def keys(self, images: Tensor, arch: Sequence[int]) -> Tensor:
        """Normalised teacher keys along `arch`, batch-shuffled across processes so BN
        statistics cannot leak the positive (MoCo's shuffle BN; a no-op on one process)."""
        shuffled, restore = _shuffle(images)
        k = self.teacher["neck"](self.teacher["supernet"](shuffled, arch))
        return _unshuffle(F.normalize(k, dim=1), restore)

    def queries(self, images: Tensor, arch: Sequence[int]) -> tuple[Tensor, Tensor]:
        """(normalised queries, pooled features) of the student along `arch`."""
        fmap = self.supernet(images, arch)
        return F.normalize(self.neck(fmap), dim=1), fmap.mean(dim=(2, 3))

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        keys = _gather(keys)
        batch, size = keys.shape[0], self.moco_cfg.queue_len
        if size % batch:
            raise RefbenchError(f"the queue length {size} is not a multiple of the global "
                                f"batch size {batch} (as MoCo requires)", key="model.moco.queue_len")
        ptr = int(self.queue_ptr)
        self.queue[:, ptr:ptr + batch] = keys.T
        self.queue_ptr.fill_((ptr + batch) % size)

    # -- one training step ----------------------------------------------------------------
    def loss(self, views: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """`views (B, V, 3, H, W)` with `VIEWS[method]` views per image."""
        if views.shape[1] != VIEWS[self.method]:
            raise ValueError(f"{self.method} needs {VIEWS[self.method]} views, got {views.shape[1]}")
        nb, nc = self.space.num_blocks, self.space.num_choices
        if self.method == "spos-supervised":
            (arch,) = same_paths(sample_paths(nb, nc, 1))
            logits = self.classifier(self.supernet.features(views[:, 0], arch))
            loss = labelled_ce(logits, labels)
            return {"loss": loss, "ce": loss.detach()}
        queue = self.queue.clone().detach()
        temp = self.moco_cfg.temperature
        if self.method == "pinas":
            arch0, arch1 = same_paths(sample_paths(nb, nc, 2))
            q0, f0 = self.queries(views[:, 0], arch0)
            self.momentum_update(arch0)
            k0 = self.keys(views[:, 1], arch0)
            q1, _ = self.queries(views[:, 2], arch1)
            self.momentum_update(arch1)
            k1 = self.keys(views[:, 3], arch1)
            contrastive = info_nce(q0, k1, queue, temp) + info_nce(q1, k0, queue, temp)
            self.enqueue((k0 + k1) / 2)
        else:  # spos-moco
            (arch0,) = same_paths(sample_paths(nb, nc, 1))
            q0, f0 = self.queries(views[:, 0], arch0)
            self.momentum_update(None)
            k0 = self.keys(views[:, 1], arch0)
            contrastive = info_nce(q0, k0, queue, temp)
            self.enqueue(k0)
        probe = labelled_ce(self.classifier(f0.detach()), labels)
        return {"loss": contrastive + probe, "contrastive": contrastive.detach(),
                "probe_ce": probe.detach()}

    def logits(self, images: Tensor, arch: Sequence[int]) -> Tensor:
        return self.classifier(self.supernet.features(images, arch))


# -- cross-process helpers (MoCo's concat_all_gather and shuffle BN) ------------------------
def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def same_paths(paths: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Rank 0's paths on every process: each step trains one path (pair) on the whole
    global batch, as the official multi-GPU training does. The engine seeds every rank
    differently (augmentation), so paths drawn locally would differ, DDP would average
    gradients of different sub-networks and cross-process BN would normalise layers of
    different widths together. One process: unchanged."""
    if not _distributed():
        return paths
    import torch.distributed as dist

    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    table = torch.tensor(paths, dtype=torch.long, device=device)
    dist.broadcast(table, src=0)
    return [tuple(int(v) for v in row) for row in table.tolist()]


@torch.no_grad()
def _gather(x: Tensor) -> Tensor:
    if not _distributed():
        return x
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def _shuffle(x: Tensor) -> tuple[Tensor, Tensor | None]:
    if not _distributed():
        return x, None
    import torch.distributed as dist

    everything = _gather(x)
    order = torch.randperm(len(everything), device=x.device)
    dist.broadcast(order, src=0)
    mine = order.view(dist.get_world_size(), -1)[dist.get_rank()]
    return everything[mine], torch.argsort(order)


@torch.no_grad()
def _unshuffle(x: Tensor, restore: Tensor | None) -> Tensor:
    if restore is None:
        return x
    import torch.distributed as dist

    everything = _gather(x)
    return everything[restore.view(dist.get_world_size(), -1)[dist.get_rank()]]


def numpy_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's global generator (checkpointed by the engine)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


__all__ = ["METHODS", "VIEWS", "Method", "MocoConfig", "ProjectionMLP", "SupernetLearner",
           "check_moco", "info_nce", "numpy_rng", "same_paths", "sample_paths"]
