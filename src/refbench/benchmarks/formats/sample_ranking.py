"""Rankings of a ranking benchmark's own sample: the `nas_ranking` scores file over one
search's architecture codes, scored against the stand-alone accuracies that
`refbench.baselines.nas.ranking.run_ranking` writes (`ground_truth.jsonl`) or a table file.

No public table holds those accuracies (the benchmark trains them), so no prepared split
does either: `--references` (or a leaderboard's hidden copy) is required. Each search that
is a client of the ranking benchmark has one format here, naming its code space and the
command that writes its ground truth; the reading, the checks and the one-line errors are
shared (`SampleRankingFormat`).

Codes of one file must describe architectures of one space: the same number of blocks
(Pi-NAS) or layers (EfficientBERT); the ground truth fixes it, and a submission mixing
lengths is refused.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.formats.nas_ranking import (
    _LINE,
    NasRankingFormat,
    read_lines,
    read_scores,
    sample,
    score_value,
    space_code,
    write_scores,
)
from refbench.datasets.nasbench.spaces import ArchitectureError, SearchSpace
from refbench.errors import RefbenchError
from refbench.evaluation.ranking import ArchitectureTruth

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

#: the file `refbench.baselines.nas.ranking.run_ranking` writes: one JSON object per line,
#: `{"arch": CODE, "accuracy": MEAN, "per_seed": {...}}`
TRUTH_FILE = "ground_truth.jsonl"


def choice_list_space(num_choices: int) -> SearchSpace:
    """Pi-NAS's choice-list encoding (`3 0 1 3`: one candidate index per block, blank or
    comma separated; a packed digit string is read too) over `num_choices` candidates, any
    number of blocks: a file's codes must share one length, which the ground truth fixes."""

    def parse(text: str) -> tuple[int, ...]:
        tokens = [t for t in re.split(r"[\s,]+", str(text).strip().strip("[]()")) if t]
        if len(tokens) == 1 and tokens[0].isdigit() and len(tokens[0]) > 1:
            tokens = list(tokens[0])
        if not tokens:
            raise ArchitectureError("empty architecture code")
        out = []
        for block, token in enumerate(tokens):
            if not re.fullmatch(r"\d+", token):
                raise ArchitectureError(f"choice {token!r} of block {block} is not an integer")
            if int(token) >= num_choices:
                raise ArchitectureError(f"choice {token} of block {block} is out of range "
                                        f"0..{num_choices - 1}")
            out.append(int(token))
        return tuple(out)

    def fmt(choices: tuple[int, ...]) -> str:
        return " ".join(str(c) for c in choices)

    return SearchSpace(f"choice-list-{num_choices}", parse, fmt, "3 0 1 3")


def _example(producer: str) -> str:
    """What `--references` takes, for the error that asks for it."""
    return f"the {TRUTH_FILE}, or the folder holding it, that refbench search {producer} wrote"


def _one_length(codes: Mapping[str, Any], path: Path, what: str, unit: str,
                length: Callable[[str], int]) -> int:
    """The shared length of a file's codes (a ranking compares one space)."""
    lengths = {length(code) for code in codes}
    if len(lengths) != 1:
        raise RefbenchError(f"{what} mix codes of {sorted(lengths)} {unit}: a ranking compares "
                            f"architectures of one space", path=path)
    return lengths.pop()


def _read_jsonl(path: Path, space: SearchSpace) -> dict[str, ArchitectureTruth]:
    lines = read_lines(path, "ground-truth file")
    out: dict[str, ArchitectureTruth] = {}
    where: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            raise RefbenchError("empty line", path=path, line=number)
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RefbenchError(f"malformed JSON ({exc.msg})", path=path, line=number) from None
        if not isinstance(row, dict) or "arch" not in row or "accuracy" not in row:
            raise RefbenchError('expected {"arch": ..., "accuracy": ...}', path=path,
                                line=number)
        arch = space_code(space, row["arch"], path, number, "arch")
        value = score_value(row["accuracy"], path, number, "accuracy")
        if not math.isfinite(value):
            raise RefbenchError(f"accuracy {value} is not finite", path=path, line=number,
                                key="accuracy")
        if arch in out:
            raise RefbenchError(f"architecture {arch} is given twice (first at line "
                                f"{where[arch]})", path=path, line=number)
        out[arch], where[arch] = ArchitectureTruth(arch, value), number
    return out


def _blocks(code: str) -> int:
    return len(code.split())


def read_ground_truth(path: Path, space: SearchSpace, unit: str = "blocks",
                      length: Callable[[str], int] = _blocks) -> dict[str, ArchitectureTruth]:
    """`{canonical arch: stand-alone accuracy}` of a ranking benchmark's ground truth: its
    `ground_truth.jsonl` (or the benchmark's output folder holding it), or a table file in
    the submission's text layout (`ARCH<sep>ACCURACY` per line). Refused with one line naming
    the file and line: malformed JSON, a missing or non-numeric `accuracy`, NaN or +-inf, an
    invalid code, an architecture given twice, codes of different `length` (in `unit`), an
    empty file."""
    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".jsonl":  # the benchmark's output folder
        path = path / TRUTH_FILE
    if path.suffix.lower() == ".jsonl":
        out = _read_jsonl(path, space)
    else:
        table = read_scores(path, space)
        for arch, value in table.items():
            if not math.isfinite(value):
                raise RefbenchError(f"architecture {arch}: accuracy {value} is not finite",
                                    path=path)
        out = {a: ArchitectureTruth(a, v) for a, v in table.items()}
    if not out:
        raise RefbenchError("the ground truth names no architecture", path=path)
    _one_length(out, path, "the ground truth's architectures", unit, length)
    return out


def _parses(space: SearchSpace, text: str) -> bool:
    try:
        space.parse(text)
    except ArchitectureError:
        return False
    return True


def _sample_formats() -> list[type["SampleRankingFormat"]]:
    """Every concrete sample ranking format (each names its code space)."""
    return [c for c in SampleRankingFormat.__subclasses__() if c.format_name]


class SampleRankingFormat(NasRankingFormat):
    """The `nas_ranking` scores file over one search's codes, scored against the stand-alone
    accuracies of a ranking benchmark's fixed sample (module docstring). A subclass names
    the code space, what a code's length counts, and the command writing the ground truth.

    An architecture outside the sample is ignored and reported (refused on the
    leaderboard); a missing one is refused, as for every ranking."""

    references_required = True
    #: what `length` counts, for the mixed-length error
    unit = "blocks"
    #: the registered name, for the wrong-benchmark error
    format_name = ""

    def space(self) -> SearchSpace:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError("a sample ranking format names its code space")

    def length(self, code: str) -> int:
        """The number of blocks of a canonical code."""
        return _blocks(code)

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_scores(Path(path), predictions, self.space())

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"{spec.submission.format} takes no read options, got "
                                f"{sorted(options)}")
        try:
            scores = read_scores(Path(path), self.space())
        except RefbenchError:
            self._check_family(Path(path), spec)
            raise
        _one_length(scores, Path(path), "the submission's architectures", self.unit,
                    self.length)
        return scores

    def _check_family(self, path: Path, spec: "BenchmarkSpec") -> None:
        """On a file this format refused: when its first code is not of this space but is
        of another sample ranking's, say so (a ranking of another search's architectures
        handed to the wrong benchmark) instead of the puzzling parse error."""
        if path.suffix.lower() == ".json" or not path.is_file():
            return
        first = next((line.strip() for line in read_lines(path, "prediction file")
                      if line.strip()), "")
        match = _LINE.fullmatch(first)
        if match is None or _parses(self.space(), match["arch"]):
            return
        for other in _sample_formats():
            if other is not type(self) and _parses(other().space(), match["arch"]):
                raise RefbenchError(f"this code is of another search (format "
                                    f"{other.format_name}), not of {spec.name}; "
                                    f"`refbench list benchmarks` names the benchmark that "
                                    f"ranks it", path=path, line=1)

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        return sample(read_ground_truth(Path(path), self.space(), self.unit, self.length),
                      spec)

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        raise RefbenchError(f"{spec.name} is scored against a ranking benchmark's "
                            f"{TRUTH_FILE} (stand-alone accuracies): pass --references")


@FORMATS.register("pinas_ranking")
class PinasRankingFormat(SampleRankingFormat):
    """Pi-NAS choice-list codes (`3 0 1 3`), ground truth from
    `refbench search pinas-ranking`."""

    references_example = _example("pinas-ranking")
    format_name = "pinas_ranking"

    def space(self) -> SearchSpace:
        from refbench.baselines.nas.pinas.space import CANDIDATES

        return choice_list_space(len(CANDIDATES))


@FORMATS.register("efficientbert_ranking")
class EfficientbertRankingFormat(SampleRankingFormat):
    """EfficientBERT integer codes (`5.26.3.26.0.1.2/14.6.11.14.0.1.0.2`: each layer's FFN
    expression in prefix order, layers separated by `/`; a JSON list of expression strings
    is read too), ground truth from `refbench search efficientbert-ranking`."""

    references_example = _example("efficientbert-ranking")
    format_name = "efficientbert_ranking"
    unit = "layers"

    def space(self) -> SearchSpace:
        from refbench.baselines.nlp.efficientbert.encoding import code_space

        return code_space(None)

    def length(self, code: str) -> int:
        from refbench.baselines.nlp.efficientbert.encoding import layers_of

        return layers_of(code)
