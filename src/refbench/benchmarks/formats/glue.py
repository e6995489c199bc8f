"""GLUE submission formats: the GLUE server's per-task TSV and a folder of them.

The GLUE server takes one file per task (`CoLA.tsv`, `SST-2.tsv`, ..., `MNLI-m.tsv`,
`MNLI-mm.tsv`, `AX.tsv`) holding the header `index<TAB>prediction` and one row per test
example: classification tasks write the label strings of the official TSVs (`0`/`1`,
`entailment`/`neutral`/`contradiction`, `entailment`/`not_entailment`), STS-B a float.

- `glue_tsv` reads and writes one such file; its maps are `{index: class id or float}`.
- `glue_dir` reads and writes a folder of them (any subset of the tasks); its maps are
  keyed by `(task, index)` and their values are `(task, value)` pairs, so that the
  scorer's aligned value lists still say which task each value belongs to (the
  `glue_all` metric groups them back by task).

Task names are those of `refbench.evaluation.glue.TASKS` (`cola` ... `mnli_m`, `mnli_mm`,
`ax`); the dataset side (label strings, file layout) is `refbench.datasets.glue.builder`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.glue import TASKS as METRIC_TASKS
from refbench.io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec
    from refbench.datasets.glue.builder import GlueTask

HEADER = ("index", "prediction")
_INDEX = re.compile(r"[0-9]+")


# -- task resolution -------------------------------------------------------------------
def dataset_task(task: str) -> "GlueTask":
    """The `refbench.datasets.glue.builder` task behind a metric task (`mnli_m` -> `mnli`)."""
    from refbench.datasets.glue.builder import TASKS

    return TASKS["mnli" if task in ("mnli_m", "mnli_mm") else task]


def split_for(task: str, base: str) -> str:
    """The dataset split of a metric task for a base split name (`validation`, `test`):
    MNLI-m / MNLI-mm use `{base}_matched` / `{base}_mismatched`."""
    base = base.removesuffix("_matched").removesuffix("_mismatched")
    if task == "mnli_m":
        return f"{base}_matched"
    if task == "mnli_mm":
        return f"{base}_mismatched"
    return base


def server_file(task: str) -> str:
    """The GLUE server's file name for a metric task (`CoLA.tsv`, `MNLI-mm.tsv`, ...)."""
    return dataset_task(task).server_files[split_for(task, "test")]


def spec_task(spec: "BenchmarkSpec") -> str:
    """The metric task of a single-task spec: its dataset config, and for MNLI its split."""
    config = spec.dataset.config
    if config == "mnli":
        for split in (spec.split, spec.hidden_split or ""):
            if split.endswith("_mismatched"):
                return "mnli_mm"
            if split.endswith("_matched"):
                return "mnli_m"
        raise RefbenchError(f"an MNLI benchmark must score a *_matched or *_mismatched split, "
                            f"not {spec.split!r}", key="split")
    if config not in METRIC_TASKS or config in ("mnli_m", "mnli_mm"):
        raise RefbenchError(f"{spec.name}: dataset config {config!r} is not a GLUE task",
                            key="dataset.config")
    return config


# -- one server file -------------------------------------------------------------------
def _format_value(task: str, value: Any, index: Any) -> str:
    glue = dataset_task(task)
    if glue.is_regression:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RefbenchError(f"index {index}: STS-B prediction must be a number, got "
                                f"{value!r}") from None
        if not math.isfinite(number):
            raise RefbenchError(f"index {index}: STS-B prediction is not finite: {value!r}")
        return f"{number:.3f}"
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if float(value) != int(value):
                raise ValueError
            value = int(value)
        except (TypeError, ValueError, OverflowError):
            raise RefbenchError(f"index {index}: {METRIC_TASKS[task][0]} prediction must be a "
                                f"class id, got {value!r}") from None
    if not 0 <= value < len(glue.file_labels):
        raise RefbenchError(f"index {index}: class id {value} out of range 0.."
                            f"{len(glue.file_labels) - 1} for {METRIC_TASKS[task][0]}")
    return glue.file_labels[value]


def write_server_file(path: Path, predictions: Mapping[Any, Any], task: str) -> None:
    """Write `{index: class id or float}` as a GLUE server file, rows sorted by index."""
    rows = ["\t".join(HEADER)]
    for index in sorted(predictions, key=_index_of):
        rows.append(f"{_index_of(index)}\t{_format_value(task, predictions[index], index)}")
    atomic_write_text(path, "\n".join(rows) + "\n")


def _index_of(index: Any) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        try:
            as_int = int(index)
        except (TypeError, ValueError):
            raise RefbenchError(f"prediction ids must be integer indices, got {index!r}") from None
        if as_int != index:
            raise RefbenchError(f"prediction ids must be integer indices, got {index!r}")
        return as_int
    return index


def read_server_file(path: Path, task: str) -> dict[int, int | float]:
    """Parse and strictly validate a GLUE server file; returns `{index: class id or float}`.

    Accepted is what the server accepts: the header `index<TAB>prediction`, then rows of a
    non-negative integer index and, for classification, one of the task's label strings,
    for STS-B any finite number. Each problem raises a `RefbenchError` naming the line.
    """
    path = Path(path)
    glue = dataset_task(task)
    label_ids = {label: i for i, label in enumerate(glue.file_labels)}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RefbenchError("prediction file not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not UTF-8 text: {exc.reason}", path=path) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last row
        lines.pop()
    if not lines:
        raise RefbenchError("empty file; expected the header 'index<TAB>prediction'", path=path,
                            line=1)
    if tuple(f.strip() for f in lines[0].rstrip("\r").split("\t")) != HEADER:
        raise RefbenchError(f"bad header {lines[0][:60]!r}; expected 'index<TAB>prediction'",
                            path=path, line=1)
    out: dict[int, int | float] = {}
    first_line: dict[int, int] = {}
    for number, raw in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in raw.rstrip("\r").split("\t")]
        if len(fields) != 2:
            raise RefbenchError(f"expected 2 tab-separated columns (index, prediction), got "
                                f"{len(fields)}: {raw[:60]!r}", path=path, line=number)
        index_text, value_text = fields
        if not _INDEX.fullmatch(index_text):
            raise RefbenchError(f"index must be a non-negative integer, got {index_text!r}",
                                path=path, line=number)
        index = int(index_text)
        if index in first_line:
            raise RefbenchError(f"duplicate index {index} (first on line {first_line[index]})",
                                path=path, line=number)
        first_line[index] = number
        if glue.is_regression:
            try:
                value: int | float = float(value_text)
            except ValueError:
                raise RefbenchError(f"STS-B prediction must be a number, got {value_text!r}",
                                    path=path, line=number) from None
            if not math.isfinite(value):
                raise RefbenchError(f"prediction is not finite: {value_text!r}", path=path,
                                    line=number)
        else:
            if value_text not in label_ids:
                raise RefbenchError(f"unknown {METRIC_TASKS[task][0]} label {value_text!r} "
                                    f"(allowed: {', '.join(glue.file_labels)})", path=path,
                                    line=number)
            value = label_ids[value_text]
        out[index] = value
    return out


# -- references ------------------------------------------------------------------------
def _labelled(rows: Any, task: str, path: Path | None) -> dict[int, int | float]:
    """`{idx: label}` of rows, refusing unlabeled ones (label -1: a test split)."""
    out: dict[int, int | float] = {}
    for idx, label in rows:
        if label is None or (isinstance(label, float) and math.isnan(label)) or label < 0:
            raise RefbenchError(f"{METRIC_TASKS[task][0]} row idx {idx} has no label (-1): "
                                f"references must be a labelled split such as dev, not test",
                                path=path)
        out[int(idx)] = float(label) if dataset_task(task).is_regression else int(label)
    return out


def _reference_rows(path: Path, task: str, split: str,
                    root_only: bool = False) -> tuple[Path, list[dict]] | None:
    """(file, parsed rows) of a task's split: `path` itself when it is a file; inside a
    GLUE root the official file (raw MRPC files derived as the download script does);
    unless `root_only`, also `path/<file name>` for a single task folder. None: not there."""
    from refbench.datasets.glue.builder import derive_mrpc, locate_files, read_task_file

    glue = dataset_task(task)
    if path.is_dir():
        found, _missing = locate_files(path, glue.config)
        if split in found:
            path = found[split]
        elif "msr_paraphrase_train.txt" in found:
            return path / glue.folder, derive_mrpc(path / glue.folder)[split]
        elif not root_only and (path / glue.splits[split]).is_file():
            path = path / glue.splits[split]
        else:
            return None
    # an official file named like another split of this task is read with that layout
    by_name = {name: s for s, name in glue.splits.items() if split_for(task, s) == s}
    return path, read_task_file(path, glue.config, by_name.get(path.name, split))


def read_task_references(path: Path, task: str, split: str,
                         root_only: bool = False) -> dict[int, int | float] | None:
    """Labels of an official GLUE file, a GLUE root or a task folder as `{idx: label}`;
    None when a folder lacks the file (raises unless `root_only`)."""
    glue = dataset_task(task)
    split = split_for(task, split)
    if split not in glue.splits:
        raise RefbenchError(f"{METRIC_TASKS[task][0]} has no split {split!r} (splits: "
                            f"{', '.join(glue.splits)})")
    found = _reference_rows(Path(path), task, split, root_only)
    if found is None:
        if root_only:
            return None
        raise RefbenchError(f"no {glue.folder}/{glue.splits[split]} in this folder", path=path)
    file, rows = found
    if not rows:
        raise RefbenchError("the file holds no rows", path=file)
    return _labelled(((r["idx"], r["label"]) for r in rows), task, file)


def dataset_references(dataset: "hf_datasets.Dataset", task: str) -> dict[int, int | float]:
    """`{idx: label}` of a prepared split (columns `idx`, `label`)."""
    missing = {"idx", "label"} - set(dataset.column_names)
    if missing:
        raise RefbenchError(f"prepared split lacks column(s) {sorted(missing)}")
    return _labelled(zip(dataset["idx"], dataset["label"]), task, None)


@FORMATS.register("glue_tsv")
class GlueTsvFormat(SubmissionFormat):
    """One GLUE server file (`index<TAB>prediction`) for the task of the spec. The GLUE
    server refuses a file that lacks examples, so a missing index is an error here too."""

    missing = "refuse"
    extra_scored_as = "ignored"

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_server_file(Path(path), predictions, spec_task(spec))

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        return read_server_file(Path(path), spec_task(spec))

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        return read_task_references(Path(path), spec_task(spec), spec.split)

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        return dataset_references(dataset, spec_task(spec))


# -- the whole benchmark: a folder of server files ------------------------------------
def _server_files() -> dict[str, str]:
    """Server file name -> metric task, for every GLUE task."""
    return {server_file(task): task for task in METRIC_TASKS}


@FORMATS.register("glue_dir")
class GlueDirFormat(SubmissionFormat):
    """A folder of GLUE server files (any subset of `CoLA.tsv` ... `AX.tsv`).

    Maps are `{(task, index): (task, value)}`. References come from a GLUE root folder
    (`CoLA/dev.tsv`, `MNLI/dev_matched.tsv`, ...): every task whose labelled file for the
    spec's split is there is included, so the predictions must cover every task found in
    the references (the scorer refuses a missing one, naming its first ids: the GLUE
    server refuses incomplete files); a file of a task the references lack is ignored.
    """

    missing = "refuse"
    extra_scored_as = "ignored"
    references_required = True
    references_example = "a folder of labelled GLUE files, e.g. CoLA/dev.tsv, MNLI/dev_matched.tsv"
    is_folder = True

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        by_task: dict[str, dict[Any, Any]] = {}
        for key, value in predictions.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise RefbenchError(f"glue_dir prediction ids are (task, index) pairs, got "
                                    f"{key!r}")
            task = _metric_task(key[0])
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
                value = value[1]
            by_task.setdefault(task, {})[key[1]] = value
        if not by_task:
            raise RefbenchError("no predictions to write", path=path)
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        for task, rows in by_task.items():
            write_server_file(folder / server_file(task), rows, task)

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        folder = Path(path)
        if not folder.is_dir():
            raise RefbenchError("expected a folder of GLUE server files (CoLA.tsv, ...)",
                                path=folder)
        known = _server_files()
        out: dict[Any, Any] = {}
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() != ".tsv":
                continue
            if file.name not in known:
                raise RefbenchError(f"not a GLUE server file name (expected one of "
                                    f"{', '.join(known)})", path=file)
            task = known[file.name]
            out.update({(task, i): (task, v) for i, v in read_server_file(file, task).items()})
        if not out:
            raise RefbenchError(f"no GLUE server file in this folder (expected some of "
                                f"{', '.join(known)})", path=folder)
        return out

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        root = Path(path)
        if not root.is_dir():
            raise RefbenchError("expected a GLUE root folder (CoLA/dev.tsv, ...)", path=root)
        out: dict[Any, Any] = {}
        for task in METRIC_TASKS:
            glue = dataset_task(task)
            split = split_for(task, spec.split)
            if split not in glue.splits:  # AX has a test split only
                continue
            labels = read_task_references(root, task, split, root_only=True)
            if labels is None:
                continue
            out.update({(task, i): (task, v) for i, v in labels.items()})
        if not out:
            raise RefbenchError(f"no labelled GLUE file for split {spec.split!r} in this "
                                f"folder", path=root)
        return out

    def references_from_dataset(self, dataset: Any, spec: "BenchmarkSpec") -> dict[Any, Any]:
        """References from prepared splits: a mapping of task (or dataset config) to its
        scored split, e.g. `{"cola": ds, "mnli_m": ds_m, "mnli_mm": ds_mm}`. A single split
        holds one task only, so the whole benchmark cannot be scored from it."""
        if not isinstance(dataset, Mapping):
            raise RefbenchError("the whole-GLUE benchmark is scored against a GLUE root folder "
                                "(pass --references DIR) or a mapping of task -> prepared split")
        out: dict[Any, Any] = {}
        for name, split_ds in dataset.items():
            task = _metric_task(name)
            out.update({(task, i): (task, v)
                        for i, v in dataset_references(split_ds, task).items()})
        return out


def _metric_task(name: str) -> str:
    from refbench.evaluation.glue import task_name

    if name == "mnli":
        raise RefbenchError("say mnli_m or mnli_mm: MNLI has two scored splits")
    return task_name(name)
