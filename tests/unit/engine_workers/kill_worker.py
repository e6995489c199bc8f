"""Train the toy model and hang half-way through writing one checkpoint, to be SIGKILLed.

Usage: python kill_worker.py RUN_DIR MARKER HANG_STEP

The checkpoint writer is monkeypatched here (not in the engine): when it writes the
optimizer file of checkpoint HANG_STEP it writes only half of the bytes, touches MARKER
and sleeps, so the test can kill the process in the middle of a checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import toy  # this script's folder is on sys.path when run as a file

from refbench.engine import Trainer
from refbench.engine import checkpoint as ckpt_module


def main() -> None:
    run_dir, marker, hang_step = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    real_write = ckpt_module.atomic_write_bytes
    folder_tag = ckpt_module.step_dir_name(hang_step)

    def torn_write(path, data: bytes) -> None:
        path = Path(path)
        if folder_tag in path.parent.name and path.name == ckpt_module.OPTIMIZER_FILE:
            with open(path, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
            marker.touch()
            time.sleep(600)
        real_write(path, data)

    ckpt_module.atomic_write_bytes = torn_write
    features = toy.make_features()
    model = toy.make_model()
    Trainer(model, toy.resume_config(), run_dir, features, toy.collate,
            evaluate=toy.make_evaluator(features), primary="accuracy").fit()


if __name__ == "__main__":
    main()
