"""Every 3D detection recipe builds its model; the full KITTI recipes have the parameter
counts the papers report; every tiny recipe trains a step and writes predictions its
benchmark's evaluator scores, on KITTI and on Waymo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("spconv", reason="the [3d] extra is not installed")
import torch  # noqa: E402

from refbench.benchmarks.scoring import evaluate_file  # noqa: E402
from refbench.registry import get_spec  # noqa: E402
from refbench.config import build_run_config  # noqa: E402
from refbench.datasets.base import get_builder, load_prepared  # noqa: E402
from refbench.registry import BASELINES, RECIPES as RECIPE_FILES  # noqa: E402
from refbench.runner import predict_rows, write_predictions  # noqa: E402

FAMILIES = ("second", "votr", "pyramid")
BENCH = {"kitti": "kitti-car-3d", "waymo": "waymo-3d"}
RECIPES = sorted(n for f in FAMILIES for n in RECIPE_FILES.list(f"{f}_*"))
TINY = [r for r in RECIPES if r.split("_")[1].startswith("tiny")]


def _parts(recipe: str) -> tuple[str, str]:
    family, _, data = recipe.split("_", 2)
    return family, BENCH[data]


def _model(recipe: str, cache: Path | None = None, overrides: tuple[str, ...] = ()):
    family, bench = _parts(recipe)
    spec = get_spec(bench)
    config = build_run_config(family, bench, recipe,
                              [*(f"data.cache_dir={cache}",) * (cache is not None), *overrides])
    cls = BASELINES.get(family)
    return cls, config.model, spec


def test_there_is_a_full_and_a_tiny_recipe_of_each_model() -> None:
    assert {"second_base_kitti", "second_base_waymo", "votr_ssd_kitti", "votr_tsd_kitti",
            "votr_ssd_waymo", "votr_tsd_waymo", "pyramid_pv_kitti", "pyramid_pv_waymo"} \
        <= set(RECIPES)
    assert len(TINY) * 2 == len(RECIPES)


@pytest.mark.parametrize("recipe, params, paper", [
    ("second_base_kitti", 5_298_900, 5.3e6),  # VoTr paper: SECOND 5.3M
    ("votr_ssd_kitti", 4_838_676, 4.8e6),     # VoTr-SSD 4.8M
    ("votr_tsd_kitti", 12_610_717, 12.6e6),   # VoTr-TSD 12.6M
])
def test_full_kitti_models_have_the_papers_sizes(recipe: str, params: int, paper: float) -> None:
    cls, model_cfg, spec = _model(recipe)
    model = cls(cls.validate_config(model_cfg, spec), spec, None)
    count = sum(p.numel() for p in model.parameters())
    assert count == params
    assert abs(count - paper) < 0.05e6


def _synth(kind: str, base: Path, n: int) -> dict[str, Path]:
    root, cache = base / kind, base / "cache"
    builder = get_builder(kind)
    builder.synthesize(root, n=n, seed=5)
    builder.prepare(root, cache)
    return {"root": root, "cache": cache}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    base = tmp_path_factory.mktemp("det3d-data")
    return {"kitti": _synth("kitti", base / "k", 12), "waymo": _synth("waymo", base / "w", 8)}


@pytest.mark.parametrize("recipe", TINY)
def test_tiny_recipe_trains_and_writes_scorable_predictions(
        recipe: str, data: dict[str, dict[str, Path]], tmp_path: Path, one_thread: None) -> None:
    family, bench = _parts(recipe)
    kind = get_spec(bench).dataset.name
    paths = data[kind]
    cls, model_cfg, spec = _model(recipe, paths["cache"], ("model.post.score_thresh=0.0",
                                                     "model.post.nms_post_max=3"))
    train = load_prepared(kind, split=spec.train_split, config="default",
                          cache_dir=str(paths["cache"]))
    torch.manual_seed(0)
    model = cls.create(model_cfg, spec, train, tmp_path)
    model.train()
    np.random.seed(0)
    batch = model.collate(model.encode(train)[:2])
    loss = model.training_step(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    rows = load_prepared(kind, split=spec.split, config="default", cache_dir=str(paths["cache"]))
    preds = predict_rows(model, rows.select(range(2)), batch_size=2)
    assert len(preds) == 2
    out = write_predictions(spec, preds, tmp_path / spec.submission.filename)
    if kind == "kitti":  # the official label folder; frames without a file count as empty
        result = evaluate_file(spec, out, references=paths["root"])
    else:
        result = evaluate_file(spec, out, rows=rows.select(range(2)))
    assert np.isfinite(result.metrics[spec.primary])


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_validates_against_its_benchmark(recipe: str) -> None:
    cls, model_cfg, spec = _model(recipe)
    cfg = cls.validate_config(model_cfg, spec)
    assert cfg.classes and len(cfg.head.anchors) == len(cfg.classes)


@pytest.mark.parametrize("recipe", ["second_tiny_kitti", "votr_tinyssd_kitti",
                                    "pyramid_tinypv_kitti"])
def test_training_is_bit_identical_across_runs_with_two_threads(
        recipe: str, data: dict[str, dict[str, Path]], tmp_path: Path) -> None:
    """spconv's CPU kernels (serialised by import_spconv) and accumulating gathers (done
    with index_select) used to make two runs with the same seed drift apart."""
    family, bench = _parts(recipe)
    cls, model_cfg, spec = _model(recipe, data["kitti"]["cache"])
    train = load_prepared("kitti", split="train", config="default",
                          cache_dir=str(data["kitti"]["cache"]))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = []
        for attempt in range(2):
            torch.manual_seed(0)
            model = cls.create(model_cfg, spec, train, tmp_path / str(attempt))
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
            features = model.encode(train)
            for step in range(2):
                np.random.seed(step)
                loss = model.training_step(model.collate(features[2 * step:2 * step + 2]))["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            runs.append([p.detach().clone() for p in model.parameters()])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*runs))
