"""WAS-VTON on the BODY_25 releases, end to end through the runner.

VITON-HD (synthetic, 128 x 96 persons, model at 64 x 48): the tiny supernet trained, `refbench
search was-vton` over it, the searched recipe (the VITON-HD tiny recipe's trainer) trained
from scratch, predicted at the release's size and scored by `vitonhd-tryon`; it must beat
the same network untrained and the box-aligned paste floor. The figures are printed
(`pytest -s`). MPV3D (synthetic, 128 x 80, model at 64 x 40): a short `was-vton` run on
`mpv3d-tryon` whose predictions come back at 128 x 80. Slow: two 200-step trainings and a
search (a few minutes on 2 busy cores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from refbench.baselines.tryon.wasvton import space
from refbench.baselines.tryon.wasvton.baseline import WasVton, paste_floor
from refbench.baselines.tryon.wasvton.search import RECIPE_FILE, search
from refbench.benchmarks.scoring import evaluate_file
from refbench.config import build_run_config
from refbench.datasets.base import get_builder, load_prepared
from refbench.registry import get_spec
from refbench.runner import predict, train, write_predictions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
PERSONS = 40


def _release(base: Path, name: str, n: int) -> str:
    builder = get_builder(name)
    root = builder.synthesize(base / "src", n=n, seed=0)
    builder.prepare(root, base / "cache", configs=["paired"])
    return str(base / "cache")


def _train(baseline: str, bench: str, recipe: str, base: Path, cache: str, name: str,
           *extra: str):
    config = build_run_config(baseline, bench, recipe, [
        f"output_dir={base / 'runs'}", f"data.cache_dir={cache}", f"name={name}",
        "trainer.progress=false", *extra])
    return train(config)


def test_vitonhd_search_and_retrain_beat_untrained_and_floor(tmp_path: Path) -> None:
    cache = _release(tmp_path, "viton_hd", PERSONS)
    bench, spec = "vitonhd-tryon", get_spec("vitonhd-tryon")
    supernet = _train("was-vton-supernet", bench, "was-vton-supernet_tiny_vitonhd-tryon",
                      tmp_path, cache, "supernet")
    summary = search(supernet.run_dir, tmp_path / "search",
                     ["search.population=8", "search.generations=3", "search.parents=3"],
                     cache_dir=cache, progress=None)
    assert summary["benchmark"] == bench
    recipe = yaml.safe_load((tmp_path / "search" / RECIPE_FILE).read_text())
    assert recipe["model"]["arch"] == summary["chosen"]["arch"]
    assert (recipe["model"]["height"], recipe["model"]["width"]) == (64, 48)
    assert recipe["trainer"]["max_steps"] == 200  # the VITON-HD tiny recipe's trainer
    searched = _train("was-vton", bench, str(tmp_path / "search" / RECIPE_FILE), tmp_path,
                      cache, "searched")
    written = predict(searched.run_dir, "test", tmp_path / "tryon", cache_dir=cache)
    trained = evaluate_file(spec, written, cache_dir=cache)
    assert trained.metrics["SSIM"] == pytest.approx(searched.result.metrics["SSIM"], abs=1e-9)

    rows = load_prepared("viton_hd", split="test", config="paired", cache_dir=cache)
    model = WasVton.create(recipe["model"], spec, rows, tmp_path / "untrained")
    model.eval()
    features = model.encode(rows)
    preds = model.predict(model.collate([features[i] for i in range(len(features))]))
    assert all(p.value.shape == (128, 96, 3) for p in preds)
    untrained = evaluate_file(spec, write_predictions(spec, {p.id: p.value for p in preds},
                                                      tmp_path / "untrained_tryon"),
                              cache_dir=cache)
    floor = evaluate_file(spec, write_predictions(spec, paste_floor(rows), tmp_path / "floor"),
                          cache_dir=cache)
    table = {"searched_arch": summary["chosen"]["per_category"],
             "fusion": summary["chosen"]["arch"].split("|")[1],
             "heldout_pairs": summary["heldout_pairs"],
             "supernet_SSIM": supernet.result.metrics["SSIM"],
             "trained_SSIM": trained.metrics["SSIM"], "untrained_SSIM": untrained.metrics["SSIM"],
             "floor_SSIM": floor.metrics["SSIM"], "trained_PSNR": trained.metrics["PSNR"],
             "floor_PSNR": floor.metrics["PSNR"]}
    print("\nWAS-VTON tiny on synthetic VITON-HD:", json.dumps(table, indent=1))
    assert trained.metrics["SSIM"] > floor.metrics["SSIM"] > untrained.metrics["SSIM"]
    assert space.parse_arch(summary["chosen"]["arch"])


def test_mpv3d_trains_and_predicts_at_the_release_size(tmp_path: Path) -> None:
    from PIL import Image

    cache = _release(tmp_path, "mpv3d", 8)
    run = _train("was-vton", "mpv3d-tryon", "was-vton_tiny_mpv3d-tryon", tmp_path, cache, "m",
                 "trainer.max_steps=3", "trainer.save_every=3", "trainer.batch_size=4")
    assert run.result is not None and 0 < run.result.metrics["SSIM"] < 1
    written = predict(run.run_dir, "test", tmp_path / "tryon", cache_dir=cache)
    images = sorted(written.iterdir())
    assert images and all(np.asarray(Image.open(p)).shape == (128, 80, 3) for p in images)
    again = evaluate_file("mpv3d-tryon", written, cache_dir=cache)
    assert again.metrics["SSIM"] == pytest.approx(run.result.metrics["SSIM"], abs=1e-9)
