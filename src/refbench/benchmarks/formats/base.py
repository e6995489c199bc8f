"""Submission formats: how a benchmark's predictions and official label files are read.

Each format (`@FORMATS.register("glue_tsv")`) turns a prediction file and a reference
source (an official label file, or the prepared dataset split) into two `{id: value}`
maps that the scorer aligns. Readers validate strictly: a duplicate id, a NaN or an
unparsable value raises a `RefbenchError` naming the file and line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from refbench.options import Option
from refbench.registry import FORMATS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec


class SubmissionFormat(ABC):
    """Reads and writes one benchmark family's official prediction files."""

    #: when True, ids missing from the predictions are scored (as the official script does)
    #: and counted in the result; when False they are an error
    allow_missing: ClassVar[bool] = False
    #: when True, there is no single prepared split to score against: `--references` is needed
    references_required: ClassVar[bool] = False
    #: when True, predictions are a folder (e.g. one file per task or frame); uploads to
    #: the leaderboard are a zip of it, which the worker extracts before reading
    is_folder: ClassVar[bool] = False
    #: run-time options `read` accepts (e.g. a companion file), discovered by the CLI
    read_options: ClassVar[tuple[Option, ...]] = ()

    @abstractmethod
    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        """Write predictions atomically in the official format."""

    @abstractmethod
    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        """Parse a prediction file into `{id: prediction}`; `options` carries format-specific
        companions of the prediction file (e.g. SQuAD v2.0's `na_prob_file`)."""

    def companions(self, path: Path, spec: "BenchmarkSpec") -> dict[str, Any]:
        """Read options for the companion files `write` put beside `path` (none by default),
        so a run scores its own predictions with them."""
        return {}

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """Predictions that answer every reference exactly (a sanity check: they must score
        the best value); the default is the references themselves."""
        return dict(references)

    @abstractmethod
    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        """Parse an official label file (or folder) into `{id: reference}`."""

    @abstractmethod
    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        """The references of a prepared split, keyed like the prediction file."""


__all__ = ["FORMATS", "SubmissionFormat"]
