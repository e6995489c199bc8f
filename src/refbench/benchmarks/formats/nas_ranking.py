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


def score_value(value: Any, path: Path, line: int | None, key: str | None) -> float:
    """A submitted score as a float; a non-number or NaN is refused naming where it is."""
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


def space_code(space: SearchSpace, text: Any, path: Path, line: int | None,
               key: str | None) -> str:
    """The canonical spelling of a code of `space`; an invalid one is refused naming where."""
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


def read_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file (a BOM dropped); a missing file, a folder or bytes
    that are not UTF-8 are one-line errors naming the file."""
    try:
        return path.read_bytes().decode("utf-8-sig").splitlines()
    except FileNotFoundError:
        raise RefbenchError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError("expected a file, found a folder", path=path) from None
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path) from None


def read_scores(path: Path, space: SearchSpace) -> dict[str, float]:
    """`{canonical arch: score}` of a text or JSON submission, strictly (module docstring)."""
    path = Path(path)
    out: dict[str, float] = {}
    where: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        data = load_json(path)
        if isinstance(data, dict):
            for text, value in data.items():
                arch = space_code(space, text, path, None, text)
                _add(out, where, arch, score_value(value, path, None, text), f"key {text!r}", path,
                     None, text)
        elif isinstance(data, list):
            for i, item in enumerate(data):
                if not isinstance(item, dict) or set(item) != {"arch", "score"}:
                    raise RefbenchError('expected {"arch": ..., "score": ...}', path=path,
                                        key=f"[{i}]")
                arch = space_code(space, item["arch"], path, None, f"[{i}].arch")
                _add(out, where, arch, score_value(item["score"], path, None, f"[{i}].score"),
                     f"[{i}]", path, None, f"[{i}]")
        else:
            raise RefbenchError("expected a JSON object {arch: score} or a list of "
                                '{"arch", "score"} objects', path=path)
    else:
        lines = read_lines(path, "prediction file")
        for number, raw in enumerate(lines, start=1):
            match = _LINE.fullmatch(raw.strip())
            if match is None:
                what = "empty line" if not raw.strip() else f"expected 'ARCH SCORE', got {raw[:60]!r}"
                raise RefbenchError(what, path=path, line=number)
            arch = space_code(space, match["arch"], path, number, None)
            _add(out, where, arch, score_value(match["score"], path, number, None), f"line {number}",
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
        canonical = space_code(space, arch, path, None, str(arch))
        rows.append((canonical, score_value(score, path, None, str(arch))))
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
