"""The EfficientBERT architecture search: coarse-to-fine stages on a weight-sharing
supernet, each with a warm-up distillation from a teacher.

`search()` reproduces, at any scale, what the official `ffn_search.sh` does with three
`ffn_search.py` runs (see `efficientbert_sampler` for what each stage varies):

    joint       expression + linear type (stack depth x width), under the budget
    expression  the expressions, with stage 1's linear types frozen
    linear      the linear types, with stage 2's expressions frozen, under the budget

This official order (sizes fixed last) is the default and the one that produced the
published EfficientBERT; `search.stages=[linear,expression]` runs "sizes first, then
expressions" instead, starting from the recipe's `ffn_expressions`.

Per stage:
1. warm-up distillation: the supernet (`efficientbert_supernet`) is distilled from the
   teacher (`distill.distill_losses`: attention-score and hidden-state MSE through
   fit-dense, soft cross-entropy on the logits) for `warmup_steps` steps, a random
   candidate of the stage per step (`warmup_arch: largest` trains the 4-stack full-width
   BERT FFN instead, as the official stage-1/2 supernet pre-training does);
2. candidates (seeds, then random, then LaNAS-filtered; de-duplicated by string and by
   `architecture_hash`) get the official fitness: each starts from the warmed-up weights,
   is distilled alone for `proxy_steps` steps on the same batches, and is scored with the
   benchmark's primary metric on a held-out part (`val_ratio`) of the training split
   (ties broken by the held-out distillation loss; `proxy: loss` ranks by that loss
   alone, `proxy: pred` by its prediction-layer part, the soft cross-entropy against the
   teacher's logits, which still orders candidates when accuracy saturates). The `linear` stage is one-shot by default (`one_shot_linear`), as the official
   stage 3 scores candidates on the shared supernet without training them;
3. the best candidate is fixed and handed to the next stage; the weights go back to the
   warmed-up state and the next stage's warm-up continues from them.

Simplified against the official code (which needs 4 GPUs and days): no Wikipedia /
BooksCorpus pre-training distillation before each candidate (stages 1-2) or of the
stage-3 supernet (nothing is downloaded); one supernet is warmed up stage after stage
(officially stages 1-2 share one pre-trained supernet, stage 3 has its own); stage 3 distils from the one task teacher, not
a multi-task supernet over eight GLUE teachers; the metric is computed over the whole
held-out part, not averaged per batch; the search stops after `candidates` per stage
instead of running until killed and leaving the choice to a person.

Writes (atomically, after the search succeeded): `search.json`, `ranking.jsonl`, the final
shared weights `supernet.safetensors` and a recipe `efficientbert_searched_glue.yaml` that
`refbench train efficientbert --recipe` accepts.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

import torch

from refbench.baselines.nlp.bert import text_task
from refbench.baselines.nlp.distill import DistillConfig, distill_losses, layer_map, load_teacher
from refbench.baselines.nlp.efficientbert.encoder import EfficientBertConfig, check_config
from refbench.baselines.nlp.efficientbert.ffn import architecture_hash
from refbench.baselines.nlp.efficientbert.outputs import (  # noqa: F401 (re-exported)
    RECIPE_FILE, searched_recipe, summarize, write_outputs)
from refbench.baselines.nlp.efficientbert.sampler import (STAGES, Budget, Candidate,
                                                          LanasSampler, StageSampler)
from refbench.baselines.nlp.efficientbert.space import LinearType
from refbench.baselines.nlp.efficientbert.supernet import (Architecture, EfficientBertSupernet,
                                                           collate, encode_rows,
                                                           plain_expression)
from refbench.config import RunConfig, apply_overrides, from_dict, load_recipe
from refbench.errors import RefbenchError
from refbench.options import Option
from refbench.registry import SEARCHES
from refbench.search import Search, SearchOutcome

if TYPE_CHECKING:  # pragma: no cover
    from refbench.baselines.nlp.distill import BertTeacher



@dataclass
class SearchConfig:
    """`search:` settings (`--set search.KEY=VALUE`); defaults after `ffn_search.py` where
    CPU scale allows (official values in the comments).

    The step counts, held-out share and learning rate are sized for the tiny recipe on a
    few hundred rows, so that the proxy discriminates: with 40 warm-up and 10 proxy steps at
    lr 4e-4 every candidate of stages 1-2 still predicted the majority class, and 10% of 400
    rows quantised accuracy in steps of 2.5 points."""

    stages: list[str] = field(default_factory=lambda: list(STAGES))
    candidates: int = 8  # scored per stage (official: until stopped, n_total_samples=1e6)
    #: per stage; long enough that the shared weights learn the task before candidates fork
    warmup_steps: int = 100
    warmup_arch: Literal["sampled", "largest"] = "sampled"
    #: official: 3 epochs on 10% of MNLI per candidate (stages 1, 2); enough steps here for a
    #: candidate's own training to move its held-out accuracy off the shared starting point
    proxy_steps: int = 30
    one_shot_linear: bool = True  # stage 3 scores candidates on the shared weights
    #: metric: the task metric, ties broken by the held-out loss (official); loss: the
    #: held-out distillation loss; pred: its prediction-layer part alone (soft cross-entropy
    #: against the teacher's logits), which keeps ordering when accuracy saturates
    proxy: Literal["metric", "loss", "pred"] = "metric"
    #: official: 0.01 of MNLI's 393k rows (stages 1, 2), 0.1 (stage 3); a quarter here, so
    #: a few hundred rows still hold out 100+ and accuracy moves in steps of <= 1 point
    val_ratio: float = 0.25
    sampler: Literal["lanas", "random"] = "lanas"
    init_samples: int = 80
    train_interval: int = 10
    height_levels: list[int] = field(default_factory=lambda: [400, 800, 1600, 3200])
    mutation_steps: int = 3
    min_params: float | None = None  # default: max_params * 15/16
    max_params: float | None = None  # default: the recipe architecture's parameter count
    batch_size: int = 32  # official: 64 per GPU
    eval_batch_size: int = 128
    #: the tiny recipe's learning rate (4e-4 did not leave the majority class in 50 steps)
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    temperature: float = 1.0
    hidden_ratio: float = 1.0
    pred_ratio: float = 1.0
    seed: int | None = None  # default: the recipe's trainer.seed
    tries: int = 1000
    #: torch CPU threads while searching (None: as set); 1 suits tiny students and busy CPUs
    threads: int | None = None


@dataclass
class StageResult:
    name: str
    index: int
    warmup_loss: float | None
    candidates: list[Candidate]
    best: Candidate
    exhausted: bool


@dataclass
class SearchResult:
    out: Path
    chosen: Candidate
    stages: list[StageResult]
    summary: dict[str, Any]


# -- preparation (every check before anything is written) --------------------------------------
@dataclass
class _Setup:
    benchmark: str
    recipe: str
    run: RunConfig
    cfg: SearchConfig
    student: EfficientBertConfig
    teacher: "BertTeacher"
    teacher_run: Path
    budget: Budget
    seed: int
    task: Any
    spec: Any


def _check_settings(cfg: SearchConfig) -> None:
    for stage in cfg.stages:
        if stage not in STAGES:
            raise RefbenchError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})",
                                key="search.stages")
    if not cfg.stages:
        raise RefbenchError("no stage to run", key="search.stages")
    if cfg.threads is not None and cfg.threads < 1:
        raise RefbenchError(f"must be >= 1, got {cfg.threads}", key="search.threads")
    for name in ("candidates", "batch_size", "eval_batch_size", "tries", "mutation_steps"):
        if getattr(cfg, name) < 1:
            raise RefbenchError(f"must be >= 1, got {getattr(cfg, name)}", key=f"search.{name}")
    for name in ("warmup_steps", "proxy_steps", "init_samples"):
        if getattr(cfg, name) < 0:
            raise RefbenchError(f"must be >= 0, got {getattr(cfg, name)}", key=f"search.{name}")
    if not 0 < cfg.val_ratio < 1:
        raise RefbenchError(f"must be in (0, 1), got {cfg.val_ratio}", key="search.val_ratio")


def _prepare(benchmark: str, teacher_run: str | Path, recipe: str, overrides: Sequence[str],
             cache_dir: str | None) -> _Setup:
    from refbench.registry import get_spec
    from refbench.runner import load_run_config

    spec = get_spec(benchmark)
    if spec.task.type not in ("classification", "regression"):
        raise RefbenchError(f"the EfficientBERT search runs on a sentence(-pair) classification "
                            f"or regression task such as a GLUE task (the official one searches "
                            f"on MNLI); {spec.name} is a {spec.task.type!r} task")
    task = text_task(spec)
    data = apply_overrides(load_recipe(recipe), list(overrides))
    cfg = from_dict(SearchConfig, data.pop("search", None) or {}, prefix="search")
    _check_settings(cfg)
    if data.get("baseline", "efficientbert") != "efficientbert":
        raise RefbenchError(f"recipe {recipe!r} is for {data['baseline']!r}, not efficientbert",
                            key="baseline")
    data.update(baseline="efficientbert", benchmark=benchmark)
    if cache_dir is not None:
        data.setdefault("data", {})["cache_dir"] = cache_dir
    run = from_dict(RunConfig, data)
    student = from_dict(EfficientBertConfig, dict(run.model), prefix="model")
    check_config(student)
    teacher_run = Path(teacher_run)
    teacher_spec = get_spec(load_run_config(teacher_run).benchmark)
    if teacher_spec.dataset != spec.dataset:
        raise RefbenchError(f"the teacher was trained on {teacher_spec.name} "
                            f"({teacher_spec.dataset.config}), its head does not fit "
                            f"{spec.name} ({spec.dataset.config})", path=teacher_run)
    teacher = load_teacher(teacher_run)
    if teacher.num_heads != student.num_heads:
        raise RefbenchError(f"attention heads differ: teacher {teacher.num_heads}, student "
                            f"{student.num_heads} (the attention maps are distilled one to "
                            f"one)", key="model.num_heads")
    try:
        layer_map(student.num_layers, teacher.num_layers)
    except RefbenchError as exc:
        raise RefbenchError(exc.message, key="model.num_layers") from None
    max_pos = teacher.head.model.config.max_position_embeddings
    if student.max_length > max_pos:
        raise RefbenchError(f"max_length {student.max_length} exceeds the teacher's "
                            f"{max_pos} positions", key="model.max_length")
    student.teacher_hidden_size = teacher.hidden_size
    budget = Budget.resolve(student, teacher.hidden_size, cfg.min_params, cfg.max_params,
                            checked=any(s != "expression" for s in cfg.stages))
    seed = cfg.seed if cfg.seed is not None else run.trainer.seed
    return _Setup(benchmark, recipe, run, cfg, student, teacher, teacher_run, budget, seed,
                  task, spec)


# -- training and scoring -------------------------------------------------------------------
class _Searcher:
    def __init__(self, setup: _Setup, progress: Callable[[str], None]) -> None:
        from refbench.registry import METRICS
        from refbench.runner import load_rows

        self.s, self.cfg, self.progress = setup, setup.cfg, progress
        self.regression = setup.task.is_regression
        tok = setup.teacher.tokenizer
        rows, _ = load_rows(setup.spec, setup.run.data.train_split or setup.spec.train_split,
                        setup.run)
        features = encode_rows(tok, rows, setup.task.text_fields, setup.student.max_length)
        features = [f for f in features if self.regression or f["label"] >= 0]
        order = list(range(len(features)))
        random.Random(setup.seed).shuffle(order)
        held = max(1, int(round(len(order) * self.cfg.val_ratio)))
        if len(order) - held < 1:
            raise RefbenchError(f"the training split has {len(order)} labelled rows, too few "
                                f"to hold out {held}", key="search.val_ratio")
        self.heldout = [features[i] for i in order[:held]]
        self.train = [features[i] for i in order[held:]]
        self.pad, self.max_length = tok.pad_token_id, setup.student.max_length
        labels = setup.task.num_labels
        torch.manual_seed(setup.seed)
        self.net = EfficientBertSupernet(setup.student, len(tok), labels,
                                         setup.teacher.hidden_size, tok.pad_token_id)
        self.metric_cls = METRICS.get(setup.spec.metric.name)
        self.distill = DistillConfig(temperature=self.cfg.temperature,
                                     hidden_ratio=self.cfg.hidden_ratio,
                                     pred_ratio=self.cfg.pred_ratio)

    def batches(self, features: list[dict[str, Any]], seed: int) -> Iterator[dict[str, Any]]:
        rng = random.Random(seed)
        while True:
            order = list(range(len(features)))
            rng.shuffle(order)
            for start in range(0, len(order), self.cfg.batch_size):
                chunk = [features[i] for i in order[start:start + self.cfg.batch_size]]
                yield collate(chunk, self.pad, self.max_length, self.regression)

    def optimizer(self, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """The engine's AdamW (its decay / no-decay groups) and linear warm-up schedule, so
        the search trains exactly like `refbench train` with the same settings."""
        from refbench.config import TrainerConfig
        from refbench.engine.schedules import build_optimizer, build_scheduler

        config = TrainerConfig(max_steps=steps, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                               warmup_ratio=self.cfg.warmup_ratio, schedule="linear")
        opt = build_optimizer(self.net, config)
        return opt, build_scheduler(opt, config)

    def losses(self, batch: dict[str, Any], arch: Architecture) -> dict[str, torch.Tensor]:
        teacher = self.s.teacher(batch)
        student = self.net(batch, arch)
        return distill_losses(student, teacher, batch["attention_mask"], batch["labels"],
                              self.regression, self.distill)

    def train_steps(self, steps: int, seed: int, pick: Callable[[], Architecture],
                    label: str | None = None) -> float | None:
        """`steps` distillation steps with a fresh optimizer; the mean loss. A NaN loss ends
        a candidate's training (None: the official "invalid individual"); during a warm-up
        (`label` given) that step is skipped instead."""
        opt, sched = self.optimizer(steps)
        self.net.train()
        data, total, count, skipped = self.batches(self.train, seed), 0.0, 0, 0
        every = max(1, steps // 5)
        for step in range(1, steps + 1):
            loss = self.losses(next(data), pick())["loss"]
            if torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
                opt.step()
                total, count = total + loss.item(), count + 1
            elif label is None:
                return None
            else:
                skipped += 1
            sched.step()
            if label and (step % every == 0 or step == steps):
                note = f" ({skipped} NaN steps skipped)" if skipped else ""
                self.progress(f"{label} warm-up {step}/{steps} loss "
                              f"{total / max(1, count):.4f}{note}")
        return total / count if count else None

    @torch.no_grad()
    def evaluate(self, arch: Architecture) -> tuple[float | None, float | None, float | None]:
        """(primary metric, distillation loss, prediction-layer loss) on the held-out rows;
        all None when the student's outputs are not finite."""
        self.net.eval()
        metric = self.metric_cls(**self.s.spec.metric.kwargs())
        loss_sum, pred_sum = 0.0, 0.0
        for start in range(0, len(self.heldout), self.cfg.eval_batch_size):
            chunk = self.heldout[start:start + self.cfg.eval_batch_size]
            batch = collate(chunk, self.pad, self.max_length, self.regression)
            teacher = self.s.teacher(batch)
            student = self.net(batch, arch)
            parts = distill_losses(student, teacher, batch["attention_mask"], batch["labels"],
                                   self.regression, self.distill)
            loss = parts["loss"]
            if not torch.isfinite(loss) or not torch.isfinite(student.logits).all():
                return None, None, None
            loss_sum += loss.item() * len(chunk)
            pred_sum += parts["pred_loss"].item() * len(chunk)
            logits = student.logits.float()
            preds = logits[:, 0].tolist() if self.regression else logits.argmax(-1).tolist()
            metric.update(preds, batch["labels"].tolist())
        rows = len(self.heldout)
        return float(metric.compute()[self.s.spec.primary]), loss_sum / rows, pred_sum / rows

    def score(self, arch: Architecture) -> tuple[float | None, float | None]:
        """(primary metric, distillation loss) on the held-out rows."""
        return self.evaluate(arch)[:2]

    def fitness(self, arch: Architecture, snapshot: Mapping[str, torch.Tensor] | None,
                steps: int, seed: int) -> tuple[float | None, float | None, float | None]:
        """The search's fitness of one candidate: from the warmed-up weights `snapshot`,
        `steps` distillation steps on the candidate alone (seed `seed`: the same batches for
        every candidate), then `evaluate` on the held-out rows. `steps == 0` scores on the
        shared weights as they are (one-shot). All None: the training diverged (NaN)."""
        if snapshot is not None:
            self.net.load_state_dict(snapshot)
        if steps:
            torch.manual_seed(seed)
            if self.train_steps(steps, seed, lambda: arch) is None:
                return None, None, None
        return self.evaluate(arch)

    # -- one stage ------------------------------------------------------------------------
    def stage(self, index: int, name: str, current: Architecture) -> StageResult:
        cfg, seed = self.cfg, self.s.seed * 1000 + index
        label = f"[stage {index}/{len(cfg.stages)} {name}]"
        rng = random.Random(seed)
        sampler = StageSampler(name, current, self.s.budget, rng, cfg.mutation_steps, cfg.tries)
        largest = Architecture((plain_expression(LinearType(4, 1)),) * len(current))
        pick = (lambda: largest) if cfg.warmup_arch == "largest" else sampler.random
        torch.manual_seed(seed)
        warm = self.train_steps(cfg.warmup_steps, seed, pick, label) if cfg.warmup_steps else None
        one_shot = name == "linear" and cfg.one_shot_linear
        steps = 0 if one_shot else cfg.proxy_steps
        snapshot = {k: v.clone() for k, v in self.net.state_dict().items()} if steps else None
        seen: set[str] = set()

        def is_unique(arch: Architecture) -> bool:
            return arch.key not in seen and architecture_hash(arch.expressions) not in seen

        learner = LanasSampler(cfg.init_samples, cfg.train_interval, cfg.height_levels, seed,
                               enabled=cfg.sampler == "lanas")
        seeds, scored, exhausted = sampler.seeds(), [], False
        while len(scored) < cfg.candidates:
            if seeds:
                arch, source = seeds.pop(0), "seed"
                if not is_unique(arch):
                    continue
            else:
                # the tree splits at the median rank (ties of the metric broken by the loss)
                ranked = sorted(scored, key=lambda c: c.sort_key(cfg.proxy))
                found = learner.propose(sampler, is_unique,
                                        [sampler.features(c.arch) for c in ranked],
                                        [-float(i) for i in range(len(ranked))], cfg.tries)
                if found is None:
                    exhausted = True
                    break
                arch, source = found
            digest = architecture_hash(arch.expressions)
            seen.update((arch.key, digest))
            cand = Candidate(name, index, len(scored) + 1, source, arch,
                             self.s.budget.params(arch.types), digest)
            cand.metric, cand.heldout_loss, cand.pred_loss = self.fitness(arch, snapshot,
                                                                          steps, seed + 1)
            scored.append(cand)
            shown = "invalid (NaN)" if not cand.valid else (
                f"{self.s.spec.primary}={cand.metric:.4f} loss={cand.heldout_loss:.4f} "
                f"pred_loss={cand.pred_loss:.4f}")
            self.progress(f"{label} candidate {len(scored)}/{cfg.candidates} ({source}) "
                          f"{shown} params={cand.params}: {arch.key}")
        if snapshot is not None:
            self.net.load_state_dict(snapshot)
        ranked = sorted(scored, key=lambda c: c.sort_key(cfg.proxy))
        for rank, cand in enumerate(ranked, 1):
            cand.rank = rank
        if not ranked or not ranked[0].valid:
            raise RefbenchError(f"stage {name}: no candidate gave a finite loss; try a lower "
                                f"learning rate", key="search.lr")
        best = ranked[0]
        self.progress(f"{label} best: {self.s.spec.primary}={best.metric:.4f} "
                      f"params={best.params}: {best.arch.key}")
        return StageResult(name, index, warm, ranked, best, exhausted)


# -- the public entry point ------------------------------------------------------------------
def search(benchmark: str, teacher_run: str | Path, out: str | Path,
           recipe: str = "efficientbert_tiny_glue", overrides: Sequence[str] = (), *,
           cache_dir: str | None = None,
           progress: Callable[[str], None] | None = print) -> SearchResult:
    """Run the coarse-to-fine EfficientBERT search on a GLUE benchmark, distilling from the
    `bert` run in `teacher_run`; write `search.json`, `ranking.jsonl` and a recipe to `out`.

    `overrides` are `--set` items: `model.*` sizes the student (its `ffn_expressions` seed
    the stages and set the default budget), `search.*` the `SearchConfig`. Every input is
    checked before anything is written; errors are one-line `RefbenchError`s.
    """
    started = time.time()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RefbenchError("output exists and is not a folder", path=out)
    setup = _prepare(benchmark, teacher_run, recipe, overrides, cache_dir)
    say = progress or (lambda _line: None)
    threads = torch.get_num_threads()
    if setup.cfg.threads is not None:
        torch.set_num_threads(setup.cfg.threads)
    try:
        return _run(setup, out, say, started)
    finally:
        torch.set_num_threads(threads)


def _run(setup: _Setup, out: Path, say: Callable[[str], None], started: float) -> SearchResult:
    searcher = _Searcher(setup, say)
    say(f"search: {len(searcher.train)} training rows, {len(searcher.heldout)} held out; "
        f"budget [{setup.budget.min_params}, {setup.budget.max_params}] parameters; "
        f"stages {', '.join(setup.cfg.stages)}")
    current = Architecture.parse(setup.student.ffn_expressions)
    stages = []
    for index, name in enumerate(setup.cfg.stages, 1):
        result = searcher.stage(index, name, current)
        stages.append(result)
        current = result.best.arch
    chosen = stages[-1].best
    summary = summarize(setup, stages, chosen, time.time() - started)
    write_outputs(out, setup, stages, chosen, summary, searcher.net.state_dict())
    return SearchResult(out, chosen, stages, summary)


# -- the registered search -----------------------------------------------------------------
@SEARCHES.register("efficientbert", family="EfficientBERT (Dong et al., 2021)")
class EfficientBertSearch(Search):
    """EfficientBERT's per-layer FFN search, coarse to fine (official ffn_search.sh).

    Three stages, each handing its best architecture to the next: joint (expression and
    linear type: 1-4 stacked FFNs x width 1, 1/2, 1/3, 1/4), expression (the expressions,
    with the linear types fixed) and linear (the linear types, with the expressions fixed);
    joint and linear keep the student within the parameter budget. Per stage: warm-up
    distillation of the weight-sharing supernet from the teacher, then each candidate is
    distilled briefly (linear: one-shot) and scored by the task metric on a held-out part of
    the training split. Writes search.json, ranking.jsonl, supernet.safetensors (the shared
    weights after the last stage) and efficientbert_searched_glue.yaml,
    a recipe for `refbench train efficientbert --recipe`. Tune with --set search.KEY=VALUE:
    stages, candidates, warmup_steps, proxy_steps, proxy (metric|loss|pred), min_params,
    max_params, sampler (lanas|random), init_samples, val_ratio, lr, batch_size, threads.
    """

    summary = "EfficientBERT's FFN search (joint, expression, linear stages) on a GLUE task"
    options = (
        Option("teacher", "path", "Run folder of a `refbench train bert` teacher of the same task."),
        Option("recipe", "str", "Student recipe: its model sizes, and its ffn_expressions set "
                                "the default parameter budget.", "efficientbert_tiny_glue"),
        Option("candidates", "int", "Candidates scored per stage (search.candidates)."),
        Option("warmup_steps", "int", "Warm-up distillation steps per stage."),
        Option("seed", "int", "Default: the recipe's trainer.seed."),
    )
    required = ("teacher",)

    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        items = self.as_overrides(
            options, {k: k for k in ("candidates", "warmup_steps", "seed")}, overrides)
        result = search(benchmark, options["teacher"], out,
                        options.get("recipe") or "efficientbert_tiny_glue", items,
                        cache_dir=cache_dir, progress=progress)
        chosen = result.summary["chosen"]
        lines = [f"searched: {', '.join(chosen['ffn_expressions'])}  params: {chosen['params']}",
                 f"wrote {result.out / 'search.json'}, ranking.jsonl, "
                 f"{result.summary['supernet_file']}, {result.summary['recipe_file']}"]
        return SearchOutcome(result.out, result.summary, lines)
