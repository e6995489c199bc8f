"""`refbench demo --task was-vton`: the non-default WAS-VTON job (tiny network on synthetic
VITON-HD, BODY_25 poses) runs end to end through the demo (train, predict at the release's
size, score against the release folder, leaderboard submissions verified) and beats the
box-aligned paste floor. Not among the default jobs: the default try-on job stays `mpv3d`.
Slow: one 120-step training (about a minute on one busy thread)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from refbench.demo import demo_names, resolve_tasks, run_demo

pytestmark = pytest.mark.usefixtures("one_thread")


def test_was_vton_is_a_non_default_job() -> None:
    from refbench.baselines.tryon.demo_jobs import WASVTON_STEPS, was_vton

    assert "was-vton" in demo_names() and "was-vton" not in demo_names(default_only=True)
    assert "mpv3d" in demo_names(default_only=True)
    assert resolve_tasks(["was-vton"]) == ["was-vton"]
    job = was_vton()
    assert (job.benchmark, job.baseline, job.recipe) == ("vitonhd-tryon", "was-vton",
                                                         "was-vton_tiny_vitonhd-tryon")
    assert WASVTON_STEPS == 120 and f"trainer.max_steps={WASVTON_STEPS}" in job.overrides


@pytest.mark.slow
def test_was_vton_demo_beats_the_paste_floor(tmp_path: Path) -> None:
    started = time.time()
    table = run_demo(tmp_path / "demo", tasks=["was-vton"])
    seconds = time.time() - started
    (row,) = table
    print(f"\nwas-vton demo: SSIM {row['model']:.4f} vs paste floor {row['trivial']:.4f}, "
          f"{row['steps']} steps, {seconds:.0f} s")
    assert row["benchmark"].startswith("vitonhd-tryon") and row["model"] > row["trivial"]

