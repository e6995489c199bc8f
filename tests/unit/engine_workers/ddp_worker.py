"""Run the toy model under torchrun (gloo on CPU); each rank writes a small result file.

Usage: python -m torch.distributed.run --nproc_per_node=2 ddp_worker.py RUN_DIR OUT_DIR GRAD_ACCUM
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import toy  # this script's folder is on sys.path when run as a file

from refbench.engine import DistContext, Trainer


def main() -> None:
    run_dir, out_dir, grad_accum = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    dist = DistContext.from_env()
    try:
        features = toy.make_features()
        model = toy.make_model(seed=0, dropout=0.0)
        config = toy.ddp_config(grad_accum=grad_accum)
        result = Trainer(model, config, run_dir, features, toy.collate,
                         evaluate=toy.make_evaluator(features), primary="accuracy",
                         dist=dist).fit()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"rank{dist.rank}.json").write_text(json.dumps({
            "rank": dist.rank, "world_size": dist.world_size, "step": result.step,
            "best_step": result.best_step, "history": result.history,
            "last_checkpoint": str(result.last_checkpoint)}))
    finally:
        dist.close()


if __name__ == "__main__":
    main()
