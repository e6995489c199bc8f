"""Training rows read as a stream (webdataset shards, or any `datasets.IterableDataset`).

A catalogue of millions of multimodal items does not fit the trainer's random-access path
(a permutation over an in-memory sequence of features). `StreamingRows` feeds the same loop
from an iterable dataset instead:

- every DDP rank reads its own part (`datasets.distributed.split_dataset_by_node`: whole
  shards per rank when the shard count divides evenly, every world-th row otherwise);
- inside a rank, a torch `DataLoader` with `workers` processes reads the shards in
  parallel (the iterable dataset hands each worker its own shards) and decodes them there;
- rows are shuffled with a seeded buffer whose seed moves with the epoch, and the stream
  restarts epoch after epoch until the trainer has taken `max_steps` steps, so ranks whose
  parts differ in size never wait on each other (every rank takes the same number of steps);
- a micro-batch is a plain list of rows: the runner turns it into the model's features and
  batch (`encode` then `collate`), so no model changes to be trained from a stream.

Resuming is exact: the stream is rebuilt from epoch 0 and the micro-batches the run already
consumed are skipped (they are read again but not used), so the order after the resume is
the order of an uninterrupted run. That costs one read of the consumed part; the rows are
not decoded into features on the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

#: rows held by the seeded shuffle buffer (per rank); 0 reads the stream in order
DEFAULT_SHUFFLE_BUFFER = 1000


def _as_list(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DataLoader's collate: keep the rows as they are (the model collates later)."""
    return rows


@dataclass
class StreamingRows:
    """An iterable dataset presented to the trainer as its training rows.

    `num_rows` is the split's size (from the prepared cache); it sets the nominal epoch
    length the trainer counts in and the step count of `epochs`-based recipes.
    """

    rows: "hf_datasets.IterableDataset"
    num_rows: int
    seed: int = 0
    workers: int = 0
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER

    def __post_init__(self) -> None:
        if self.num_rows <= 0:
            raise RefbenchError("the streamed training split is empty", key="data.streaming")
        if self.workers < 0:
            raise RefbenchError(f"data.workers must be >= 0, got {self.workers}",
                                key="data.workers")
        if self.shuffle_buffer < 0:
            raise RefbenchError(f"the shuffle buffer must be >= 0, got {self.shuffle_buffer}",
                                key="data.shuffle_buffer")

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, index: int) -> Any:
        raise TypeError("streamed training rows are read in order; use micro_batches()")

    def epoch_rows(self, epoch: int, rank: int, world: int) -> "hf_datasets.IterableDataset":
        """This rank's rows of one epoch, in the epoch's shuffled order."""
        stream = self.rows
        if world > 1:
            from datasets.distributed import split_dataset_by_node

            stream = split_dataset_by_node(stream, rank=rank, world_size=world)
        if self.shuffle_buffer > 0:
            stream = stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            stream.set_epoch(epoch)
        return stream

    def micro_batches(self, rank: int, world: int, size: int,
                      skip: int = 0) -> Iterator[list[dict[str, Any]]]:
        """Endless micro-batches of `size` rows for one rank (the incomplete last one of an
        epoch is dropped, as the random-access path drops its incomplete last batch), after
        skipping the first `skip` micro-batches (a resumed run's consumed part)."""
        import torch
        from torch.utils.data import DataLoader

        epoch = 0
        while True:
            # its own generator: a DataLoader draws its workers' base seed from the global
            # RNG otherwise, and a resumed run would then see other dropout masks
            seeds = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 101 + rank)
            loader = DataLoader(self.epoch_rows(epoch, rank, world), batch_size=size,
                                collate_fn=_as_list, num_workers=self.workers, drop_last=True,
                                generator=seeds)
            produced = 0
            for rows in loader:
                produced += 1
                if skip > 0:
                    skip -= 1
                    continue
                yield rows
            if produced == 0:
                raise RefbenchError(f"rank {rank} of {world} reads fewer than {size} rows from "
                                    "the stream: too few rows (or shards) for this batch size "
                                    "and number of processes", key="data.streaming")
            epoch += 1
