"""The unpaired FID/KID benchmarks: scored end to end with a (random) Inception weights file,
a one-line error without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refbench.datasets.tryon import VitonHDBuilder
from refbench.errors import RefbenchError


@pytest.fixture(scope="module")
def unpaired(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(cache, results folder, random Inception weights) of a tiny prepared VITON-HD."""
    import torch

    from refbench.benchmarks.formats.tryon import TryOnResultsFormat
    from refbench.datasets.base import load_prepared
    from refbench.evaluation.tryon import inception
    from refbench.registry import get_spec

    base = tmp_path_factory.mktemp("unpaired")
    root = VitonHDBuilder().synthesize(base / "src", n=10, seed=5)
    VitonHDBuilder().prepare(root, base / "cache")
    spec, fmt = get_spec("vitonhd-tryon-unpaired"), TryOnResultsFormat()
    rows = load_prepared("viton_hd", split="test", config="unpaired", cache_dir=str(base / "cache"))
    fmt.write(base / "res", fmt.perfect_predictions(fmt.references_from_dataset(rows, spec)), spec)
    torch.manual_seed(0)
    weights = base / "pt_inception-random.pth"
    torch.save(inception.FIDInceptionV3().state_dict(), weights)
    return base / "cache", base / "res", weights


def test_unpaired_specs_declare_weight_dependent_primary() -> None:
    from refbench.registry import METRICS, get_spec

    metric = METRICS.get("tryon_image")
    for name in ("vitonhd-tryon-unpaired", "viton-tryon-unpaired"):
        spec = get_spec(name)
        assert spec.primary == "FID" and spec.dataset.config == "unpaired"
        assert metric.weight_dependent_keys[spec.primary] == "inception_weights"
        assert spec.metric.kwargs()["pairwise"] is False


def test_without_weights_is_a_one_line_error(unpaired) -> None:
    from refbench.benchmarks.scoring import evaluate_file

    cache, results, _ = unpaired
    with pytest.raises(RefbenchError, match="inception_weights") as info:
        evaluate_file("vitonhd-tryon-unpaired", results, cache_dir=str(cache))
    assert "\n" not in str(info.value)


@pytest.mark.slow  # ~13 s on a shared CPU: Inception forward + KID subsets
def test_cli_scores_unpaired_with_weights(unpaired, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from refbench.cli import app

    cache, results, weights = unpaired
    out = tmp_path / "result.json"
    run = CliRunner().invoke(app, ["evaluate", "vitonhd-tryon-unpaired", "--predictions",
                                   str(results), "--cache-dir", str(cache), "--option",
                                   f"inception_weights={weights}", "--option", "fid_method=eigh",
                                   "--output", str(out)])
    assert run.exit_code == 0, run.output
    result = json.loads(out.read_text())
    metrics = result["metrics"]
    assert set(metrics) == {"FID", "KID", "KID_std"}  # no SSIM: there is no ground truth
    assert abs(metrics["FID"]) < 1e-3 and abs(metrics["KID"]) < 1e-6  # results = real set
    counts = result["counts"]
    assert counts["fid/generated_images"] == counts["fid/real_images"] == counts["pairs/scored"]
    run = CliRunner().invoke(app, ["evaluate", "vitonhd-tryon-unpaired", "--predictions",
                                   str(results), "--cache-dir", str(cache)])
    assert isinstance(run.exception, RefbenchError)  # the CLI's entry point exits 2 on it
    assert "inception_weights" in str(run.exception)


def test_real_set_counts_each_person_once() -> None:
    import numpy as np

    from refbench.evaluation.tryon.metrics import TryOnImage

    metric = TryOnImage(pairwise=False)
    person = np.full((32, 24, 3), 7, np.uint8)
    metric.update([person, person + 1], [person, person])
    assert metric._distinct([person]) == []  # already seen
    with pytest.raises(RefbenchError, match="inception_weights"):
        metric.compute()
    assert metric.counts()["pairs/scored"] == 2 and "SSIM" not in metric.output_keys()
