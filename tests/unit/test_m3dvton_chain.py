"""M3D-VTON's MTM warp regularisers (hand-computed values) and the chain's guard: a DRM/TFM
recipe naming a missing or wrong-kind MTM run is a one-line error before anything is
written. Needs no data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refbench.baselines.tryon import tps
from refbench.baselines.tryon.m3dvton.baseline import (M3DVTONDRM, M3DVTONMTM, M3DVTONTFM,
                                                       MTMConfig, check_mtm_run)
from refbench.baselines.tryon.m3dvton.mtm import NUM_LABELS, MTMWeights, mtm_losses
from refbench.config import build_run_config, dump_yaml
from refbench.errors import RefbenchError
from refbench.registry import get_spec
from tests.helpers import run_cli

DEPTH, IMAGE = "mpv3d-tryon-depth", "mpv3d-tryon"


def _theta(points: dict[int, tuple[float, float]], n: int = 3) -> torch.Tensor:
    """theta whose official `(x, y)` pairs (`view(B, -1, 2)`) are 0 except `points`."""
    theta = torch.zeros(1, n * n, 2)
    for k, (x, y) in points.items():
        theta[0, k] = torch.tensor([x, y])
    return theta.view(1, -1)


def test_official_regulariser_constants() -> None:
    assert tps.THETA_FLOOR == 0.08
    weights, cfg = MTMWeights(), MTMConfig()
    assert (weights.theta, weights.grid, weights.add_theta_loss, weights.add_grid_loss) == \
        (0.1, 1.0, False, False)
    assert (cfg.lambda_theta, cfg.lambda_grid, cfg.add_theta_loss, cfg.add_grid_loss,
            cfg.grid_distance) == (0.1, 1.0, False, False, "l1")


def test_theta_loss_hand_computed() -> None:
    # identity: every second difference floored at 0.08, four means, collinear lattice
    assert tps.theta_loss(torch.zeros(2, 18), 3).item() == pytest.approx(0.32)
    # point 2 = (0.5, 0): row 0 and column 2 x second differences 0.25 -> means 0.41/3 each
    assert tps.theta_loss(_theta({2: (0.5, 0.0)}), 3).item() == pytest.approx(
        2 * (0.25 + 0.16) / 3 + 0.16)
    # point 1 = (0, 0.3), point 7 = (0.2, 0): column 1 y term 0.09, slope |0.3 * 0.2| = 0.06
    assert tps.theta_loss(_theta({1: (0.0, 0.3), 7: (0.2, 0.0)}), 3).item() == pytest.approx(
        0.24 + (0.08 + 0.09 + 0.08) / 3 + 0.06)
    # pairs are consecutive entries (official), not the (x block, y block) of TpsGridGen
    moved = torch.zeros(1, 18)
    moved[0, 4] = 0.5  # entry 4 = point 2's x
    assert tps.theta_loss(moved, 3).item() == pytest.approx(2 * (0.25 + 0.16) / 3 + 0.16)
    theta = _theta({2: (0.5, 0.0)}).requires_grad_()
    tps.theta_loss(theta, 3).backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_theta_loss_refuses_bad_input() -> None:
    with pytest.raises(RefbenchError, match="at least 3 x 3"):
        tps.theta_loss(torch.zeros(1, 8), 2)
    with pytest.raises(RefbenchError, match=r"\(batch, 18\)"):
        tps.theta_loss(torch.zeros(1, 50), 3)


def test_grid_loss_hand_computed() -> None:
    xs, ys = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.0, 2.0, 3.0])
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]  # (1,3,3,2)
    assert grid[0, 1, 2].tolist() == [3.0, 2.0]
    # one interior pixel: |1 - 2| (left/right) + |2 - 1| (up/down); a sum over the batch
    assert tps.grid_loss(grid).item() == pytest.approx(2.0)
    assert tps.grid_loss(grid, "l2").item() == pytest.approx(2.0)
    assert tps.grid_loss(grid.repeat(2, 1, 1, 1)).item() == pytest.approx(4.0)
    # l1 compares x steps left/right and y steps up/down only; l2 the step lengths
    sheared = grid.clone()
    sheared[0, 1, 0, 1] = 2.0 + 1.0  # the left neighbour moves up by 1
    assert tps.grid_loss(sheared).item() == pytest.approx(2.0)
    assert tps.grid_loss(sheared, "l2").item() == pytest.approx(abs(2 ** 0.5 - 2) + 1)
    # a uniform grid (the identity warp) costs nothing
    identity = tps.TpsGridGen(32, 20, 3)(torch.zeros(1, 18))
    assert tps.grid_loss(identity).item() == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(RefbenchError, match="l1 or l2"):
        tps.grid_loss(grid, "l3")
    with pytest.raises(RefbenchError, match="sampling grid"):
        tps.grid_loss(torch.zeros(1, 2, 5, 2))


def test_mtm_losses_add_the_regularisers_with_their_weights() -> None:
    torch.manual_seed(0)
    b, h, w = 2, 16, 16
    theta = 0.2 * torch.randn(b, 18)
    out = {"theta": theta, "grid": tps.TpsGridGen(h, w, 3)(theta),
           "warped_cloth": torch.rand(b, 3, h, w), "front": torch.rand(b, 1, h, w),
           "back": torch.rand(b, 1, h, w), "segmt": torch.randn(b, NUM_LABELS, h, w)}
    args = (torch.rand(b, 3, h, w), torch.rand(b, 1, h, w), torch.rand(b, 1, h, w),
            torch.randint(0, NUM_LABELS, (b, h, w)))
    plain = mtm_losses(out, *args, MTMWeights())
    assert set(plain) == {"loss", "warp", "fdepth", "bdepth", "segmt"}
    full = mtm_losses(out, *args, MTMWeights(add_theta_loss=True, add_grid_loss=True,
                                             grid_distance="l2"))
    assert full["theta"].item() == pytest.approx(0.1 * tps.theta_loss(theta, 3).item())
    assert full["grid"].item() == pytest.approx(tps.grid_loss(out["grid"], "l2").item())
    assert full["loss"].item() == pytest.approx(plain["loss"].item() + full["theta"].item()
                                                + full["grid"].item(), rel=1e-6)


def test_mtm_config_checks_the_regularisers() -> None:
    spec = get_spec(DEPTH)
    cfg = M3DVTONMTM.validate_config({"height": 128, "width": 80, "add_theta_loss": True,
                                      "add_grid_loss": True}, spec)
    assert cfg.add_theta_loss and cfg.lambda_theta == 0.1
    with pytest.raises(RefbenchError, match="grid_size"):
        M3DVTONMTM.validate_config({"height": 128, "width": 80, "grid_size": 2,
                                    "add_theta_loss": True}, spec)
    with pytest.raises(RefbenchError, match="grid_distance"):
        M3DVTONMTM.validate_config({"height": 128, "width": 80, "grid_distance": "l3"}, spec)


def _fake_run(folder: Path, baseline: str, benchmark: str, recipe: str) -> Path:
    """A run folder holding only the config.yaml that `refbench train` writes first."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(dump_yaml(build_run_config(baseline, benchmark, recipe,
                                                                   [])), encoding="utf-8")
    return folder


@pytest.mark.parametrize("stage,benchmark,extra", [(M3DVTONDRM, DEPTH, {}),
                                                   (M3DVTONTFM, IMAGE, {"num_downs": 4})])
def test_a_later_stage_refuses_a_bad_mtm_run(stage, benchmark, extra, tmp_path: Path) -> None:
    spec = get_spec(benchmark)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    tfm = _fake_run(tmp_path / "tfm", "m3dvton-tfm", IMAGE, "m3dvton-tfm_tiny_mpv3d-tryon")
    untrained = _fake_run(tmp_path / "mtm", "m3dvton-mtm", DEPTH,
                          "m3dvton-mtm_tiny_mpv3d-tryon-depth")
    cases = {tmp_path / "absent": "MTM run folder not found",
             a_file: "MTM run folder not found",
             tmp_path / "empty": "not a usable run: not a run folder",
             tfm: "must be an m3dvton-mtm run, this one is 'm3dvton-tfm'",
             untrained: "incomplete"}
    for run, message in cases.items():
        cfg = {"height": 128, "width": 80, "mtm_run": str(run), **extra}
        with pytest.raises(RefbenchError, match=message) as info:
            stage.validate_config(cfg, spec)
        assert "\n" not in str(info.value) and info.value.key == "model.mtm_run"
        assert str(run) in str(info.value)
    (untrained / "model_config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RefbenchError, match="no usable best checkpoint") as info:
        stage.validate_config({"height": 128, "width": 80, "mtm_run": str(untrained), **extra},
                              spec)
    assert info.value.key == "model.mtm_checkpoint"
    with pytest.raises(RefbenchError, match="no usable last checkpoint"):
        check_mtm_run(untrained, "last")


def test_cli_exits_2_on_a_wrong_kind_mtm_run_and_writes_nothing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    tfm = _fake_run(tmp_path / "tfm", "m3dvton-tfm", IMAGE, "m3dvton-tfm_tiny_mpv3d-tryon")
    runs = tmp_path / "runs"
    code = run_cli(["train", "m3dvton-drm", "-b", DEPTH, "-r", "m3dvton-drm_tiny_mpv3d-tryon-depth",
                    "--output-dir", str(runs), "--name", "drm", "--set", f"model.mtm_run={tfm}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "m3dvton-mtm run" in err and str(tfm) in err and len(err.splitlines()) == 1
    assert not (runs / "drm").exists()
