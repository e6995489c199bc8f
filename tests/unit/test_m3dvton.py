"""M3D-VTON's modules, inputs and registered stages on a small synthetic MPV3D release
(and on the authors' example folder in ../shared/data when it is there)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from refbench.baselines.tryon import floors
from refbench.baselines.tryon.m3dvton import inputs, mtm
from refbench.baselines.tryon.m3dvton.baseline import M3DVTONDRM, M3DVTONMTM, M3DVTONTFM
from refbench.baselines.tryon.m3dvton.drm import DRM_INPUT_NC, DRMNet, drm_depth
from refbench.baselines.tryon.m3dvton.tfm import TFM_INPUT_NC
from refbench.datasets.base import load_prepared
from refbench.datasets.tryon import MPV3DBuilder
from refbench.errors import RefbenchError
from refbench.evaluation.tryon.depth import gt_back_to_world, gt_front_to_world
from refbench.registry import get_spec

TINY_MTM = {"height": 128, "width": 80, "ngf": 8, "dec_width": 32, "reg_width": 32}


@pytest.fixture(scope="module")
def mpv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("mpv")
    root = MPV3DBuilder().synthesize(base / "src", n=8, seed=3)
    MPV3DBuilder().prepare(root, base / "cache")
    return root, str(base / "cache")


def _rows(mpv: tuple[Path, str], split: str = "train"):
    return load_prepared("mpv3d", split=split, config="paired", cache_dir=mpv[1])


def test_official_constants() -> None:
    assert mtm.HEAVY_LABELS == (0, 1, 2, 10, 13, 14, 15) and mtm.HEAVY_WEIGHT == 1.5
    assert mtm.NUM_LABELS == 20 and mtm.DOWNSAMPLINGS == 4
    assert DRM_INPUT_NC == 12 and TFM_INPUT_NC == 9
    assert (inputs.POSE_RADIUS, inputs.POSE_HEIGHT) == (5, 512)
    assert inputs.HEAD_LABELS == (1, 2, 4, 13) and inputs.LOWER_LABELS == (9, 12, 16, 17, 18, 19)
    cfg = M3DVTONMTM.Config()
    assert (cfg.height, cfg.width, cfg.ngf, cfg.grid_size) == (512, 320, 64, 3)
    assert (M3DVTONDRM.Config().ngf, M3DVTONDRM.Config().lambda_normal) == (64, 1.5)
    assert (M3DVTONTFM.Config().num_downs, M3DVTONTFM.Config().ngf) == (6, 64)


def test_correlation_matches_its_definition() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4)
    corr = mtm.correlation(a, b)
    assert corr.shape == (1, 8, 2, 4)
    # channel k = column-major position of A (k = x * h + y); spatial position of B
    for y in range(2):
        for x in range(4):
            for ya in range(2):
                for xa in range(4):
                    want = (a[0, :, ya, xa] * b[0, :, y, x]).sum()
                    assert torch.allclose(corr[0, xa * 2 + ya, y, x], want, atol=1e-5)


def test_mtm_network_shapes_and_identity_start() -> None:
    net = mtm.MTMNet(**TINY_MTM)
    out = mtm.mtm_outputs(net, torch.randn(2, 29, 128, 80), torch.randn(2, 3, 128, 80),
                          torch.ones(2, 1, 128, 80))
    assert out["theta"].shape == (2, 18) and out["grid"].shape == (2, 128, 80, 2)
    assert out["segmt"].shape == (2, 20, 128, 80) and out["parse"].shape == (2, 128, 80)
    assert out["front"].abs().max() < 1 and out["back"].shape == (2, 1, 128, 80)
    with pytest.raises(RefbenchError, match="multiples of 16"):
        mtm.MTMNet(120, 80)


def test_drm_applies_tanh_twice() -> None:
    net = DRMNet(ngf=4)
    x = torch.randn(1, DRM_INPUT_NC, 64, 48)
    front, back = drm_depth(net, x)
    raw = net(x)
    assert torch.allclose(front, torch.tanh(raw[:, :1])) and torch.allclose(back, torch.tanh(raw[:, 1:]))
    assert raw.abs().max() < 1  # the network itself already ends in tanh


def test_decode_pair_follows_the_official_loader(mpv) -> None:
    row = _rows(mpv)[0]
    pair = inputs.decode_pair(row, 128, 80, need_depth=True)
    front = gt_front_to_world(np.asarray(row["depth_front"]))
    assert np.allclose(pair["front"], front)
    assert np.allclose(pair["back"], gt_back_to_world(np.asarray(row["depth_back"])))
    pose = np.asarray(row["pose"])
    x, y = int(round(pose[0, 0])), int(round(pose[0, 1]))
    assert pair["pose"].shape == (25, 128, 80) and pair["pose"][0, y, x]
    radius = max(1, round(5 * 128 / 512))
    assert pair["pose"][0].sum() <= (2 * radius + 2) ** 2
    batch = inputs.collate_pairs([pair])
    parts = inputs.person_parts(batch["person"], batch["parse"], batch["palm"])
    parse = torch.from_numpy(pair["parse"].astype(np.int64))
    keep = torch.isin(parse, torch.tensor([1, 2, 4, 13, 9, 12, 16, 17, 18, 19])) | (batch["palm"][0, 0] > 0)
    assert torch.equal(parts["hhl"][0, :, ~keep], -torch.ones(3, int((~keep).sum())))
    assert torch.equal(parts["hhl"][0, :, keep], batch["person"][0, :, keep])
    assert torch.equal(parts["parse_cloth_mask"][0, 0] > 0, parse == 5)
    assert inputs.mtm_agnostic(batch, parts["hhl"]).shape == (1, 29, 128, 80)
    assert batch["person"].min() >= -1 and batch["person"].max() <= 1


def test_bad_rows_are_one_line_errors(mpv) -> None:
    row = dict(_rows(mpv)[0])
    with pytest.raises(RefbenchError, match="the model takes 320x512"):
        inputs.decode_pair(row, 512, 320, need_depth=False)
    bad = dict(row, palm_mask=None)
    with pytest.raises(RefbenchError, match="no 'palm_mask'"):
        inputs.decode_pair(bad, 128, 80, need_depth=False)
    parse = np.full((128, 80), 25, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(parse).save(buffer, format="PNG")
    with pytest.raises(RefbenchError, match="label 25 is not a LIP label"):
        inputs.decode_pair(dict(row, parse={"bytes": buffer.getvalue(), "path": None}), 128, 80,
                           need_depth=False)
    nan = np.asarray(row["depth_front"], np.float32).copy()
    nan[3, 3] = np.nan
    with pytest.raises(RefbenchError, match="NaN"):
        inputs.decode_pair(dict(row, depth_front=nan), 128, 80, need_depth=True)
    with pytest.raises(RefbenchError, match="no depth maps"):
        inputs.decode_pair(dict(row, depth_back=None), 128, 80, need_depth=True)
    with pytest.raises(RefbenchError, match="cannot decode 'person'"):
        inputs.decode_pair(dict(row, person={"bytes": b"\x89PNG cut", "path": None}), 128, 80,
                           need_depth=False)


def test_configs_are_checked_before_training() -> None:
    depth, image = get_spec("mpv3d-tryon-depth"), get_spec("mpv3d-tryon")
    with pytest.raises(RefbenchError, match="score it on mpv3d-tryon-depth"):
        M3DVTONMTM.validate_config(TINY_MTM, image)
    with pytest.raises(RefbenchError, match="score it on mpv3d-tryon,"):
        M3DVTONTFM.validate_config({"height": 128, "width": 80, "num_downs": 4}, depth)
    with pytest.raises(RefbenchError, match="multiples of 16"):
        M3DVTONMTM.validate_config({"height": 100, "width": 80}, depth)
    with pytest.raises(RefbenchError, match="2\\^6"):
        M3DVTONTFM.validate_config({"height": 128, "width": 80}, image)
    with pytest.raises(RefbenchError, match="VGG19 weights file not found"):
        M3DVTONTFM.validate_config({"height": 128, "width": 80, "num_downs": 4,
                                    "vgg_weights": "/nonexistent/vgg19.pth"}, image)
    cfg = M3DVTONTFM.validate_config({"height": 128, "width": 80, "num_downs": 4}, image)
    assert cfg.perceptual == "pyramid"  # no weights file: the documented substitute
    with pytest.raises(RefbenchError, match="viton"):
        M3DVTONTFM.validate_config({"height": 128, "width": 80, "num_downs": 4},
                                   get_spec("viton-tryon"))


def test_stages_train_and_predict_on_a_batch(mpv, tmp_path) -> None:
    depth, image = get_spec("mpv3d-tryon-depth"), get_spec("mpv3d-tryon")
    rows = _rows(mpv)
    stage = M3DVTONMTM.create(TINY_MTM, depth, rows, tmp_path / "mtm")
    batch = stage.collate(stage.encode(rows)[0:2])
    out = stage.training_step(batch)
    assert set(out) == {"loss", "warp", "fdepth", "bdepth", "segmt"}
    out["loss"].backward()
    assert all(p.grad is not None for p in stage.net.regression.parameters())
    preds = stage.predict(batch)
    assert preds[0].id == batch["ids"][0] and preds[0].value.front.shape == (128, 80)
    tfm = M3DVTONTFM.create({"height": 128, "width": 80, "num_downs": 4, "ngf": 8}, image, rows,
                            tmp_path / "tfm")
    stage.net.zero_grad(set_to_none=True)
    tfm.mtm = stage.net.requires_grad_(False)  # as create does from an MTM run
    loss = tfm.training_step(batch)
    assert set(loss) == {"loss", "l1", "vgg", "mask"} and torch.isfinite(loss["loss"])
    loss["loss"].backward()
    assert all(p.grad is None for p in tfm.mtm.parameters())
    picture = tfm.predict(batch)[0].value
    assert picture.dtype == np.uint8 and picture.shape == (128, 80, 3)


def test_drm_stage_losses(mpv, tmp_path) -> None:
    depth, rows = get_spec("mpv3d-tryon-depth"), _rows(mpv)
    drm = M3DVTONDRM.create({"height": 128, "width": 80, "ngf": 4, "add_normal_loss": True},
                            depth, rows, tmp_path / "drm")
    batch = drm.collate(drm.encode(rows)[0:2])
    parts = drm.training_step(batch)
    assert {"fdepth", "bdepth", "fgrad", "bgrad", "fnormal", "bnormal"} <= set(parts)
    with pytest.raises(NotImplementedError, match="from scratch"):
        M3DVTONDRM.create({"height": 128, "width": 80}, depth, rows, tmp_path / "x", "run")


def test_mtm_run_must_be_an_mtm_run(mpv, tmp_path) -> None:
    image = get_spec("mpv3d-tryon")
    cfg = {"height": 128, "width": 80, "num_downs": 4, "mtm_run": str(tmp_path / "absent")}
    with pytest.raises(RefbenchError, match="MTM run folder not found"):
        M3DVTONTFM.create(cfg, image, _rows(mpv), tmp_path / "tfm")


def test_floors(mpv) -> None:
    rows = _rows(mpv, "test")
    pasted = floors.paste_floor(rows)
    assert set(pasted) == set(rows["pair_id"])
    first = next(iter(pasted.values()))
    assert first.dtype == np.uint8 and first.shape == (128, 80, 3)
    flat = floors.flat_depth_floor(rows)
    card = next(iter(flat.values()))
    assert (card.front == floors.FLAT_Z).all() and (card.back == -floors.FLAT_Z).all()


def test_real_mpv3d_example_decodes(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "mpv3d" / "mpv3d_example"
    if not root.is_dir():
        pytest.skip(f"MPV3D example folder not found at {root}")
    MPV3DBuilder().prepare(root, tmp_path / "cache")
    # the example pairs persons with other products' garments: only the unpaired list has rows
    rows = load_prepared("mpv3d", split="test", config="unpaired", cache_dir=str(tmp_path / "cache"))
    pair = inputs.decode_pair(rows[0], 512, 320, need_depth=True)
    assert pair["pose"].shape == (25, 512, 320)
    # a visible keypoint gets the loader's 11 x 11 square (radius 5 at 512 x 320)
    visible = [k for k in range(25) if pair["pose"][k].any()]
    assert visible and all(pair["pose"][k].sum() <= 121 for k in visible)
    assert pair["front"][pair["front"] != 0].size > 1000  # a real person's depth
    assert pair["palm"].any() and pair["cloth_mask"].any()


def test_mtm_stage_trains_with_the_warp_regularisers(mpv, tmp_path) -> None:
    rows = _rows(mpv)
    stage = M3DVTONMTM.create({**TINY_MTM, "add_theta_loss": True, "add_grid_loss": True},
                              get_spec("mpv3d-tryon-depth"), rows, tmp_path / "mtm")
    batch = stage.collate(stage.encode(rows)[0:2])
    out = stage.training_step(batch)
    assert {"theta", "grid"} <= set(out) and all(torch.isfinite(v) for v in out.values())
    assert out["theta"].item() >= 0.1 * 0.32 - 1e-6  # the floored second differences
    out["loss"].backward()
    assert all(p.grad is not None for p in stage.net.regression.parameters())
