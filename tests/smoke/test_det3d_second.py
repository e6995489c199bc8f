"""SECOND through the common baseline contract on synthesized KITTI scenes: it learns a
fixed batch, its predictions are written as label_2 files the KITTI evaluator scores, bad
recipes fail in one line before anything is written, and (slow tier) the tiny recipe
trained through `refbench train` reaches a clearly non-zero Car 3D AP on held-out frames."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("spconv", reason="the [3d] extra is not installed")
import torch  # noqa: E402

from refbench.baselines.det3d.second import Second  # noqa: E402
from refbench.benchmarks.scoring import evaluate_file  # noqa: E402
from refbench.registry import get_spec  # noqa: E402
from tests.helpers import run_cli  # noqa: E402
from refbench.config import build_run_config  # noqa: E402
from refbench.datasets.base import get_builder, load_prepared  # noqa: E402
from refbench.errors import RefbenchError  # noqa: E402
from refbench.runner import predict_rows, write_predictions  # noqa: E402

SPEC = get_spec("kitti-car-3d")



@pytest.fixture(scope="module")
def kitti(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("kitti3d")
    root, cache = base / "kitti", base / "cache"
    builder = get_builder("kitti")
    builder.synthesize(root, n=24, seed=3)
    builder.prepare(root, cache)
    return {"base": base, "root": root, "cache": cache}


def tiny_model(kitti: dict[str, Path], tmp_path: Path, *overrides: str) -> tuple[Second, object]:
    config = build_run_config("second", "kitti-car-3d", "second_tiny_kitti",
                              [f"data.cache_dir={kitti['cache']}", *overrides])
    rows = load_prepared("kitti", split="train", config="default", cache_dir=str(kitti["cache"]))
    torch.manual_seed(0)
    return Second.create(config.model, SPEC, rows, tmp_path), rows


def test_second_learns_a_fixed_batch(kitti: dict[str, Path], tmp_path: Path,
                                     one_thread: None) -> None:
    model, rows = tiny_model(kitti, tmp_path)
    assert model.database is not None and len(model.database) > 0  # gt sampling database
    features = model.encode(rows)
    model.train()
    np.random.seed(0)
    batch = model.collate(features[:2])
    assert batch["voxel_coords"].shape[1] == 4 and batch["gt_boxes"].shape[2] == 8
    assert (batch["gt_boxes"][..., 7] > 0).any()  # cars (sampled ones included)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model.training_step(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses


def test_predictions_are_label_2_files_the_evaluator_scores(kitti: dict[str, Path],
                                                             tmp_path: Path,
                                                             one_thread: None) -> None:
    model, _ = tiny_model(kitti, tmp_path, "model.post.score_thresh=0.0",
                          "model.post.nms_post_max=5")
    val = load_prepared("kitti", split="val", config="default", cache_dir=str(kitti["cache"]))
    preds = predict_rows(model, val, batch_size=4)
    assert sorted(preds) == sorted(val["id"])
    frame = next(iter(preds.values()))
    assert 0 < len(frame["name"]) <= 5 and set(frame["name"]) == {"Car"}
    assert np.all(np.abs(frame["rotation_y"]) <= np.pi) and np.all(frame["score"] >= 0)
    path = write_predictions(SPEC, preds, tmp_path / "label_2")
    lines = (path / f"{val['id'][0]}.txt").read_text().splitlines()
    assert all(len(line.split()) == 16 for line in lines)
    result = evaluate_file(SPEC, path, references=kitti["root"])
    assert 0.0 <= result.metrics[SPEC.primary] <= 100.0


@pytest.mark.parametrize("override, key", [
    ("model.voxel_size=[0.07, 0.1, 0.1]", "model.voxel_size"),
    ("model.bevv.layer_nums=[1]", "model.bevv"),
    ("model.classes=[Car, Pedestrian]", "model.head.anchors"),
    ("model.classes=[Truckk]", "model.classes"),
    ("model.num_point_features=5", "model.num_point_features"),
])
def test_bad_recipes_fail_in_one_line_before_writing(kitti: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     override: str, key: str) -> None:
    out = tmp_path / "runs"
    code = run_cli(["train", "second", "--benchmark", "kitti-car-3d", "--recipe",
                    "second_tiny_kitti", "--cache-dir", str(kitti["cache"]), "--output-dir",
                    str(out), "--set", override, "--set", "trainer.progress=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"[{key}]" in err, err
    assert not out.exists()


def test_checkpoint_with_other_shapes_is_refused(kitti: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert run_cli(["train", "second", "--benchmark", "kitti-car-3d", "--recipe",
                    "second_tiny_kitti", "--cache-dir", str(kitti["cache"]), "--output-dir",
                    str(out), "--name", "r", "--max-steps", "1", "--set",
                    "trainer.progress=false", "--set", "trainer.eval_every=0", "--set",
                    "trainer.batch_size=2"]) == 0
    run = out / "r"
    config = json.loads((run / "model_config.json").read_text())
    config["bev"]["num_filters"] = [16, 64]
    (run / "model_config.json").write_text(json.dumps(config))
    capsys.readouterr()
    target = tmp_path / "pred"
    assert run_cli(["predict", str(run), "--split", "val", "--output", str(target),
                    "--cache-dir", str(kitti["cache"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit the model" in err, err
    assert not target.exists()


def test_init_from_is_not_available(kitti: dict[str, Path], tmp_path: Path) -> None:
    config = build_run_config("second", "kitti-car-3d", "second_tiny_kitti", [])
    rows = load_prepared("kitti", split="train", config="default", cache_dir=str(kitti["cache"]))
    with pytest.raises(NotImplementedError, match="no pretrained"):
        Second.create(config.model, SPEC, rows, tmp_path, init_from="somewhere")


def test_other_datasets_are_refused() -> None:
    config = build_run_config("second", "kitti-car-3d", "second_tiny_kitti", [])
    with pytest.raises(RefbenchError, match="run on 3d-detection benchmarks"):
        Second.validate_config(config.model, get_spec("glue-sst2"))


@pytest.mark.slow
def test_tiny_recipe_trains_to_a_clearly_nonzero_car_3d_ap(tmp_path: Path) -> None:
    """`refbench train second --recipe second_tiny_kitti` on 120 synthetic training frames
    for the recipe's 300 steps, scored on 120 held-out frames (2-3 minutes on 2 cores)."""
    root, cache = tmp_path / "kitti", tmp_path / "cache"
    builder = get_builder("kitti")
    builder.synthesize(root, n=240, seed=0)
    builder.prepare(root, cache)
    out = tmp_path / "runs"
    assert run_cli(["train", "second", "--benchmark", "kitti-car-3d", "--recipe",
                    "second_tiny_kitti", "--cache-dir", str(cache), "--output-dir", str(out),
                    "--name", "tiny", "--set", "trainer.progress=false"]) == 0
    result = json.loads((out / "tiny" / "result.json").read_text())
    ap = result["metrics"]["Car/3d/moderate/R40"]
    assert ap > 5.0, result["metrics"]
    rescored = evaluate_file(SPEC, out / "tiny" / "predictions" / "label_2", references=root)
    assert rescored.metrics["Car/3d/moderate/R40"] == pytest.approx(ap)
    assert re.fullmatch(r"[0-9a-f]{16}", result["model"]["config_hash"])
