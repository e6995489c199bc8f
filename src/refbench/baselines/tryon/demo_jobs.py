"""The try-on job of `refbench demo`: M3D-VTON's tiny TFM on a synthesized MPV3D release
(40 persons: 30 training pairs, 10 paired test pairs at 128 x 80), trained through the
common runner, scored on `mpv3d-tryon` (SSIM, pytorch-ssim convention) against the release
folder, next to the "paste the pre-aligned garment on the person" floor (`floors.py`).

The demo trains the TFM alone, on the release's stand-ins for MTM's outputs (pre-aligned
garment and mask, the release's parse, zero initial depth; `m3dvton/baseline.py`): the
full chain (MTM, then TFM on MTM's outputs) is the tiny recipes' job and takes minutes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refbench.baselines.tryon.floors import floor_for
from refbench.demo import DemoJob
from refbench.registry import DEMOS

#: persons of the synthetic release (three quarters train, the rest the scored test split)
MPV3D_PERSONS = 40
#: TFM steps in the demo (the tiny recipe's 300 take a few minutes on a busy machine)
TFM_STEPS = 120


def paste_floor(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The rival: the pre-aligned garment pasted on each test person."""
    return floor_for(spec, cache_dir)


@DEMOS.register("mpv3d", default=True)
def mpv3d() -> DemoJob:
    """Tiny M3D-VTON TFM on MPV3D's paired test split; the synthetic release folder is the
    reference (read with the official layout, as `refbench evaluate --references` does)."""
    return DemoJob(benchmark="mpv3d-tryon", baseline="m3dvton-tfm",
                   recipe="m3dvton-tfm_tiny_mpv3d-tryon", size=MPV3D_PERSONS,
                   references=lambda root: Path(root), trivial=paste_floor,
                   trivial_name="paste the pre-aligned garment",
                   overrides=(f"trainer.max_steps={TFM_STEPS}", "trainer.eval_every=0",
                              f"trainer.save_every={TFM_STEPS}"))
