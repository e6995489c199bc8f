"""Small helpers shared by test modules."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator


def run_cli(args: list[str]) -> int:
    """Run the `refbench` CLI in-process; its exit code (0 when it returns normally)."""
    from refbench.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Train tiny models on one torch thread (restored afterwards): on a busy 2-core box
    they run far faster so."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_glue_teacher(base: Path, n: int, steps: int) -> dict[str, Path]:
    """Synthesized GLUE SST-2 (`n` rows) prepared under `base / "cache"`, and a 2-layer,
    hidden-32 `bert_tiny_glue` teacher trained `steps` steps in `base / "runs" / "teacher"`:
    what the EfficientBERT search and ranking tests distil from."""
    from refbench.config import build_run_config
    from refbench.datasets.base import get_builder
    from refbench.runner import train

    builder = get_builder("glue")
    root = builder.synthesize(base / "glue", n=n, seed=0)
    builder.prepare(root, base / "cache", configs=["sst2"])
    config = build_run_config("bert", "glue-sst2", "bert_tiny_glue", [
        f"output_dir={base / 'runs'}", f"data.cache_dir={base / 'cache'}", "name=teacher",
        f"trainer.max_steps={steps}", "trainer.progress=false", "model.num_hidden_layers=2",
        "model.hidden_size=32", "model.num_attention_heads=4", "model.intermediate_size=64"])
    with one_thread():
        train(config)
    return {"base": base, "cache": base / "cache", "teacher": base / "runs" / "teacher"}


def assert_computes_like_supernet(student: Any, net: Any, batch: dict[str, Any],
                                  arch: Any) -> None:
    """An EfficientBERT student started from supernet weights (a search's, or an official
    checkpoint's) computes what the supernet computes for its architecture: the same
    logits (to 1e-6) and the same fit-dense hidden states (to 1e-5)."""
    import torch

    student.eval()
    net.eval()
    with torch.no_grad():
        mine, theirs = student(batch, output_attentions=True), net(batch, arch)
        hidden = student.fit_dense(mine.encoder.hidden_states)
    assert torch.allclose(mine.logits, theirs.logits, atol=1e-6)
    for a, b in zip(hidden, theirs.hidden_states):
        assert torch.allclose(a, b, atol=1e-5)
