"""Submission formats: how a benchmark's predictions and official label files are read.

Each format (`@FORMATS.register("glue_tsv")`) turns a prediction file and a reference
source (an official label file, or the prepared dataset split) into two `{id: value}`
maps that the scorer aligns. Readers validate strictly: a duplicate id, a NaN or an
unparsable value raises a `RefbenchError` naming the file and line.

Missing and extra ids follow one policy (`refbench.benchmarks.scoring.check_ids`): an id
of the references without a prediction is scored as the official tool scores it, unless
the official tool refuses such a file (`missing = "refuse"`); a prediction id that is not
in the references is ignored, as the official tools ignore it. Both are always reported,
and strict scoring (`--strict`, the leaderboard) refuses either. A format whose official
tool scores extra ids instead (Waymo's counts their boxes as false positives) says so with
`extra = "score"` and `extra_reference`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping

from refbench.options import Option
from refbench.registry import FORMATS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec


class SubmissionFormat(ABC):
    """Reads and writes one benchmark family's official prediction files."""

    #: what an id of the references without a prediction means: "score" -- scored as the
    #: official tool scores it (and reported); "refuse" -- the official tool refuses an
    #: incomplete file, so refbench does too
    missing: ClassVar[Literal["score", "refuse"]] = "score"
    #: how a missing prediction is scored, for the warning line (e.g. "scored 0")
    missing_scored_as: ClassVar[str] = "scored as the official tool scores a missing prediction"
    #: why an incomplete file is refused (`missing = "refuse"`), for the error line
    missing_refused_because: ClassVar[str] = ("the official tool refuses an incomplete file, "
                                              "so refbench does too")
    #: what a prediction id outside the references means: "ignore" -- ignored, as the
    #: official tools ignore it; "score" -- scored against `extra_reference(id)`, for a tool
    #: that scores such predictions (and reported either way)
    extra: ClassVar[Literal["ignore", "score"]] = "ignore"
    #: how an extra prediction is treated, for the warning line
    extra_scored_as: ClassVar[str] = "ignored, as the official tools ignore them"
    #: when True, there is no single prepared split to score against: `--references` is needed
    references_required: ClassVar[bool] = False
    #: what `--references` names for this format, for the error when it is missing
    references_example: ClassVar[str] = "the dataset's root folder"
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

    def extra_reference(self, key: Any) -> Any:
        """The reference an extra prediction id is scored against when `extra == "score"`
        (e.g. a frame without ground truth); formats that ignore extras never call it."""
        raise NotImplementedError(f"{type(self).__name__} does not score extra ids")

    def companions(self, path: Path, spec: "BenchmarkSpec") -> dict[str, Any]:
        """Read options for the companion files `write` put beside `path` (none by default),
        so a run scores its own predictions with them."""
        return {}

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """Predictions that answer every reference exactly (a sanity check: they must score
        the best value); the default is the references themselves."""
        return dict(references)

    def bind_splits(self, load_split: Callable[[str], "hf_datasets.Dataset"]) -> None:
        """Called by the scorer before the references are read, with a loader of the
        benchmark's prepared splits (same cache and config): a format whose references need
        more than the scored rows (a retrieval gallery) keeps it; the default ignores it."""

    def references_from_release(self, root: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        """The references of the spec's split read straight from the dataset's official
        release at `root`, through the builder's own parser (nothing is cached): for formats
        whose label source is the release folder itself (a reports archive, an image tree),
        so `--references` and a leaderboard's hidden copy may be that folder."""
        from refbench.datasets.base import get_builder, resolve_split
        from refbench.errors import RefbenchError

        builder = get_builder(spec.dataset.name)
        configs = builder.configs()
        config = spec.dataset.config or (configs[0] if len(configs) == 1 else None)
        if config is None:
            raise RefbenchError(f"benchmark {spec.name} names no config of {spec.dataset.name} "
                                f"(one of {', '.join(configs)})", path=root)
        splits = builder.generate(Path(root), config)
        stored = resolve_split(builder, spec.split, list(splits), f"{spec.dataset.name}/{config}")
        return self.references_from_dataset(splits[stored], spec)

    @abstractmethod
    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        """Parse an official label file (or folder) into `{id: reference}`."""

    @abstractmethod
    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        """The references of a prepared split, keyed like the prediction file."""


__all__ = ["FORMATS", "SubmissionFormat"]
