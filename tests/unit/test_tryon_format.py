"""The try-on results folder: reading, writing, the missing/extra policy and one-line
errors, scored end to end through `evaluate_file` on synthetic releases."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refbench.benchmarks.formats.tryon import TryOnResultsFormat, depth_names
from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.tryon import MPV3DBuilder, VitonHDBuilder
from refbench.errors import RefbenchError
from refbench.registry import get_spec


@pytest.fixture(scope="module")
def hd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("hd")
    root = VitonHDBuilder().synthesize(base / "src", n=8, seed=2)
    VitonHDBuilder().prepare(root, base / "cache")
    return root, base / "cache"


@pytest.fixture(scope="module")
def mpv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("mpv")
    root = MPV3DBuilder().synthesize(base / "src", n=8, seed=2)
    MPV3DBuilder().prepare(root, base / "cache")
    return root, base / "cache"


def _perfect(spec_name: str, root: Path, out: Path) -> Path:
    spec, fmt = get_spec(spec_name), TryOnResultsFormat()
    fmt.write(out, fmt.perfect_predictions(fmt.read_references(root, spec)), spec)
    return out


def test_perfect_results_score_best_from_cache_and_folder(hd, tmp_path) -> None:
    root, cache = hd
    path = _perfect("vitonhd-tryon", root, tmp_path / "res")
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(f"{i:05d}_00_{i:05d}_00.jpg" for i in (6, 7))  # copied GT files
    for refs in (None, root):
        result = evaluate_file("vitonhd-tryon", path, refs, cache_dir=str(cache))
        assert result.metrics["SSIM"] == pytest.approx(1.0)
        assert result.counts["ssim_convention/hrviton"] == 1
        assert any("FID, KID absent" in w for w in result.warnings)


def test_missing_pair_is_refused_extra_is_reported(hd, tmp_path) -> None:
    root, cache = hd
    path = _perfect("vitonhd-tryon", root, tmp_path / "res")
    extra = path / "99999_00_99999_00.png"
    shutil.copy(next(path.iterdir()), extra)
    result = evaluate_file("vitonhd-tryon", path, cache_dir=str(cache))
    assert result.counts["extra"] == 1
    with pytest.raises(RefbenchError, match="strict"):
        evaluate_file("vitonhd-tryon", path, cache_dir=str(cache), strict=True)
    extra.unlink()
    next(path.iterdir()).unlink()
    with pytest.raises(RefbenchError, match="have no prediction.*every pair"):
        evaluate_file("vitonhd-tryon", path, cache_dir=str(cache))


def test_bad_results_are_one_line_errors(hd, tmp_path) -> None:
    root, _ = hd
    spec, fmt = get_spec("vitonhd-tryon"), TryOnResultsFormat()
    path = _perfect("vitonhd-tryon", root, tmp_path / "res")
    first = sorted(path.iterdir())[0]
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(first)
    with pytest.raises(RefbenchError, match=r"result is 96x128 \(WxH\) but .* is 10x10"):
        fmt.read(path, spec)
    path = _perfect("vitonhd-tryon", root, tmp_path / "res2")
    twin = sorted(path.iterdir())[0]
    shutil.copy(twin, twin.with_suffix(".png"))
    with pytest.raises(RefbenchError, match="has two results"):
        fmt.read(path, spec)
    twin.with_suffix(".png").unlink()
    (path / "notes.txt").write_text("x")
    with pytest.raises(RefbenchError, match=r"notes\.txt: not a try-on result"):
        fmt.read(path, spec)
    (path / "notes.txt").unlink()
    (path / "sub").mkdir()
    with pytest.raises(RefbenchError, match="sub-folder"):
        fmt.read(path, spec)


def test_depth_results(mpv, tmp_path) -> None:
    root, cache = mpv
    path = _perfect("mpv3d-tryon-depth", root, tmp_path / "depth")
    front = sorted(path.glob("*front_depth.npy"))[0]
    assert (path / depth_names(front.name[:-10])[1]).is_file()
    result = evaluate_file("mpv3d-tryon-depth", path, cache_dir=str(cache))
    assert result.metrics["front/RMSE"] == pytest.approx(0.0, abs=1e-6)
    assert result.metrics["back/delta1"] == pytest.approx(1.0)
    np.save(front, np.full((3, 3), np.nan, np.float32))
    with pytest.raises(RefbenchError, match="NaN"):
        evaluate_file("mpv3d-tryon-depth", path, cache_dir=str(cache))
    front.unlink()
    with pytest.raises(RefbenchError, match="no front one"):
        evaluate_file("mpv3d-tryon-depth", path, cache_dir=str(cache))


def test_paste_floor_scores_below_perfect(mpv, tmp_path) -> None:
    """The trivial floor (the pre-aligned garment pasted over the person's upper clothes)
    is imperfect but far from noise: SSIM and PSNR order the two."""
    import io

    from refbench.datasets.base import load_prepared

    root, cache = mpv
    rows = load_prepared("mpv3d", split="test", config="paired", cache_dir=str(cache))
    out = {}
    for row in rows:
        person = np.asarray(Image.open(io.BytesIO(row["person"]["bytes"])).convert("RGB"))
        cloth = np.asarray(Image.open(io.BytesIO(row["aligned_cloth"]["bytes"])).convert("RGB"))
        mask = np.asarray(Image.open(io.BytesIO(row["aligned_cloth_mask"]["bytes"]))) > 0
        blank = np.where(np.asarray(Image.open(io.BytesIO(row["parse"]["bytes"])))[..., None]
                         == 5, 255, person)
        out[row["pair_id"]] = np.where(mask[..., None], cloth, blank).astype(np.uint8)
    spec = get_spec("mpv3d-tryon")
    TryOnResultsFormat().write(tmp_path / "floor", out, spec)
    floor = evaluate_file(spec, tmp_path / "floor", cache_dir=str(cache))
    assert 0.5 < floor.metrics["SSIM"] < 1.0
