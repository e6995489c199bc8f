"""coco-caption metric speed: refbench's BLEU-1..4 + ROUGE-L + CIDEr-D against pycocoevalcap's
`Bleu(4)`, `Rouge()` and `Cider()`, in the same process, on the same tokenized reports.

Reports: real IU X-ray reports when `--data` points to a folder holding
`iu_xray/r2gen_split/x-rgen/annotation.json` (the shared sample data; default: the
`shared/data` folder beside the repository), tokenized with R2Gen's cleaning; `--n` pairs
(default 5,000) drawn at random, each hypothesis scored against one reference. Tokenization
is done once, before either timer starts, so both sides score the same strings. Every value
must be equal (asserted), then the best-of-`--repeat` times and their ratio are printed.
Target: refbench at least 5x faster.

Run: `.venv/bin/python perf/captions.py [--n 5000 --repeat 3 --data PATH]`
(needs the `captions` extra for pycocoevalcap).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any, Callable

from refbench.evaluation.captions.bleu import bleu_counts, bleu_from_counts
from refbench.evaluation.captions.cider import cider_from_corpus
from refbench.evaluation.captions.ngrams import build_corpus
from refbench.evaluation.captions.rouge import rouge_l
from refbench.evaluation.captions.tokenize import tokenize

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_reports(data: Path) -> list[str]:
    path = data / "iu_xray" / "r2gen_split" / "x-rgen" / "annotation.json"
    if not path.is_file():
        raise SystemExit(f"no IU X-ray annotation.json under {data} (pass --data)")
    ann = json.loads(path.read_text(encoding="utf-8"))
    return [tokenize(e["report"]) for split in ann.values() for e in split]


def ours(hyps: list[str], refs: list[list[str]]) -> dict[str, Any]:
    corpus = build_corpus(hyps, refs, 4)
    return {"bleu": bleu_from_counts(bleu_counts(corpus, 4))[0], "rouge": rouge_l(hyps, refs)[0],
            "cider": cider_from_corpus(corpus)[0]}


def theirs(hyps: list[str], refs: list[list[str]]) -> dict[str, Any]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    return {"bleu": Bleu(4).compute_score(gts, res, verbose=0)[0],
            "rouge": float(Rouge().compute_score(gts, res)[0]),
            "cider": float(Cider().compute_score(gts, res)[0])}


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    pool = load_reports(args.data)
    rng = random.Random(args.seed)
    hyps = [rng.choice(pool) for _ in range(args.n)]
    refs = [[rng.choice(pool)] for _ in range(args.n)]
    import pandas  # noqa: F401  (imported once, outside the timers)

    t_ours, v_ours = best_time(lambda: ours(hyps, refs), args.repeat)
    t_theirs, v_theirs = best_time(lambda: theirs(hyps, refs), args.repeat)
    assert v_ours == v_theirs, (v_ours, v_theirs)
    print(f"{args.n} report pairs, {sum(len(h.split()) for h in hyps) / args.n:.1f} tokens "
          f"per report; values equal: {v_ours}")
    print(f"pycocoevalcap BLEU+ROUGE-L+CIDEr-D: {t_theirs:.3f} s")
    print(f"refbench      BLEU+ROUGE-L+CIDEr-D: {t_ours:.3f} s")
    print(f"speed-up: {t_theirs / t_ours:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
