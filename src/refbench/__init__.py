"""refbench: datasets, official-grade evaluation, reference baselines and a leaderboard.

`import refbench` is cheap: it imports neither torch nor transformers nor datasets.
Everything heavy is reached lazily through the registries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from typing import Union

    import datasets as hf_datasets

    AnyDataset = Union[hf_datasets.Dataset, hf_datasets.DatasetDict,
                       hf_datasets.IterableDataset, hf_datasets.IterableDatasetDict]


def load_dataset(name: str, split: str | None = None, *, config: str | None = None,
                 cache_dir: str | None = None, streaming: bool = False) -> AnyDataset:
    """Load a prepared dataset from the refbench cache as a Hugging Face `datasets` object.

    Run `refbench datasets prepare NAME --root DIR` once first; this only reads the cache.
    `streaming=True` returns an `IterableDataset` (or `IterableDatasetDict`) that reads
    example by example, from the builder's own shards when it wrote some (e.g.
    webdataset tars), else from the Arrow cache; it divides across DDP ranks with
    `datasets.distributed.split_dataset_by_node` and across DataLoader workers.
    """
    from refbench.datasets.base import load_prepared

    return load_prepared(name, split=split, config=config, cache_dir=cache_dir,
                         streaming=streaming)


def __getattr__(attr: str) -> Any:
    if attr in {"DATASETS", "METRICS", "BENCHMARKS", "BASELINES"}:
        from refbench import registry

        return getattr(registry, attr)
    raise AttributeError(f"module 'refbench' has no attribute {attr!r}")


__all__ = ["__version__", "load_dataset"]
