"""Supernet ranking consistency on the tiny EfficientBERT setting: does the search's fitness
rank FFN architectures like their stand-alone distilled students?

Synthesizes GLUE SST-2 and trains a `bert_tiny_glue` teacher under `--work` (reused when
present; the same preparation as `perf/efficientbert_search.py`), then runs `refbench search
efficientbert-ranking` (the same code path as the CLI): `--archs` joint-stage architectures
inside the search's parameter budget, each distilled stand-alone once per truth seed with the
recipe's trainer (validation accuracy: the ground truth), one supernet per method and seed
(the search's warm-up distillation), every architecture scored by each supernet with the
search's fitness (proxy steps of the candidate alone, then the held-out proxy). Prints, per
method, Kendall tau-b, Spearman rho, P@k and the top pick's stand-alone accuracy as mean +-
sample std over the supernet seeds, the per-seed taus, the ground truth's range and the wall
time. Finished trainings under `--work` are reused, so a rerun only re-scores.

Run (about 10 minutes on 2 busy cores with the defaults):
    OMP_NUM_THREADS=1 .venv/bin/python perf/efficientbert_ranking.py [--work DIR --archs 8
        --methods sampled,largest --supernet-seeds 0,1 --truth-seeds 0,1
        --set search.proxy=pred --workers 2 --address ADDR]
On the setting where architectures differ (see efficientbert_search's docstring):
    ... perf/efficientbert_ranking.py --work DIR --sst2 compositional --n 2000 \
        --dev-rows 1000 --teacher-steps 1200 --methods sampled --supernet-seeds 0,1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "eb-ranking")
    parser.add_argument("--n", type=int, default=800, help="synthesized SST-2 training rows")
    parser.add_argument("--teacher-steps", type=int, default=150)
    parser.add_argument("--sst2", default="standard",
                        help="synthesized SST-2 variant: standard, compositional or negation "
                             "(settings in which architectures differ, see "
                             "efficientbert_search)")
    parser.add_argument("--dev-rows", type=int, default=None,
                        help="validation rows (default: n // 4)")
    parser.add_argument("--out", type=Path, default=None, help="default: WORK/ranking")
    parser.add_argument("--supernets", default=None,
                        help="trained supernet folders to score instead of training")
    parser.add_argument("--archs", type=int, default=8)
    parser.add_argument("--methods", default="sampled,largest")
    parser.add_argument("--supernet-seeds", default="0,1")
    parser.add_argument("--truth-seeds", default="0,1")
    parser.add_argument("--standalone-steps", type=int, default=None)
    parser.add_argument("--ks", default="3")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    parser.add_argument("--set", dest="extra", action="append", default=[],
                        help="a search/model/trainer override (e.g. search.proxy=pred)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from efficientbert_search import _prepare

    from refbench.baselines.nas.ranking import figure_lines, sample_line
    from refbench.baselines.nlp.efficientbert.ranking import EfficientBertRankingSearch

    cache, teacher = _prepare(args.work, args.n, args.teacher_steps, args.sst2, args.dev_rows)
    out = args.out or args.work / "ranking"
    options = {"teacher": str(teacher), "methods": args.methods,
               "supernet_seeds": args.supernet_seeds, "truth_seeds": args.truth_seeds,
               "archs": args.archs, "ks": args.ks, "standalone_steps": args.standalone_steps,
               "workers": args.workers, "address": args.address, "supernets": args.supernets}
    started = time.time()
    outcome = EfficientBertRankingSearch().run(
        "glue-sst2", out, options, args.extra, cache_dir=str(cache),
        progress=lambda line: print(line, flush=True))
    wall = time.time() - started
    summary = outcome.summary
    setting = (f"supernet seeds {args.supernet_seeds}; fitness: "
               f"{summary['client']['score_label']}")
    print("\n" + sample_line(summary, setting))
    print("\n".join(figure_lines(summary, out, width=10)))
    print(f"wall {wall:.0f} s (benchmark's own record: {summary['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
