"""Supernet ranking consistency on the tiny Pi-NAS setting: Pi-NAS vs SPOS at one budget.

Prepares `digits` (scikit-learn's real scans; nothing downloaded) into a cache under
`--work`, then runs `refbench search pinas-ranking` (the same code path as the CLI): `--archs`
codes of the 4-block space, each trained stand-alone once per truth seed with
`pinas_tiny_digits` for `--standalone-steps` (top-1 on digits validation is the ground
truth), one `pinas-supernet_tiny_digits` supernet per method and seed for
`--supernet-steps` steps of 64 images (the shared budget), every code scored by each
supernet (BN recalibration + linear probe on training rows). Prints, per method, Kendall
tau-b, Spearman rho, P@k and the top pick's stand-alone accuracy as mean +- sample std over
the supernet seeds, the per-seed taus, the ground truth's range and the wall time. A
finished run folder under `--work` is reused, so a rerun only re-scores.

Run (about 12 minutes on 2 busy cores with the defaults):
    .venv/bin/python perf/pinas_ranking.py [--work /tmp/pinas-ranking --archs 12
        --supernet-steps 60 --standalone-steps 60 --workers 2 --address ADDR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp") / "pinas-ranking")
    parser.add_argument("--archs", type=int, default=12)
    parser.add_argument("--methods", default="pinas,spos-moco")
    parser.add_argument("--supernet-seeds", default="0,1,2")
    parser.add_argument("--truth-seeds", default="0")
    parser.add_argument("--supernet-steps", type=int, default=60)
    parser.add_argument("--standalone-steps", type=int, default=60)
    parser.add_argument("--ks", default="3")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--address", default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from refbench.baselines.nas.pinas.ranking import PinasRankingSearch
    from refbench.baselines.nas.ranking import figure_lines, sample_line
    from refbench.datasets.base import get_builder

    cache, out = args.work / "cache", args.work / "ranking"
    if not (cache / "digits").exists():
        builder = get_builder("digits")
        builder.synthesize(args.work / "digits")
        builder.prepare(args.work / "digits", cache, configs=["default"])
    options = {"methods": args.methods, "supernet_seeds": args.supernet_seeds,
               "truth_seeds": args.truth_seeds, "archs": args.archs, "ks": args.ks,
               "supernet_steps": args.supernet_steps, "standalone_steps": args.standalone_steps,
               "workers": args.workers, "address": args.address}
    started = time.time()
    outcome = PinasRankingSearch().run("digits", out, options, [], cache_dir=str(cache),
                                       progress=lambda line: print(line, flush=True))
    wall = time.time() - started
    summary = outcome.summary
    setting = (f"supernet seeds {args.supernet_seeds}, budget {args.supernet_steps} steps "
               f"x 64 images")
    print("\n" + sample_line(summary, setting))
    print("\n".join(figure_lines(summary, out, width=16)))
    print(f"wall {wall:.0f} s (benchmark's own record: {summary['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
