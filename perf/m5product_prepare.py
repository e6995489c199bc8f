"""Peak memory of `prepare` for M5Product, in the number of items: it must stay flat.

Writes a synthetic catalogue of N items in the official layout (info JSON and id lists;
text and table only, no region/video/audio features, so the 1M point fits on disk and in
minutes), prepares it in a fresh subprocess and reads that process's peak resident set
size (`ru_maxrss`). Prints peak MB per size and the ratio of the largest to the smallest.
The features go through the same chunked path (each chunk converted, saved, dropped), so
they add a per-chunk constant, not a per-item cost.

    .venv/bin/python perf/m5product_prepare.py                 # 10k, 100k, 1M items
    .venv/bin/python perf/m5product_prepare.py --sizes 10000 100000
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
import resource, sys, time
from pathlib import Path
from refbench.datasets.m5product.builder import M5ProductBuilder
b = M5ProductBuilder()
b.chunk_size = int(sys.argv[3])
start = time.time()
m = b.prepare(Path(sys.argv[1]), Path(sys.argv[2]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.time() - start,
      sum(m["splits"]["default"].values()))
"""
BASELINE = """
import resource
import datasets, pyarrow, numpy, lmdb
from refbench.datasets.m5product import builder
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def write_catalogue(root: Path, n: int) -> None:
    """Info JSON (streamed out, as `json.dump(indent=2)` lays it out) and id lists."""
    root.mkdir(parents=True)
    with open(root / "subset_v2_id_label.json", "w", encoding="utf-8") as out:
        out.write("{\n")
        for i in range(n):
            entry = {"title": f"品牌{i % 97} 颜色{i % 13} 类目{i % 50} 新款 包邮",
                     "pv": f"品牌#:#品牌{i % 97}#;#颜色#:#颜色{i % 13}#;#材质#:#棉",
                     "label": f"类目{i % 50}"}
            sep = ",\n" if i < n - 1 else "\n"
            out.write(f'  "{10**11 + i}": {json.dumps(entry, ensure_ascii=False)}{sep}')
        out.write("}")
    (root / "subset_v2_label_list.json").write_text(
        json.dumps([f"类目{i}" for i in range(50)], ensure_ascii=False), encoding="utf-8")

    def ids(name: str, start: int, stop: int) -> None:
        with open(root / name, "w", encoding="utf-8") as out:
            out.writelines(f"{10**11 + i}\n" for i in range(start, stop))

    tenth = max(1, n // 10)
    ids("query_c_ids.txt", 0, tenth)
    ids("gallery_c_ids.txt", tenth, 2 * tenth)
    ids("query_fg_ids.txt", 2 * tenth, 3 * tenth)
    ids("gallery_fg_ids.txt", 3 * tenth, 4 * tenth)
    ids("subset_train_ids.txt", 0, 7 * tenth)
    ids("subset_test_ids.txt", 7 * tenth, n)


def run(code: str, *args: str) -> list[float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, env=env,
                         capture_output=True, text=True).stdout.split()
    return [float(v) for v in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=2048,
                        help="items per resumable chunk (the same for every size)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="m5perf-"))
    try:
        (idle,) = run(BASELINE)
        print(f"imports alone: {idle:.0f} MB peak RSS")
        peaks = {}
        for n in args.sizes:
            root, cache = base / f"rel{n}", base / f"cache{n}"
            started = time.time()
            write_catalogue(root, n)
            written = time.time() - started
            peak, seconds, rows = run(CHILD, str(root), str(cache), str(args.chunk_size))
            peaks[n] = peak
            print(f"{n:>9,} items ({int(rows):,} rows over 7 splits): peak RSS {peak:7.1f} MB, "
                  f"prepare {seconds:6.1f} s (catalogue written in {written:.1f} s)",
                  flush=True)
            shutil.rmtree(root)
            shutil.rmtree(cache)
        small, large = min(peaks), max(peaks)
        print(f"ratio peak({large:,}) / peak({small:,}) = {peaks[large] / peaks[small]:.2f} "
              f"for {large / small:.0f}x the items")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
