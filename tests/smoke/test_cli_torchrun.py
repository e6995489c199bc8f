"""`torchrun --nproc_per_node=2 -m refbench train ...` equals a single-process run with the
same global batch (dropout off, so both runs draw no random numbers while training)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from refbench.cli import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(common: list[str], env: dict[str, str], name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={_free_port()}", "--tee", "3", "-m", "refbench", *common,
                           "--name", name], env=env, capture_output=True, text=True, timeout=300)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from refbench.engine import find_checkpoint

    return load_file(str(find_checkpoint(run_dir, "last") / "model.safetensors"))


def test_two_process_cli_run_matches_single_process(tmp_path: Path) -> None:
    root, cache, runs = tmp_path / "glue", tmp_path / "cache", tmp_path / "runs"
    for args in (["datasets", "synthesize", "glue", "--out", str(root), "--n", "120"],
                 ["datasets", "prepare", "glue", "--root", str(root), "--cache-dir", str(cache),
                  "-c", "mrpc"]):
        main(args)
    common = ["train", "bert", "--benchmark", "glue-mrpc", "--recipe", "bert_tiny_glue",
              "--max-steps", "6", "--output-dir", str(runs), "--cache-dir", str(cache),
              "--set", "trainer.progress=false", "--set", "trainer.batch_size=16",
              "--set", "trainer.eval_every=0", "--set", "model.hidden_dropout_prob=0.0",
              "--set", "model.attention_probs_dropout_prob=0.0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "refbench", *common, "--name", "one"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    used = "two"
    multi = _torchrun(common, env, used)
    if multi.returncode != 0:
        # Once, on a heavily loaded 2-core machine, a gloo worker aborted (SIGABRT) during
        # start-up and could not be reproduced in dozens of runs: retry once on a fresh port
        # and a fresh run folder; a real bug fails both attempts (and shows both ranks' logs).
        first = multi.stdout[-3000:] + multi.stderr[-3000:]
        used = "two-retry"
        multi = _torchrun(common, env, used)
        assert multi.returncode == 0, first + "\n--- retry ---\n" + multi.stdout[-3000:] + \
            multi.stderr[-3000:]
    one, two = _weights(runs / "one"), _weights(runs / used)
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=2e-5, rtol=1e-4, msg=key)
    assert (runs / used / "result.json").exists()
