"""The streaming metric contract.

A metric class is registered with `@METRICS.register(name, higher_is_better=..., version=...)`.
`update()` adds aligned predictions and references, `merge()` folds in another instance
(from another process), `compute()` returns `{key: value}` with the documented, stable keys.
A change to the numbers bumps `version`.

A metric whose value depends on how many references there are also says what it counted
(`counts()`, e.g. the valid ground-truth boxes per class) and warns when a tiny set
quantises the score (`warnings()`); the scorer puts both into the result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from refbench.options import Option


class Metric(ABC):
    """Base class of every registered metric."""

    #: documented key -> meaning; `compute()` returns exactly these keys
    keys: ClassVar[dict[str, str]] = {}
    #: key -> True when larger is better, False when smaller is, None for a key that is not
    #: a score (a count, a chosen threshold); unlisted keys take the registration's default
    directions: ClassVar[dict[str, bool | None]] = {}
    #: run-time options the constructor accepts beyond the spec's `metric.args` (e.g. a
    #: decision threshold), discovered by the CLI
    options: ClassVar[tuple[Option, ...]] = ()
    #: key -> the option naming a user-supplied weights file the key cannot be computed
    #: without (e.g. FID needs an Inception file): a benchmark whose primary key is listed
    #: is scored only when the user passes that option, and otherwise fails in one line
    weight_dependent_keys: ClassVar[dict[str, str]] = {}

    def __init__(self, **args: Any) -> None:
        self.args = args

    @abstractmethod
    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        """Add one batch of aligned predictions and references."""

    @abstractmethod
    def merge(self, other: "Metric") -> None:
        """Fold another instance's state into this one (distributed evaluation)."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """The metric values over everything added so far."""

    def counts(self) -> dict[str, int]:
        """The reference counts the values were computed from, keyed by namespaced names
        that contain a `/` (e.g. `Car/moderate/valid_gt`), so they never collide with the
        scorer's id counts. Called after `compute()`; none by default."""
        return {}

    def warnings(self) -> list[str]:
        """One-line, factual warnings about the values (e.g. a score quantised by too few
        references). Called after `compute()`; none by default."""
        return []

    def output_keys(self) -> list[str]:
        return list(self.keys)

    def higher_is_better(self, key: str, default: bool = True) -> bool | None:
        return self.directions.get(key, default)
