"""Retrieval evaluation speed: refbench's search + metrics against faiss alone, and the
Product1M evaluation against a straight loop of the official script.

(a) 10k queries x 100k gallery x 256-d float32 embeddings (clustered, so the metrics are
    not trivial). Timed in one process, best of `--repeat`: faiss's exact search alone
    (`IndexFlatIP.search`, k = 100), then refbench's whole path: checked inputs
    (`exact_search`), ranked ids (`SearchResult.ids`), the gallery index and every
    Product1M key (mAP/Prec/mAR at 10/50/100, Recall@K, mAP@R) from those ids
    (`evaluate_rankings`). Target: the path within 1.2x of the search alone.
(b) a 10k-query `retrieval_id_list.txt` (100 ids a line) against a 40k-item gallery with
    the real label count (392) written in the official layout: `refbench evaluate`'s
    `evaluate_file` (reading the files strictly, every key, counts, hashes) against a
    straight-loop re-implementation of `evaluate_suit.py` written here (it reads the same
    files and tests membership in the positives *list*, as the script does). Both results
    must be equal; target: refbench at least 20x faster.

Run: `.venv/bin/python perf/retrieval.py [--queries 10000 --gallery 100000 --dim 256]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from refbench.benchmarks.scoring import evaluate_file
from refbench.evaluation.product1m import GalleryIndex, evaluate_rankings
from refbench.evaluation.retrieval import exact_search

K = 100


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


# -- (a) search + metrics vs search alone ----------------------------------------------------
def clustered(rng: np.random.Generator, n_queries: int, n_gallery: int, dim: int,
              n_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, ...]]]:
    centres = rng.normal(size=(n_labels, dim)).astype(np.float32)
    gallery_labels = rng.integers(0, n_labels, n_gallery)
    noise = rng.normal(scale=2.0, size=(n_gallery, dim)).astype(np.float32)
    gallery = centres[gallery_labels] + noise
    query_labels = rng.integers(0, n_labels, (n_queries, 3))
    counts = rng.integers(1, 4, n_queries)
    noise = rng.normal(scale=2.0, size=(n_queries, dim)).astype(np.float32)
    queries = centres[query_labels[:, 0]] + noise
    labels = [tuple(f"L{x}" for x in row[:c]) for row, c in zip(query_labels, counts)]
    return queries.astype(np.float32), gallery.astype(np.float32), gallery_labels, labels


def part_a(args: argparse.Namespace) -> None:
    import faiss

    rng = np.random.default_rng(0)
    queries, gallery, gallery_labels, labels = clustered(rng, args.queries, args.gallery,
                                                         args.dim, args.labels)
    gallery_ids = [f"g{i}" for i in range(args.gallery)]
    first_labels = [f"L{x}" for x in gallery_labels.tolist()]

    def faiss_alone() -> np.ndarray:
        index = faiss.IndexFlatIP(gallery.shape[1])
        index.add(gallery)
        return index.search(queries, K)[1]

    def refbench_path() -> tuple[dict[str, float], list[float]]:
        start = time.perf_counter()
        found = exact_search(queries, gallery, K)
        searched = time.perf_counter()
        ranked = found.ids(gallery_ids)
        values = evaluate_rankings(ranked, labels, GalleryIndex(gallery_ids, first_labels))
        return values, [searched - start, time.perf_counter() - searched]

    search_s, path_s, parts = [], [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        start = time.perf_counter()
        reference = faiss_alone()
        search_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        values, split = refbench_path()
        path_s.append(time.perf_counter() - start)
        parts.append(split)
    found = exact_search(queries, gallery, K)
    assert (found.indices == reference).all(), "refbench's search differs from faiss's"
    best = int(np.argmin(path_s))
    print(f"(a) {args.queries} queries x {args.gallery} gallery x {args.dim}-d, k={K}, "
          f"faiss {faiss.__version__} on {faiss.omp_get_max_threads()} thread(s), best of "
          f"{args.repeat}")
    print(f"    faiss exact search alone             {min(search_s):8.3f} s")
    print(f"    refbench search + ids + all metrics  {path_s[best]:8.3f} s  (checked search "
          f"{parts[best][0]:.3f} s, ids + gallery index + every key {parts[best][1]:.3f} s)")
    print(f"    ratio {path_s[best] / min(search_s):.3f} (target <= 1.2)   mAP@10 "
          f"{values['mAP@10']:.4f}  mAR@100 {values['mAR@100']:.4f}  Recall@1 "
          f"{values['Recall@1']:.4f}  mAP@R {values['mAP@R']:.4f}")


# -- (b) Product1M evaluation vs a straight loop of the official script ----------------------
def write_case(rng: np.random.Generator, folder: Path, n_queries: int, n_gallery: int,
               n_labels: int) -> None:
    """GT folder (gallery + dev queries in the official layout) and a submission."""
    labels = [f"品牌{i} 产品" for i in range(n_labels)]
    first = rng.integers(0, n_labels, n_gallery)

    def line(item: str, names: list[str]) -> str:
        return f"{item}#####标题#####https://img/{item}.jpg#####http://oss/{item}.jpg#####" + \
            "#;#".join(names)

    gt = folder / "gt"
    gt.mkdir(parents=True)
    gallery_ids = [f"6{i:011d}" for i in range(n_gallery)]
    (gt / "product1m_gallery_ossurl_v2.txt").write_text(
        "".join(line(g, [labels[f], labels[(f + 1) % n_labels]]) + "\r\n"
                for g, f in zip(gallery_ids, first.tolist())), encoding="utf-8", newline="")
    queries = [f"5{i:011d}" for i in range(n_queries)]
    query_labels = [[labels[x] for x in rng.integers(0, n_labels, rng.integers(1, 6))]
                    for _ in queries]
    (gt / "product1m_dev_ossurl_v2.txt").write_text(
        "".join(line(q, ls) + "\r\n" for q, ls in zip(queries, query_labels)),
        encoding="utf-8", newline="")
    (gt / "product1m_test_ossurl_v2.txt").write_text("", encoding="utf-8")
    by_label: dict[str, list[int]] = {}
    for row, f in enumerate(first.tolist()):
        by_label.setdefault(labels[f], []).append(row)
    lines = []
    for q, ls in zip(queries, query_labels):
        pos = [r for x in dict.fromkeys(ls) for r in by_label.get(x, [])[:40]]
        picks = rng.choice(n_gallery, 100, replace=False).tolist()
        ranked = list(dict.fromkeys(pos[: int(rng.integers(0, 60))] + picks))[:100]
        order = rng.permutation(len(ranked)) if rng.random() < 0.3 else range(len(ranked))
        lines.append(",".join([q] + [gallery_ids[ranked[i]] for i in order]))
    (folder / "retrieval_id_list.txt").write_text("".join(x + "\n" for x in lines),
                                                  encoding="utf-8")


def straight_loop(gt: Path, submission: Path) -> dict[str, float]:
    """evaluate_suit.py's semantics as written: dicts of lists, `in` on the positives list."""
    def read(name: str) -> dict[str, list[str]]:
        out = {}
        with open(gt / name, encoding="utf-8") as handle:
            for raw in handle.readlines():
                fields = raw.strip().split("#####")
                out[fields[0]] = fields[4].split("#;#")
        return out

    gallery = read("product1m_gallery_ossurl_v2.txt")
    truth = {**read("product1m_test_ossurl_v2.txt"), **read("product1m_dev_ossurl_v2.txt")}
    by_label: dict[str, list[str]] = {}
    for item, info in gallery.items():
        by_label.setdefault(info[0], []).append(item)
    with open(submission, encoding="utf-8") as handle:
        lines = handle.readlines()
    out = {}
    for k in (10, 50, 100):
        sums, cnt = [0, 0, 0], 0
        for raw in lines:
            parts = raw.strip().split(",")
            query, ranked = parts[0], parts[1:]
            cnt += 1
            try:
                labels = truth[query]
                pos: list[str] = []
                for label in labels:
                    pos += by_label[label]
                cut = min(k, len(pos), len(ranked))
                hits, ap = 0, 0.0
                for i in range(cut):
                    if ranked[i] in pos:
                        hits += 1
                        ap += hits / (i + 1)
                ap = ap / hits if hits else 0
                p = sum(1 for i in range(cut) if ranked[i] in pos) / cut
                sums[0] += ap
                sums[1] += p
                expect: dict[str, int] = {}
                for label in labels:
                    expect[label] = expect.get(label, 0) + int(k / len(labels))
                expect = {x: min(n, len(by_label[x])) for x, n in expect.items()}
                got: dict[str, int] = {}
                for item in ranked[:k]:
                    label = gallery[item][0]
                    if label in expect:
                        got[label] = got.get(label, 0) + 1
                ar = 0.0
                for label, n in got.items():
                    ar += min(n, expect[label]) / expect[label]
                sums[2] += ar / len(set(labels))
            except (KeyError, ZeroDivisionError):
                pass
        out.update({f"mAP@{k}": sums[0] / cnt, f"Prec@{k}": sums[1] / cnt,
                    f"mAR@{k}": sums[2] / cnt})
    return out


def part_b(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="p1m-perf-") as tmp:
        folder = Path(tmp)
        write_case(rng, folder, args.file_queries, args.file_gallery, 392)
        submission = folder / "retrieval_id_list.txt"
        ours_s, result = best_of(args.repeat, lambda: evaluate_file(
            "product1m-dev", submission, folder / "gt"))
        loop_s, loop = best_of(1, lambda: straight_loop(folder / "gt", submission))
    mismatch = {k: (v, result.metrics[k]) for k, v in loop.items() if result.metrics[k] != v}
    assert not mismatch, f"refbench and the straight loop differ: {mismatch}"
    print(f"(b) Product1M evaluation of a {args.file_queries}-query file (100 ids a line), "
          f"{args.file_gallery}-item gallery, 392 labels")
    print(f"    straight loop of evaluate_suit.py  {loop_s:8.3f} s")
    print(f"    refbench evaluate_file             {ours_s:8.3f} s (best of {args.repeat})")
    print(f"    speed-up {loop_s / ours_s:.1f}x (target >= 20)   values equal: "
          f"mAP@10 {result.metrics['mAP@10']:.4f}  mAR@100 {result.metrics['mAR@100']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--labels", type=int, default=2_000)
    parser.add_argument("--file-queries", type=int, default=10_000)
    parser.add_argument("--file-gallery", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    args = parser.parse_args()
    if args.part in ("a", "all"):
        part_a(args)
    if args.part in ("b", "all"):
        part_b(args)


if __name__ == "__main__":
    main()
