"""The architecture / hyper-parameter search contract behind `refbench search NAME`.

A search is registered with `@SEARCHES.register(name)` beside the family it searches
(EfficientBERT's FFN search lives in `baselines/nlp/efficientbert/search.py`). It declares
its own options (a teacher run, a recipe, budgets, ...), which the CLI turns into flags and
`--option key=value` items without naming them, and it writes its results into one folder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from refbench.options import Option


@dataclass
class SearchOutcome:
    """What a finished search reports: its folder, a JSON summary and lines for people."""

    out: Path
    summary: dict[str, Any]
    lines: list[str]


class Search(ABC):
    """Base class of every registered search."""

    #: one line for `refbench list searches` and `refbench search --help`
    summary: ClassVar[str] = ""
    #: the search's own options; `required=True` ones are checked by the CLI
    options: ClassVar[tuple[Option, ...]] = ()
    #: names of options that must be given
    required: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def as_overrides(options: Mapping[str, Any], keys: Mapping[str, str],
                     overrides: Sequence[str] = ()) -> list[str]:
        """`overrides` plus `search.KEY=VALUE` for every given option, so a command-line
        option is the same as `--set search.KEY=...` (`keys`: option name -> KEY)."""
        return [*overrides, *(f"search.{key}={options[opt]}" for opt, key in keys.items()
                              if options.get(opt) is not None)]

    @abstractmethod
    def run(self, benchmark: str, out: Path, options: Mapping[str, Any],
            overrides: Sequence[str], *, cache_dir: str | None,
            progress: Callable[[str], None]) -> SearchOutcome:
        """Search on `benchmark`, write everything under `out`, return the outcome."""
