"""WAS-VTON end to end on a synthetic VITON release: the supernet trained through the runner,
`refbench search was-vton` over it (per-category warping, then fusion, held-out SSIM on the
training split), the searched recipe trained as an ordinary `was-vton` baseline, its
predictions written and scored by `viton-tryon`, and the VITON paste floor scored beside it.
Slow: three short trainings and a search (a minute or more on 2 busy cores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refbench.baselines.tryon.wasvton import space
from refbench.baselines.tryon.wasvton.baseline import paste_floor
from refbench.baselines.tryon.wasvton.search import RECIPE_FILE, search
from refbench.benchmarks.scoring import evaluate_file
from refbench.config import build_run_config
from refbench.datasets.base import load_prepared
from refbench.datasets.tryon import VitonBuilder
from refbench.errors import RefbenchError
from refbench.registry import SEARCHES, get_spec
from refbench.runner import predict, train, write_predictions

pytestmark = pytest.mark.slow
STEPS = 3


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("viton")
    root = VitonBuilder().synthesize(base / "src", n=24, seed=2)
    VitonBuilder().prepare(root, base / "cache")
    return base, str(base / "cache")


def _train(baseline: str, recipe: str, base: Path, cache: str, name: str, *extra: str):
    config = build_run_config(baseline, "viton-tryon", recipe, [
        f"output_dir={base / 'runs'}", f"data.cache_dir={cache}", f"name={name}",
        f"trainer.max_steps={STEPS}", f"trainer.save_every={STEPS}", "trainer.batch_size=4",
        "trainer.progress=false", "model.channels=4", *extra])
    return train(config)


def test_supernet_search_retrain_predict(release) -> None:
    base, cache = release
    supernet = _train("was-vton-supernet", "was-vton-supernet_tiny_viton-tryon", base, cache,
                      "supernet")
    assert supernet.result is not None and 0 < supernet.result.metrics["SSIM"] <= 1
    out = base / "search"
    outcome = SEARCHES.get("was-vton")().run(
        "viton-tryon", out, {"supernet": str(supernet.run_dir), "population": 3,
                             "generations": 2, "seed": 1},
        ["search.parents=2"], cache_dir=cache, progress=lambda _line: None)
    summary = json.loads((out / "search.json").read_text())
    assert summary == json.loads(json.dumps(outcome.summary))
    arch = space.parse_arch(summary["chosen"]["arch"])
    held = summary["heldout_pairs"]
    assert sum(held.values()) == len(summary["heldout_ids"]) == round(18 * 0.2)
    ranking = [json.loads(line) for line in (out / "ranking.jsonl").read_text().splitlines()]
    for category in space.CATEGORIES:
        rows = [r for r in ranking if r["stage"] == "warp" and r["category"] == category]
        assert len(rows) == (6 if held[category] else 0)  # population x generations, distinct
        if rows:
            assert ",".join(arch.warp[category]) == max(rows, key=lambda r: r["fitness"])["code"]
    fusion = [r for r in ranking if r["stage"] == "fusion"]
    assert len(fusion) == 6 and summary["chosen"]["fitness"] == max(r["fitness"] for r in fusion)
    assert all(0 < r["fitness"] <= 1 for r in ranking)
    recipe = yaml.safe_load((out / RECIPE_FILE).read_text())
    assert recipe["baseline"] == "was-vton" and recipe["model"]["arch"] == summary["chosen"]["arch"]
    assert recipe["model"]["channels"] == 4 and recipe["trainer"]["max_steps"] == 200
    # the searched network trained as an ordinary baseline from the written recipe
    searched = _train("was-vton", str(out / RECIPE_FILE), base, cache, "searched")
    assert searched.result is not None and 0 < searched.result.metrics["SSIM"] <= 1
    written = predict(searched.run_dir, "test", base / "tryon", cache_dir=cache)
    names = sorted(p.name for p in written.iterdir())
    assert len(names) == 6 and all(n.endswith("_0.png") for n in names)
    again = evaluate_file("viton-tryon", written, cache_dir=cache)
    assert again.metrics["SSIM"] == pytest.approx(searched.result.metrics["SSIM"], abs=1e-9)


def test_paste_floor_scores_through_the_format(release) -> None:
    base, cache = release
    spec = get_spec("viton-tryon")
    rows = load_prepared("viton", split="test", config="paired", cache_dir=cache)
    path = write_predictions(spec, paste_floor(rows), base / "floor")
    assert 0 < evaluate_file(spec, path, cache_dir=cache).primary_value < 1


def test_search_refuses_a_missing_or_foreign_run(release, tmp_path: Path) -> None:
    base, cache = release
    with pytest.raises(RefbenchError) as info:
        search(tmp_path / "nope", tmp_path / "out", cache_dir=cache, progress=None)
    assert info.value.key == "supernet" and "not found" in str(info.value)
    assert not (tmp_path / "out").exists()
