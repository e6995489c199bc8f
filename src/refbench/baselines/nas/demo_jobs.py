"""The NAS job in `refbench demo`: the tiny Pi-NAS supernet (cross-path MoCo v2 with the
path-wise mean teacher) on `digits`, scikit-learn's 1,797 real 8x8 scans, for 40 steps
(about 30 s on 2 cores at one torch thread), its online linear probe on the path
`model.eval_arch` scored on the validation split against the majority-class floor.

The demo contract (`refbench.demo.DemoJob`) trains one recipe and scores one prediction
file, so the search and the ranking of architectures are not part of it; they run as
`refbench search pinas` and `refbench search pinas-ranking` on the demo's supernet run.

The digits "synthesizer" copies the real file, which has no label file in the submission
format, so the validation labels are written beside it (rows i % 5 == 3, as the builder
splits) as an `id,label` CSV: the file the demo scores with and its leaderboard hides.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from refbench.datasets.base import load_prepared
from refbench.demo import DemoJob
from refbench.registry import DEMOS

#: rows the digits builder needs (it copies all 1,797 real rows whatever the size)
DIGITS_ROWS = 1797
#: supernet steps in the demo (the recipe's 100 take about 70 s on 2 cores)
PINAS_STEPS = 40
REFERENCES = "refbench-validation-labels.csv"


def validation_labels(root: Path) -> Path:
    """The validation rows' labels of the digits file in `root`, as an `id,label` CSV."""
    from refbench.benchmarks.formats.image_classification import write_csv
    from refbench.datasets.images.digits import digits_file, read_digits, split_of
    from refbench.errors import RefbenchError

    source = digits_file(Path(root))
    if source is None:
        raise RefbenchError("missing file digits.csv.gz", path=Path(root))
    _pixels, labels = read_digits(source)
    path = Path(root) / REFERENCES
    write_csv(path, {f"{i:05d}": int(y) for i, y in enumerate(labels)
                     if split_of(i) == "validation"})
    return path


def majority_class(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The floor: every scored image gets the training split's most frequent class (the
    lower index on a tie)."""
    def rows(split: str) -> Any:
        return load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                             cache_dir=cache_dir)

    counts = Counter(int(y) for y in rows(spec.train_split)["label"])
    label = min(counts, key=lambda y: (-counts[y], y))
    return {i: label for i in rows(spec.split)["id"]}


@DEMOS.register("pinas", default=True)
def pinas() -> DemoJob:
    """The tiny Pi-NAS supernet on digits, scored on validation, vs the majority class."""
    return DemoJob(benchmark="digits", baseline="pinas-supernet",
                   recipe="pinas-supernet_tiny_digits", size=DIGITS_ROWS,
                   references=validation_labels, trivial=majority_class,
                   trivial_name="majority class",
                   overrides=(f"trainer.max_steps={PINAS_STEPS}", "trainer.eval_every=0",
                              f"trainer.save_every={PINAS_STEPS}"))
