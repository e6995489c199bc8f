"""Overhead of the common runner: `Trainer` versus a minimal hand-written PyTorch loop.

Both train the same model (an MLP of about 5M parameters, a small transformer encoder
with `--model transformer`, or the tiny-recipe BERT baseline on synthetic SST-2 with
`--model bert`, i.e. what `refbench train bert --recipe bert_tiny_glue` trains) on the same data with the same AdamW groups, linear warm-up
schedule, batch size, sample order and number of steps, in one process. Runs are
interleaved (bare, trainer, bare, trainer, ...) after one untimed warm-up run of each,
and the medians are compared. Throughput is measured from the start of the call to the
end of the last optimizer step (an optimizer step hook records it), so it covers the
loop itself; the trainer's end-of-run checkpoint is reported separately.

    python perf/runner.py [--model mlp|transformer|bert] [--steps 40] [--repeats 7] [--bar]
                          [--threads N] [--device cuda] [--check]

Prints samples/s of both, the ratio trainer/bare (target >= 0.95) and whether both
loops ended with identical weights (they should: same seed, same maths).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from refbench.config import TrainerConfig
from refbench.engine import DistContext, Trainer, seed_everything
from refbench.engine.trainer import epoch_permutation

TARGET = 0.95


# -- models ---------------------------------------------------------------------------------
class MLP(nn.Module):
    """512 -> 2048 -> 2048 -> 10 with LayerNorm, GELU and dropout: about 5.3M parameters."""

    def __init__(self, dim: int = 512, hidden: int = 2048, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                 nn.Dropout(0.1), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Dropout(0.1), nn.Linear(hidden, classes))

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.net(batch["x"]), batch["y"])}


class Encoder(nn.Module):
    """A 4-layer transformer encoder classifier (d=256, ff=1024, 32 tokens): about 3.4M params."""

    def __init__(self, vocab: int = 1000, dim: int = 256, layers: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=4 * dim, dropout=0.1,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = self.encoder(self.embed(batch["x"]))
        return {"loss": F.cross_entropy(self.head(hidden.mean(dim=1)), batch["y"])}


def make_data(kind: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    if kind == "mlp":
        x = torch.randn(n, 512, generator=generator)
    else:
        x = torch.randint(0, 1000, (n, 32), generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return [{"x": x[i], "y": int(y[i])} for i in range(n)]


def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([f["x"] for f in features]),
            "y": torch.tensor([f["y"] for f in features])}


def build_model(kind: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "bert":
        return TinyBert.build(seed)
    return MLP() if kind == "mlp" else Encoder()


class TinyBert:
    """The BERT baseline with the `bert_tiny_glue` recipe's model on synthetic SST-2 rows."""

    _cache: dict[str, Any] = {}

    @classmethod
    def setup(cls, n: int) -> None:
        from refbench.registry import get_spec
        from refbench.config import load_recipe
        from refbench.datasets.base import get_builder, load_prepared

        tmp = Path(tempfile.mkdtemp(prefix="refbench-perf-"))
        builder = get_builder("glue")
        root = builder.synthesize(tmp / "glue", n=n, seed=0)
        builder.prepare(root, tmp / "cache", configs=["sst2"])
        cls._cache.update(spec=get_spec("glue-sst2"), run=tmp / "run",
                          model_cfg=load_recipe("bert_tiny_glue")["model"],
                          rows=load_prepared("glue", split="train", config="sst2",
                                             cache_dir=str(tmp / "cache")))

    @classmethod
    def build(cls, seed: int) -> nn.Module:
        from refbench.baselines.nlp.bert import BertClassifier

        torch.manual_seed(seed)
        c = cls._cache
        return BertClassifier.create(c["model_cfg"], c["spec"], c["rows"], c["run"])


# -- the two loops --------------------------------------------------------------------------
class StepClock:
    """Wall and CPU time of the most recent optimizer step of any optimizer (a global hook)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        register_optimizer_step_post_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def since(self, start: tuple[float, float]) -> tuple[float, float]:
        """(wall seconds, CPU seconds) from `start` to the last optimizer step."""
        return self.wall - start[0], self.cpu - start[1]


def bare_loop(model: nn.Module, features: list, cfg: TrainerConfig, device: torch.device,
              clock: StepClock, collate: Callable[[list], dict] = collate) -> tuple[float, float]:
    """The hand-written reference; (wall, CPU) seconds from start to the last optimizer step."""
    start = clock.now()
    seed_everything(cfg.seed)
    model.to(device).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
    warm, total = math.ceil(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warm) if s < warm else 1.0 - (s - warm) / max(1, total - warm))
    per_epoch = len(features) // cfg.batch_size
    step = 0
    while step < total:
        order = epoch_permutation(cfg.seed, step // per_epoch, len(features)).tolist()
        for b in range(per_epoch):
            if step == total:
                break
            batch = collate([features[i] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]])
            if device.type != "cpu":
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = model.training_step(batch)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
    loss.item()  # wait for the device, as the trainer's last log does
    return clock.since(start)


class FakeTerminal(io.StringIO):
    """Swallows the trainer's console output while claiming to be a terminal (draws the bar)."""

    def isatty(self) -> bool:
        return True


def trainer_loop(model: nn.Module, features: list, cfg: TrainerConfig, device: torch.device,
                 clock: StepClock, collate: Callable[[list], dict] = collate) -> tuple[float, float, float]:
    """(wall, CPU) seconds to the last optimizer step, and wall seconds of the whole fit."""
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None  # keep disk writeback out of timings
    sink = FakeTerminal() if cfg.progress else io.StringIO()
    with tempfile.TemporaryDirectory(dir=shm) as tmp, contextlib.redirect_stderr(sink):
        start = clock.now()
        Trainer(model, cfg, Path(tmp), features, collate, dist=DistContext.single(device)).fit()
        end = time.perf_counter()
    return (*clock.since(start), end - start[0])


# -- main -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["mlp", "transformer", "bert"], default="mlp")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--bar", action="store_true",
                        help="draw the trainer's progress bar (into a fake terminal)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio is below target")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainerConfig(seed=0, max_steps=args.steps, batch_size=args.batch_size, lr=1e-3,
                        weight_decay=0.01, schedule="linear", warmup_ratio=0.1, grad_clip=None,
                        grad_accum=1, amp=False, log_every=10, progress=args.bar)
    batch_collate: Callable[[list], dict] = collate
    if args.model == "bert":
        TinyBert.setup(args.batch_size * args.steps)
        probe = build_model("bert", 0)
        features, batch_collate = probe.encode(TinyBert._cache["rows"]), probe.collate
    else:
        features = make_data(args.model, args.batch_size * args.steps)
    clock = StepClock()
    samples = args.steps * args.batch_size
    params = sum(p.numel() for p in build_model(args.model, 0).parameters())
    print(f"device {device} ({torch.get_num_threads()} threads), model {args.model} "
          f"{params / 1e6:.2f}M params, batch {args.batch_size}, {args.steps} steps, "
          f"{args.repeats} interleaved repeats (+1 warm-up each), "
          f"progress {'bar' if args.bar else 'log lines'}")

    times: dict[str, list[tuple[float, ...]]] = {"bare": [], "trainer": []}
    final: dict[str, nn.Module] = {}
    runs: list[tuple[str, Callable[[nn.Module], tuple[float, ...]]]] = [
        ("bare", lambda m: bare_loop(m, features, cfg, device, clock, batch_collate)),
        ("trainer", lambda m: trainer_loop(m, features, cfg, device, clock, batch_collate))]
    for repeat in range(args.repeats + 1):
        for name, run in runs:
            model = build_model(args.model, 0)
            measured = run(model)
            final[name] = model
            if repeat:  # the first round warms up allocators and kernels
                times[name].append(measured)

    def rate(name: str, column: int = 0) -> float:
        return samples / statistics.median(t[column] for t in times[name])

    bare, trainer = rate("bare"), rate("trainer")
    ratio = trainer / bare
    pairs = statistics.median(b[0] / t[0] for b, t in zip(times["bare"], times["trainer"]))
    same = all(torch.equal(a, b) for a, b in zip(final["bare"].state_dict().values(),
                                                 final["trainer"].state_dict().values()))
    for name in ("bare", "trainer"):
        runs_text = ", ".join(f"{samples / t[0]:.0f}" for t in times[name])
        print(f"{name:<8}: {rate(name):9.1f} samples/s median (runs: {runs_text})")
    print(f"ratio trainer/bare: {ratio:.3f} (target >= {TARGET}); median of per-pair ratios "
          f"{pairs:.3f}; by CPU time {rate('trainer', 1) / rate('bare', 1):.3f}")
    print(f"trainer including its final checkpoint write: {rate('trainer', 2):.1f} samples/s")
    print(f"final weights identical: {same}")
    return 1 if args.check and ratio < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
