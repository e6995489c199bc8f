"""CAPTURE end to end on a synthesized Product1M (200 training items, ~200 gallery items, 20
dev queries): `refbench train capture --recipe capture_tiny_product1m` pretrains on titles
and regions, ranks the gallery for every dev query, writes `retrieval_id_list.txt` and
scores it; the trained model (its best dev checkpoint) beats a random ranking by a wide
margin and the same network before training. `refbench predict` rebuilds it and ranks the
test queries.

On a gallery this small even the untrained network is well above chance and 20 queries
move mAP@10 by up to 0.05 each, so the margin over the untrained network is not pinned;
with 1,000 items (100 queries per split) pretraining adds about 0.2 mAP@10 on dev and
test (README, "Product retrieval")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from refbench.baselines.retrieval.capture import Capture
from refbench.baselines.retrieval.demo_jobs import random_ranking
from refbench.benchmarks.scoring import evaluate_file
from refbench.config import load_recipe
from refbench.datasets.base import get_builder, load_prepared
from refbench.registry import get_spec
from refbench.results import load_result
from refbench.runner import predict_rows, write_predictions
from tests.helpers import run_cli

#: trains the tiny CAPTURE end to end (minutes on 2 busy cores): `make test-slow`
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

RECIPE = "capture_tiny_product1m"
SPEC = get_spec("product1m-dev")


@pytest.fixture(scope="module")
def product1m(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("product1m")
    root, cache = base / "product1m", base / "cache"
    builder = get_builder("product1m")
    builder.synthesize(root, n=200, seed=0)
    builder.prepare(root, cache)
    return {"base": base, "root": root, "cache": cache}


@pytest.fixture(scope="module")
def trained(product1m: dict[str, Path]) -> Path:
    runs = product1m["base"] / "runs"
    code = run_cli(["train", "capture", "--benchmark", "product1m-dev", "--recipe", RECIPE,
                    "--output-dir", str(runs), "--cache-dir", str(product1m["cache"]),
                    "--name", "tiny", "--set", "trainer.progress=false"])
    assert code == 0
    return runs / "tiny"


def score(predictions: dict[str, list[str]], path: Path, cache: Path) -> float:
    written = write_predictions(SPEC, predictions, path / SPEC.submission.filename)
    return evaluate_file(SPEC, written, cache_dir=str(cache)).metrics[SPEC.primary]


def test_trained_capture_beats_random_and_untrained(product1m: dict[str, Path], trained: Path) -> None:
    cache = product1m["cache"]
    result = load_result(trained / "result.json")
    assert result.primary == "mAP@10" and result.model is not None
    trained_map = result.metrics["mAP@10"]
    # the same network before any step (the run's seed), and a fixed-seed random ranking
    def load(split: str) -> object:
        return load_prepared("product1m", split=split, cache_dir=str(cache))

    torch.manual_seed(0)
    fresh = Capture.create(load_recipe(RECIPE)["model"], SPEC, load("train"),
                           product1m["base"] / "untrained")
    fresh.bind_splits(load)
    untrained_map = score(predict_rows(fresh, load("validation"), 64),
                          product1m["base"] / "untrained", cache)
    random_map = score(random_ranking(SPEC, str(cache)), product1m["base"] / "random", cache)
    print(f"mAP@10 on synthetic Product1M dev: trained {trained_map:.3f}, untrained "
          f"{untrained_map:.3f}, random ranking {random_map:.3f}; "
          f"{result.model.params:,} parameters, {result.provenance.wall_time_s:.0f}s")
    assert trained_map > random_map + 0.15
    assert trained_map > untrained_map
    losses = [r["loss"] for r in map(json.loads, (trained / "metrics.jsonl").read_text().splitlines())
              if r.get("loss") is not None]
    assert losses[-1] < losses[0]


def test_predict_ranks_the_test_queries(product1m: dict[str, Path], trained: Path) -> None:
    out = product1m["base"] / "submission" / "retrieval_id_list.txt"
    assert run_cli(["predict", str(trained), "--split", "test", "--output", str(out),
                    "--cache-dir", str(product1m["cache"])]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    test_ids = set(load_prepared("product1m", split="test", cache_dir=str(product1m["cache"]))["id"])
    assert {line.split(",")[0] for line in lines} == test_ids
    assert all(len(line.split(",")) == 101 for line in lines)  # the query and 100 gallery ids
    result = evaluate_file(get_spec("product1m-test"), out, cache_dir=str(product1m["cache"]))
    assert 0.0 <= result.metrics["mAP@10"] <= 1.0
