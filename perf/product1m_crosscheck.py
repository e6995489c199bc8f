"""Cross-check refbench's Product1M metric against the official CAPTURE `evaluate_suit.py`.

The official script is run as it is, from the path given (`--official`, e.g. a checkout
of zhanxlin/Product1M: `CAPTURE/evaluate_suit.py`), in a subprocess with this Python
(it needs numpy only). Nothing of it is imported or copied. For each seed the script
writes a random ground-truth folder in the official layout (gallery, dev and test files)
and a `retrieval_id_list.txt` full of the cases the script treats in its own way:

- labels repeated within a query, queries with more labels than k = 10 (quota 0), a query
  label that is no gallery item's first label, ids of both query files and unknown ids,
  ranked ids that are not gallery items at various ranks (decimal on even seeds, so the
  reader's int64 keys are used, not decimal on odd ones), lists shorter than k and empty
  lists, tiny label groups (k' truncated by |pos|);

then compares, key by key, the official `metric_results.json` with
  (a) `refbench evaluate`'s path: `evaluate_file` on the product1m-dev benchmark with the
      folder as `--references` and `official_averaging` (the script's average over every
      line, test queries scored against their labels, unknown ids as 0);
  (b) the same file trimmed to exactly the dev queries, scored the default way (refused
      if incomplete, nothing extra) against the official script on that trimmed file;
  (c) `evaluate_rankings` on lines the reader would refuse (a repeated ranked id, an empty
      id, a blank line), parsed as the script parses them.

Every value must be equal (the metric adds the lines in file order, as the script does);
the largest absolute difference is printed per path. Run:

    .venv/bin/python perf/product1m_crosscheck.py --official \\
        /path/to/Product1M/CAPTURE/evaluate_suit.py [--seeds 30]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from refbench.benchmarks.scoring import evaluate_file
from refbench.evaluation.product1m import GalleryIndex, evaluate_rankings, official_results
from refbench.registry import get_spec

FILES = {"gallery": "product1m_gallery_ossurl_v2.txt", "dev": "product1m_dev_ossurl_v2.txt",
         "test": "product1m_test_ossurl_v2.txt"}


def item_line(item: str, labels: list[str]) -> str:
    return f"{item}#####标题 {item}#####https://img/{item}.jpg#####http://oss/{item}.jpg#####" + \
        "#;#".join(labels)


def make_case(rng: random.Random, folder: Path) -> dict:
    """A random ground truth in the official layout; returns its pieces."""
    labels = [f"品牌{i} 产品" for i in range(rng.randint(2, 12))]
    gallery = {}
    for i in range(rng.randint(5, 150)):
        first = rng.choice(labels[:-1])  # the last label is never a first label: absent
        gallery[f"9{i:05d}"] = [first] + rng.sample(labels, rng.randint(0, 2))
    queries = {"dev": {}, "test": {}}
    for split in queries:
        for i in range(rng.randint(3, 40)):
            n = rng.choice([1, 2, 2, 3, 3, 4, 5, 11, 12])
            pool = labels if rng.random() < 0.15 else labels[:-1]
            queries[split][f"{split[0]}{i:04d}"] = [rng.choice(pool) for _ in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in (("gallery", gallery), *queries.items()):
        text = "".join(item_line(k, v) + "\r\n" for k, v in items.items())
        (folder / FILES[name]).write_text(text, encoding="utf-8", newline="")
    return {"gallery": gallery, "queries": queries}


def ranked_list(rng: random.Random, case: dict, decimal: bool) -> list[str]:
    """Up to 100 distinct ids; the ids that are not gallery items are decimal (the keyed
    lookup) or not (the string lookup), as `decimal` says."""
    gallery = list(case["gallery"])
    n = rng.choice([0, 1, 3, 10, 37, 50, 64, 100, 100, 100])
    ids = rng.sample(gallery, min(n, len(gallery)))
    for _ in range(rng.choice([0, 0, 0, 1, 2])):  # ids that are not gallery items
        stray = f"7{rng.randint(0, 10**5):05d}" if decimal else f"x{rng.randint(0, 10**6)}"
        if stray not in ids:
            ids.insert(rng.randint(0, len(ids)), stray)
    return ids[:100]


def run_official(script: Path, gt: Path, lines: list[str], work: Path) -> dict:
    sub = work / "submission"
    sub.mkdir(parents=True, exist_ok=True)
    (sub / "retrieval_id_list.txt").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    out = work / "out"
    subprocess.run([sys.executable, str(script), "--output_metric_dir", str(out),
                    "--retrieval_result_dir", str(sub), "--GT_dir", str(gt)],
                   check=True, capture_output=True, text=True)
    return json.loads((out / "metric_results.json").read_text(encoding="utf-8"))


def max_diff(official: dict, ours: dict) -> float:
    return max(abs(value - ours[top][key]) for top, values in official.items()
               for key, value in values.items())


def check_seed(script: Path, seed: int, work: Path) -> tuple[list[float], dict[str, int]]:
    rng = random.Random(seed)
    gt = work / "gt"
    case = make_case(rng, gt)
    dev, test = case["queries"]["dev"], case["queries"]["test"]
    pool = list(dev) + list(test)[: rng.randint(0, len(test))] + ["u1", "u2"][: rng.randint(0, 2)]
    rng.shuffle(pool)
    lines = [",".join([q, *ranked_list(rng, case, seed % 2 == 0)]) for q in pool]
    # (a) the CLI's path under official averaging, on every line
    official = run_official(script, gt, lines, work / "a")
    spec = get_spec("product1m-dev")
    (work / "a" / "retrieval_id_list.txt").write_text("".join(x + "\n" for x in lines))
    result = evaluate_file(spec, work / "a" / "retrieval_id_list.txt", references=gt,
                           read_options={"official_averaging": True})
    diff_a = max_diff(official, official_results(result.metrics))
    # (b) exactly the dev queries, the benchmark's default policy
    dev_lines = [x for x in lines if x.split(",")[0] in dev]
    official_b = run_official(script, gt, dev_lines, work / "b")
    (work / "b" / "retrieval_id_list.txt").write_text("".join(x + "\n" for x in dev_lines))
    result_b = evaluate_file(spec, work / "b" / "retrieval_id_list.txt", references=gt)
    diff_b = max_diff(official_b, official_results(result_b.metrics))
    # (c) lines the reader refuses, through the plain functions
    raw = list(lines)
    raw.insert(rng.randint(0, len(raw)), "")  # a blank line: a query scoring 0
    if raw[0].count(",") >= 2:
        first = raw[0].split(",")
        raw[0] = ",".join(first + [first[1], ""])  # a repeated id and an empty id
    official_c = run_official(script, gt, raw, work / "c")
    merged = {**test, **dev}
    parsed = [line.strip().split(",") for line in raw]
    gallery = GalleryIndex(list(case["gallery"]), [v[0] for v in case["gallery"].values()])
    values = evaluate_rankings([p[1:] for p in parsed],
                               [tuple(merged[p[0]]) if p[0] in merged else None for p in parsed],
                               gallery)
    diff_c = max_diff(official_c, official_results(values))
    return [diff_a, diff_b, diff_c], result.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True,
                        help="path of CAPTURE/evaluate_suit.py")
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    if not args.official.is_file():
        parser.error(f"not a file: {args.official}")
    worst = [0.0, 0.0, 0.0]
    covered: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="p1m-crosscheck-") as tmp:
        for seed in range(args.seeds):
            diffs, counts = check_seed(args.official, seed, Path(tmp) / f"s{seed}")
            worst = [max(w, d) for w, d in zip(worst, diffs)]
            for key, value in counts.items():
                covered[key] = covered.get(key, 0) + value
    print(f"{args.seeds} random cases, official evaluate_suit.py vs refbench "
          f"(max |difference| over mAP/Prec/mAR at 10/50/100):")
    for name, value in zip(("(a) evaluate_file, official averaging, all lines",
                            "(b) evaluate_file, default policy, dev lines",
                            "(c) evaluate_rankings, lines the reader refuses"), worst):
        print(f"  {name:50s} {value:.3g}")
    quirks = ("queries/scored", "queries/unknown", "queries/label_absent",
              "ranked/not_in_gallery", "queries/mAR_zeroed@10", "queries/mAR_zeroed@100")
    print("  quirks exercised (path a, summed): " +
          ", ".join(f"{key} {covered.get(key, 0)}" for key in quirks))
    if any(worst):
        sys.exit("refbench and the official script disagree")
    print("all equal")


if __name__ == "__main__":
    main()
