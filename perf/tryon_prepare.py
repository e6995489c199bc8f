"""Peak memory of `prepare` for VITON-HD, in the number of pairs: it must stay flat.

Synthesizes a VITON-HD release (HR-VITON layout, every modality) at two sizes, upsamples
nothing (the synthesizer's 128 x 96 people, so the run fits the machine; a full 1024 x 768
row is ~64x larger, which scales the per-chunk constant, not the per-pair cost), prepares
each in a fresh subprocess with the agnostic derivations on, and reads that process's peak
resident set size (`ru_maxrss`). Prints the peak MB per size and the ratio of the largest
to the smallest: the chunked path keeps one chunk of rows in memory, so the ratio stays
near 1 while the pairs grow.

    .venv/bin/python perf/tryon_prepare.py                    # 200 and 1600 pairs
    .venv/bin/python perf/tryon_prepare.py --sizes 100 800
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from refbench.datasets.tryon import VitonHDBuilder
b = VitonHDBuilder()
started = time.time()
m = b.prepare(Path(sys.argv[1]), Path(sys.argv[2]), options={"derive": "true"})
rows = sum(sum(s.values()) for s in m["splits"].values())
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": rows, "seconds": time.time() - started}))
"""


def measure(pairs: int, scratch: Path) -> dict[str, float]:
    """Synthesize `pairs` pairs, prepare them in a fresh process; its peak RSS and rows."""
    from refbench.datasets.tryon import VitonHDBuilder

    root = VitonHDBuilder().synthesize(scratch / f"src-{pairs}", n=pairs, seed=0)
    shutil.rmtree(root / "test" / "image-parse-agnostic-v3.2")  # derive it
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(scratch / f"c-{pairs}")],
                          check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1600])
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tryon-prepare-"))
    try:
        results = {}
        for size in args.sizes:
            started = time.time()
            results[size] = measure(size, scratch)
            r = results[size]
            print(f"{size:>6} pairs: {r['rows']:>6} rows prepared, peak RSS {r['rss_mb']:8.1f} "
                  f"MB, prepare {r['seconds']:.1f} s (total {time.time() - started:.1f} s)",
                  flush=True)
        small, large = min(results), max(results)
        print(f"peak RSS ratio {large}/{small} pairs: "
              f"{results[large]['rss_mb'] / results[small]['rss_mb']:.2f} "
              f"(pairs ratio {large / small:.0f})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
