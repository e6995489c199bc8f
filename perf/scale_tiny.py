"""Does the tiny SCALE learn? Trained vs untrained vs random ranking on synthetic M5Product.

For each seed: a synthetic release of `--items` items (`datasets/m5product/synth.py`,
synthesizer seed = the seed) is prepared, `scale_tiny_m5product` is trained on it through
the common runner (trainer seed = the seed; the final weights are scored: the recipe
evaluates only at its last step, so no checkpoint is picked on the scored queries), and
the coarse queries (`m5product-coarse-retrieval`) are scored for

* trained: the run's result.json;
* untrained: the same network before any step (same seed, same initialisation);
* random: 10 gallery ids per query drawn with a fixed seed.

With `--minilm` the releases are written in English (`language="en"`) and two runs are
trained per seed: the text tower from scratch (a WordPiece vocabulary built from the
training text, as the recipe) and from all-MiniLM-L6-v2 (`model.text_init=minilm`, the
`models` extra); both are printed with their untrained networks.

Prints one line per seed and run, then the mean and minimum over seeds of mAP@1 / mAP@10
(percent) and training seconds (training + the final scoring, as result.json's wall
time). One intra-op thread (`--threads`), as the smoke tests: tiny models on a shared
2-core box run faster on one.

    .venv/bin/python perf/scale_tiny.py                        # seeds 0 1 2, 400 items
    .venv/bin/python perf/scale_tiny.py --seeds 0 --set trainer.max_steps=300
    .venv/bin/python perf/scale_tiny.py --minilm --seeds 0 1
    .venv/bin/python perf/scale_tiny.py --nuisance 0           # the release without setups
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from refbench import runner  # noqa: E402
from refbench.benchmarks.scoring import evaluate_file  # noqa: E402
from refbench.config import build_run_config  # noqa: E402
from refbench.datasets.base import get_builder, load_prepared  # noqa: E402
from refbench.datasets.m5product.synth import NUISANCE, synthesize  # noqa: E402
from refbench.registry import BASELINES, get_spec  # noqa: E402

RECIPE = "scale_tiny_m5product"
BENCHMARK = "m5product-coarse-retrieval"
KEYS = ("mAP@1", "mAP@10")


def release(base: Path, items: int, seed: int, nuisance: float, language: str) -> Path:
    """Synthesize and prepare one release; returns its cache folder."""
    root, cache = base / f"{language}-{seed}" / "root", base / f"{language}-{seed}" / "cache"
    synthesize(root, n=items, seed=seed, nuisance=nuisance, language=language)
    get_builder("m5product").prepare(root, cache)
    return cache


def score(spec: Any, predictions: dict[Any, Any], folder: Path, cache: Path) -> dict[str, float]:
    path = runner.write_predictions(spec, predictions, folder / spec.submission.filename)
    metrics = evaluate_file(spec, path, cache_dir=str(cache)).metrics
    return {k: float(metrics[k]) for k in KEYS}


def random_ranking(load: Callable[[str], Any], split: str, gallery_split: str) -> dict[str, list[str]]:
    """10 gallery ids per query drawn with a fixed seed, never the query itself."""
    gallery = list(load(gallery_split)["id"])
    rng = random.Random(0)
    return {q: [g for g in rng.sample(gallery, 11) if g != q][:10] for q in load(split)["id"]}


def run(base: Path, cache: Path, seed: int, name: str, overrides: list[str]) -> dict[str, Any]:
    """Train one run and score its untrained twin; returns both and the seconds."""
    spec = get_spec(BENCHMARK)
    config = build_run_config("scale", BENCHMARK, RECIPE, [
        *overrides, f"trainer.seed={seed}", "trainer.progress=false", f"name={name}",
        f"output_dir={base / 'runs'}", f"data.cache_dir={cache}"])

    def load(split: str) -> Any:
        return load_prepared("m5product", split=split, cache_dir=str(cache))

    summary = runner.train(config)
    assert summary.result is not None
    trained = {k: float(summary.result.metrics[k]) for k in KEYS}
    torch.manual_seed(seed)  # the runner seeds right before it builds the model
    fresh = BASELINES.get("scale").create(config.model, spec, load("train"),
                                          base / "untrained" / name)
    fresh.bind_splits(load)
    untrained = score(spec, runner.predict_rows(fresh, load(spec.split), 64),
                      base / "untrained" / name, cache)
    return {"trained": trained, "untrained": untrained, "seconds": summary.wall_time_s,
            "steps": summary.steps, "params": summary.result.model.params}


def line(label: str, values: dict[str, float]) -> str:
    return f"{label} {values['mAP@1']:5.1f} / {values['mAP@10']:5.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nuisance", type=float, default=NUISANCE)
    parser.add_argument("--minilm", action="store_true",
                        help="English releases; scratch vs MiniLM-initialised text tower")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a recipe override k=v (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = {"scratch": []}
    if args.minilm:
        variants["minilm"] = ["model.text_init=minilm"]
    language = "en" if args.minilm else "zh"
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"tiny SCALE on synthetic M5Product ({args.items} items, {language} titles, nuisance "
          f"{args.nuisance}), coarse queries, mAP@1 / mAP@10 in percent; {os.cpu_count()} "
          f"CPUs, load average {load_avg:.1f} at start, {args.threads} thread(s)")
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    rand: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        base = Path(tmp)
        for seed in args.seeds:
            started = time.time()
            cache = release(base, args.items, seed, args.nuisance, language)
            made = time.time() - started
            spec = get_spec(BENCHMARK)

            def load(split: str) -> Any:
                return load_prepared("m5product", split=split, cache_dir=str(cache))

            rand.append(score(spec, random_ranking(load, spec.split, "coarse_gallery"),
                              base / f"random-{seed}", cache))
            for variant, overrides in variants.items():
                out = run(base, cache, seed, f"{variant}-{seed}", overrides + args.overrides)
                results[variant].append(out)
                print(f"seed {seed} {variant:7s}: {line('trained', out['trained'])} | "
                      f"{line('untrained', out['untrained'])} | {line('random', rand[-1])} | "
                      f"{out['steps']} steps, {out['params']:,} params, {out['seconds']:.0f}s "
                      f"(data {made:.0f}s)", flush=True)
    print("over seeds (mean, min):")
    for variant, outs in results.items():
        for what in ("trained", "untrained"):
            cells = [f"{k} {statistics.mean(o[what][k] for o in outs):5.1f} "
                     f"(min {min(o[what][k] for o in outs):5.1f})" for k in KEYS]
            print(f"  {variant:7s} {what:9s}: {', '.join(cells)}")
        gaps = [min(o["trained"][k] - o["untrained"][k] for o in outs) for k in KEYS]
        print(f"  {variant:7s} trained - untrained, smallest over seeds: mAP@1 {gaps[0]:+.1f}, "
              f"mAP@10 {gaps[1]:+.1f}; seconds {statistics.mean(o['seconds'] for o in outs):.0f} "
              f"(max {max(o['seconds'] for o in outs):.0f})")
    cells = [f"{k} {statistics.mean(r[k] for r in rand):5.1f}" for k in KEYS]
    print(f"  random ranking: {', '.join(cells)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
