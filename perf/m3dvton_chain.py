"""Does M3D-VTON's tiny chain learn? MTM -> DRM -> TFM through the CLI, on a synthesized
MPV3D release, trained vs untrained vs floor, over seeds.

Per seed, each step a `refbench` command, as a user runs the chain:

1. `datasets synthesize mpv3d --n N --seed S`, `datasets prepare mpv3d` (128 x 80 pairs);
2. `train m3dvton-mtm` (tiny recipe), scored on `mpv3d-tryon-depth` with its *initial* depth;
3. `train m3dvton-drm --set model.mtm_run=<MTM run>`: the DRM refines the trained MTM's
   depth; `train m3dvton-tfm --set model.mtm_run=<MTM run>`: the TFM fuses the trained
   MTM's warped garment (the official TFM reads MTM's outputs only; DRM's depth and TFM's
   image meet in the point cloud);
4. `predict` from the DRM and TFM run folders and `evaluate` on `mpv3d-tryon-depth` /
   `mpv3d-tryon`: the scores must equal those the runs wrote at the end of training.

Rivals, scored through the same prediction format and `evaluate_file`:

* untrained: the same stage built with the run's seed right before `create` (as the runner
  does) and fed by the same *trained* MTM, so only the stage's own training differs;
* MTM initial: for the DRM, the depth it refines (the MTM run's own result);
* floors (`floors.py`): the paste floor for try-on SSIM/PSNR, the flat card for depth.

The MTM row is the initial depth the DRM refines. It can lose to the flat card on RMSE
(not on AbsRel) on some seeds: the official depth decoder ends in an InstanceNorm before
tanh, so its output has unit variance over the whole map, and with little person depth on
a quarter of the pixels the L1 optimum may keep the background exact and saturate a few
person pixels (errors near 1 on about 5% of the person). The DRM removes that tail.

Printed: per seed, then mean +- std over seeds, TFM SSIM (pytorch-ssim convention, the
spec's default) / PSNR and DRM RMSE / AbsRel front and back. Runs one thread per process;
about 5 minutes per seed on a free core with the tiny recipes' 300 steps.

Run: `OMP_NUM_THREADS=1 .venv/bin/python perf/m3dvton_chain.py [--seeds 0 1 2] [--n 64]
[--steps 300] [--workdir DIR] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from refbench.baselines.tryon.floors import floor_for
from refbench.benchmarks.scoring import evaluate_file
from refbench.config import build_run_config
from refbench.datasets.base import load_prepared
from refbench.registry import BASELINES, get_spec
from refbench.runner import predict_rows, write_predictions

DEPTH, IMAGE = "mpv3d-tryon-depth", "mpv3d-tryon"
DEPTH_KEYS = ("front/RMSE", "back/RMSE", "front/AbsRel", "back/AbsRel")
IMAGE_KEYS = ("SSIM", "PSNR")
STAGES = {  # stage -> (benchmark, tiny recipe)
    "mtm": ("m3dvton-mtm", DEPTH, "m3dvton-mtm_tiny_mpv3d-tryon-depth"),
    "drm": ("m3dvton-drm", DEPTH, "m3dvton-drm_tiny_mpv3d-tryon-depth"),
    "tfm": ("m3dvton-tfm", IMAGE, "m3dvton-tfm_tiny_mpv3d-tryon"),
}


def cli(*args: str) -> str:
    """One `refbench` command in a fresh process; its stdout (stderr shown on failure)."""
    proc = subprocess.run([sys.executable, "-m", "refbench", *args], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"refbench {' '.join(args)} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    return proc.stdout


def metrics_of(result_json: Path, keys: tuple[str, ...]) -> dict[str, float]:
    metrics = json.loads(result_json.read_text(encoding="utf-8"))["metrics"]
    return {k: float(metrics[k]) for k in keys}


def train(stage: str, seed: int, base: Path, cache: Path, steps: int | None,
          mtm_run: Path | None) -> tuple[Path, list[str]]:
    """`refbench train` one stage; its run folder and the overrides it used."""
    baseline, benchmark, recipe = STAGES[stage]
    sets = [f"trainer.seed={seed}", "trainer.progress=false"]
    if steps is not None:
        sets += [f"trainer.max_steps={steps}", f"trainer.save_every={steps}"]
    if mtm_run is not None:
        sets.append(f"model.mtm_run={mtm_run}")
    args = ["train", baseline, "-b", benchmark, "-r", recipe, "--name", stage,
            "--output-dir", str(base / "runs"), "--cache-dir", str(cache)]
    for item in sets:
        args += ["--set", item]
    cli(*args)
    return base / "runs" / stage, sets


def predict_and_evaluate(run: Path, benchmark: str, out: Path, cache: Path,
                         keys: tuple[str, ...]) -> dict[str, float]:
    """`refbench predict` from the run folder, then `refbench evaluate` the written files."""
    cli("predict", str(run), "--split", "test", "--output", str(out), "--cache-dir", str(cache))
    cli("evaluate", benchmark, "--predictions", str(out), "--cache-dir", str(cache),
        "--output", str(out.parent / f"{out.name}.result.json"))
    return metrics_of(out.parent / f"{out.name}.result.json", keys)


def untrained(stage: str, seed: int, base: Path, cache: Path, sets: list[str],
              keys: tuple[str, ...]) -> dict[str, float]:
    """The stage as `create` builds it under the run's seed, scored without a step."""
    baseline, benchmark, recipe = STAGES[stage]
    config = build_run_config(baseline, benchmark, recipe,
                              [*sets, f"data.cache_dir={cache}", f"name=untrained-{stage}"])
    spec = get_spec(benchmark)

    def rows(split: str) -> Any:
        return load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                             cache_dir=str(cache))

    torch.manual_seed(seed)
    model = BASELINES.get(baseline).create(config.model, spec, rows("train"),
                                           base / "untrained" / stage)
    model.bind_splits(rows)
    preds = predict_rows(model, rows(spec.split), config.trainer.eval_batch_size)
    path = write_predictions(spec, preds, base / "untrained" / f"{stage}-pred")
    metrics = evaluate_file(spec, path, cache_dir=str(cache)).metrics
    return {k: float(metrics[k]) for k in keys}


def floor(benchmark: str, base: Path, cache: Path, keys: tuple[str, ...]) -> dict[str, float]:
    spec = get_spec(benchmark)
    path = write_predictions(spec, floor_for(spec, str(cache)), base / f"floor-{benchmark}")
    metrics = evaluate_file(spec, path, cache_dir=str(cache)).metrics
    return {k: float(metrics[k]) for k in keys}


def one_seed(seed: int, n: int, steps: int | None, base: Path) -> dict[str, dict[str, float]]:
    root, cache = base / "src", base / "cache"
    cli("datasets", "synthesize", "mpv3d", "--out", str(root), "--n", str(n), "--seed", str(seed))
    cli("datasets", "prepare", "mpv3d", "--root", str(root), "--cache-dir", str(cache))
    started = time.time()
    mtm, _ = train("mtm", seed, base, cache, steps, None)
    drm, drm_sets = train("drm", seed, base, cache, steps, mtm)
    tfm, tfm_sets = train("tfm", seed, base, cache, steps, mtm)
    seconds = time.time() - started
    out = {
        "mtm initial": metrics_of(mtm / "result.json", DEPTH_KEYS),
        "drm trained": predict_and_evaluate(drm, DEPTH, base / "pred" / "drm", cache, DEPTH_KEYS),
        "drm untrained": untrained("drm", seed, base, cache, drm_sets, DEPTH_KEYS),
        "flat floor": floor(DEPTH, base, cache, DEPTH_KEYS),
        "tfm trained": predict_and_evaluate(tfm, IMAGE, base / "pred" / "tfm", cache, IMAGE_KEYS),
        "tfm untrained": untrained("tfm", seed, base, cache, tfm_sets, IMAGE_KEYS),
        "paste floor": floor(IMAGE, base, cache, IMAGE_KEYS),
    }
    # the files written by `predict` score exactly as the runs scored themselves
    for stage, keys in (("drm", DEPTH_KEYS), ("tfm", IMAGE_KEYS)):
        own = metrics_of(base / "runs" / stage / "result.json", keys)
        diff = max(abs(own[k] - out[f"{stage} trained"][k]) for k in keys)
        if diff > 1e-6:
            raise SystemExit(f"seed {seed}: {stage} predict/evaluate differs from its run by {diff}")
    out["seconds"] = {"train": seconds}
    return out


def table(results: list[dict[str, dict[str, float]]]) -> str:
    rows = [row for row in results[0] if row != "seconds"]
    lines = []
    for label, keys in (("TFM try-on (SSIM pytorch-ssim, PSNR dB)", IMAGE_KEYS),
                        ("DRM depth (world z; RMSE / AbsRel)", DEPTH_KEYS)):
        lines.append(f"\n{label}\n{'':16}" + "".join(f"{k:>22}" for k in keys))
        for row in rows:
            if set(keys) != set(results[0][row]):
                continue
            cells = []
            for k in keys:
                values = [r[row][k] for r in results]
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):.4f} ± {std:.4f}")
            lines.append(f"{row:16}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=64, help="training pairs per seed")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per stage (default: the tiny recipes' 300)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"M3D-VTON tiny chain on synthetic MPV3D ({args.n} training pairs, 128 x 80), seeds "
          f"{args.seeds}, steps {args.steps or 'recipe'}; {os.cpu_count()} CPUs, load average "
          f"{load:.1f} at start, 1 thread", flush=True)
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for seed in args.seeds:
            res = one_seed(seed, args.n, args.steps, Path(tmp) / f"seed{seed}")
            results.append(res)
            print(f"seed {seed} ({res['seconds']['train']:.0f} s of training): "
                  + "; ".join(f"{row} " + " ".join(f"{k}={v:.4f}" for k, v in vals.items())
                              for row, vals in res.items() if row != "seconds"), flush=True)
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
