"""The training-efficient model zoo: a two-objective search over the joint block + macro
space (accuracy up, measured training time per step down), its Pareto front pretrained and
saved as a zoo folder.

Search, after vega's DNet-NAS pipeline (`block_nas` -> `net_nas`), with NASOA's two
objectives (the paper's zoo is searched for accuracy *and* training speed):

1. block stage: `block_candidates` random block codes (`op_num` layers, `skip_num`
   connections, vega's `DblockNasCodec`) on a fixed default macro string;
2. macro stage: `macro_candidates` codes on the Pareto-best blocks: with probability
   `random_ratio` (or while fewer than two have been scored) a fresh macro string
   (`DnetNasCodec`: length, base and final channel, downsamplings), else a mutation
   (insert / remove / swap, `DnetNas.ea_sample`) of a Pareto member's macro string;
3. every candidate is trained from scratch for `proxy_steps` SGD steps on 4/5 of the
   pretraining task's training split and scored on the other fifth; its cost is the
   median wall time of one training step at batch 32 on this machine;
4. the non-dominated candidates (Pareto front), at most `zoo_size` of them spread along
   the time axis, are pretrained for `pretrain_steps` on the whole training split and
   saved with their costs and test accuracy.

Candidates and pretrainings are independent jobs (`engine/jobs.py`): a local process pool,
or Ray when an address is given. Timings measured while jobs share the cores are noisier;
`workers=1` measures one at a time.

Zoo folder:

    ZOO/zoo.json                 index: format, pretrain task, image size, classes, machine,
                                 members (name, code, params, seconds_per_step, proxy and
                                 pretrain accuracy, checkpoint, sha256), search settings
    ZOO/models/<name>.safetensors  the pretrained weights (head included)
    ZOO/candidates.jsonl         every scored candidate (code, stage, accuracy, cost, front)

`load_zoo` refuses, in one line naming the file, an index that is not a zoo, a checkpoint
that is missing, altered (sha256) or whose tensors do not match its architecture.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from refbench.errors import RefbenchError

ZOO_FORMAT = "refbench-nasoa-zoo"
ZOO_VERSION = 1
INDEX = "zoo.json"


@dataclass
class ZooConfig:
    """`zoo:` settings of a recipe (`--set zoo.KEY=VALUE`); vega's DNet-NAS ranges where the
    CPU scale allows (the full recipe documents the paper's scale)."""

    block_candidates: int = 6
    macro_candidates: int = 10
    op_num: list[int] = field(default_factory=lambda: [2, 3])
    skip_num: list[int] = field(default_factory=lambda: [0, 1])
    base_channel: list[int] = field(default_factory=lambda: [16, 32])
    default_macro: str = "1-21-21"
    code_length: list[int] = field(default_factory=lambda: [4, 10])
    final_channel: list[int] = field(default_factory=lambda: [64, 128])
    downsample: list[int] = field(default_factory=lambda: [2, 3])
    random_ratio: float = 0.5
    proxy_steps: int = 60
    pretrain_steps: int = 300
    zoo_size: int = 4
    batch_size: int = 32
    lr: float = 0.05
    image_size: int = 32
    seed: int = 0
    workers: int = 1
    threads: int = 1


@dataclass
class Member:
    name: str
    code: str
    params: int
    seconds_per_step: float
    proxy_accuracy: float
    pretrain_accuracy: float
    checkpoint: str
    sha256: str


@dataclass
class Zoo:
    """A loaded zoo folder (see the module doc)."""

    folder: Path
    pretrain_task: str
    image_size: int
    num_classes: int
    members: list[Member]
    machine: dict[str, Any]

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise RefbenchError(f"zoo has no member {name!r} (members: "
                            f"{', '.join(m.name for m in self.members)})",
                            path=self.folder / INDEX)

    def load_model(self, name: str) -> Any:
        """The member's network with its pretrained weights (head for the pretrain task)."""
        from safetensors.torch import load_file

        from refbench.baselines.nas.nasoa.network import DNet

        member = self.member(name)
        model = DNet(member.code, self.num_classes)
        model.load_state_dict(load_file(str(self.folder / member.checkpoint)))
        return model

    @property
    def largest(self) -> Member:
        return max(self.members, key=lambda m: (m.params, m.name))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (accuracy, seconds) points: no other point has at least
    the accuracy and at most the time with one of the two strictly better."""
    front = []
    for i, (acc, cost) in enumerate(points):
        if not any((a >= acc and c <= cost) and (a > acc or c < cost)
                   for j, (a, c) in enumerate(points) if j != i):
            front.append(i)
    return front


def spread(front: list[tuple[int, float]], k: int) -> list[int]:
    """At most `k` of the (index, seconds) front points, evenly spread over the time order."""
    ordered = [i for i, _ in sorted(front, key=lambda p: p[1])]
    if len(ordered) <= k:
        return ordered
    picks = sorted({round(j * (len(ordered) - 1) / (k - 1)) for j in range(k)}) if k > 1 else [0]
    return [ordered[p] for p in picks]


# -- jobs ------------------------------------------------------------------------------------
def evaluate_candidate(code: str, task: str, steps: int, batch_size: int, lr: float,
                       seed: int, image_size: int) -> dict[str, Any]:
    """Job: train `code` from scratch for `steps` on 4/5 of `task`'s training split; its
    held-out accuracy, measured seconds per step (batch 32) and backbone parameters."""
    import torch

    from refbench.baselines.nas.nasoa.finetune import (Schedule, accuracy, seconds_per_step,
                                                       split_heldout, train_steps)
    from refbench.baselines.nas.nasoa.network import DNet, count_params
    from refbench.baselines.nas.nasoa.tasks import load_task

    data = load_task(task, image_size)
    torch.manual_seed(seed)
    model = DNet(code, data.num_classes)
    fit_x, fit_y, val_x, val_y = split_heldout(data.train_x, data.train_y)
    cost = seconds_per_step(model, fit_x, fit_y)
    torch.manual_seed(seed)
    model = DNet(code, data.num_classes)
    train_steps(model, fit_x, fit_y, Schedule("candidate", lr, batch_size), steps, seed=seed)
    return {"code": code, "accuracy": accuracy(model, val_x, val_y), "seconds_per_step": cost,
            "params": count_params(model)}


def pretrain_member(code: str, task: str, steps: int, batch_size: int, lr: float, seed: int,
                    image_size: int, out: str) -> dict[str, Any]:
    """Job: pretrain `code` on the whole training split, write its safetensors to `out`;
    its test accuracy and seconds per step."""
    import torch
    from safetensors.torch import save

    from refbench.baselines.nas.nasoa.finetune import (Schedule, accuracy, seconds_per_step,
                                                       train_steps)
    from refbench.baselines.nas.nasoa.network import DNet, count_params
    from refbench.baselines.nas.nasoa.tasks import load_task
    from refbench.io import atomic_write_bytes, sha256_file

    data = load_task(task, image_size)
    torch.manual_seed(seed)
    model = DNet(code, data.num_classes)
    cost = seconds_per_step(model, data.train_x, data.train_y)
    torch.manual_seed(seed)
    model = DNet(code, data.num_classes)
    train_steps(model, data.train_x, data.train_y, Schedule("pretrain", lr, batch_size), steps,
                seed=seed)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out, save(state, metadata={"code": code, "format": ZOO_FORMAT}))
    return {"accuracy": accuracy(model, data.test_x, data.test_y), "seconds_per_step": cost,
            "params": count_params(model), "sha256": sha256_file(out)}


# -- the search ------------------------------------------------------------------------------
def _sample_code(rng: random.Random, cfg: ZooConfig, block: str | None,
                 macro_from: str | None) -> str:
    """A valid code: a random block on the default macro (block stage), or the given block
    on a fresh or mutated macro string (macro stage)."""
    from refbench.baselines.nas.nasoa.encoding import (is_valid, mutate_macro, random_block,
                                                       random_macro)

    for _ in range(200):
        channel = rng.choice(cfg.base_channel)
        if block is None:
            code = f"{random_block(rng, rng.choice(cfg.op_num), rng.choice(cfg.skip_num))}_" \
                   f"{channel}_{cfg.default_macro}"
        elif macro_from is not None:
            channel = int(macro_from.split("_")[1])
            code = f"{block}_{channel}_{mutate_macro(rng, macro_from.split('_')[2])}"
        else:
            final = rng.choice([f for f in cfg.final_channel if f >= channel] or [channel])
            down = rng.choice(cfg.downsample)
            shortest = int(math.log2(final // channel)) + down + 1  # room for every variant
            macro = random_macro(rng, rng.randint(max(shortest, cfg.code_length[0]),
                                                  max(shortest, cfg.code_length[1])),
                                 channel, final, down)
            code = f"{block}_{channel}_{macro}"
        if is_valid(code):
            return code
    raise RefbenchError("no valid architecture in 200 draws; widen the zoo ranges",
                        key="zoo")


def _check(cfg: ZooConfig) -> None:
    for name in ("block_candidates", "proxy_steps", "pretrain_steps", "zoo_size", "batch_size",
                 "image_size", "workers", "threads"):
        if getattr(cfg, name) < 1:
            raise RefbenchError(f"must be >= 1, got {getattr(cfg, name)}", key=f"zoo.{name}")
    if cfg.macro_candidates < 0:
        raise RefbenchError(f"must be >= 0, got {cfg.macro_candidates}",
                            key="zoo.macro_candidates")
    if not 0.0 <= cfg.random_ratio <= 1.0:
        raise RefbenchError(f"must be in [0, 1], got {cfg.random_ratio}", key="zoo.random_ratio")
    from refbench.baselines.nas.nasoa.encoding import parse

    parse(f"0-_{cfg.base_channel[0]}_{cfg.default_macro}")  # the default macro must parse


def build_zoo(task: str, out: Path, cfg: ZooConfig, *, address: str | None = None,
              progress: Callable[[str], None] = print) -> Zoo:
    """Search, pretrain and write a zoo folder at `out` (atomically: a failed search leaves
    nothing behind)."""
    import shutil
    import tempfile

    from refbench.baselines.nas.nasoa.tasks import load_task
    from refbench.engine.jobs import Job, raise_failures, run_jobs
    from refbench.io import atomic_dir_replace, atomic_write_json, atomic_write_text

    _check(cfg)
    data = load_task(task, cfg.image_size)  # fails early, in this process, on a bad task
    rng = random.Random(cfg.seed)
    scored: list[dict[str, Any]] = []

    def score(codes: list[str], stage: str) -> None:
        jobs = [Job(f"{stage}-{len(scored) + i}", f"{__name__}:evaluate_candidate",
                    dict(code=c, task=task, steps=cfg.proxy_steps, batch_size=cfg.batch_size,
                         lr=cfg.lr, seed=cfg.seed, image_size=cfg.image_size))
                for i, c in enumerate(codes)]
        results = run_jobs(jobs, workers=cfg.workers, threads=cfg.threads, address=address)
        raise_failures(results)
        for r in results:
            scored.append({"stage": stage, **r.value})
            progress(f"{stage} {r.value['code']}: held-out acc {r.value['accuracy']:.3f}, "
                     f"{1000 * r.value['seconds_per_step']:.1f} ms/step")

    def front() -> list[int]:
        return pareto_front([(s["accuracy"], s["seconds_per_step"]) for s in scored])

    blocks: list[str] = []
    for _ in range(cfg.block_candidates * 20):
        code = _sample_code(rng, cfg, None, None)
        if code not in blocks:
            blocks.append(code)
        if len(blocks) == cfg.block_candidates:
            break
    score(blocks, "block")
    best_blocks = [scored[i]["code"].split("_")[0] for i in front()]
    seen = {s["code"] for s in scored}
    macros: list[str] = []
    for _ in range(cfg.macro_candidates * 20):
        if len(macros) == cfg.macro_candidates:
            break
        members = [scored[i]["code"] for i in front()]
        fresh = len(scored) < 2 or rng.random() < cfg.random_ratio
        code = _sample_code(rng, cfg, rng.choice(best_blocks),
                            None if fresh else rng.choice(members))
        if code not in seen:
            seen.add(code)
            macros.append(code)
            if len(macros) % max(1, cfg.workers) == 0:  # mutate from an updated front
                score(macros[-cfg.workers:], "macro")
    rest = len(macros) % max(1, cfg.workers)
    if rest:
        score(macros[-rest:], "macro")
    chosen = spread([(i, scored[i]["seconds_per_step"]) for i in front()], cfg.zoo_size)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RefbenchError("the zoo output exists and is not a folder", path=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        (tmp / "models").mkdir()
        jobs = [Job(f"m{k}", f"{__name__}:pretrain_member",
                    dict(code=scored[i]["code"], task=task, steps=cfg.pretrain_steps,
                         batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                         image_size=cfg.image_size, out=str(tmp / "models" / f"m{k}.safetensors")))
                for k, i in enumerate(chosen)]
        progress(f"pretraining {len(jobs)} Pareto members for {cfg.pretrain_steps} steps")
        results = run_jobs(jobs, workers=cfg.workers, threads=cfg.threads, address=address)
        raise_failures(results)
        members = [Member(job.name, job.kwargs["code"], r.value["params"],
                          r.value["seconds_per_step"], scored[i]["accuracy"], r.value["accuracy"],
                          f"models/{job.name}.safetensors", r.value["sha256"])
                   for job, r, i in zip(jobs, results, chosen)]
        on_front = set(front())
        lines = [json.dumps({**s, "front": k in on_front, "member": k in chosen})
                 for k, s in enumerate(scored)]
        atomic_write_text(tmp / "candidates.jsonl", "\n".join(lines) + "\n")
        atomic_write_json(tmp / INDEX, {
            "format": ZOO_FORMAT, "version": ZOO_VERSION, "pretrain_task": task,
            "image_size": cfg.image_size, "num_classes": data.num_classes,
            "machine": machine(cfg.threads), "search": asdict(cfg),
            "members": [asdict(m) for m in members]})
        atomic_dir_replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_zoo(out)


def machine(threads: int | None = None) -> dict[str, Any]:
    """The declared machine of a budget: CPUs, torch threads per job, device."""
    import os
    import platform

    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": threads or torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "processor": platform.machine(), "torch": torch.__version__}


# -- loading ---------------------------------------------------------------------------------
def _fail(path: Path, message: str, key: str | None = None) -> RefbenchError:
    return RefbenchError(message, path=path, key=key)


def load_zoo(folder: str | Path) -> Zoo:
    """Read and verify a zoo folder (module doc); every fault is one line naming the file."""
    from safetensors import SafetensorError, safe_open

    from refbench.baselines.nas.nasoa.encoding import parse
    from refbench.baselines.nas.nasoa.network import DNet
    from refbench.io import sha256_file

    folder = Path(folder)
    index = folder / INDEX
    if not folder.is_dir():
        raise _fail(folder, "zoo folder not found" if not folder.exists() else
                    "a zoo is a folder holding zoo.json")
    if not index.is_file():
        raise _fail(index, "missing zoo index (not a zoo folder?)")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(index, f"invalid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != ZOO_FORMAT:
        raise _fail(index, f"not a {ZOO_FORMAT} index", key="format")
    if data.get("version") != ZOO_VERSION:
        raise _fail(index, f"unsupported zoo version {data.get('version')!r}", key="version")
    members, names = [], set()
    for k, raw in enumerate(data.get("members") or []):
        try:
            member = Member(**{f: raw[f] for f in Member.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise _fail(index, f"member entry is incomplete ({exc})", key=f"members[{k}]") from None
        if member.name in names:
            raise _fail(index, f"member {member.name!r} is listed twice", key=f"members[{k}]")
        names.add(member.name)
        parse(member.code)
        ckpt = folder / member.checkpoint
        if not ckpt.is_file():
            raise _fail(ckpt, f"checkpoint of member {member.name} is missing")
        if sha256_file(ckpt) != member.sha256:
            raise _fail(ckpt, f"checkpoint of member {member.name} does not match its sha256 in "
                              f"zoo.json (altered or replaced)")
        expected = {k: tuple(v.shape) for k, v in
                    DNet(member.code, int(data["num_classes"])).state_dict().items()}
        try:
            with safe_open(str(ckpt), "pt") as handle:
                found = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except (SafetensorError, OSError) as exc:
            raise _fail(ckpt, f"unreadable checkpoint: {exc}") from None
        if found != expected:
            diff = sorted(set(found) ^ set(expected)) or \
                [k for k in expected if found[k] != expected[k]]
            raise _fail(ckpt, f"checkpoint does not match architecture {member.code} of member "
                              f"{member.name} (first difference: {diff[0]})")
        members.append(member)
    if not members:
        raise _fail(index, "the zoo has no member", key="members")
    return Zoo(folder, str(data["pretrain_task"]), int(data["image_size"]),
               int(data["num_classes"]), members, dict(data.get("machine") or {}))


_LOADED: dict[tuple[str, int], Zoo] = {}


def cached_zoo(folder: str | Path) -> Zoo:
    """`load_zoo`, verified once per process and index version (the fine-tunings of a
    benchmark read the same zoo hundreds of times)."""
    path = Path(folder).resolve()
    try:
        key = (str(path), (path / INDEX).stat().st_mtime_ns)
    except OSError:
        return load_zoo(folder)  # the one-line error of a missing zoo
    if key not in _LOADED:
        _LOADED[key] = load_zoo(path)
    return _LOADED[key]
