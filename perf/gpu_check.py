"""GPU checks of the common runner: the tiny BERT (GLUE SST-2) and the tiny SECOND (KITTI Car)
train a few steps with AMP on CUDA, evaluate during training, predict, score, and resume
from a mid-run checkpoint to the very same final weights.

Prints one line per check (`ok` / `FAIL`, with the figures) and exits 1 if any failed.
On a machine without CUDA it says so and exits 0; `--device cpu` runs the same checks on
the CPU (AMP off), which is how the script itself is tested.

    .venv/bin/python perf/gpu_check.py [--device cuda|cpu] [--steps 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: (demo-style job name, baseline, benchmark, recipe, dataset, synthetic size)
JOBS = (("tiny BERT / SST-2", "bert", "glue-sst2", "bert_tiny_glue", "glue", 200),
        ("tiny SECOND / KITTI Car", "second", "kitti-car-3d", "second_tiny_kitti", "kitti", 24))


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    from refbench.engine import list_checkpoints

    _, last = list_checkpoints(run_dir)[-1]
    return load_file(str(last / "model.safetensors"))


def run_job(label: str, baseline: str, benchmark: str, recipe: str, dataset: str, size: int,
            work: Path, steps: int, device: str) -> list[Check]:
    import torch

    from refbench import runner
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.config import build_run_config
    from refbench.datasets.base import get_builder
    from refbench.engine import list_checkpoints
    from refbench.registry import get_spec

    checks: list[Check] = []
    root, cache, runs = work / dataset, work / "cache", work / "runs"
    if not root.exists():
        get_builder(dataset).synthesize(root, n=size, seed=0)
        get_builder(dataset).prepare(root, cache)
    half = max(1, steps // 2)
    overrides = [f"output_dir={runs}", f"data.cache_dir={cache}", f"trainer.max_steps={steps}",
                 "trainer.epochs=null", f"trainer.save_every={half}", f"trainer.eval_every={half}",
                 "trainer.keep_last=10", "trainer.amp=true", "trainer.progress=false"]
    name = recipe.replace("_", "-")
    started = time.time()
    config = build_run_config(baseline, benchmark, recipe, [*overrides, f"name={name}-a"])
    summary = runner.train(config)
    assert summary.result is not None
    spec = get_spec(benchmark)
    primary = summary.result.metrics[spec.primary]
    checks.append(Check(f"{label}: train {steps} steps with AMP, evaluate every {half}",
                        summary.steps == steps,
                        f"{summary.steps} steps in {time.time() - started:.1f}s on {device}, "
                        f"{spec.primary}={primary:.2f}"))
    out = work / "predictions" / name / spec.submission.filename
    runner.predict(summary.run_dir, spec.split, out, cache_dir=str(cache))
    scored = evaluate_file(spec, out, cache_dir=str(cache),
                           read_options=runner.companions(spec, out))
    checks.append(Check(f"{label}: predict + score the written file",
                        abs(scored.metrics[spec.primary] - primary) < 1e-6,
                        f"{spec.primary}={scored.metrics[spec.primary]:.2f} (run: {primary:.2f})"))
    # resume: the same run cut back to its mid-run checkpoint, then continued
    copy = runs / f"{name}-b"
    shutil.copytree(summary.run_dir, copy)
    for step, folder in list_checkpoints(copy):
        if step > half:
            shutil.rmtree(folder)
    (copy / "result.json").unlink(missing_ok=True)
    (copy / "checkpoints" / "best.json").unlink(missing_ok=True)
    resumed = runner.train(build_run_config(baseline, benchmark, recipe,
                                            [*overrides, f"name={name}-b"]), resume=True)
    a, b = _weights(summary.run_dir), _weights(resumed.run_dir)
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    worst = max((float((a[k].float() - b[k].float()).abs().max()) for k in a if k in b),
                default=0.0)
    checks.append(Check(f"{label}: resume from step {half} to {steps}", same,
                        "bit-identical final weights" if same else f"max |diff| {worst:.3g}"))
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temp one).")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: needs a CUDA device (torch.cuda.is_available() is False); nothing to "
              "check here. `--device cpu` runs the same checks on the CPU.")
        return 0
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    work = args.out or Path(tempfile.mkdtemp(prefix="refbench-gpu-check-"))
    failed = 0
    for job in JOBS:
        try:
            checks = run_job(*job, work=work, steps=args.steps, device=args.device)
        except Exception as exc:  # report and go on with the next family
            checks = [Check(job[0], False, f"{type(exc).__name__}: {exc}")]
        for check in checks:
            print(check.line(), flush=True)
            failed += not check.ok
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
