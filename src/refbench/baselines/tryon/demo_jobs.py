"""The try-on job of `refbench demo`: M3D-VTON's tiny TFM on a synthesized MPV3D release
(40 persons: 30 training pairs, 10 paired test pairs at 128 x 80), trained through the
common runner, scored on `mpv3d-tryon` (SSIM, pytorch-ssim convention) against the release
folder, next to the "paste the pre-aligned garment on the person" floor (`floors.py`).

The demo trains the TFM alone, on the release's stand-ins for MTM's outputs (pre-aligned
garment and mask, the release's parse, zero initial depth; `m3dvton/baseline.py`): the
full chain (MTM, then TFM on MTM's outputs) is the tiny recipes' job and takes minutes.

`was-vton` (not a default job: `refbench demo --job was-vton`): the tiny WAS-VTON network
(the supernet's largest path, 8 channels, at 64 x 48) on a synthesized VITON-HD release
(BODY_25 poses; 128 x 96 persons, results resized back to that size), scored on
`vitonhd-tryon` (SSIM, HR-VITON's convention) next to the same paste floor with the garment
aligned on the fly (`wasvton/baseline.py`). The search itself (`refbench search was-vton`)
is left out: it needs a supernet run and takes minutes.
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


#: VITON-HD persons of the WAS-VTON job, and its training steps
VITONHD_PERSONS = 40
WASVTON_STEPS = 120


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


def aligned_paste_floor(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The rival of releases without pre-aligned garments: aligned on the fly, then pasted."""
    from refbench.baselines.tryon.wasvton.baseline import paste_floor as wasvton_floor
    from refbench.datasets.base import load_prepared

    rows = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                         cache_dir=cache_dir)
    return wasvton_floor(rows)


@DEMOS.register("was-vton", default=False)
def was_vton() -> DemoJob:
    """Tiny WAS-VTON on VITON-HD's paired test split (module docstring)."""
    return DemoJob(benchmark="vitonhd-tryon", baseline="was-vton",
                   recipe="was-vton_tiny_vitonhd-tryon", size=VITONHD_PERSONS,
                   references=lambda root: Path(root), trivial=aligned_paste_floor,
                   trivial_name="paste the garment, box-aligned",
                   overrides=(f"trainer.max_steps={WASVTON_STEPS}", "trainer.eval_every=0",
                              f"trainer.save_every={WASVTON_STEPS}"))
