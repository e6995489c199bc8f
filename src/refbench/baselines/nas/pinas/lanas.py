"""The Pi-NAS search: LaNAS-style learned partitions of the architecture encoding, scored
by BN recalibration + linear-probe fitness on a trained supernet (`refbench search pinas`).

Re-derived from the official `apis/search_phase.py` (`SearchPhase`) and
`apis/learning_phase.py` (`LearningPhase`):

- the first `initial_sample` architectures (given seeds, e.g. the published codes, then
  uniform random ones, all distinct) are scored;
- then a tree is built over everything scored so far: each node splits its architectures
  at the median fitness into good (left) and bad (right) with a learned classifier, to a
  height of `searchsorted(height_levels, n_scored) + 1` levels;
- `selects` architectures are drawn from the leaf chosen by UCB (descend to the child
  with the larger `median(child) - median(right child) + c * sqrt(2 ln n_parent / n_child)`;
  the official `get_ucb` has no exploration term: `ucb_c: 0`): random codes are rejected
  until every classifier on the path agrees with the leaf (200,000 tries, then any unseen
  code), the visit counts on the path are raised, and the tree is rebuilt;
- the search stops after `max_samples` architectures and reports the best.

The official classifiers are LightGBM models tuned by hyperopt on one-hot-free integer
codes; here they are scikit-learn linear models (`logistic` or `linear_svm`) on the
one-hot encoding, so a split is a learned hyperplane as in the LaNAS paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from refbench.baselines.nas.pinas.space import Arch, SearchSpace
from refbench.errors import RefbenchError

#: official `pinas_linear_evaluation.py` search settings
INITIAL_SAMPLE, SELECTS, MAX_SAMPLES = 80, 8, 1000
HEIGHT_LEVELS = (400, 800, 1600, 3200)
#: official `LearningPhase.sample`: rejection-sampling tries per phase
REJECTION_TRIES = 200_000


@dataclass
class LanasConfig:
    """`search.*` settings of the tree search (official values by default)."""

    initial_sample: int = INITIAL_SAMPLE
    selects: int = SELECTS
    max_samples: int = MAX_SAMPLES
    height_levels: list[int] = field(default_factory=lambda: list(HEIGHT_LEVELS))
    ucb_c: float = 0.0
    classifier: Literal["logistic", "linear_svm"] = "logistic"
    tries: int = REJECTION_TRIES
    #: codes scored first (published names or codes), counted in `initial_sample`
    seeds: list[str] = field(default_factory=list)


def check_lanas(cfg: LanasConfig, key: str = "search") -> None:
    for name in ("initial_sample", "selects", "max_samples", "tries"):
        if getattr(cfg, name) < 1:
            raise RefbenchError(f"must be >= 1, got {getattr(cfg, name)}", key=f"{key}.{name}")
    if len(cfg.seeds) > cfg.initial_sample:
        raise RefbenchError(f"{len(cfg.seeds)} seeds but initial_sample is {cfg.initial_sample}",
                            key=f"{key}.seeds")
    if list(cfg.height_levels) != sorted(cfg.height_levels):
        raise RefbenchError("must be increasing", key=f"{key}.height_levels")
    if cfg.ucb_c < 0:
        raise RefbenchError(f"must be >= 0, got {cfg.ucb_c}", key=f"{key}.ucb_c")


def tree_height(n_scored: int, levels: Sequence[int]) -> int:
    """Official `SearchPhase.height`: `searchsorted(levels, n) + 1`."""
    return int(np.searchsorted(np.asarray(levels), n_scored)) + 1


def _classifier(kind: str, seed: int):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if kind == "linear_svm":
        return LinearSVC(C=1.0, random_state=seed)
    return LogisticRegression(C=1.0, max_iter=1000, random_state=seed)


class Node:
    """A node of the learned partition: a leaf, or a classifier splitting good from bad."""

    def __init__(self, X: np.ndarray, y: np.ndarray, height: int, kind: str, seed: int) -> None:
        self.median = float(np.median(y)) if len(y) else -math.inf
        self.threshold = self.median
        self.n = 0
        self.model = None
        self.error: float | None = None
        self.left: Node | None = None
        self.right: Node | None = None
        good = y >= self.median
        # official LearningPhase: `height` levels of splits below this node (0: a leaf)
        if height > 0 and 0 < int(good.sum()) < len(y):
            self.model = _classifier(kind, seed).fit(X, good)
            self.error = float((self.model.predict(X) != good).mean())
            self.left = Node(X[good], y[good], height - 1, kind, seed + 1)
            self.right = Node(X[~good], y[~good], height - 1, kind, seed + 2)
            self.threshold = self.right.median

    @property
    def is_leaf(self) -> bool:
        return self.model is None

    def ucb(self, child: "Node", c: float) -> float:
        explore = c * math.sqrt(2.0 * math.log(max(1, self.n)) / max(1, child.n)) if c else 0.0
        return child.median - self.threshold + explore

    def select(self, c: float) -> list[tuple["Node", bool]]:
        """The path (node, goes-left) from here to the UCB-chosen leaf."""
        path, node = [], self
        while not node.is_leaf:
            assert node.left is not None and node.right is not None
            left = node.ucb(node.left, c) >= node.ucb(node.right, c)
            path.append((node, left))
            node = node.left if left else node.right
        return path

    def leaf_of(self, path: Sequence[tuple["Node", bool]]) -> "Node":
        node = self
        for _parent, left in path:
            assert node.left is not None and node.right is not None
            node = node.left if left else node.right
        return node


def in_region(path: Sequence[tuple[Node, bool]], x: np.ndarray) -> bool:
    """Whether every classifier on `path` sends `x` to the path's side."""
    for node, left in path:
        if bool(node.model.predict(x.reshape(1, -1))[0]) != left:  # type: ignore[union-attr]
            return False
    return True


@dataclass
class Scored:
    code: Arch
    fitness: float
    source: str
    leaf: str = ""


class LanasSearch:
    """The sample -> score -> partition loop; `run(score)` returns every scored code."""

    def __init__(self, space: SearchSpace, cfg: LanasConfig, seed: int) -> None:
        check_lanas(cfg)
        self.space, self.cfg = space, cfg
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.seeds = [space.parse(s, key="search.seeds") for s in cfg.seeds]
        self.scored: list[Scored] = []
        self.seen: set[Arch] = set()
        self.tree: Node | None = None

    def _unseen_random(self) -> Arch | None:
        for _ in range(self.cfg.tries):
            code = self.space.random(self.rng)
            if code not in self.seen:
                return code
        return None

    def build_tree(self) -> Node:
        X = np.stack([self.space.one_hot(s.code) for s in self.scored])
        y = np.asarray([s.fitness for s in self.scored], dtype=np.float64)
        height = tree_height(len(self.scored), self.cfg.height_levels)
        self.tree = Node(X, y, height, self.cfg.classifier, self.seed + len(y))
        return self.tree

    def propose(self) -> Iterator[tuple[Arch, str, list[tuple[Node, bool]]]]:
        """Initial codes, then tree-guided ones (`selects` per tree)."""
        for code in self.seeds:
            if code not in self.seen:
                yield code, "seed", []
        while len(self.scored) < self.cfg.initial_sample:
            code = self._unseen_random()
            if code is None:
                return
            yield code, "random", []
        while True:
            tree = self.build_tree()
            for _ in range(self.cfg.selects):
                path = tree.select(self.cfg.ucb_c)
                code = self._sample_in(path)
                if code is None:
                    return
                yield code, "tree", path

    def _sample_in(self, path: Sequence[tuple[Node, bool]]) -> Arch | None:
        for _ in range(self.cfg.tries):
            code = self.space.random(self.rng)
            if code not in self.seen and in_region(path, self.space.one_hot(code)):
                return code
        return self._unseen_random()

    def run(self, score: Callable[[Arch], float],
            progress: Callable[[Scored, int], None] | None = None) -> list[Scored]:
        for code, source, path in self.propose():
            if len(self.scored) >= self.cfg.max_samples:
                break
            value = float(score(code))
            if not math.isfinite(value):
                raise RefbenchError(f"fitness of {self.space.format(code)} is not finite",
                                    key="search")
            leaf = "".join("l" if left else "r" for _node, left in path)
            entry = Scored(code, value, source, leaf)
            self.scored.append(entry)
            self.seen.add(code)
            for node, _left in path:
                node.n += 1
            if path and self.tree is not None:
                self.tree.leaf_of(path).n += 1
            if progress is not None:
                progress(entry, len(self.scored))
        return self.scored

    def best(self) -> Scored:
        if not self.scored:
            raise RefbenchError("the search scored no architecture", key="search")
        return max(self.scored, key=lambda s: s.fitness)
