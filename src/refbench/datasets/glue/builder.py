"""GLUE: the nine tasks and the diagnostic set, read from the official TSV release.

The files are parsed exactly as `download_glue_data.py` leaves them: UTF-8 (a BOM is
stripped), one row per line, fields split on TAB with quoting off (sentences contain
`"`), each task with its own header and columns (CoLA train/dev have no header,
MNLI has 16/12/10 columns, ...). Every malformed line is a `RefbenchError` naming
file and line, so a truncated download fails loudly instead of losing rows.

Labels are stored with the Hugging Face GLUE `ClassLabel` names; `file_labels` keeps
the strings of the official files, which the GLUE server also expects back.

Every official file of a config is required, test files included: the GLUE archives
always ship them, and a cache that silently lacks a split would change what
`load_dataset("glue", "test", ...)` means. Test rows carry `label = -1`.

Two tasks may also be given as the releases GLUE was made from: MRPC as the raw Microsoft
files (`MRPC/msr_paraphrase_{train,test}.txt` + `dev_ids.tsv`, split as
`download_glue_data.py` does) and STS-B as the raw STS Benchmark release
(`stsbenchmark/sts-{train,dev,test}.csv`, or the same files in `STS-B/`): GLUE's STS-B
holds the same pairs in the same order, re-packaged with a header and an index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from refbench.datasets.base import (
    MISSING_FILE,
    MISSING_FOLDER,
    CheckReport,
    DatasetBuilder,
    Problem,
    subfolders,
)
from refbench.errors import RefbenchError
from refbench.options import Option
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets


@dataclass(frozen=True)
class GlueTask:
    """One GLUE config: where its files live, its columns and its labels."""

    config: str
    folder: str
    label_names: tuple[str, ...]
    file_labels: tuple[str, ...]
    is_regression: bool
    text_fields: tuple[str, ...]
    splits: dict[str, str]
    server_files: dict[str, str]


_STD = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")


def _task(config: str, folder: str, names: tuple[str, ...], file_labels: tuple[str, ...],
          fields: tuple[str, ...], server: str, splits: dict[str, str] = _STD) -> GlueTask:
    return GlueTask(config, folder, names, file_labels, config == "stsb", fields, dict(splits),
                    {"test": server})


TASKS: dict[str, GlueTask] = {
    "cola": _task("cola", "CoLA", ("unacceptable", "acceptable"), ("0", "1"), ("sentence",),
                  "CoLA.tsv"),
    "sst2": _task("sst2", "SST-2", ("negative", "positive"), ("0", "1"), ("sentence",),
                  "SST-2.tsv"),
    "mrpc": _task("mrpc", "MRPC", ("not_equivalent", "equivalent"), ("0", "1"),
                  ("sentence1", "sentence2"), "MRPC.tsv"),
    "stsb": _task("stsb", "STS-B", (), (), ("sentence1", "sentence2"), "STS-B.tsv"),
    "qqp": _task("qqp", "QQP", ("not_duplicate", "duplicate"), ("0", "1"),
                 ("question1", "question2"), "QQP.tsv"),
    "mnli": GlueTask("mnli", "MNLI", _NLI3, _NLI3, False, ("premise", "hypothesis"),
                     {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                      "validation_mismatched": "dev_mismatched.tsv",
                      "test_matched": "test_matched.tsv",
                      "test_mismatched": "test_mismatched.tsv"},
                     {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}),
    "qnli": _task("qnli", "QNLI", _NLI2, _NLI2, ("question", "sentence"), "QNLI.tsv"),
    "rte": _task("rte", "RTE", _NLI2, _NLI2, ("sentence1", "sentence2"), "RTE.tsv"),
    "wnli": _task("wnli", "WNLI", ("not_entailment", "entailment"), ("0", "1"),
                  ("sentence1", "sentence2"), "WNLI.tsv"),
    "ax": GlueTask("ax", "diagnostic", _NLI3, _NLI3, False, ("premise", "hypothesis"),
                   {"test": "diagnostic.tsv"}, {"test": "AX.tsv"}),
}

# Where the diagnostic file may be, in order: download script, GLUE zip names, MNLI zip.
AX_CANDIDATES = ("diagnostic/diagnostic.tsv", "AX.tsv", "ax.tsv", "MNLI/diagnostic.tsv")
MRPC_RAW = ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt", "dev_ids.tsv")
#: the raw STS Benchmark release: train, dev and test, each `genre, filename, year, id,
#: score, sentence1, sentence2` (some rows add two source columns), no header
STSB_RAW = ("sts-train.csv", "sts-dev.csv", "sts-test.csv")


@dataclass(frozen=True)
class RawRelease:
    """The release a GLUE task was derived from, accepted in place of its TSVs."""

    files: tuple[str, ...]
    folders: tuple[str, ...]  # where the files may lie, relative to the GLUE root
    what: str  # what one file is called in messages

    def describe(self) -> str:
        """`the raw ... files a, b, c in F/ or G/`, for messages."""
        where = " or ".join(f"{f}/" for f in self.folders)
        return f"the raw {self.what}s {', '.join(self.files)} in {where}"


RAW_RELEASES: dict[str, RawRelease] = {
    "mrpc": RawRelease(MRPC_RAW, ("MRPC",), "Microsoft file"),
    "stsb": RawRelease(STSB_RAW, ("STS-B", "stsbenchmark"), "STS Benchmark file"),
}


def get_task(config: str) -> GlueTask:
    """The `GlueTask` of a config name; an unknown name is a `RefbenchError`."""
    try:
        return TASKS[config]
    except KeyError:
        raise RefbenchError(f"unknown GLUE config {config!r} (known: {', '.join(TASKS)})") from None


# -- the column layout of every official file -----------------------------------------
@dataclass(frozen=True)
class _Format:
    header: tuple[str, ...] | None  # None: the file has no header line (CoLA train/dev)
    ncols: int
    text_cols: tuple[int, ...]
    label_col: int | None  # None: unlabeled (test files)


_MRPC_COLS = ("#1 ID", "#2 ID", "#1 String", "#2 String")
_STSB_COLS = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
              "sentence1", "sentence2")
_MNLI_COLS = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2")
_MNLI_DEV = _MNLI_COLS + tuple(f"label{i}" for i in range(1, 6)) + ("gold_label",)


def _fmt(header: tuple[str, ...], text_cols: tuple[int, ...], label_col: int | None) -> _Format:
    return _Format(header, len(header), text_cols, label_col)


def _pair(a: str, b: str, labeled: bool) -> _Format:
    header = ("index", a, b) + (("label",) if labeled else ())
    return _fmt(header, (1, 2), 3 if labeled else None)


def file_formats(config: str, split: str) -> list[_Format]:
    """The accepted layouts of one official file (several only for the diagnostic set)."""
    task = get_task(config)
    if split not in task.splits:
        raise RefbenchError(f"unknown split {split!r} of GLUE/{config} "
                            f"(known: {', '.join(task.splits)})")
    test = split.startswith("test")
    if config == "cola":
        return [_fmt(("index", "sentence"), (1,), None) if test else _Format(None, 4, (3,), 1)]
    if config == "sst2":
        return [_fmt(("index", "sentence"), (1,), None) if test
                else _fmt(("sentence", "label"), (0,), 1)]
    if config == "mrpc":
        return [_fmt(("index",) + _MRPC_COLS, (3, 4), None) if test
                else _fmt(("Quality",) + _MRPC_COLS, (3, 4), 0)]
    if config == "stsb":
        return [_fmt(_STSB_COLS, (7, 8), None) if test
                else _fmt(_STSB_COLS + ("score",), (7, 8), 9)]
    if config == "qqp":
        return [_fmt(("id", "question1", "question2"), (1, 2), None) if test
                else _fmt(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                          (3, 4), 5)]
    if config == "mnli":
        if test:
            return [_fmt(_MNLI_COLS, (8, 9), None)]
        if split == "train":
            return [_fmt(_MNLI_COLS + ("label1", "gold_label"), (8, 9), 11)]
        return [_fmt(_MNLI_DEV, (8, 9), 15)]
    if config == "qnli":
        return [_pair("question", "sentence", not test)]
    if config == "ax":
        return [_pair("sentence1", "sentence2", False), _pair("sentence1", "sentence2", True)]
    return [_pair("sentence1", "sentence2", not test)]  # rte, wnli


# -- line reading and value parsing -----------------------------------------------------
def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of a UTF-8 file: BOM stripped, "\\n" or "\\r\\n" ends.

    Blank lines at the end of the file are ignored; a blank line followed by more data
    is yielded (and then fails the column count), so a damaged file is never skipped over.
    """
    pending: list[int] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                                    path=path, line=number) from None
            if not text:
                pending.append(number)
                continue
            for blank in pending:
                yield blank, ""
            pending.clear()
            yield number, text


def parse_score(text: str, path: Path, line: int) -> float:
    """An STS similarity score in [0, 5]; anything else (NaN, '', 'abc', 7) is an error."""
    try:
        value = float(text)
    except ValueError:
        raise RefbenchError(f"similarity score {text!r} is not a number",
                            path=path, line=line) from None
    if math.isnan(value) or not 0.0 <= value <= 5.0:
        raise RefbenchError(f"similarity score {text!r} is not a number in [0, 5]",
                            path=path, line=line)
    return value


def _label(task: GlueTask, text: str, path: Path, line: int) -> int | float:
    if task.is_regression:
        return parse_score(text, path, line)
    try:
        return task.file_labels.index(text)
    except ValueError:
        raise RefbenchError(f"unknown {task.config} label {text!r} (expected one of "
                            f"{', '.join(task.file_labels)})", path=path, line=line) from None


def _split_fields(text: str, ncols: int | tuple[int, ...], path: Path, line: int) -> list[str]:
    fields = text.split("\t")
    wanted = (ncols,) if isinstance(ncols, int) else ncols
    if len(fields) not in wanted:
        expected = " or ".join(str(n) for n in wanted)
        raise RefbenchError(f"expected {expected} tab-separated columns, found {len(fields)}",
                            path=path, line=line)
    return fields


def iter_task_file(path: Path, config: str, split: str) -> Iterator[dict]:
    """Rows of one official TSV, streamed (see `read_task_file`)."""
    path = Path(path)
    task = get_task(config)
    formats = file_formats(config, split)
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None:
        raise RefbenchError("empty file", path=path, line=1)
    fmt = formats[0]
    if fmt.header is not None:
        number, text = first
        found = tuple(text.split("\t"))
        matching = [f for f in formats if f.header == found]
        if not matching:
            wanted = " or ".join("'" + "\\t".join(f.header or ()) + "'" for f in formats)
            raise RefbenchError(f"unexpected header {text[:200]!r}; expected {wanted}",
                                path=path, line=number)
        fmt = matching[0]
        rows: Iterator[tuple[int, str]] = lines
    else:
        number, text = first
        if text.split("\t")[0] in {"index", "sentence", "source"}:
            raise RefbenchError(f"unexpected header {text[:200]!r}; {task.folder}/"
                                f"{task.splits[split]} has no header line", path=path, line=number)
        rows = _chain(first, lines)
    count = 0
    for number, text in rows:
        fields = _split_fields(text, fmt.ncols, path, number)
        row: dict = {"idx": count}
        for name, col in zip(task.text_fields, fmt.text_cols):
            row[name] = fields[col]
        row["label"] = -1 if fmt.label_col is None else _label(task, fields[fmt.label_col],
                                                                path, number)
        count += 1
        yield row
    if count == 0:
        raise RefbenchError("no data rows after the header", path=path, line=2)


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def read_task_file(path: Path, task: str, split: str) -> list[dict]:
    """Parse one official GLUE TSV into rows `{idx, <text fields>, label}`.

    `idx` is the 0-based data-row position (equal to the index column of the official
    test files); `label` is the class id, the float score for STS-B, or -1 for test files.
    """
    return list(iter_task_file(path, task, split))


def read_sts_benchmark_csv(path: Path) -> list[dict]:
    """Parse an original STS Benchmark file (`sts-dev.csv`) into STS-B-style rows.

    Columns: genre, filename, year, id, score, sentence1, sentence2 and, on some rows,
    trailing source columns (two in the official files; one is accepted too); no header,
    tab-separated, quoting off (sentences contain `"`).
    """
    path = Path(path)
    rows: list[dict] = []
    for number, text in iter_lines(path):
        fields = _split_fields(text, (7, 8, 9), path, number)
        rows.append({"idx": len(rows), "sentence1": fields[5], "sentence2": fields[6],
                     "label": parse_score(fields[4], path, number)})
    if not rows:
        raise RefbenchError("empty file", path=path, line=1)
    return rows


# -- MRPC from the raw Microsoft files, as download_glue_data.py derives it ------------
def _read_msr(path: Path) -> list[tuple[int, list[str]]]:
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None:
        raise RefbenchError("empty file", path=path, line=1)
    header = first[1]
    # Hugging Face's dummy copies replace the BOM by the three letters "BOM".
    if header.startswith("BOMQuality"):
        header = header[3:]
    if tuple(header.split("\t")) != ("Quality",) + _MRPC_COLS:
        raise RefbenchError(f"unexpected header {header[:200]!r}; expected "
                            f"'Quality\\t#1 ID\\t#2 ID\\t#1 String\\t#2 String'",
                            path=path, line=first[0])
    rows = []
    for number, text in lines:
        fields = _split_fields(text.strip(), 5, path, number)  # the script strips each row
        if fields[0] not in ("0", "1"):
            raise RefbenchError(f"unknown mrpc label {fields[0]!r} (expected one of 0, 1)",
                                path=path, line=number)
        rows.append((number, fields))
    if not rows:
        raise RefbenchError("no data rows after the header", path=path, line=2)
    return rows


def _read_dev_ids(path: Path) -> set[tuple[str, str]]:
    ids: set[tuple[str, str]] = set()
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        fields = _split_fields(text.strip(), 2, path, number)
        ids.add((fields[0], fields[1]))
    if not ids:
        raise RefbenchError("empty file", path=path, line=1)
    return ids


def derive_mrpc(folder: Path) -> dict[str, list[dict]]:
    """MRPC train/validation/test from `msr_paraphrase_{train,test}.txt` + `dev_ids.tsv`.

    Rows of the raw train file whose (#1 ID, #2 ID) pair is in `dev_ids.tsv` form the
    dev split, the others the train split, both in file order; the test split is the
    raw test file with its labels dropped (GLUE's test.tsv hides them).
    """
    folder = Path(folder)
    dev_ids = _read_dev_ids(folder / "dev_ids.tsv")
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for _number, f in _read_msr(folder / "msr_paraphrase_train.txt"):
        split = "validation" if (f[1], f[2]) in dev_ids else "train"
        out[split].append({"idx": len(out[split]), "sentence1": f[3], "sentence2": f[4],
                           "label": int(f[0])})
    for _number, f in _read_msr(folder / "msr_paraphrase_test.txt"):
        out["test"].append({"idx": len(out["test"]), "sentence1": f[3], "sentence2": f[4],
                            "label": -1})
    return out


def derive_stsb(folder: Path) -> dict[str, list[dict]]:
    """STS-B train/validation/test from the raw STS Benchmark `sts-{train,dev,test}.csv`.

    GLUE's STS-B is these pairs in the same order; its test.tsv hides the scores, so the
    test split drops them (`label = -1`) as every GLUE test split does, after checking
    them like the others (a malformed score is still an error naming file and line).
    """
    folder = Path(folder)
    test = read_sts_benchmark_csv(folder / "sts-test.csv")
    return {"train": read_sts_benchmark_csv(folder / "sts-train.csv"),
            "validation": read_sts_benchmark_csv(folder / "sts-dev.csv"),
            "test": [{**row, "label": -1} for row in test]}


def derive_raw(config: str, folder: Path) -> dict[str, list[dict]]:
    """Every split of a task from its raw release in `folder` (see `RAW_RELEASES`)."""
    if config == "mrpc":
        return derive_mrpc(folder)
    if config == "stsb":
        return derive_stsb(folder)
    raise RefbenchError(f"GLUE/{config} has no raw release (only "
                        f"{', '.join(RAW_RELEASES)} do)")


# -- locating files ---------------------------------------------------------------------
def locate_files(root: Path, config: str) -> tuple[dict[str, Path], list[tuple[Path, str]]]:
    """Official files of a config: ({split or raw file name: path}, [(missing path, note)]).

    MRPC and STS-B are read from `train/dev/test.tsv` when all three exist, else from
    their raw release (see `RAW_RELEASES`; keys are then the raw file names). When only
    part of a raw release is there, the missing raw files are what is reported.
    """
    root = Path(root)
    task = get_task(config)
    if config == "ax":
        for rel in AX_CANDIDATES:
            if (root / rel).is_file():
                return {"test": root / rel}, []
        return {}, [(root / AX_CANDIDATES[0], "missing GLUE diagnostic file (also looked for "
                     + ", ".join(AX_CANDIDATES[1:]) + ")")]
    folder = root / task.folder
    found = {split: folder / name for split, name in task.splits.items()
             if (folder / name).is_file()}
    raw = RAW_RELEASES.get(config)
    if raw is not None and len(found) < len(task.splits):
        for where in raw.folders:
            if all((root / where / name).is_file() for name in raw.files):
                return {name: root / where / name for name in raw.files}, []
        if not found:
            for where in raw.folders:
                if any((root / where / name).is_file() for name in raw.files):
                    tsvs = ", ".join(task.splits.values())
                    note = (f"(the raw release needs all of {', '.join(raw.files)}; or give "
                            f"GLUE's {task.folder}/ with {tsvs})")
                    return {}, [(root / where / name, f"missing {raw.what} {where}/{name} {note}")
                                for name in raw.files if not (root / where / name).is_file()]
    note = f" (or {raw.describe()})" if raw is not None else ""
    if not folder.is_dir():
        names = ", ".join(task.splits.values())
        return {}, [(folder, f"missing GLUE task folder {task.folder} (expected {names}){note}")]
    missing = [(folder / name, f"missing GLUE file {task.folder}/{name}{note}")
               for split, name in task.splits.items() if split not in found]
    return found, missing


def _require_files(root: Path, config: str) -> dict[str, Path]:
    found, missing = locate_files(root, config)
    if missing:
        path, message = missing[0]
        if len(missing) > 1:
            others = ", ".join(p.name for p, _ in missing[1:])
            message += f" (and {len(missing) - 1} more: {others})"
        raise RefbenchError(message, path=path)
    return found


def read_config(root: Path, config: str) -> dict[str, list[dict]]:
    """Every split of one config as parsed rows (a raw MRPC / STS-B release derived)."""
    files = _require_files(root, config)
    raw = RAW_RELEASES.get(config)
    if raw is not None and raw.files[0] in files:
        return derive_raw(config, files[raw.files[0]].parent)
    return {split: read_task_file(path, config, split) for split, path in files.items()}


def features_for(config: str) -> "hf_datasets.Features":
    """The explicit `datasets.Features` of a config: idx int32, texts, ClassLabel/float32."""
    import datasets as hf_datasets

    task = get_task(config)
    spec: dict = {"idx": hf_datasets.Value("int32")}
    spec.update({name: hf_datasets.Value("string") for name in task.text_fields})
    spec["label"] = (hf_datasets.Value("float32") if task.is_regression
                     else hf_datasets.ClassLabel(names=list(task.label_names)))
    return hf_datasets.Features(spec)


# -- hints for `check` --------------------------------------------------------------------
#: files that only a single task's folder (or a raw release folder) holds directly
_TASK_FILES = frozenset({"train.tsv", "dev.tsv", "dev_matched.tsv", *MRPC_RAW, *STSB_RAW})


def folder_names(config: str) -> tuple[str, ...]:
    """Where a task's files may lie below the GLUE root: its task folder, then the folders
    of its raw release (see `RAW_RELEASES`)."""
    raw = RAW_RELEASES.get(config)
    return (get_task(config).folder, *(raw.folders if raw is not None else ()))


def task_folders(folder: Path) -> list[str]:
    """The configs (AX aside) whose task folder or raw release folder `folder` holds."""
    return [config for config in TASKS if config != "ax"
            and any((folder / name).is_dir() for name in folder_names(config))]


def config_of_folder(folder: Path) -> str | None:
    """The config (AX aside) whose task or raw release folder is named like `folder`."""
    name = folder.name.lower()
    return next((config for config in TASKS if config != "ax"
                 and name in {n.lower() for n in folder_names(config)}), None)


def add_hints(root: Path, configs: list[str], complete: list[str], report: CheckReport) -> None:
    """One-line hints: `--root` is one task's folder (suggest its parent and `-c`), or a
    folder with the GLUE root below it; only some tasks are present (suggest `-c`)."""
    root = Path(root)
    here = task_folders(root)
    if not here:
        config = config_of_folder(root)
        if config is not None or any((root / name).is_file() for name in _TASK_FILES):
            only = f" -c {config}" if config is not None else ""
            report.hint(f"{root} is one task's folder, not the GLUE root that holds the task "
                        f"folders (CoLA/, SST-2/, ...): use --root {root.parent}{only}")
            return
    if not complete:
        below = next((f for f in subfolders(root) if len(task_folders(f)) > max(1, len(here))),
                     None)
        if below is not None:
            report.hint(f"{below} holds GLUE task folders "
                        f"({', '.join(TASKS[c].folder for c in task_folders(below))}): use "
                        f"--root {below}")
        return
    absent = [c for c in configs if c not in complete]
    if complete and absent:
        flags = " ".join(f"-c {c}" for c in complete)
        report.hint(f"only {len(complete)} of {len(configs)} GLUE configs are complete here "
                    f"({', '.join(complete)}): to check and prepare just those, add {flags}")


_CITATION = """@inproceedings{wang2019glue,
  title = {{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author = {Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer
            and Bowman, Samuel R.},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2019}
}"""

_LICENSE = ("GLUE bundles existing corpora and the licence is per task: CoLA research use; "
            "SST-2 no explicit licence; MRPC Microsoft Research Paraphrase Corpus terms; STS-B "
            "scores CC BY-SA 4.0 with per-source text licences; QQP Quora terms; MNLI OANC and "
            "other permissive licences; QNLI CC BY-SA 4.0 (from SQuAD); RTE PASCAL/TAC terms; "
            "WNLI CC BY 4.0; diagnostic set: see gluebenchmark.com. Check each before "
            "redistributing.")


@DATASETS.register("glue")
class GlueBuilder(DatasetBuilder):
    """The GLUE benchmark (ten configs) from the folder `download_glue_data.py` writes."""

    name = "glue"
    version = "1.0"
    license = _LICENSE
    citation = _CITATION
    homepage = "https://gluebenchmark.com"
    synthesize_options = (
        Option("sst2", "str", "SST-2 variant: standard (sentiment words), compositional "
               "(the label follows the clause a connective points to, with double "
               "negations) or negation (the same with single negations only; the "
               "EfficientBERT search's tiny setting).", "standard"),
        Option("dev_rows", "int", "Rows of every dev split (default: n // 4)."),
    )

    def configs(self) -> list[str]:
        return list(TASKS)

    def splits(self, config: str) -> list[str]:
        return list(get_task(config).splits)

    def layout(self) -> str:
        lines = ["GLUE root as written by download_glue_data.py (every file is required):"]
        for task in TASKS.values():
            if task.config == "ax":
                lines.append("  diagnostic/diagnostic.tsv  (or " + ", ".join(AX_CANDIDATES[1:])
                             + ")")
            else:
                lines.append(f"  {task.folder}/{{{','.join(task.splits.values())}}}")
        lines.append("  MRPC may instead hold msr_paraphrase_train.txt, msr_paraphrase_test.txt "
                     "and dev_ids.tsv; train/dev/test are then derived as the script does.")
        lines.append("  STS-B may instead be the raw STS Benchmark release: stsbenchmark/ (or "
                     "STS-B/) with sts-train.csv, sts-dev.csv, sts-test.csv (test scores are "
                     "dropped, as in GLUE's test.tsv).")
        return "\n".join(lines)

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        folders = {task.folder for task in TASKS.values()}
        complete = []
        for config in configs:
            found, missing = locate_files(root, config)
            for path, note in missing:
                report.add(path, note, MISSING_FOLDER if path.name in folders else MISSING_FILE)
            if not missing:
                complete.append(config)
            for key, path in found.items():
                report.found.append(path.relative_to(root).as_posix())
                try:
                    self._scan(path, config, key)
                except RefbenchError as exc:
                    report.problems.append(Problem.from_error(exc, path))
        add_hints(root, configs, complete, report)

    @staticmethod
    def _scan(path: Path, config: str, key: str) -> None:
        """Parse one file to its end without keeping rows (raises on the first bad line)."""
        if key == "dev_ids.tsv":
            _read_dev_ids(path)
        elif key in MRPC_RAW:
            _read_msr(path)
        elif key in STSB_RAW:
            read_sts_benchmark_csv(path)
        else:
            for _row in iter_task_file(path, config, key):
                pass

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        import datasets as hf_datasets

        features = features_for(config)
        out = {}
        for split, rows in read_config(Path(root), config).items():
            columns = {name: [row[name] for row in rows] for name in features}
            out[split] = hf_datasets.Dataset.from_dict(columns, features=features,
                                                       split=hf_datasets.NamedSplit(split))
        return {split: out[split] for split in self.splits(config)}

    def source_files(self, root: Path, config: str) -> list[Path]:
        return list(_require_files(Path(root), config).values())

    def synthesize(self, out: Path, n: int = 200, seed: int = 0, *, sst2: str = "standard",
                   dev_rows: int | None = None) -> Path:
        """The synthetic release (`synthesize_glue`); `sst2="compositional"` and `dev_rows`
        give the harder SST-2 with a large dev split that the EfficientBERT search's tiny
        setting uses; the defaults write what the CLI writes."""
        from refbench.datasets.glue.synth import synthesize_glue

        return synthesize_glue(Path(out), n=n, seed=seed, sst2=sst2, dev_rows=dev_rows)
