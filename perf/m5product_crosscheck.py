"""Cross-check refbench's M5Product retrieval metric against the official SCALE scripts.

The official scripts are run as they are, from the folder given (`--official`: a folder
holding SCALE_code's `retrieval_unit_id_list_v2.py` and `evaluate_unit_v2.py`, e.g. a
checkout of Xiaodongsuper/SCALE_code), in subprocesses with this Python (they need numpy
and tqdm). Nothing of them is imported or copied. For each seed the check writes a random
case in the official layout: per-modality [CLS] features `{t,p}_feature_np.npy` plus the
summed `tp_feature_np.npy` and `id.npy` for a query and a gallery folder, and the GT JSON
`{id: {"label": ...}}`. Cases hold what the scripts treat in their own way: queries that
are gallery items (their own id is dropped from the ranking) and queries that are not,
labels with fewer than 10 gallery items (k' cut by |pos|), labels absent from the gallery,
tied scores (duplicated gallery vectors, ordered by gallery position), and lists cut to 9
ids by the dropped query id.

Compared, per seed:
  (a) ranking: the official `*_feature_retrieval_id_list.txt` against `rank_embeddings`
      on the same `.npy` files, line by line (ids and order);
  (b) scoring from embeddings: `evaluate_unit_v2.py`'s `metric_results.json` against
      `m5product_retrieval` fed `QueryEmbedding`s (it ranks them itself), for `t` and
      `tp` (refbench sums `t` + `p` itself, the script reads `tp_feature_np.npy`);
  (c) scoring a ranked file: the official ranked file read by the `m5product_ranked`
      reader and scored by `evaluate_rankings`, and a file with a shuffled line order, a
      repeated ranked id and a list of 3 ids (the reader would refuse the repeat; parsed
      here as the script parses lines).

In every case the GT JSON holds the gallery and the queries, and a query that is no
gallery item has a label no other query has, so the script's ground truth (the whole JSON)
equals refbench's (the gallery plus the query itself). Every value must be equal; the
largest absolute difference is printed per path. Run:

    .venv/bin/python perf/m5product_crosscheck.py --official /path/to/SCALE_code [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from refbench.benchmarks.formats.m5product.ranked import read_ranked_file
from refbench.evaluation.m5product.retrieval import (
    GalleryLabels,
    M5ProductRetrieval,
    M5Query,
    QueryEmbedding,
    SubmittedGallery,
    evaluate_rankings,
    official_results,
    rank_embeddings,
)

RANK, EVALUATE = "retrieval_unit_id_list_v2.py", "evaluate_unit_v2.py"


def make_case(rng: random.Random, dims: int = 16) -> dict:
    """Gallery and query ids, labels and per-modality features (float32)."""
    nrng = np.random.default_rng(rng.randrange(2**32))
    labels = [f"类目{i}" for i in range(rng.randint(3, 25))]
    gallery = {f"g{i:05d}": rng.choice(labels[:-2]) for i in range(rng.randint(12, 160))}
    in_gallery = rng.sample(list(gallery), rng.randint(1, min(30, len(gallery))))
    queries = {q: gallery[q] for q in in_gallery}
    free = [x for x in labels if x not in set(queries.values())]
    for i in range(rng.randint(0, min(12, len(free)))):
        queries[f"q{i:04d}"] = free.pop(rng.randrange(len(free)))
    centre = {x: nrng.normal(size=dims) for x in labels}
    feats = {}
    for name in ("t", "p"):
        noise = rng.choice([0.3, 1.0, 3.0])
        feats[name] = {item: (centre[label] + noise * nrng.normal(size=dims)).astype(np.float32)
                       for item, label in {**gallery, **queries}.items()}
        ids = list(gallery)
        for _ in range(rng.randint(0, 4)):  # exact ties: a gallery vector copied
            a, b = rng.sample(ids, 2)
            feats[name][b] = feats[name][a].copy()
    return {"gallery": gallery, "queries": queries, "feats": feats}


def write_features(folder: Path, ids: list[str], feats: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "id.npy", np.asarray(ids))
    t = np.stack([feats["t"][i] for i in ids])
    p = np.stack([feats["p"][i] for i in ids])
    np.save(folder / "t_feature_np.npy", t)
    np.save(folder / "p_feature_np.npy", p)
    np.save(folder / "tp_feature_np.npy", t + p)  # extract_features.py: pooled_t + pooled_p


def run(script: Path, args: list[str]) -> None:
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True,
                   text=True)


def max_diff(official: dict, ours: dict) -> float:
    return max(abs(official[top][key] - ours[top][key]) for top in ours for key in ours[top])


def check_seed(official: Path, seed: int, work: Path) -> list[float]:
    rng = random.Random(seed)
    case = make_case(rng)
    gallery, queries = case["gallery"], case["queries"]
    qids = list(queries)
    rng.shuffle(qids)
    write_features(work / "query", qids, case["feats"])
    write_features(work / "gallery", list(gallery), case["feats"])
    gt = work / "gt.json"
    gt.write_text(json.dumps({i: {"label": x} for i, x in {**gallery, **queries}.items()},
                             ensure_ascii=False), encoding="utf-8")
    run(official / RANK, ["--query_feature_path", str(work / "query"), "--gallery_feature_path",
                          str(work / "gallery"), "--retrieval_results_path", str(work / "ranked"),
                          "--max_topk", "10", "--t", "--tp"])
    run(official / EVALUATE, ["--retrieval_result_dir", str(work / "ranked"), "--GT_file",
                              str(gt), "--output_metric_dir", str(work / "out"), "--t", "--tp"])
    results = json.loads((work / "out" / "metric_results.json").read_text(encoding="utf-8"))
    index = GalleryLabels(list(gallery), list(gallery.values()))
    refs = [M5Query(q, queries[q], index) for q in qids]
    diffs = [0.0, 0.0, 0.0]
    for kind in ("t", "tp"):
        q_feats = sum(np.stack([case["feats"][m][q] for q in qids]) for m in kind)
        g_feats = sum(np.stack([case["feats"][m][g] for g in gallery]) for m in kind)
        submitted = SubmittedGallery(list(gallery), g_feats)
        # (a) the ranking, line by line
        ours = rank_embeddings(q_feats, qids, submitted, 10)
        lines = (work / "ranked" / f"{kind}_feature_retrieval_id_list.txt").read_text().split("\n")
        theirs = [tuple(line.split(",")[1:]) for line in lines if line]
        diffs[0] = max(diffs[0], float(sum(a != b for a, b in zip(ours, theirs))
                                       + abs(len(ours) - len(theirs))))
        # (b) the metric ranking the embeddings itself
        metric = M5ProductRetrieval()
        metric.update([QueryEmbedding(v, submitted) for v in q_feats], refs)
        diffs[1] = max(diffs[1], max_diff(results[kind], official_results(metric.compute())))
        # (c) the official ranked file through the reader
        ranked = read_ranked_file(work / "ranked" / f"{kind}_feature_retrieval_id_list.txt")
        values = evaluate_rankings([ranked[q].ids for q in qids], refs, index)
        diffs[2] = max(diffs[2], max_diff(results[kind], official_results(values)))
    # (c, continued) lines the reader would refuse, in shuffled order
    raw = [line for line in (work / "ranked" / "t_feature_retrieval_id_list.txt")
           .read_text().split("\n") if line]
    rng.shuffle(raw)
    first = raw[0].split(",")
    raw[0] = ",".join(first[:3] + [first[1]] + first[3:])  # a repeated ranked id
    raw[-1] = ",".join(raw[-1].split(",")[:4])  # a list of 3 ids
    (work / "odd").mkdir(exist_ok=True)
    (work / "odd" / "t_feature_retrieval_id_list.txt").write_text("\n".join(raw) + "\n")
    run(official / EVALUATE, ["--retrieval_result_dir", str(work / "odd"), "--GT_file", str(gt),
                              "--output_metric_dir", str(work / "odd_out"), "--t"])
    odd = json.loads((work / "odd_out" / "metric_results.json").read_text(encoding="utf-8"))
    parsed = [line.strip().split(",") for line in raw]
    values = evaluate_rankings([p[1:] for p in parsed], [M5Query(p[0], queries[p[0]], index)
                                                         for p in parsed], index)
    diffs[2] = max(diffs[2], max_diff(odd["t"], official_results(values)))
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True,
                        help=f"folder holding SCALE_code's {RANK} and {EVALUATE}")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    for name in (RANK, EVALUATE):
        if not (args.official / name).is_file():
            parser.error(f"no {name} in {args.official}")
    worst = [0.0, 0.0, 0.0]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            diffs = check_seed(args.official, seed, Path(tmp) / str(seed))
            worst = [max(a, b) for a, b in zip(worst, diffs)]
    print(f"{args.seeds} random cases: (a) ranked lines differing: {worst[0]:g}; "
          f"(b) embeddings max |diff| {worst[1]:.3g}; (c) ranked files max |diff| {worst[2]:.3g}")
    if any(worst):
        sys.exit(1)


if __name__ == "__main__":
    main()
