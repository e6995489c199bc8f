"""Fine-tuning tasks: a dataset in one of the supported image layouts, read into memory at
one resolution, and a generator of synthetic tasks of graded difficulty.

A task is named by a short spec string, so that a job in another process (or on a Ray
worker) rebuilds exactly the same task from its name:

    synthetic:GRADE[:SEED]   painted pictures (`datasets/images/paint.py`), GRADE one of
                             easy, medium, hard, pretrain (see `GRADES`)
    digits[:ROOT]            scikit-learn's real 8x8 scans (ROOT: a folder holding
                             digits.csv.gz; default: the file bundled with scikit-learn)
    imagefolder:ROOT         any class-folder tree (ROOT/<class>/... or ROOT/{train,val,test}/)
    cifar10:ROOT, cifar100:ROOT   the official python or binary batches

The builders of `refbench.datasets` read the official layouts (nothing is prepared or
cached); the test split is the release's `test` split, else its `validation` split, else
every 5th training image (held out, documented in the task's `test_from`). A task whose
training split holds fewer than two classes is refused: a classifier cannot be fine-tuned
on it.

Task features (the online schedule generator's view of a task, cheap to compute): log of
the training-set size, log of the number of classes, images per class, and a linear probe
difficulty, the accuracy of a nearest-class-mean classifier on 8x8 pixels over a held-out
fifth of the training split (so the test split is never looked at).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from refbench.errors import RefbenchError

#: grade -> (classes, training images per class, extra pixel noise sigma, colour jitter)
GRADES: dict[str, tuple[int, int, float, float]] = {
    "easy": (4, 40, 0.0, 12.0),
    "medium": (8, 30, 35.0, 40.0),
    "hard": (16, 20, 60.0, 70.0),
    "pretrain": (16, 120, 20.0, 25.0),
}
TEST_PER_CLASS = 15
LAYOUTS = ("synthetic", "digits", "imagefolder", "cifar10", "cifar100")
FEATURES = ("log_train", "log_classes", "per_class", "probe")


@dataclass
class Task:
    """A task in memory: uint8 images `(N, 3, S, S)` and int64 labels, train and test."""

    name: str
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_from: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def features(self) -> dict[str, float]:
        """The task features of the module doc (deterministic)."""
        n = len(self.train_y)
        return {"log_train": math.log(n), "log_classes": math.log(self.num_classes),
                "per_class": n / self.num_classes, "probe": probe_accuracy(self)}


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1] (vega's fine-tune recipe: mean 0.5, std 0.5)."""
    return images.float().div_(127.5).sub_(1.0)


def probe_accuracy(task: Task) -> float:
    """Nearest-class-mean accuracy on 8x8 pixels, fit on 4/5 of the training split and
    scored on the other fifth."""
    x = torch.nn.functional.adaptive_avg_pool2d(task.train_x.float(), 8).flatten(1) / 255.0
    y = task.train_y
    held = torch.arange(len(y)) % 5 == 4
    fit_x, fit_y, val_x, val_y = x[~held], y[~held], x[held], y[held]
    if len(val_y) == 0:
        return 0.0
    present = torch.unique(fit_y)
    means = torch.stack([fit_x[fit_y == c].mean(0) for c in present])
    guess = present[torch.cdist(val_x, means).argmin(1)]
    return float((guess == val_y).float().mean())


# -- synthetic tasks of graded difficulty ---------------------------------------------------
def synthetic_task(grade: str, seed: int = 0, size: int = 32) -> Task:
    """Painted pictures (`paint.py`: colour x shape x texture per class) made harder by
    more classes, fewer images per class, pixel noise and colour jitter (which removes
    colour as a shortcut); the same (grade, seed, size) gives the same task."""
    from refbench.datasets.images.paint import paint

    if grade not in GRADES:
        raise RefbenchError(f"unknown synthetic grade {grade!r} (known: {', '.join(GRADES)})",
                            key="task")
    classes, per_class, noise, jitter = GRADES[grade]
    rng = np.random.default_rng([seed, list(GRADES).index(grade), size])
    offset = int(rng.integers(0, 1000))  # which painted classes this task uses

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for label in range(classes):
            for _ in range(count):
                picture = paint((label + offset) % 64, 64, size, rng).astype(np.float32)
                picture += rng.normal(0, jitter, 3)[None, None, :]
                picture += rng.normal(0, noise, picture.shape) if noise else 0.0
                images.append(np.clip(picture, 0, 255).astype(np.uint8).transpose(2, 0, 1))
                labels.append(label)
        order = rng.permutation(len(labels))
        return (torch.from_numpy(np.stack(images)[order]),
                torch.tensor(labels, dtype=torch.int64)[order])

    train_x, train_y = draw(per_class)
    test_x, test_y = draw(TEST_PER_CLASS)
    return Task(f"synthetic:{grade}:{seed}", [f"c{i}" for i in range(classes)], train_x,
                train_y, test_x, test_y, "synthesized")


# -- tasks read from the official layouts ---------------------------------------------------
def _to_tensor(rows: "object", size: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    images, labels = [], []
    for row in rows:  # type: ignore[attr-defined]
        image = row["image"]
        source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]
        try:
            with Image.open(source) as picture:
                picture = picture.convert("RGB").resize((size, size), Image.BILINEAR)
                images.append(np.asarray(picture, dtype=np.uint8).transpose(2, 0, 1))
        except (OSError, SyntaxError, ValueError) as exc:
            raise RefbenchError(f"cannot decode image {row['id']}: {exc}", path=image.get("path")
                                or name) from None
        labels.append(int(row["label"]))
    if not images:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


def dataset_task(layout: str, root: Path, size: int = 32) -> Task:
    """A task read by the `refbench.datasets` builder of `layout` from `root`."""
    from refbench.datasets.base import get_builder

    if not root.exists():
        raise RefbenchError("task folder not found", path=root)
    if not root.is_dir():
        raise RefbenchError("a task root must be a folder (the release's top folder)", path=root)
    builder = get_builder(layout)
    splits = builder.generate(root, builder.configs()[0])
    train = splits["train"]
    names = list(train.features["label"].names)
    train_x, train_y = _to_tensor(train, size, str(root))
    test_from = "test" if len(splits.get("test", [])) else \
        "validation" if len(splits.get("validation", [])) else "train[4::5]"
    if test_from == "train[4::5]":
        held = torch.arange(len(train_y)) % 5 == 4
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[~held], train_y[~held]
    else:
        test_x, test_y = _to_tensor(splits[test_from], size, str(root))
    return Task(f"{layout}:{root}", names, train_x, train_y, test_x, test_y, test_from)


@lru_cache(maxsize=8)
def load_task(spec: str, size: int = 32) -> Task:
    """The task named by `spec` (module doc); cached per process, so the jobs a worker runs
    read a task once. Every fault is one line naming the spec or the file."""
    layout, _, rest = spec.partition(":")
    if layout not in LAYOUTS:
        raise RefbenchError(f"unknown task layout {layout!r} in {spec!r} (known: "
                            f"{', '.join(LAYOUTS)})", key="task")
    if layout == "synthetic":
        grade, _, seed = rest.partition(":")
        if seed and not seed.isdigit():
            raise RefbenchError(f"synthetic task seed {seed!r} is not an integer", key="task")
        task = synthetic_task(grade, int(seed or 0), size)
    elif layout == "digits" and not rest:
        from refbench.datasets.images.digits import bundled_file

        task = dataset_task("digits", bundled_file().parent, size)
        task.name = "digits"
    else:
        if not rest:
            raise RefbenchError(f"task {spec!r} needs a folder: {layout}:ROOT", key="task")
        task = dataset_task(layout, Path(rest), size)
    present = torch.unique(task.train_y).numel()
    if present < 2:
        raise RefbenchError(f"task {spec!r} has {present} class(es) with training images; "
                            f"fine-tuning a classifier needs at least two", key="task")
    if len(task.test_y) == 0:
        raise RefbenchError(f"task {spec!r} has no test image", key="task")
    return task
