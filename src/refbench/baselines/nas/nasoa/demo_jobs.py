"""NASOA's job in `refbench demo`: the tiny `nasoa` recipe (the default DNet code, no zoo, so
the demo needs no zoo search first) fine-tuned through the common runner on `digits`
(scikit-learn's 1,797 real scans; the demo's "synthetic copy" of digits is that real file),
scored on the validation split against the majority class of the training split, for
`DEMO_STEPS` SGD steps instead of the recipe's 150 (about 97% top-1 instead of 98%, the
majority class about 10%); about 20 s on 2 idle cores, most of it preparing the data.

The release folder itself is the reference, as `refbench evaluate digits --references
ROOT` reads it (the split rule `i % 5` of the digits builder picks the scored rows).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from refbench.demo import DemoJob
from refbench.registry import DEMOS

#: the digits builder ignores `n` (its data are real); any positive size will do
DIGITS_SIZE = 1797
#: the demo's training steps (the recipe's 150 take about 12 s on one busy core)
DEMO_STEPS = 100


def majority_class(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The trivial rival: every image of the scored split gets the training split's most
    frequent class (ties: the smallest class index, so the file is the same on every run)."""
    from refbench.datasets.base import load_prepared

    def rows(split: str) -> Any:
        return load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                             cache_dir=cache_dir)

    counts = Counter(int(label) for label in rows(spec.train_split)["label"])
    top = max(counts.values())
    label = min(k for k, v in counts.items() if v == top)
    return {str(i): label for i in rows(spec.split)["id"]}


@DEMOS.register("nasoa", default=True)
def nasoa() -> DemoJob:
    """The tiny nasoa recipe on digits against the majority class."""
    return DemoJob(benchmark="digits", baseline="nasoa", recipe="nasoa_tiny_digits",
                   size=DIGITS_SIZE, references=lambda root: Path(root),
                   trivial=majority_class, trivial_name="majority class",
                   overrides=(f"trainer.max_steps={DEMO_STEPS}",
                              f"trainer.save_every={DEMO_STEPS}"))
