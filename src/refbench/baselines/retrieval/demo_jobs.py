"""The retrieval job in `refbench demo`: the tiny CAPTURE pretrained on a synthetic Product1M
(200 training items, about 200 gallery items, 20 dev queries) for half its recipe's steps
(about 35 s on 2 cores) ranks the gallery for each dev query, against a random ranking
with a fixed seed."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from refbench.datasets.base import load_prepared
from refbench.demo import DemoJob
from refbench.registry import DEMOS

#: training items of the synthetic release (the gallery is about as large)
PRODUCT1M_ITEMS = 200
#: the rival's seed and list length (the README's "up to 100 item ids")
RANDOM_SEED, LIST_LENGTH = 0, 100
#: CAPTURE's step budget in the demo (the recipe's 300 take about a minute)
PRODUCT1M_STEPS = 150


def random_ranking(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The trivial rival: for every query of the scored split, gallery ids in a random order
    drawn with a fixed seed (the same file on every run)."""
    def rows(split: str) -> Any:
        return load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                             cache_dir=cache_dir)

    gallery = list(rows("gallery")["id"])
    rng = random.Random(RANDOM_SEED)
    return {qid: rng.sample(gallery, min(LIST_LENGTH, len(gallery))) for qid in rows(spec.split)["id"]}


@DEMOS.register("product1m", default=True)
def product1m() -> DemoJob:
    """Tiny CAPTURE on Product1M dev; the synthetic root itself is the reference (its
    official dev query file and gallery file, read as `evaluate_suit.py` reads them)."""
    return DemoJob(benchmark="product1m-dev", baseline="capture",
                   recipe="capture_tiny_product1m", size=PRODUCT1M_ITEMS,
                   references=lambda root: Path(root), trivial=random_ranking,
                   trivial_name="random ranking",
                   overrides=(f"trainer.max_steps={PRODUCT1M_STEPS}", "trainer.eval_every=0",
                              f"trainer.save_every={PRODUCT1M_STEPS}"))
