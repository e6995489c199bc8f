"""Process-group plumbing for multi-process training under `torchrun`.

`DistContext` is the only thing the trainer knows about distribution: which rank it is,
how many there are, which device it owns, and a handful of collectives. A single process
(no `torchrun`) gets a context with `world_size == 1` whose collectives are no-ops, so the
training loop has one code path for every setup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as torch_dist

from refbench.errors import RefbenchError

#: how long ranks wait on each other (rank 0 may evaluate while the others wait)
DEFAULT_TIMEOUT = timedelta(hours=1)


def _default_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def _env_int(name: str) -> int:
    raw = os.environ[name]
    try:
        return int(raw)
    except ValueError:
        raise RefbenchError(f"environment variable {name}={raw!r} is not an integer",
                            key=name) from None


@dataclass
class DistContext:
    """Rank, world size and device of this process, plus the collectives the trainer uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: _default_device(0))
    #: True when this context called `init_process_group` and so must destroy it
    owns_group: bool = False

    # -- construction ---------------------------------------------------------------
    @classmethod
    def single(cls, device: str | torch.device | None = None) -> "DistContext":
        """A one-process context (CUDA device 0 when present, else CPU)."""
        return cls(device=torch.device(device) if device is not None else _default_device(0))

    @classmethod
    def from_env(cls, backend: str | None = None,
                 timeout: timedelta = DEFAULT_TIMEOUT) -> "DistContext":
        """Join the process group described by torchrun's RANK / WORLD_SIZE / LOCAL_RANK.

        Without those variables (a plain `python ...` run) this is `single()`. The backend
        is gloo on CPU and nccl on CUDA unless given.
        """
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return cls.single()
        world_size = _env_int("WORLD_SIZE")
        rank = _env_int("RANK")
        local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
        device = _default_device(local_rank)
        if world_size <= 1:
            return cls(rank=0, world_size=1, local_rank=local_rank, device=device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        owns = False
        if not torch_dist.is_initialized():
            chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
            kwargs: dict[str, Any] = {"backend": chosen, "timeout": timeout}
            if chosen == "nccl":
                kwargs["device_id"] = device
            torch_dist.init_process_group(**kwargs)
            owns = True
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                   owns_group=owns)

    # -- properties -----------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """True on the one process that logs, evaluates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # -- collectives (no-ops with one process) ---------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                torch_dist.barrier(device_ids=[self.device.index or 0])
            else:
                torch_dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over ranks in place and return it."""
        if self.distributed:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average `tensor` over ranks in place and return it."""
        if self.distributed:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
            tensor.div_(self.world_size)
        return tensor

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank `src`'s picklable `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        torch_dist.broadcast_object_list(box, src=src, device=self._object_device())
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable `obj`, in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        self.owns_group = False

    def _object_device(self) -> torch.device | None:
        return self.device if self.device.type == "cuda" else None
