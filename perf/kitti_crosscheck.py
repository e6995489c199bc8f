"""Cross-check refbench's numpy KITTI AP against the official Python port (mmdet3d 1.4.0).

refbench's `kitti_ap` metric (`refbench.evaluation.kitti.kitti_eval`) re-implements the
`kitti_object_eval_python` port of second.pytorch / OpenPCDet, which mmdet3d ships as
`mmdet3d/evaluation/functional/kitti_utils/{eval.py,rotate_iou.py}`. The port needs numba
(and `numba.cuda` for the rotated IoU), which refbench does not depend on, so this script
has two halves that talk through files in a work folder:

  (a) `--stage refbench` (refbench's venv): generate seeded random scenes in label_2 form
      (ground truth Car / Pedestrian / Cyclist / Van / Person_sitting / DontCare with 2D
      boxes projected from the 3D boxes, so heights vary with distance, and random
      occlusion / truncation; detections = jittered ground truth, some class confusions
      (Van -> Car, Person_sitting -> Pedestrian), misses, false positives (some inside
      DontCare regions, some too small), scores rounded to 3 decimals so ties occur), and
      the real label_2 frames given by `--real` (if any) against perturbed copies. Both
      sets are written as label_2 folders with refbench's writer (`<set>/gt`, `<set>/dt`),
      read back with refbench's reader, scored with `kitti_eval` (strict and loose
      overlaps) and the numbers written to `refbench.json`;
  (b) `--stage official --kitti-port DIR` (a venv with numba + numpy): parse the same
      label_2 folders as mmdet3d's `get_label_anno` does (dimensions reordered h, w, l ->
      l, h, w), load `DIR/eval.py` and `DIR/rotate_iou.py` by path under a fake package (no
      mmcv / mmengine needed), run the port's `kitti_eval(gt_annos, dt_annos, classes,
      eval_types=['bbox', 'bev', '3d'])` with numba's CUDA simulator (or, with
      `--rotate-iou cpu`, the port's rotated-IoU device functions compiled for the CPU:
      the same results, fast enough for a val-sized set; perf/kitti_speed.py uses it),
      and write `official.json`. The port's result dict holds R11 and R40 bbox / BEV / 3D
      AP for the strict and loose overlaps and the class mean (strict only); AOS appears
      only in its printed string (2 decimals), so the script also records the
      full-precision arrays that the port's `do_eval` returns to `kitti_eval`.

The port's `clean_data` knows only Car, Pedestrian and Cyclist (`CLASS_NAMES`), so only
those are compared; Van / Person_sitting still matter as ignored neighbours.

The default stage `all` (refbench's venv) runs (a), then (b) in a subprocess with the
other venv's Python, then prints both side by side with the absolute difference per key
and the maximum per metric family (differences above 1e-3 percent are flagged). Setup:

    python3 -m venv .venv-kitti && .venv-kitti/bin/pip install numba numpy
    .venv-kitti/bin/pip download mmdet3d==1.4.0 --no-deps -d .mmdet3d-whl
    unzip .mmdet3d-whl/mmdet3d-1.4.0-py3-none-any.whl -d .mmdet3d-whl/x
    .venv/bin/python perf/kitti_crosscheck.py --kitti-python .venv-kitti/bin/python \\
        --kitti-port .mmdet3d-whl/x/mmdet3d/evaluation/functional/kitti_utils \\
        --real <KITTI root>/training/label_2

The official half imports nothing from refbench.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("Car", "Pedestrian", "Cyclist")
#: class -> (mean h, w, l in metres, relative frequency)
GT_CLASSES = {"Car": ((1.53, 1.63, 3.88), 0.45), "Pedestrian": ((1.76, 0.66, 0.84), 0.2),
              "Cyclist": ((1.74, 0.60, 1.76), 0.12), "Van": ((2.2, 1.9, 5.1), 0.12),
              "Person_sitting": ((1.27, 0.59, 0.80), 0.05), "Truck": ((3.2, 2.6, 10.0), 0.06)}
FOCAL, CX, CY, WIDTH, HEIGHT = 721.5, 609.6, 172.9, 1242.0, 375.0
DEFAULT_KITTI_PYTHON = ".venv-kitti/bin/python"
FLAG = 1e-3
PORT_KEY = re.compile(r"KITTI/(\w+?)_(2D|BEV|3D)_AP(11|40)_(easy|moderate|hard)"
                      r"(?:_(strict|loose))?")
#: the scene sets the refbench half writes (the official half scores those present)
SETS = ("synthetic", "real", "gtcopy")
LABEL_KEYS = ("name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location",
              "rotation_y")


# -- scene generation (plain numpy) ------------------------------------------------------
def project_bbox(loc: np.ndarray, dims: np.ndarray, ry: float) -> np.ndarray:
    """2D box (left, top, right, bottom, clipped to the image) of a camera-frame 3D box
    (bottom centre `loc`, dims h, w, l) through a KITTI-like pinhole camera."""
    h, w, l = dims
    xs = np.array([l, l, -l, -l, l, l, -l, -l]) / 2
    zs = np.array([w, -w, -w, w, w, -w, -w, w]) / 2
    ys = np.array([0, 0, 0, 0, -h, -h, -h, -h])
    c, s = math.cos(ry), math.sin(ry)
    x = c * xs + s * zs + loc[0]
    z = -s * xs + c * zs + loc[2]
    y = ys + loc[1]
    z = np.maximum(z, 0.5)
    u, v = FOCAL * x / z + CX, FOCAL * y / z + CY
    return np.array([np.clip(u.min(), 0, WIDTH), np.clip(v.min(), 0, HEIGHT),
                     np.clip(u.max(), 0, WIDTH), np.clip(v.max(), 0, HEIGHT)])


def random_gt(rng: np.random.Generator) -> list[dict[str, Any]]:
    """One frame of ground-truth objects (dicts of label_2 fields)."""
    names = list(GT_CLASSES)
    p = np.array([GT_CLASSES[n][1] for n in names])
    out = []
    for _ in range(int(rng.integers(2, 16))):
        name = str(rng.choice(names, p=p / p.sum()))
        dims = np.array(GT_CLASSES[name][0]) * rng.uniform(0.85, 1.15, 3)
        z = float(4.0 + 60.0 * rng.random() ** 1.5)
        loc = np.array([rng.uniform(-0.45, 0.45) * z, rng.uniform(1.4, 2.0), z])
        ry = float(rng.uniform(-np.pi, np.pi))
        out.append({"name": name,
                    "truncated": float(rng.choice([0.0, 0.0, 0.0, 0.1, 0.2, 0.4, 0.6])),
                    "occluded": int(rng.choice([0, 0, 0, 1, 2, 3])),
                    "alpha": ry - math.atan2(loc[0], loc[2]),
                    "bbox": project_bbox(loc, dims, ry), "dimensions": dims, "location": loc,
                    "rotation_y": ry})
    for _ in range(int(rng.integers(0, 4))):  # DontCare regions
        x0, y0 = rng.uniform(0, WIDTH - 120), rng.uniform(120, 220)
        out.append(dontcare([x0, y0, x0 + rng.uniform(15, 120), y0 + rng.uniform(8, 40)]))
    return out


def dontcare(bbox: list[float]) -> dict[str, Any]:
    return {"name": "DontCare", "truncated": -1.0, "occluded": -1, "alpha": -10.0,
            "bbox": np.array(bbox, dtype=float), "dimensions": np.array([-1.0, -1.0, -1.0]),
            "location": np.array([-1000.0, -1000.0, -1000.0]), "rotation_y": -10.0}


def perturb(gt: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Detections of one frame: jittered ground truth (15 % missed, some relabelled),
    false positives (random, inside DontCare regions, tiny), 3-decimal scores."""
    out = []
    for obj in gt:
        if obj["name"] == "DontCare" or rng.random() < 0.15:
            continue
        name = obj["name"]
        if name in ("Van", "Person_sitting", "Truck") and rng.random() < 0.5:
            name = {"Van": "Car", "Person_sitting": "Pedestrian", "Truck": "Car"}[name]
        q = rng.uniform(0.2, 2.0)  # per-detection quality: overlaps spread around thresholds
        dims = obj["dimensions"] * rng.normal(1.0, 0.03 * q, 3).clip(0.7, 1.3)
        loc = obj["location"] + rng.normal(0, 0.025 * q, 3) * np.array([1, 1, 2]) * dims[2]
        ry = obj["rotation_y"] + rng.normal(0, 0.1 * q) + (np.pi if rng.random() < 0.1 else 0.0)
        box = obj["bbox"] + rng.normal(0, 0.03 * q, 4) * max(obj["bbox"][3] - obj["bbox"][1], 5)
        out.append({"name": name, "truncated": 0.0, "occluded": 0,
                    "alpha": ry - math.atan2(loc[0], loc[2]), "bbox": box, "dimensions": dims,
                    "location": loc, "rotation_y": ry})
    dcs = [o for o in gt if o["name"] == "DontCare"]
    for _ in range(int(rng.integers(0, 5))):
        name = str(rng.choice(CLASSES))
        dims = np.array(GT_CLASSES[name][0]) * rng.uniform(0.8, 1.2, 3)
        z = float(rng.uniform(4.0, 70.0))
        loc = np.array([rng.uniform(-0.45, 0.45) * z, rng.uniform(1.4, 2.0), z])
        ry = float(rng.uniform(-np.pi, np.pi))
        box = project_bbox(loc, dims, ry)
        kind = rng.random()
        if dcs and kind < 0.3:  # inside a DontCare region
            dc = dcs[int(rng.integers(len(dcs)))]["bbox"]
            w, h = dc[2] - dc[0], dc[3] - dc[1]
            box = np.array([dc[0] + 0.05 * w, dc[1] + 0.05 * h, dc[2] - 0.1 * w,
                            dc[3] - 0.05 * h])
        elif kind < 0.45:  # tiny: ignored by height
            box = np.array([box[0], box[1], box[0] + 10, box[1] + rng.uniform(10, 30)])
        out.append({"name": name, "truncated": 0.0, "occluded": 0,
                    "alpha": ry - math.atan2(loc[0], loc[2]), "bbox": box, "dimensions": dims,
                    "location": loc, "rotation_y": ry})
    for obj in out:
        obj["score"] = float(np.round(rng.uniform(0.01, 1.0), 3))
    return out


def as_frame(objs: list[dict[str, Any]], with_score: bool) -> dict[str, Any]:
    """List of object dicts -> mapping of label_2 field arrays (refbench's frame form)."""
    keys = LABEL_KEYS + (("score",) if with_score else ())
    frame: dict[str, Any] = {k: [o[k] for o in objs] for k in keys}
    for k, width in (("bbox", 4), ("dimensions", 3), ("location", 3)):
        frame[k] = np.array(frame[k], dtype=float).reshape(-1, width)
    return frame


# -- refbench half -----------------------------------------------------------------------
def refbench_half(work: Path, frames: int, seed: int, real: Path | None,
                  gt_copy: bool = False) -> dict[str, float]:
    """Write the scene sets as label_2 folders, read them back, score both overlaps."""
    from refbench.benchmarks.formats.kitti import read_label_dir, write_label_dir
    from refbench.evaluation.kitti import kitti_eval

    rng = np.random.default_rng(seed)
    sets: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    gts = {f"{i:06d}": random_gt(rng) for i in range(frames)}
    for i in range(7, frames, 23):  # edge case: a frame with only DontCare ground truth
        gts[f"{i:06d}"] = [o for o in gts[f"{i:06d}"] if o["name"] == "DontCare"] or [
            dontcare([100.0, 150.0, 160.0, 180.0])]
    dts = {k: perturb(v, rng) for k, v in gts.items()}
    for i in range(5, frames, 17):  # edge case: a frame without detections (empty file)
        dts[f"{i:06d}"] = []
    sets["synthetic"] = ({k: as_frame(v, False) for k, v in gts.items()},
                         {k: as_frame(v, True) for k, v in dts.items()})
    if gt_copy:  # ground truth as detections (score 1): exposes the port's rotated-IoU bug
        sets["gtcopy"] = (sets["synthetic"][0],
                          {k: dict(v, score=np.ones(len(v["name"])))
                           for k, v in sets["synthetic"][0].items()})
    if real is not None:
        ref = read_label_dir(real, with_score=False)
        real_gts = {}
        for fid, objs in ref.items():
            d = objs.as_dict()
            real_gts[fid] = [{k: d[k][i] for k in LABEL_KEYS} for i in range(objs.count)]
        real_dts = {}
        for copy in range(4):  # four perturbed copies of each frame, as separate frames
            for fid, objs in real_gts.items():
                real_dts[f"{fid}_{copy}"] = as_frame(perturb(objs, rng), True)
        sets["real"] = ({f"{fid}_{c}": ref[fid] for c in range(4) for fid in real_gts},
                        real_dts)
    result: dict[str, float] = {}
    for name, (gt, dt) in sets.items():
        write_label_dir(work / name / "gt", gt)
        write_label_dir(work / name / "dt", dt)
        gt_back = read_label_dir(work / name / "gt", with_score=True)
        dt_back = read_label_dir(work / name / "dt", with_score=True)
        ids = sorted(gt_back)
        gt_frames = [{k: v for k, v in gt_back[i].as_dict().items() if k != "score"}
                     for i in ids]
        dt_frames = [dt_back[i] for i in ids]
        n_gt = sum(len(f["name"]) for f in gt_frames)
        n_dt = sum(f.count for f in dt_frames)
        print(f"{name}: {len(ids)} frames, {n_gt} ground truth / {n_dt} detections")
        for overlap in ("strict", "loose"):
            scores = kitti_eval(gt_frames, dt_frames, CLASSES, overlap)
            for key, value in scores.items():
                result[f"{name}/{key}/{overlap}"] = value
    return result


# -- official half (numba venv; imports nothing from refbench) ----------------------------
def load_port(port: Path, rotate_iou: str = "cudasim") -> types.ModuleType:
    """The port's eval module, loaded by path as `kitti_port.eval` (with `rotate_iou`
    importable as `kitti_port.rotate_iou` for its relative imports).

    `rotate_iou="cudasim"` runs the port's CUDA kernel in numba's CUDA simulator (exact
    but pure Python: hours for a val-sized set); `"cpu"` compiles the port's own device
    functions (`devRotateIoUEval` and what it calls) with `numba.njit` and calls them for
    every box pair from a parallel CPU loop in place of the kernel launch (see
    `cpu_rotate_iou`), so a machine without a GPU can run the port at full size."""
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    package = types.ModuleType("kitti_port")
    package.__path__ = [str(port)]  # type: ignore[attr-defined]
    sys.modules["kitti_port"] = package
    modules = {}
    for name in ("rotate_iou", "eval"):
        spec = importlib.util.spec_from_file_location(f"kitti_port.{name}", port / f"{name}.py")
        assert spec is not None and spec.loader is not None, port / f"{name}.py"
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"kitti_port.{name}"] = module
        if name == "rotate_iou" and rotate_iou == "cpu":
            source = (port / "rotate_iou.py").read_text()
            for old, new in CPU_DEVICE_PATCH:
                assert old in source, f"rotate_iou.py has no {old!r}: another port version?"
                source = source.replace(old, new)
            exec(compile(source, str(port / "rotate_iou.py"), "exec"), module.__dict__)
            module.rotate_iou_gpu_eval = cpu_rotate_iou(module.devRotateIoUEval)
        else:
            spec.loader.exec_module(module)
        modules[name] = module
    return modules["eval"]


#: text replacements that turn the port's CUDA device functions into CPU numba functions
#: (same code and float32 local arrays; only the decorator, with IEEE division as on a
#: GPU, and the array constructor change)
CPU_DEVICE_PATCH = (("@cuda.jit(device=True, inline=True)", '@numba.njit(error_model="numpy")'),
                    ("cuda.local.array(", "np.zeros("),
                    ("dtype=numba.float32)", "dtype=np.float32)"))


def cpu_rotate_iou(device_iou: Any) -> Any:
    """A drop-in for the port's `rotate_iou_gpu_eval` that runs its kernel's body on the CPU:
    float32 copies of the boxes, `iou[n, k] = devRotateIoUEval(query[k], boxes[n])` for
    every pair (the kernel's argument order), float32 result."""
    import numba

    @numba.njit(parallel=True, error_model="numpy")
    def kernel(boxes: np.ndarray, query: np.ndarray, criterion: int,
               iou: np.ndarray) -> None:  # pragma: no cover - numba
        for n in numba.prange(boxes.shape[0]):
            for k in range(query.shape[0]):
                iou[n, k] = device_iou(query[k], boxes[n], criterion)

    def rotate_iou_gpu_eval(boxes: np.ndarray, query_boxes: np.ndarray, criterion: int = -1,
                            device_id: int = 0) -> np.ndarray:
        boxes = np.ascontiguousarray(boxes, dtype=np.float32)
        query_boxes = np.ascontiguousarray(query_boxes, dtype=np.float32)
        iou = np.zeros((boxes.shape[0], query_boxes.shape[0]), dtype=np.float32)
        if iou.size:
            kernel(boxes, query_boxes, criterion, iou)
        return iou.astype(boxes.dtype)

    return rotate_iou_gpu_eval


def get_label_anno(path: Path) -> dict[str, np.ndarray]:
    """A label file as mmdet3d's `kitti_data_utils.get_label_anno` reads it (dimensions
    reordered to l, h, w; the 16th column is the score)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    anno = {"name": np.array([r[0] for r in rows]),
            "truncated": np.array([float(r[1]) for r in rows]),
            "occluded": np.array([int(float(r[2])) for r in rows]),
            "alpha": np.array([float(r[3]) for r in rows]),
            "bbox": np.array([[float(x) for x in r[4:8]] for r in rows]).reshape(-1, 4),
            "dimensions": np.array([[float(x) for x in r[8:11]] for r in rows]
                                   ).reshape(-1, 3)[:, [2, 0, 1]],
            "location": np.array([[float(x) for x in r[11:14]] for r in rows]).reshape(-1, 3),
            "rotation_y": np.array([float(r[14]) for r in rows]).reshape(-1)}
    anno["score"] = (np.array([float(r[15]) for r in rows]) if rows and len(rows[0]) == 16
                     else np.zeros(len(rows)))
    return anno


def official_half(work: Path, port: Path, sets: tuple[str, ...] = SETS, repeat: int = 1,
                  rotate_iou: str = "cudasim") -> dict[str, Any]:
    """Run the port's `kitti_eval` on every scene set of the work folder (`repeat` times
    each: the first call includes numba's compilation; `seconds` holds the first call's
    time per set, `seconds_again` the later calls', `cpu_seconds` every call's CPU time,
    all threads)."""
    module = load_port(port, rotate_iou)
    captured: list[tuple[Any, ...]] = []
    do_eval = module.do_eval

    def recording_do_eval(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
        out = do_eval(*args, **kwargs)
        captured.append(out)
        return out

    module.do_eval = recording_do_eval
    result: dict[str, float] = {}
    timings: dict[str, float] = {}
    again: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    texts: dict[str, str] = {}
    for name in sets:
        if not (work / name / "gt").is_dir():
            continue
        ids = sorted(p.stem for p in (work / name / "gt").glob("*.txt"))
        gt_annos = [get_label_anno(work / name / "gt" / f"{i}.txt") for i in ids]
        dt_annos = [get_label_anno(work / name / "dt" / f"{i}.txt") for i in ids]
        for call in range(max(repeat, 1)):
            captured.clear()
            start, start_cpu = time.perf_counter(), time.process_time()
            text, ret = module.kitti_eval(gt_annos, dt_annos, list(CLASSES),
                                          eval_types=["bbox", "bev", "3d"])
            seconds = time.perf_counter() - start
            cpu.setdefault(name, []).append(time.process_time() - start_cpu)
            if call == 0:
                timings[name] = seconds
            else:
                again.setdefault(name, []).append(seconds)
        texts[name] = text
        for key, value in ret.items():  # KITTI/Car_3D_AP40_moderate_strict, KITTI/Overall_...
            match = PORT_KEY.fullmatch(key)
            assert match is not None, key
            cls, kind, r, diff, overlap = match.groups()
            cls = "mean" if cls == "Overall" else cls
            result[f"{name}/{cls}/{_kind(kind)}/{diff}/R{r}/{overlap or 'strict'}"] = float(value)
        (_, _, _, aos11, _, _, _, aos40) = captured[-1]
        if aos11 is not None:  # [class, difficulty, overlap set]
            for j, cls in enumerate(CLASSES):
                for d, diff in enumerate(("easy", "moderate", "hard")):
                    for o, overlap in enumerate(("strict", "loose")):
                        result[f"{name}/{cls}/aos/{diff}/R11/{overlap}"] = float(aos11[j, d, o])
                        result[f"{name}/{cls}/aos/{diff}/R40/{overlap}"] = float(aos40[j, d, o])
    return {"scores": result, "seconds": timings, "seconds_again": again, "cpu_seconds": cpu,
            "text": texts, "rotate_iou": rotate_iou}


def _kind(port_kind: str) -> str:
    return {"2D": "bbox", "BEV": "bev", "3D": "3d"}[port_kind]


# -- driver -------------------------------------------------------------------------------
def compare(ref: dict[str, float], off: dict[str, float]) -> dict[str, float]:
    """Print every key the port has next to refbench's; return max |diff| per family."""
    print(f"{'key':52s} {'refbench':>10s} {'official':>10s} {'|diff|':>10s}")
    families: dict[str, float] = {}
    for key in sorted(off):
        r, o = ref.get(key, math.nan), off[key]
        d = abs(r - o)
        print(f"{key:52s} {r:10.4f} {o:10.4f} {d:10.2e}" + ("   <--" if not d <= FLAG else ""))
        scene, _, kind, _, interp, overlap = key.split("/")
        fam = f"{scene}/{kind}/{interp}/{overlap}"
        families[fam] = max(families.get(fam, 0.0), d if not math.isnan(d) else math.inf)
    print(f"\nmax |diff| per scene set / metric / interpolation / overlap set "
          f"({len(off)} keys compared):")
    for fam in sorted(families):
        flag = "   <-- above 1e-3" if families[fam] > FLAG else ""
        print(f"  {fam:32s} {families[fam]:.3e}{flag}")
    print(f"overall max |diff|: {max(families.values()):.3e}")
    return families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["all", "refbench", "official", "compare"],
                        default="all", help="which half to run (default: all three steps)")
    parser.add_argument("--workdir", type=Path, help="folder for the label_2 scenes and "
                        "*.json (default: a new temp folder)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=Path, default=os.environ.get("KITTI_LABEL_2"),
                        help="a label_2 folder of real frames to add (default $KITTI_LABEL_2)")
    parser.add_argument("--gt-copy", action="store_true", help="also score the synthetic "
                        "ground truth as its own detections; the port's float32 rotated IoU "
                        "(rotate_iou.py) mis-measures identical rotated boxes (IoU 0 or 1/3 "
                        "instead of 1), so BEV / 3D keys of this set are expected to differ")
    parser.add_argument("--kitti-python", default=os.environ.get("KITTI_PYTHON",
                        DEFAULT_KITTI_PYTHON), help="Python of the venv with numba "
                        "(default %(default)s or $KITTI_PYTHON)")
    parser.add_argument("--kitti-port", type=Path, default=os.environ.get("KITTI_PORT"),
                        help="folder holding the port's eval.py and rotate_iou.py "
                        "(mmdet3d/evaluation/functional/kitti_utils; default $KITTI_PORT)")
    parser.add_argument("--rotate-iou", choices=["cudasim", "cpu"], default="cudasim",
                        help="how the port's rotated IoU runs: its CUDA kernel in numba's "
                        "simulator (default) or its device functions compiled for the CPU "
                        "(see load_port)")
    parser.add_argument("--sets", default=",".join(SETS), help="official stage: the scene "
                        "sets of the work folder to score (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="official stage: calls of the "
                        "port's kitti_eval per set (the first includes numba's compilation)")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kitti_crosscheck_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "official") and (args.kitti_port is None or not
                                               (args.kitti_port / "eval.py").is_file()):
        print("--kitti-port must name the folder with the port's eval.py and rotate_iou.py "
              "(see the module doc)", file=sys.stderr)
        return 2

    if args.stage == "official":
        out = official_half(work, args.kitti_port.resolve(), tuple(args.sets.split(",")),
                            args.repeat, args.rotate_iou)
        (work / "official.json").write_text(json.dumps(out, indent=1))
        for name, seconds in out["seconds"].items():
            later = "".join(f", then {s:.1f} s" for s in out["seconds_again"].get(name, []))
            print(f"official kitti_eval on {name}: {seconds:.1f} s{later} "
                  f"(rotated IoU: {args.rotate_iou})")
        return 0
    if args.stage in ("all", "refbench"):
        start = time.perf_counter()
        ref = refbench_half(work, args.frames, args.seed, args.real, args.gt_copy)
        (work / "refbench.json").write_text(json.dumps(ref, indent=1))
        print(f"refbench half: {time.perf_counter() - start:.1f} s; work folder {work}")
    if args.stage == "all":
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        subprocess.run([args.kitti_python, __file__, "--stage", "official", "--workdir",
                        str(work), "--kitti-port", str(args.kitti_port.resolve()),
                        "--rotate-iou", args.rotate_iou], check=True, env=env)
    if args.stage in ("all", "compare"):
        ref = json.loads((work / "refbench.json").read_text())
        off = json.loads((work / "official.json").read_text())
        compare(ref, off["scores"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
