"""Whole-process speed of `refbench evaluate kitti-3class` on a val-sized label_2 set,
against the official Python port (mmdet3d 1.4.0) in the same run.

  (a) writes the synthetic set of perf/kitti_eval.py (3,769 frames, about 10 ground-truth
      objects and 30 detections each, seeded) once as label_2 folders `WORK/speed/gt`
      (15 columns, 2 decimals, as KITTI's files) and `WORK/speed/dt` (16 columns, 4
      decimals, as OpenPCDet and mmdet3d write detections); later runs reuse them;
  (b) times the whole `refbench evaluate kitti-3class --predictions dt --references gt
      --json` process, median of `--repeat` after one untimed warm-up run (bytecode is
      cached under WORK/pycache, as an installed package has it), with its CPU time and
      peak RSS (`wait4`); the machine's load average is printed beside, since wall time
      on a shared machine moves with it;
  (c) the same command on the committed sources (`git archive HEAD src` into a temp
      folder put first on PYTHONPATH), i.e. before / after on this machine: with
      `--committed`, and always when the port is not run (`--no-committed` skips it);
  (d) the compute-only time in this process: reading both folders, then `kitti_eval`
      with the strict overlaps (what the benchmark scores) and with the loose ones;
  (e) `--kitti-port DIR`: the port's `kitti_eval` on the same folders through
      perf/kitti_crosscheck.py's official half in the numba venv (`--kitti-python`), its
      rotated IoU compiled for the CPU (no GPU here; numba's CUDA simulator would take
      hours at this size), called twice: the first call includes numba's compilation;
  (f) prints the times and the ratios, and asserts every key equal (|diff| < 1e-9
      percent): the refbench process against the port (strict keys from the process, loose
      ones from (d)), against the committed sources (`--committed`), and the process
      against the in-process run.

The benchmark kitti-3class scores the strict overlaps only (its spec fixes `overlap:
strict`); the port always computes both sets, so (d) also reports the loose run.

    .venv/bin/python perf/kitti_speed.py [--frames 3769] [--repeat 3] [--committed] \\
        [--kitti-python .venv-kitti/bin/python \\
         --kitti-port .mmdet3d-whl/x/mmdet3d/evaluation/functional/kitti_utils]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ("Car", "Pedestrian", "Cyclist")
BENCHMARK = "kitti-3class"
TOLERANCE = 1e-9  # percent
TARGET_S = 2.5
#: bump when the written text changes, so that old folders are rewritten
SET_FORMAT = 1


# -- (a) the label folders --------------------------------------------------------------
def scene_module() -> Any:
    """perf/kitti_eval.py, loaded by path (its seeded scene generator)."""
    spec = importlib.util.spec_from_file_location("kitti_eval_perf", HERE / "kitti_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def label_text(frame: dict[str, np.ndarray], with_score: bool) -> str:
    """One frame as a label_2 file: 2 decimals for ground truth, 4 for detections."""
    fmt = "%.4f" if with_score else "%.2f"
    lines = []
    for i, name in enumerate(frame["name"]):
        cols = [str(name), fmt % frame["truncated"][i], "%d" % frame["occluded"][i],
                fmt % frame["alpha"][i], *(fmt % v for v in frame["bbox"][i]),
                *(fmt % v for v in frame["dimensions"][i]),
                *(fmt % v for v in frame["location"][i]), fmt % frame["rotation_y"][i]]
        if with_score:
            cols.append(fmt % frame["score"][i])
        lines.append(" ".join(cols) + "\n")
    return "".join(lines)


def write_set(root: Path, frames: int, seed: int) -> tuple[Path, Path]:
    """`root/gt` and `root/dt`, written unless a previous run left the same set."""
    gt, dt, stamp = root / "gt", root / "dt", root / "set.json"
    want = {"frames": frames, "seed": seed, "format": SET_FORMAT}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return gt, dt
    gts, dts = scene_module().make_scenes(frames, seed)
    for folder in (gt, dt):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.txt"):
            old.unlink()
    for i, (g, d) in enumerate(zip(gts, dts)):
        (gt / f"{i:06d}.txt").write_text(label_text(g, False))
        (dt / f"{i:06d}.txt").write_text(label_text(d, True))
    stamp.write_text(json.dumps(want))
    return gt, dt


# -- (b, c) the refbench process ----------------------------------------------------------
def run_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds, peak RSS in MiB, parsed stdout JSON) of one process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{err.read().decode()[-3000:]}")
        return (seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                json.loads(out.read()))


@dataclass
class Timing:
    """Repeated runs of one command: wall and CPU seconds, peak RSS, the last metrics."""

    wall: list[float]
    cpu: list[float]
    rss: float
    metrics: dict[str, float]

    def line(self) -> str:
        return (f"median {statistics.median(self.wall):.2f} s wall "
                f"({', '.join(f'{t:.2f}' for t in self.wall)}), median "
                f"{statistics.median(self.cpu):.2f} s CPU, peak RSS {self.rss:.0f} MiB")


def time_refbench(gt: Path, dt: Path, repeat: int, cache: Path,
                  src: Path | None = None) -> Timing:
    """`refbench evaluate` run `repeat` times after a warm-up (`src`: sources put first
    on PYTHONPATH; bytecode cached under `cache`)."""
    script = Path(sys.executable).with_name("refbench")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "refbench"]
    cmd += ["evaluate", BENCHMARK, "--predictions", str(dt), "--references", str(gt), "--json"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src)] + [p for p in [env.get("PYTHONPATH")]
                                                          if p])
    run_process(cmd, env)
    runs = [run_process(cmd, env) for _ in range(repeat)]
    return Timing([r[0] for r in runs], [r[1] for r in runs], max(r[2] for r in runs),
                  runs[-1][3]["metrics"])


def committed_sources(into: Path) -> Path:
    """The committed `src/` of this checkout (`git archive`, read-only on the repository)."""
    archive = subprocess.run(["git", "archive", "HEAD", "src"], cwd=HERE.parent, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


# -- (d) compute only ---------------------------------------------------------------------
def in_process(gt: Path, dt: Path) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Seconds of reading and of `kitti_eval` (strict, loose), and the values of both."""
    from refbench.benchmarks.formats.kitti import read_label_dir
    from refbench.evaluation.kitti import kitti_eval

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    refs = read_label_dir(gt, with_score=False)
    preds = read_label_dir(dt, with_score=True)
    seconds["read"] = time.perf_counter() - start
    ids = sorted(refs)
    gts, dts = [refs[i] for i in ids], [preds.get(i) for i in ids]
    values = {}
    for overlap in ("strict", "loose"):
        start = time.perf_counter()
        values[overlap] = kitti_eval(gts, dts, CLASSES, overlap)
        seconds[overlap] = time.perf_counter() - start
    return seconds, values


# -- (e) the port -------------------------------------------------------------------------
def run_port(work: Path, python: str, port: Path) -> tuple[dict[str, Any], float]:
    """perf/kitti_crosscheck.py's official half on WORK/speed (two calls), and the wall time
    of its whole process."""
    cmd = [python, str(HERE / "kitti_crosscheck.py"), "--stage", "official", "--workdir",
           str(work), "--kitti-port", str(port.resolve()), "--sets", "speed", "--repeat", "2",
           "--rotate-iou", "cpu"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"))
    wall = time.perf_counter() - start
    return json.loads((work / "official.json").read_text()), wall


# -- (f) comparisons -------------------------------------------------------------------------
def max_diff(name: str, ours: dict[str, float], theirs: dict[str, float]) -> float:
    """Largest |diff| over the keys of `theirs` (all must be in `ours`); prints the worst."""
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"{name}: keys missing on refbench's side: {missing[:5]}"
    diffs = {k: abs(ours[k] - v) for k, v in theirs.items()}
    worst = max(diffs, key=lambda k: diffs[k])
    print(f"{name}: {len(diffs)} keys, max |diff| {diffs[worst]:.3e} ({worst})")
    bad = {k: (ours[k], theirs[k]) for k, d in diffs.items() if not d < TOLERANCE}
    assert not bad, f"{name}: {len(bad)} keys differ by >= {TOLERANCE} %: " + ", ".join(
        f"{k} {a!r} vs {b!r}" for k, (a, b) in sorted(bad.items())[:8])
    return diffs[worst]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3769)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed refbench processes")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir())
                        / "refbench_kitti_speed", help="where the label folders stay "
                        "between runs (default %(default)s)")
    parser.add_argument("--committed", action=argparse.BooleanOptionalAction, default=None,
                        help="time and compare the committed sources (git archive HEAD); "
                        "default: only when the port is not run")
    parser.add_argument("--kitti-python", default=os.environ.get("KITTI_PYTHON",
                        ".venv-kitti/bin/python"), help="Python of the venv with numba")
    parser.add_argument("--kitti-port", type=Path, default=os.environ.get("KITTI_PORT"),
                        help="folder with the port's eval.py and rotate_iou.py (see "
                        "perf/kitti_crosscheck.py); without it the port is not run")
    args = parser.parse_args(argv)
    work = args.workdir / f"{args.frames}_{args.seed}"
    start = time.perf_counter()
    gt, dt = write_set(work / "speed", args.frames, args.seed)
    n_gt = sum(1 for p in gt.glob("*.txt") for _ in p.open())
    n_dt = sum(1 for p in dt.glob("*.txt") for _ in p.open())
    print(f"set: {args.frames} frames, {n_gt} ground truth / {n_dt} detections in {work / 'speed'}"
          f" ({time.perf_counter() - start:.1f} s)")

    print(f"load average before: {os.getloadavg()[0]:.2f} (this machine: {os.cpu_count()} cores)")
    now = time_refbench(gt, dt, args.repeat, work / "pycache")
    metrics, ours = now.metrics, statistics.median(now.wall)
    print(f"refbench evaluate {BENCHMARK} (whole process): {now.line()}; target <= "
          f"{TARGET_S} s: {'met' if ours <= TARGET_S else 'missed'}")
    seconds, values = in_process(gt, dt)
    print(f"in process: read both folders {seconds['read']:.2f} s, kitti_eval strict "
          f"{seconds['strict']:.2f} s, loose {seconds['loose']:.2f} s")
    print(f"{BENCHMARK}/3d/moderate/R40 mean {metrics['mean/3d/moderate/R40']:.4f}, "
          f"Car {metrics['Car/3d/moderate/R40']:.4f}")
    max_diff("refbench process vs in-process strict", metrics, values["strict"])

    if args.committed or (args.committed is None and args.kitti_port is None):
        with tempfile.TemporaryDirectory(prefix="refbench_committed_") as tmp:
            src = committed_sources(Path(tmp))
            before = time_refbench(gt, dt, args.repeat, work / "pycache", src)
        old = statistics.median(before.wall)
        print(f"committed sources (whole process): {before.line()}; now {old / ours:.1f}x "
              f"faster (wall), {statistics.median(before.cpu) / statistics.median(now.cpu):.1f}x"
              f" (CPU)")
        assert list(before.metrics) == list(metrics), "result keys changed"
        max_diff("refbench vs committed refbench", metrics, before.metrics)
    print(f"load average after: {os.getloadavg()[0]:.2f}")

    if args.kitti_port is None:
        print("port: not run (give --kitti-port, see perf/kitti_crosscheck.py)")
        return 0
    official, wall = run_port(work, args.kitti_python, args.kitti_port)
    first = official["seconds"]["speed"]
    again = official["seconds_again"]["speed"][0]
    cpu_first, cpu_again = official["cpu_seconds"]["speed"][:2]
    ours_cpu = statistics.median(now.cpu)
    print(f"port kitti_eval (strict + loose, rotated IoU on the CPU): first call {first:.1f} s "
          f"(with numba's compilation), second call {again:.1f} s ({cpu_first:.1f} s and "
          f"{cpu_again:.1f} s CPU); its whole process {wall:.1f} s")
    print(f"ratio port / refbench whole process: {first / ours:.1f}x (first call), "
          f"{again / ours:.1f}x (second call), {wall / ours:.1f}x (process against process); "
          f"CPU time {cpu_first / ours_cpu:.1f}x, {cpu_again / ours_cpu:.1f}x")
    ours_keyed = {f"speed/{k}/strict": v for k, v in metrics.items()}
    ours_keyed |= {f"speed/{k}/loose": v for k, v in values["loose"].items()}
    worst = max_diff("refbench vs the port", ours_keyed, official["scores"])
    return 0 if math.isfinite(worst) else 1


if __name__ == "__main__":
    sys.exit(main())
