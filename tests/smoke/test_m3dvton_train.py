"""M3D-VTON's chain through the common runner on a synthetic MPV3D release: MTM, then DRM and
TFM naming the MTM run, `refbench predict` from the run folders, and the written results
scored by their benchmarks. Slow: three trainings (a minute or more on 2 busy cores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refbench.baselines.tryon.floors import floor_for
from refbench.benchmarks.scoring import evaluate_file
from refbench.config import build_run_config
from refbench.datasets.tryon import MPV3DBuilder
from refbench.registry import get_spec
from refbench.runner import predict, train, write_predictions

pytestmark = pytest.mark.slow
STEPS = 4


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("mpv3d")
    root = MPV3DBuilder().synthesize(base / "src", n=12, seed=1)
    MPV3DBuilder().prepare(root, base / "cache")
    return base, str(base / "cache")


def _train(baseline: str, benchmark: str, recipe: str, base: Path, cache: str, name: str,
           *extra: str):
    config = build_run_config(baseline, benchmark, recipe, [
        f"output_dir={base / 'runs'}", f"data.cache_dir={cache}", f"name={name}",
        f"trainer.max_steps={STEPS}", f"trainer.save_every={STEPS}", "trainer.batch_size=4",
        "trainer.progress=false", *extra])
    return train(config)


def test_chain_trains_predicts_and_scores(release) -> None:
    base, cache = release
    mtm = _train("m3dvton-mtm", "mpv3d-tryon-depth", "m3dvton-mtm_tiny_mpv3d-tryon-depth",
                 base, cache, "mtm", "model.ngf=8", "model.dec_width=32", "model.reg_width=32")
    assert mtm.result is not None and "front/RMSE" in mtm.result.metrics
    drm = _train("m3dvton-drm", "mpv3d-tryon-depth", "m3dvton-drm_tiny_mpv3d-tryon-depth",
                 base, cache, "drm", f"model.mtm_run={mtm.run_dir}", "model.ngf=4")
    assert drm.result is not None and np.isfinite(drm.result.metrics["back/RMSE"])
    assert (drm.run_dir / "mtm_config.json").is_file()
    tfm = _train("m3dvton-tfm", "mpv3d-tryon", "m3dvton-tfm_tiny_mpv3d-tryon", base, cache,
                 "tfm", f"model.mtm_run={mtm.run_dir}", "model.ngf=8")
    assert tfm.result is not None and 0 < tfm.result.metrics["SSIM"] <= 1
    # the DRM/TFM runs carry the frozen MTM: they predict without the MTM run folder
    (mtm.run_dir / "config.yaml").rename(mtm.run_dir / "moved.yaml")
    out = predict(tfm.run_dir, "test", base / "tryon", cache_dir=cache)
    names = sorted(p.name for p in out.iterdir())
    assert names and all(n.endswith("=person_whole_front.png") for n in names)
    depth = predict(drm.run_dir, "test", base / "depth", cache_dir=cache)
    assert any(p.name.endswith("=person_whole_back_depth.npy") for p in depth.iterdir())
    result = evaluate_file("mpv3d-tryon-depth", depth, cache_dir=cache)
    assert result.metrics["front/RMSE"] == pytest.approx(drm.result.metrics["front/RMSE"], abs=1e-6)


def test_floors_score_through_the_format(release) -> None:
    base, cache = release
    for name in ("mpv3d-tryon", "mpv3d-tryon-depth"):
        spec = get_spec(name)
        path = write_predictions(spec, floor_for(spec, cache), base / f"floor-{name}")
        result = evaluate_file(spec, path, cache_dir=cache)
        assert 0 < result.primary_value < (1 if name == "mpv3d-tryon" else 2)
