"""Synthetic CIFAR releases in the official python format, with learnable classes.

The files are written byte for byte as the official ones are laid out (Python 2
cPickle protocol 2 dicts, see `batches.py`), so the synthetic copy exercises the same
reading path as the real release; only the sizes differ (`n` images in all, split as
five train batches and one test batch of equal size; batches.meta states the size in
`num_cases_per_batch`, as the official one states 10,000). Pictures come from
`refbench.datasets.images.paint`: class-dependent colour, shape and texture.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from refbench.datasets.cifar.batches import SIDE, py2_pickle
from refbench.datasets.images.paint import paint
from refbench.io import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from refbench.datasets.cifar.builder import Variant

#: CIFAR-10's class names (batches.meta `label_names`, in label order)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")


def _batch(variant: "Variant", size: int, rng: np.random.Generator, title: str,
           start: int) -> dict[str, object]:
    labels = [int((start + i) % variant.classes) for i in range(size)]
    rng.shuffle(labels)
    data = np.stack([paint(c, variant.classes, SIDE, rng).transpose(2, 0, 1).reshape(-1)
                     for c in labels]) if labels else np.zeros((0, 3 * SIDE * SIDE), np.uint8)
    names = [f"synthetic_s_{start + i:06d}.png" for i in range(size)]
    if variant.coarse is None:
        return {"batch_label": title, "labels": labels, "data": data, "filenames": names}
    per = variant.classes // variant.coarse
    return {"filenames": names, "batch_label": title, "fine_labels": labels,
            "coarse_labels": [c // per for c in labels], "data": data}


def synthesize_cifar(out: Path, variant: "Variant", n: int = 200, seed: int = 0) -> Path:
    """Write `out/<python folder>/` with about `n` images; returns `out`."""
    rng = np.random.default_rng(seed)
    folder = Path(out) / variant.py_folder
    size = max(2, n // 6)
    train, test = variant.py_files["train"], variant.py_files["test"]
    if variant.coarse is None:
        meta: dict[str, object] = {"num_cases_per_batch": size,
                                   "label_names": list(CIFAR10_NAMES), "num_vis": 3 * SIDE * SIDE}
        for i, name in enumerate(train):
            atomic_write_bytes(folder / name, py2_pickle(
                _batch(variant, size, rng, f"training batch {i + 1} of 5", i * size)))
        atomic_write_bytes(folder / test[0], py2_pickle(
            _batch(variant, size, rng, "testing batch 1 of 1", 0)))
    else:
        meta = {"fine_label_names": [f"fine_{i:02d}" for i in range(variant.classes)],
                "coarse_label_names": [f"coarse_{i:02d}" for i in range(variant.coarse)]}
        atomic_write_bytes(folder / train[0], py2_pickle(
            _batch(variant, 5 * size, rng, "training batch 1 of 1", 0)))
        atomic_write_bytes(folder / test[0], py2_pickle(
            _batch(variant, size, rng, "testing batch 1 of 1", 0)))
    atomic_write_bytes(folder / variant.py_meta, py2_pickle(meta))
    return Path(out)
