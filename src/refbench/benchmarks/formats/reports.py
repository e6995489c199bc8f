"""The report-generation submission format: `{study_id: report}` as JSON or JSONL.

A submission is one of
- a JSON file (`*.json`) holding one object `{study_id: value}`;
- a JSONL file (`*.jsonl`) with one object per line, either a record
  `{"study_id": ..., "report": ..., "terms": [...], "term_scores": {...}}` or a one-pair
  object `{study_id: value}`.

A value is the generated report (a string), or an object `{"report": str, "terms":
[str, ...], "term_scores": {term: number}}` whose `terms` and `term_scores` are optional
(the term metrics read them: explicit terms, else the terms scored at or above the
metric's `term_threshold`; per-term AUC from the scores).

Read strictly, each problem one line naming the file and the line (and the id): bytes that
are not UTF-8, a byte-order mark, malformed JSON, a repeated study id, an empty or
whitespace-only report, a non-string report, a non-finite or non-numeric term score (JSON
`NaN`/`Infinity` included), a repeated term, an empty line inside a JSONL file.

References: the prepared split of the benchmark's dataset (columns `study_id`, `report`,
`terms`), or `--references FILE` in this same format (its terms, when given, are the
reference terms). Under R2Gen's quirks (`metric.args.r2gen_quirks`) the references also
carry R2Gen's training vocabulary, built from the prepared `train` split of the same cache
(or from `--option train_reports=FILE`, a file in this format).

Policy: pycocoevalcap asserts that predictions and references hold the same ids, so a file
missing a study is refused; ids outside the references are ignored (and reported).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.captions.metric import ReportPrediction, ReportReference
from refbench.evaluation.captions.tokenize import R2GenQuirks
from refbench.io import atomic_write_text
from refbench.options import Option

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

_VALUE_KEYS = {"report", "terms", "term_scores"}


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError("report file not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError("expected a JSON or JSONL report file, found a folder",
                            path=path) from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise RefbenchError("starts with a UTF-8 byte-order mark, which JSON forbids",
                            path=path, line=1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path=path,
                            line=line) from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _loads(text: str, path: Path, line: int | None) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook, parse_constant=_refuse_constant)
    except _Duplicate as dup:
        where = line or _line_of_second(text, dup.key)
        raise RefbenchError(f"key {dup.key!r} appears twice in one object", path=path,
                            line=where) from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        at = getattr(exc, "lineno", None)
        where = line if line is not None else at
        raise RefbenchError(f"malformed JSON: {getattr(exc, 'msg', exc)}", path=path,
                            line=where) from None


def _line_of_second(text: str, key: str) -> int | None:
    needle = json.dumps(key)
    first = text.find(needle)
    second = text.find(needle, first + 1) if first >= 0 else -1
    return text.count("\n", 0, second) + 1 if second >= 0 else None


def _value(study: str, value: Any, path: Path, line: int | None) -> ReportPrediction:
    """A report string or `{"report", "terms", "term_scores"}` -> `ReportPrediction`."""
    def fail(message: str) -> RefbenchError:
        return RefbenchError(f"study {study!r}: {message}", path=path, line=line)

    terms = scores = None
    if isinstance(value, dict):
        extra = sorted(set(value) - _VALUE_KEYS)
        if extra:
            raise fail(f"unknown field(s) {extra} (known: report, terms, term_scores)")
        if "report" not in value:
            raise fail("no 'report' field")
        raw_terms, raw_scores, value = value.get("terms"), value.get("term_scores"), value["report"]
        if raw_terms is not None:
            if not isinstance(raw_terms, list) or not all(isinstance(t, str) and t.strip()
                                                          for t in raw_terms):
                raise fail("'terms' must be a list of non-empty strings")
            if len(set(raw_terms)) != len(raw_terms):
                raise fail("'terms' lists a term twice")
            terms = tuple(raw_terms)
        if raw_scores is not None:
            if not isinstance(raw_scores, dict):
                raise fail("'term_scores' must be an object {term: score}")
            for term, score in raw_scores.items():
                if isinstance(score, bool) or not isinstance(score, (int, float)) \
                        or not math.isfinite(score):
                    raise fail(f"term score of {term!r} is not a finite number: {score!r}")
            scores = tuple((t, float(s)) for t, s in raw_scores.items())
    if not isinstance(value, str):
        raise fail(f"a report is a string, got {type(value).__name__}")
    if not value.strip():
        raise fail("empty report")
    return ReportPrediction(value, terms, scores)


def read_reports(path: Path) -> dict[str, ReportPrediction]:
    """`{study_id: ReportPrediction}` from a JSON or JSONL report file (module docstring)."""
    path = Path(path)
    text = _text(path)
    out: dict[str, ReportPrediction] = {}
    first_line: dict[str, int] = {}
    if path.suffix.lower() == ".jsonl":
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                raise RefbenchError("empty line", path=path, line=number)
            obj = _loads(raw, path, number)
            if not isinstance(obj, dict) or not obj:
                raise RefbenchError("expected a JSON object", path=path, line=number)
            if "study_id" in obj:
                study = obj.pop("study_id")
                items = [(study, obj)]
            elif len(obj) == 1:
                items = list(obj.items())
            else:
                raise RefbenchError("expected {\"study_id\": ..., \"report\": ...} or one "
                                    "{study_id: report} pair", path=path, line=number)
            for study, value in items:
                if not isinstance(study, str) or not study:
                    raise RefbenchError(f"study id must be a non-empty string, got {study!r}",
                                        path=path, line=number)
                if study in out:
                    raise RefbenchError(f"study {study!r} appears again (first on line "
                                        f"{first_line[study]})", path=path, line=number)
                out[study] = _value(study, value, path, number)
                first_line[study] = number
    else:
        obj = _loads(text, path, None)
        if not isinstance(obj, dict):
            raise RefbenchError("expected one JSON object {study_id: report}", path=path)
        for study, value in obj.items():
            if not study:
                raise RefbenchError("empty study id", path=path)
            out[study] = _value(study, value, path, _line_of_key(text, study))
    if not out:
        raise RefbenchError("no report in this file", path=path)
    return out


def _line_of_key(text: str, key: str) -> int | None:
    at = text.find(json.dumps(key))
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def _entry(value: ReportPrediction | ReportReference | str) -> Any:
    if isinstance(value, str):
        return value
    extra: dict[str, Any] = {}
    if value.terms is not None:
        extra["terms"] = list(value.terms)
    scores = getattr(value, "term_scores", None)
    if scores is not None:
        extra["term_scores"] = dict(scores)
    return {"report": value.report, **extra} if extra else value.report


def write_reports(path: Path, predictions: Mapping[Any, Any]) -> None:
    """Write `{study_id: report or ReportPrediction}` atomically (JSONL records for a
    `.jsonl` name, else one JSON object); everything is validated as the reader would."""
    path = Path(path)
    entries = {}
    for study, value in predictions.items():
        if not isinstance(study, str) or not study:
            raise RefbenchError(f"study id must be a non-empty string, got {study!r}", path=path)
        checked = _value(study, _entry(value), path, None)  # the reader's rules
        entries[study] = _entry(checked)
    if path.suffix.lower() == ".jsonl":
        lines = []
        for study, entry in entries.items():
            record = {"study_id": study, **(entry if isinstance(entry, dict)
                                            else {"report": entry})}
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        atomic_write_text(path, "".join(lines))
    else:
        atomic_write_text(path, json.dumps(entries, ensure_ascii=False, indent=1,
                                           allow_nan=False) + "\n")


@FORMATS.register("reports_json")
class ReportsJsonFormat(SubmissionFormat):
    """`{study_id: report}` (plus optional terms / term scores) as JSON or JSONL."""

    missing = "refuse"
    missing_scored_as = "refused: pycocoevalcap needs the same ids on both sides"
    missing_refused_because = ("pycocoevalcap asserts that predictions and references hold "
                               "the same study ids, so refbench refuses an incomplete file")
    extra = "ignore"
    extra_scored_as = "ignored (not in the scored split)"
    read_options = (Option(
        "train_reports", "str",
        "Under R2Gen's quirks, a file in this format holding the training reports that "
        "R2Gen's vocabulary is counted from (default: the prepared train split)."),)

    def __init__(self) -> None:
        self._load_split: Callable[[str], "hf_datasets.Dataset"] | None = None
        self._train_reports: Path | None = None

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        options = dict(options or {})
        unknown = sorted(set(options) - {o.name for o in self.read_options})
        if unknown:
            raise RefbenchError(f"unknown read option(s) {unknown} for reports_json "
                                f"(known: train_reports)")
        if options.get("train_reports"):
            self._train_reports = Path(options["train_reports"])
        return read_reports(Path(path))

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_reports(Path(path), predictions)

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        return {k: ReportPrediction(v.report, v.terms) for k, v in references.items()}

    def bind_splits(self, load_split: Callable[[str], "hf_datasets.Dataset"]) -> None:
        self._load_split = load_split

    # -- references --
    def _quirks(self, spec: "BenchmarkSpec", rows: "hf_datasets.Dataset | None") -> R2GenQuirks | None:
        args = spec.metric.kwargs()
        if not args.get("r2gen_quirks"):
            return None
        if self._train_reports is not None:
            reports = [p.report for p in read_reports(self._train_reports).values()]
        else:
            train = self._train_split(spec, rows)
            if "report" not in train.column_names:
                raise RefbenchError("the prepared train split has no 'report' column")
            reports = list(train["report"])
        return R2GenQuirks.from_training_reports(
            reports, name=str(args.get("tokenizer", "r2gen_iu_xray")),
            max_seq_length=int(args.get("max_seq_length", 60)),
            threshold=int(args.get("threshold", 3)))

    def _train_split(self, spec: "BenchmarkSpec",
                     rows: "hf_datasets.Dataset | None") -> "hf_datasets.Dataset":
        """The prepared train split: through the scorer's loader, else from the cache the
        scored rows were read from, else from the default cache."""
        if self._load_split is not None:
            return self._load_split(spec.train_split)
        from refbench.datasets.base import get_builder, load_prepared

        cache = None
        builder = get_builder(spec.dataset.name)
        for entry in getattr(rows, "cache_files", None) or []:
            parents = Path(entry["filename"]).parents
            cache = next((p for p in parents
                          if builder.cache_path(p) / spec.dataset.config in parents), None)
            if cache is not None:
                break
        return load_prepared(spec.dataset.name, split=spec.train_split,
                             config=spec.dataset.config,
                             cache_dir=None if cache is None else str(cache))

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        if Path(path).is_dir():  # the dataset's release (an R2Gen folder, the Open-i archive)
            return self.references_from_release(Path(path), spec)
        quirks = self._quirks(spec, None)
        return {study: ReportReference(p.report, p.terms, quirks)
                for study, p in read_reports(Path(path)).items()}

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        lacking = {"study_id", "report"} - set(dataset.column_names)
        if lacking:
            raise RefbenchError(f"the prepared split lacks column(s) {sorted(lacking)}")
        quirks = self._quirks(spec, dataset)
        has_terms = "terms" in dataset.column_names
        columns = dataset.select_columns(["study_id", "report", *(["terms"] if has_terms else [])])
        terms = columns["terms"] if has_terms else [None] * len(columns)
        out: dict[str, ReportReference] = {}
        for study, report, row_terms in zip(columns["study_id"], columns["report"], terms):
            if study in out:
                raise RefbenchError(f"the prepared split holds study {study!r} twice")
            if not isinstance(report, str) or not report.strip():
                raise RefbenchError(f"the prepared split holds an empty report for {study!r}")
            out[study] = ReportReference(report, None if row_terms is None else tuple(row_terms),
                                         quirks)
        return out
