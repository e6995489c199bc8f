"""The architecture-ranking submission format: one predicted score per architecture, scored
against a ground-truth table (NAS-Bench-Macro, NASLib's NAS-Bench-201/101 tables).

A submission is either
- a text file, one line per architecture, `ARCH<sep>SCORE`: the score is the last field,
  after the last tab, comma or space, the architecture code everything before it
  (`02012100,93.1`, `02012100 93.1`, `(0, 2, 3, 2, 3, 1)<TAB>0.53`), or
- a `.json` file: `{"ARCH": score, ...}` or `[{"arch": "ARCH", "score": score}, ...]`.

Larger scores mean better architectures (negate a lower-is-better proxy). Codes are checked
against the benchmark's search space (`refbench.datasets.nasbench.spaces`) and compared in
their canonical spelling, so `(0,2,3,2,3,1)` and `(0, 2, 3, 2, 3, 1)` are one architecture.
Refused with one line naming the file and line (or JSON key / index): a malformed code
(wrong length, a choice out of range), an architecture given twice, a score that is not a
number or is NaN, an empty line, an empty file. +-inf are accepted (they order).

References: the table's ground truth per architecture (NAS-Bench-Macro: `mean_acc`, the
mean of its three seeds; NASLib: `val_accuracy`), from the official file (or the folder
holding it) or the prepared split; when the spec's metric fixes `sample_size` below the
table's size, the sample is drawn once, without replacement, by
`numpy.random.default_rng(sample_seed)` from the ids in sorted order, so every submitter is
scored on the same N architectures.

Policy: a ranking over part of the sample is another ranking, so a missing architecture is
refused; architectures outside the sample (or the table) are ignored and reported.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.datasets.nasbench.readers import (
    MACRO_FILE,
    NASLIB_CONFIGS,
    load_json,
    read_macro_file,
    read_naslib_table,
)
from refbench.datasets.nasbench.spaces import SPACES, ArchitectureError, SearchSpace
from refbench.errors import RefbenchError
from refbench.evaluation.ranking import ArchitectureTruth
from refbench.io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

_LINE = re.compile(r"(?P<arch>.+?)\s*[\t, ]\s*(?P<score>[^\t, ]+)\s*")


def table_of(spec: "BenchmarkSpec") -> tuple[SearchSpace, str]:
    """(search space, ground-truth column) of the spec's dataset and config."""
    name, config = spec.dataset.name, spec.dataset.config
    if name == "nasbench_macro":
        return SPACES["nas-bench-macro"], "mean_acc"
    if name == "naslib_zerocost" and config in NASLIB_CONFIGS:
        return SPACES[NASLIB_CONFIGS[config][2]], "val_accuracy"
    raise RefbenchError(f"{spec.name}: nas_ranking scores nasbench_macro or naslib_zerocost "
                        f"({', '.join(NASLIB_CONFIGS)}), not {name}/{config}", key="dataset")


def _score(value: Any, path: Path, line: int | None, key: str | None) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RefbenchError(f"score {value!r} is not a number", path=path, line=line,
                                key=key) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RefbenchError(f"score {json.dumps(value)[:40]} is not a number", path=path,
                            line=line, key=key)
    if math.isnan(value):
        raise RefbenchError("score is NaN: a ranking needs every score to be ordered",
                            path=path, line=line, key=key)
    return float(value)


def _arch(space: SearchSpace, text: Any, path: Path, line: int | None, key: str | None) -> str:
    try:
        return space.canonical(text)
    except ArchitectureError as exc:
        raise RefbenchError(str(exc), path=path, line=line, key=key) from None


def _add(out: dict[str, float], where: dict[str, str], arch: str, score: float, at: str,
         path: Path, line: int | None, key: str | None) -> None:
    if arch in out:
        raise RefbenchError(f"architecture {arch} is scored twice (first at {where[arch]})",
                            path=path, line=line, key=key)
    out[arch] = score
    where[arch] = at


def read_scores(path: Path, space: SearchSpace) -> dict[str, float]:
    """`{canonical arch: score}` of a text or JSON submission, strictly (module docstring)."""
    path = Path(path)
    out: dict[str, float] = {}
    where: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        data = load_json(path)
        if isinstance(data, dict):
            for text, value in data.items():
                arch = _arch(space, text, path, None, text)
                _add(out, where, arch, _score(value, path, None, text), f"key {text!r}", path,
                     None, text)
        elif isinstance(data, list):
            for i, item in enumerate(data):
                if not isinstance(item, dict) or set(item) != {"arch", "score"}:
                    raise RefbenchError('expected {"arch": ..., "score": ...}', path=path,
                                        key=f"[{i}]")
                arch = _arch(space, item["arch"], path, None, f"[{i}].arch")
                _add(out, where, arch, _score(item["score"], path, None, f"[{i}].score"),
                     f"[{i}]", path, None, f"[{i}]")
        else:
            raise RefbenchError("expected a JSON object {arch: score} or a list of "
                                '{"arch", "score"} objects', path=path)
    else:
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            raise RefbenchError("prediction file not found", path=path) from None
        except IsADirectoryError:
            raise RefbenchError("expected a file, found a folder", path=path) from None
        except UnicodeDecodeError as exc:
            raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path) from None
        lines = text.splitlines()
        for number, raw in enumerate(lines, start=1):
            match = _LINE.fullmatch(raw.strip())
            if match is None:
                what = "empty line" if not raw.strip() else f"expected 'ARCH SCORE', got {raw[:60]!r}"
                raise RefbenchError(what, path=path, line=number)
            arch = _arch(space, match["arch"], path, number, None)
            _add(out, where, arch, _score(match["score"], path, number, None), f"line {number}",
                 path, number, None)
    if not out:
        raise RefbenchError("the submission scores no architecture", path=path)
    return out


def write_scores(path: Path, scores: Mapping[str, float], space: SearchSpace) -> None:
    """Write `{arch: score}` as tab-separated lines (JSON for a `.json` path), atomically,
    after the checks the reader makes."""
    path = Path(path)
    rows = []
    for arch, score in scores.items():
        canonical = _arch(space, arch, path, None, str(arch))
        rows.append((canonical, _score(score, path, None, str(arch))))
    if len({a for a, _ in rows}) != len(rows):
        raise RefbenchError("an architecture is scored twice", path=path)
    if path.suffix.lower() == ".json":
        if not all(math.isfinite(s) for _, s in rows):
            raise RefbenchError("JSON cannot hold an infinite score: write a text file", path=path)
        atomic_write_text(path, json.dumps(dict(rows), indent=1) + "\n")
    else:
        atomic_write_text(path, "".join(f"{a}\t{s!r}\n" for a, s in rows))


def sample(references: dict[str, ArchitectureTruth], spec: "BenchmarkSpec"
           ) -> dict[str, ArchitectureTruth]:
    """The spec's fixed sample of the table (module docstring)."""
    args = spec.metric.kwargs()
    size, seed = args.get("sample_size"), args.get("sample_seed", 0)
    if size is None or size == len(references):
        return references
    if not isinstance(size, int) or not 2 <= size <= len(references):
        raise RefbenchError(f"{spec.name}: sample_size {size!r} must be 2..{len(references)} "
                            f"(the table's architectures)", key="metric.args.sample_size")
    ids = sorted(references)
    chosen = np.random.default_rng(seed).choice(len(ids), size=size, replace=False)
    return {ids[i]: references[ids[i]] for i in sorted(chosen.tolist())}


def _truths(rows: Any, column: str, space: SearchSpace) -> dict[str, ArchitectureTruth]:
    out: dict[str, ArchitectureTruth] = {}
    for arch, value in rows:
        canonical = space.canonical(arch)
        if canonical in out:
            raise RefbenchError(f"architecture {canonical} appears twice in the ground truth")
        out[canonical] = ArchitectureTruth(canonical, float(value))
    return out


@FORMATS.register("nas_ranking")
class NasRankingFormat(SubmissionFormat):
    """(architecture, predicted score) lines or JSON, scored against a ground-truth table."""

    missing = "refuse"
    missing_refused_because = ("the benchmark ranks a fixed set of architectures, and a "
                               "ranking over part of it is another ranking")
    missing_scored_as = "refused: every architecture of the sample needs a score"
    extra = "ignore"
    extra_scored_as = "ignored: they are outside the benchmark's fixed sample"

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_scores(Path(path), predictions, table_of(spec)[0])

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"nas_ranking takes no read options, got {sorted(options)}")
        return read_scores(Path(path), table_of(spec)[0])

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        return {arch: truth.value for arch, truth in references.items()}

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        """The official table file, or the folder holding it under its official name."""
        space, column = table_of(spec)
        path = Path(path)
        if spec.dataset.name == "nasbench_macro":
            rows = read_macro_file(path / MACRO_FILE if path.is_dir() else path)
        else:
            file = NASLIB_CONFIGS[spec.dataset.config][0]
            rows = read_naslib_table(path / file if path.is_dir() else path, spec.dataset.config)
        return sample(_truths(((r["arch"], r[column]) for r in rows), column, space), spec)

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        space, column = table_of(spec)
        missing = {"arch", column} - set(dataset.column_names)
        if missing:
            raise RefbenchError(f"prepared split lacks column(s) {sorted(missing)}")
        return sample(_truths(zip(dataset["arch"], dataset[column]), column, space), spec)


# -- a ranking benchmark's own ground truth: the stand-alone accuracies of its sample --------

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


def _pinas_space() -> SearchSpace:
    from refbench.baselines.nas.pinas.space import CANDIDATES

    return choice_list_space(len(CANDIDATES))


def _one_length(codes: Mapping[str, Any], path: Path, what: str) -> int:
    """The shared number of blocks of a file's codes (a ranking compares one space)."""
    lengths = {len(code.split()) for code in codes}
    if len(lengths) != 1:
        raise RefbenchError(f"{what} mix codes of {sorted(lengths)} blocks: a ranking compares "
                            f"architectures of one space", path=path)
    return lengths.pop()


def read_ground_truth(path: Path, space: SearchSpace) -> dict[str, ArchitectureTruth]:
    """`{canonical arch: stand-alone accuracy}` of a ranking benchmark's ground truth: its
    `ground_truth.jsonl` (or the benchmark's output folder holding it), or a table file in
    the submission's text layout (`ARCH<sep>ACCURACY` per line). Refused with one line naming
    the file and line: malformed JSON, a missing or non-numeric `accuracy`, NaN or +-inf, an
    invalid code, an architecture given twice, codes of different lengths, an empty file."""
    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".jsonl":  # the benchmark's output folder
        path = path / TRUTH_FILE
    if path.suffix.lower() != ".jsonl":
        table = read_scores(path, space)
        for arch, value in table.items():
            if not math.isfinite(value):
                raise RefbenchError(f"architecture {arch}: accuracy {value} is not finite",
                                    path=path)
        out = {a: ArchitectureTruth(a, v) for a, v in table.items()}
    else:
        try:
            lines = path.read_bytes().decode("utf-8-sig").splitlines()
        except FileNotFoundError:
            raise RefbenchError("ground-truth file not found", path=path) from None
        except IsADirectoryError:
            raise RefbenchError("expected a file, found a folder", path=path) from None
        except UnicodeDecodeError as exc:
            raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path) from None
        out, where = {}, {}
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                raise RefbenchError("empty line", path=path, line=number)
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RefbenchError(f"malformed JSON ({exc.msg})", path=path,
                                    line=number) from None
            if not isinstance(row, dict) or "arch" not in row or "accuracy" not in row:
                raise RefbenchError('expected {"arch": ..., "accuracy": ...}', path=path,
                                    line=number)
            arch = _arch(space, row["arch"], path, number, "arch")
            value = _score(row["accuracy"], path, number, "accuracy")
            if not math.isfinite(value):
                raise RefbenchError(f"accuracy {value} is not finite", path=path, line=number,
                                    key="accuracy")
            if arch in out:
                raise RefbenchError(f"architecture {arch} is given twice (first at line "
                                    f"{where[arch]})", path=path, line=number)
            out[arch], where[arch] = ArchitectureTruth(arch, value), number
        if not out:
            raise RefbenchError("the ground truth names no architecture", path=path)
    _one_length(out, path, "the ground truth's architectures")
    return out


@FORMATS.register("pinas_ranking")
class PinasRankingFormat(NasRankingFormat):
    """The `nas_ranking` scores file over Pi-NAS choice-list codes (`3 0 1 3`), scored
    against the stand-alone accuracies of a ranking benchmark's fixed sample: the
    `ground_truth.jsonl` that `refbench search pinas-ranking` writes (or a table file).

    No prepared split holds that ground truth, so `--references` (or a leaderboard's hidden
    copy) is required. An architecture outside the sample is ignored and reported (refused
    on the leaderboard); a missing one is refused, as for every ranking."""

    references_required = True
    references_example = ("the ground_truth.jsonl, or the folder holding it, that "
                          "refbench search pinas-ranking wrote")

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_scores(Path(path), predictions, _pinas_space())

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"pinas_ranking takes no read options, got {sorted(options)}")
        scores = read_scores(Path(path), _pinas_space())
        _one_length(scores, Path(path), "the submission's architectures")
        return scores

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        return sample(read_ground_truth(Path(path), _pinas_space()), spec)

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        raise RefbenchError(f"{spec.name} is scored against a ranking benchmark's "
                            f"{TRUTH_FILE} (stand-alone accuracies): pass --references")
