"""Candidates of the EfficientBERT search: the three stages' samplers, the parameter
budget, the scored-candidate record and the LaNAS-style learned sampler.

Re-derived from the official `ffn_search.py`, `ffn_search.sh` and `utils/action_space.py`
(`sample_entire_individual{,2}`, `SearchPhase`, `LearningPhase`) of
`cheneydon/efficient-bert`. The official search runs three stages, each a separate
`ffn_search.py` call whose best architecture is copied by hand into the next one's
`init_expr`:

1. `joint` (stage 1): every layer draws a random linear type `linear{n}_{r}` (n = stacked
   FFNs, r = width ratio) with the plain BERT FFN `linear(gelu(linear(x,wb1)),wb2)` and
   mutates it (DEAP mutUniform + mutNodeReplacement + mutInsert, until `check_individual`
   passes); whole architectures outside `[min_params, max_params]` (15M-16M for
   EfficientBERT) are redrawn. Expression and size are searched together, coarsely.
2. `expression` (stage 2): the linear types are frozen to stage 1's winner (the official
   code writes a bare `linear` and takes the sizes from `init_expr[0]`); each layer starts
   from stage 1's expression or from the plain FFN and is mutated. No budget check: the
   sizes, hence the parameters, are fixed.
3. `linear` (stage 3): the expressions are frozen to stage 2's winner; each layer draws one
   of the 16 linear types (the 16 rows of the official `init_expr`), under the budget.

Every stage first yields its seeds (the official `is_init` individuals: stage 1 the plain
`linear1_1` FFN in every layer, stage 2 the stage-1 winner and its plain-FFN twin, stage
3 the stage-2 winner), then random candidates until `init_samples` were scored, then
candidates filtered by the learned sampler. Candidates are de-duplicated by their string
and by `architecture_hash` (what they compute on fixed random weights), as `is_unique` does.

Replaced: the official LightGBM classifiers tuned by hyperopt (10 TPE trials) are
scikit-learn's `HistGradientBoostingClassifier` (the same histogram gradient boosting,
LightGBM-inspired) with fixed hyper-parameters; DEAP's mutation operators are
`space.mutate` applied 1..`mutation_steps` times.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from refbench.baselines.nlp.efficientbert.encoder import EfficientBertConfig
from refbench.baselines.nlp.efficientbert.ffn import ffn_parameter_count
from refbench.baselines.nlp.efficientbert.space import (
    ACTIVATIONS,
    BINARY_OPS,
    LEAVES,
    Binary,
    Linear,
    LinearType,
    Unary,
    Var,
    check_widths,
    enumerate_linear_types,
    mutate,
    nodes,
    validate,
)
from refbench.baselines.nlp.efficientbert.supernet import (
    Architecture,
    plain_expression,
    retype,
    student_parameter_count,
)
from refbench.errors import RefbenchError

STAGES = ("joint", "expression", "linear")
#: the official window `--min_params 15 --max_params 16` (M) as a ratio
MIN_OVER_MAX = 15 / 16
#: tokens per layer in the learned sampler's features (the official `max_pad_len` is 20)
PAD_LEN = 24
_TOKENS = {name: i for i, name in enumerate(
    LEAVES + ACTIVATIONS + BINARY_OPS + tuple(t.name for t in enumerate_linear_types()))}
_TYPE_INDEX = {t: i for i, t in enumerate(enumerate_linear_types())}


# -- the parameter budget -------------------------------------------------------------------
@dataclass
class Budget:
    """`[min_params, max_params]` on the student's parameter count (the official
    `get_entire_params`, which depends only on the per-layer linear types)."""

    cfg: EfficientBertConfig
    teacher_hidden: int
    min_params: int
    max_params: int
    ffn: dict[LinearType, int] = field(init=False)  # one layer's FFN parameters per type
    fixed: int = field(init=False)  # everything but the FFNs

    def __post_init__(self) -> None:
        self.ffn = {t: ffn_parameter_count(t, self.cfg.hidden_size, self.cfg.ffn_hidden_size)
                    for t in enumerate_linear_types()}
        some = enumerate_linear_types()[0]
        layers = self.cfg.num_layers
        self.fixed = self.params([some] * layers) - layers * self.ffn[some]

    @classmethod
    def resolve(cls, cfg: EfficientBertConfig, teacher_hidden: int, min_params: float | None,
                max_params: float | None, checked: bool = True) -> "Budget":
        """The budget of `search.min_params` / `search.max_params`: by default, at most the
        parameters of the recipe's own `ffn_expressions` and at least 15/16 of that (the
        official window ratio). `checked`: raise when no architecture fits."""
        probe = cls(cfg, teacher_hidden, 0, 0)
        recipe = Architecture.parse(cfg.ffn_expressions).types
        high = int(max_params) if max_params is not None else probe.params(recipe)
        low = int(min_params) if min_params is not None else math.ceil(high * MIN_OVER_MAX)
        if low > high:
            raise RefbenchError(f"min_params {low} > max_params {high}", key="search.min_params")
        budget = cls(cfg, teacher_hidden, low, high)
        every = [list(budget.ffn)] * cfg.num_layers
        if checked and budget.construct(every, random.Random(0)) is None:
            least = min(budget.ffn.values()) * cfg.num_layers + budget.fixed
            most = max(budget.ffn.values()) * cfg.num_layers + budget.fixed
            raise RefbenchError(f"no architecture fits the parameter budget [{low}, {high}]; "
                                f"students of this size have {least} to {most} parameters",
                                key="search.max_params")
        return budget

    def params(self, types: Sequence[LinearType]) -> int:
        return student_parameter_count(self.cfg, types, teacher_hidden=self.teacher_hidden)

    def fits(self, types: Sequence[LinearType]) -> bool:
        return self.min_params <= self.params(types) <= self.max_params

    def construct(self, options: Sequence[Sequence[LinearType]],
                  rng: random.Random) -> tuple[LinearType, ...] | None:
        """Some per-layer choice from `options` inside the budget, or None if none exists
        (an exact depth-first search, pruned by the reachable range and memoised)."""
        if any(not layer for layer in options):
            return None
        lo, hi = self.min_params - self.fixed, self.max_params - self.fixed
        values = [[self.ffn[t] for t in layer] for layer in options]
        least = [sum(min(v) for v in values[i:]) for i in range(len(values) + 1)]
        most = [sum(max(v) for v in values[i:]) for i in range(len(values) + 1)]
        failed: set[tuple[int, int]] = set()

        def dfs(i: int, total: int) -> list[LinearType] | None:
            if i == len(options):
                return [] if lo <= total <= hi else None
            if (i, total) in failed:
                return None
            choices = list(options[i])
            rng.shuffle(choices)
            for kind in choices:
                s = total + self.ffn[kind]
                if s + least[i + 1] > hi or s + most[i + 1] < lo:
                    continue
                rest = dfs(i + 1, s)
                if rest is not None:
                    return [kind, *rest]
            failed.add((i, total))
            return None

        found = dfs(0, 0)
        return None if found is None else tuple(found)

    def sample(self, options: Sequence[Sequence[LinearType]], rng: random.Random,
               tries: int) -> tuple[LinearType, ...] | None:
        """Uniform per-layer types redrawn until they fit (the official rejection loop),
        then the exact search if `tries` draws all missed."""
        for _ in range(tries):
            types = tuple(rng.choice(list(layer)) for layer in options)
            if self.fits(types):
                return types
        return self.construct(options, rng)


# -- the stages -----------------------------------------------------------------------------
class StageSampler:
    """Random candidates of one stage around `current` (the previous stage's winner)."""

    def __init__(self, stage: str, current: Architecture, budget: Budget, rng: random.Random,
                 mutation_steps: int = 3, tries: int = 1000) -> None:
        if stage not in STAGES:
            raise RefbenchError(f"unknown search stage {stage!r} (known: {', '.join(STAGES)})",
                                key="search.stages")
        self.stage, self.current, self.budget = stage, current, budget
        self.rng, self.mutation_steps, self.tries = rng, mutation_steps, tries
        cfg = budget.cfg
        self.hidden, self.ffn_hidden = cfg.hidden_size, cfg.ffn_hidden_size or cfg.hidden_size
        layers = len(current)
        if stage == "joint":
            usable = [t for t in enumerate_linear_types() if self.fits_widths(plain_expression(t))]
            self.options = [usable] * layers
        elif stage == "linear":
            self.options = [[t for t in enumerate_linear_types()
                             if self.fits_widths(retype(e, t))] for e in current.expressions]
        else:
            self.options = [[t] for t in current.types]

    def fits_widths(self, expr: Any) -> bool:
        """Valid in the search space and runnable at the student's real widths."""
        try:
            kind = validate(expr)
            inner = kind.inner_width(self.ffn_hidden)
            if inner < 1:
                return False
            check_widths(expr, self.hidden, inner)
        except RefbenchError:
            return False
        return True

    def in_budget(self, arch: Architecture) -> bool:
        return self.stage == "expression" or self.budget.fits(arch.types)

    def seeds(self) -> list[Architecture]:
        """The official `is_init` candidates of the stage that are valid and in budget."""
        if self.stage == "joint":
            first = enumerate_linear_types()[0]
            seeds = [Architecture((plain_expression(first),) * len(self.current))]
        elif self.stage == "expression":
            seeds = [self.current,
                     Architecture(tuple(plain_expression(t) for t in self.current.types))]
        else:
            seeds = [self.current]
        return [a for a in seeds
                if all(self.fits_widths(e) for e in a.expressions) and self.in_budget(a)]

    def random(self) -> Architecture:
        """One random candidate of the stage (the official per-stage sampler)."""
        if self.stage == "expression":
            types: tuple[LinearType, ...] | None = self.current.types
        else:
            types = self.budget.sample(self.options, self.rng, self.tries)
        if types is None:
            raise RefbenchError(f"no {self.stage}-stage candidate fits the parameter budget "
                                f"[{self.budget.min_params}, {self.budget.max_params}]",
                                key="search.max_params")
        if self.stage == "linear":
            return Architecture(tuple(retype(e, t) for e, t in zip(self.current.expressions,
                                                                    types)))
        exprs = []
        for i, kind in enumerate(types):
            start = plain_expression(kind)
            if self.stage == "expression":
                start = self.rng.choice([self.current.expressions[i], start])
            exprs.append(self._mutated(start, kind))
        return Architecture(tuple(exprs))

    def _mutated(self, expr: Any, kind: LinearType) -> Any:
        """1..mutation_steps random edits, keeping the linear type (the official
        `sample_individual`; the unmutated start if no valid mutant turns up)."""
        for _ in range(self.tries):
            out = expr
            for _ in range(self.rng.randint(1, self.mutation_steps)):
                out = retype(mutate(out, self.rng), kind)
            if self.fits_widths(out):
                return out
        return expr  # pragma: no cover - mutate always finds valid neighbours

    def features(self, arch: Architecture) -> list[float]:
        """The learned sampler's input: per-layer prefix token ids padded with -1 (stages 1
        and 2, the official `sample_individual_ids`), or per-layer linear-type ids (stage 3,
        `sample_individual_ids2`)."""
        if self.stage == "linear":
            return [float(_TYPE_INDEX[t]) for t in arch.types]
        out: list[float] = []
        for expr in arch.expressions:
            ids = [float(_TOKENS[_name(n)]) for _, n in nodes(expr)][:PAD_LEN]
            out += ids + [-1.0] * (PAD_LEN - len(ids))
        return out


def _name(node: Any) -> str:
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Linear):
        return node.kind.name
    assert isinstance(node, (Unary, Binary))
    return node.op


# -- scored candidates ------------------------------------------------------------------------
@dataclass
class Candidate:
    """One scored architecture of a stage."""

    stage: str
    stage_index: int
    order: int
    source: str  # seed | random | lanas
    arch: Architecture
    params: int
    hash: str
    metric: float | None = None
    heldout_loss: float | None = None
    #: the held-out prediction-layer loss (soft cross-entropy against the teacher's logits)
    pred_loss: float | None = None
    rank: int = 0

    @property
    def valid(self) -> bool:
        return self.heldout_loss is not None

    def sort_key(self, proxy: str) -> tuple[float, float, int]:
        """Ranking order: the proxy (metric descending, held-out loss ascending, or held-out
        prediction loss ascending), then the held-out loss, then evaluation order; invalid
        candidates (NaN) last."""
        if not self.valid:
            return (math.inf, math.inf, self.order)
        loss = float(self.heldout_loss)  # type: ignore[arg-type]
        return (-self.fitness(proxy), loss, self.order)

    def fitness(self, proxy: str) -> float:
        """The proxy as one larger-is-better number (losses negated); -inf when invalid."""
        if not self.valid:
            return -math.inf
        if proxy == "loss":
            return -float(self.heldout_loss)  # type: ignore[arg-type]
        if proxy == "pred":
            return -float(self.pred_loss if self.pred_loss is not None else math.inf)
        return float(self.metric)  # type: ignore[arg-type]

    def to_json(self, primary: str, proxy: str) -> dict[str, Any]:
        value, name = {"loss": (self.heldout_loss, "heldout_loss"),
                       "pred": (self.pred_loss, "heldout_pred_loss")}.get(
                           proxy, (self.metric, primary))
        return {"stage": self.stage, "stage_index": self.stage_index, "rank": self.rank,
                "proxy": value, "proxy_name": name,
                "metric": {primary: self.metric}, "heldout_loss": self.heldout_loss,
                "heldout_pred_loss": self.pred_loss,
                "valid": self.valid, "params": self.params, "hash": self.hash,
                "ffn_expressions": self.arch.strings,
                "linear_types": [t.name for t in self.arch.types],
                "order": self.order, "source": self.source}


# -- the learned sampler ----------------------------------------------------------------------
def _fit_classifier(x: np.ndarray, good: np.ndarray, seed: int, attempts: int = 5) -> Any:
    """A classifier of "good" (>= median) architectures; retrained (new split and seed)
    while its held-out error is >= 0.5, as `LearningPhase` does, at most `attempts` times."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    model = None
    for attempt in range(attempts):
        model = HistGradientBoostingClassifier(max_iter=100, min_samples_leaf=2,
                                               random_state=seed + attempt)
        if len(good) < 10 or min(good.sum(), (~good).sum()) < 2:
            return model.fit(x, good)  # too few to hold a fifth out
        x_tr, x_va, y_tr, y_va = train_test_split(x, good, test_size=0.2, stratify=good,
                                                  random_state=seed + attempt)
        model.fit(x_tr, y_tr)
        if float(np.mean(model.predict(x_va) != y_va)) < 0.5:
            break
    return model


class _Node:
    """One node of the LaNAS tree: a classifier splits the scored architectures at the
    median; the children split their halves again, down to `height`."""

    def __init__(self, x: np.ndarray, y: np.ndarray, height: int, seed: int) -> None:
        self.value = float(np.median(y))
        self.threshold = self.value
        self.model: Any = None
        good = y >= self.value
        if height > 0 and good.any() and (~good).any():
            self.model = _fit_classifier(x, good, seed)
            self.left = _Node(x[good], y[good], height - 1, seed + 1)
            self.right = _Node(x[~good], y[~good], height - 1, seed + 2)
            self.threshold = self.right.value

    def path(self) -> list[tuple["_Node", bool]]:
        """The official `ucb_select`: at each node the child with the larger
        `value - threshold` (no exploration term in the official code)."""
        node, out = self, []
        while node.model is not None:
            go_left = node.left.value - node.threshold >= node.right.value - node.threshold
            out.append((node, go_left))
            node = node.left if go_left else node.right
        return out

    def accepts(self, features: list[float]) -> bool:
        row = np.asarray([features], dtype=np.float64)
        return all(bool(node.model.predict(row)[0]) == want for node, want in self.path())


class LanasSampler:
    """`SearchPhase.sampler`: random candidates until `init_samples` were scored, then
    candidates the tree accepts; the tree is rebuilt every `train_interval` scores and
    grows one level per `height_levels` threshold passed (400, 800, 1600, 3200)."""

    def __init__(self, init_samples: int, train_interval: int, height_levels: Sequence[int],
                 seed: int, enabled: bool = True) -> None:
        self.init_samples, self.train_interval = init_samples, max(1, train_interval)
        self.height_levels, self.seed, self.enabled = list(height_levels), seed, enabled
        self.tree: _Node | None = None
        self.trained_at = -1

    def propose(self, sampler: StageSampler, is_unique: Callable[[Architecture], bool],
                xs: Sequence[list[float]], ys: Sequence[float],
                tries: int) -> tuple[Architecture, str] | None:
        """A new unique candidate and how it was found (`random` / `lanas`), or None when
        `tries` random draws found nothing new (a small, exhausted stage)."""
        n = len(ys)
        if self.enabled and n >= self.init_samples and len(set(ys)) > 1:
            if self.tree is None or n - self.trained_at >= self.train_interval:
                height = int(np.searchsorted(self.height_levels, n)) + 1
                self.tree = _Node(np.asarray(xs, dtype=np.float64), np.asarray(ys), height,
                                  self.seed + n)
                self.trained_at = n
            for _ in range(tries):
                arch = sampler.random()
                if self.tree.accepts(sampler.features(arch)) and is_unique(arch):
                    return arch, "lanas"
        for _ in range(tries):
            arch = sampler.random()
            if is_unique(arch):
                return arch, "random"
        return None
