"""The 3D detection job in `refbench demo`: the tiny SECOND on synthetic KITTI Car for a
bounded number of steps (about 1.5 min on 2 cores), against "no detections"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refbench.datasets.base import load_prepared
from refbench.demo import DemoJob
from refbench.registry import DEMOS

#: synthetic KITTI frames (ray-cast, so fewer than text rows) and SECOND's step budget
KITTI_FRAMES = 160
KITTI_STEPS = 300


def no_detections(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The trivial rival: every validation frame without a detection."""
    dev = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                        cache_dir=cache_dir)
    return {fid: {} for fid in dev["id"]}


@DEMOS.register("kitti", default=True)
def kitti() -> DemoJob:
    """SECOND (tiny) on KITTI Car; the synthetic root itself is the reference (its
    ImageSets/val.txt and training/label_2 are read as the official devkit reads them)."""
    return DemoJob(benchmark="kitti-car-3d", baseline="second", recipe="second_tiny_kitti",
                   size=KITTI_FRAMES, references=lambda root: Path(root),
                   trivial=no_detections, trivial_name="no detections",
                   overrides=(f"trainer.max_steps={KITTI_STEPS}", "trainer.eval_every=0",
                              f"trainer.save_every={KITTI_STEPS}"))
