"""SQuAD v1.1 and v2.0, read from the official JSON files.

One root folder holds the release under its official names: `train-v1.1.json`,
`dev-v1.1.json` (config `v1.1`) and `train-v2.0.json`, `dev-v2.0.json` (config `v2.0`).
Every file of a config is required, train included, as for GLUE: a cache that silently
lacks a split would change what `load_dataset("squad", "train", ...)` means.

The JSON is `{"version", "data": [article]}`, an article `{"title", "paragraphs"}`, a
paragraph `{"context", "qas"}`, a question `{"id", "question", "answers": [{"text",
"answer_start"}]}` plus, in v2.0, `is_impossible` and (on unanswerable questions)
`plausible_answers`. Rows follow the Hugging Face `squad` layout: `answers` is a dict of
lists (`{"text": [...], "answer_start": [...]}`, empty lists when unanswerable), plus
`is_impossible` (False everywhere in v1.1) and `plausible_answers` (same shape, empty
when absent). Contexts are kept byte for byte (no stripping: that is what broke the
offsets of the Hugging Face copy once), so every `answer_start` is checked to point at
its text. Problems raise a `RefbenchError` naming the file, the question id (and its
line when the file is pretty-printed) or the JSON path of the bad field.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from refbench.datasets.base import (
    MISSING_FILE,
    CheckReport,
    DatasetBuilder,
    Problem,
    subfolders,
)
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

#: config -> split -> official file name
SPLIT_FILES: dict[str, dict[str, str]] = {
    "v1.1": {"train": "train-v1.1.json", "validation": "dev-v1.1.json"},
    "v2.0": {"train": "train-v2.0.json", "validation": "dev-v2.0.json"},
}
#: the `version` field the official files carry
FILE_VERSIONS: dict[str, str] = {"v1.1": "1.1", "v2.0": "v2.0"}
COLUMNS = ("id", "title", "context", "question", "answers", "is_impossible",
           "plausible_answers")


def config_of(version: Any) -> str:
    """`v1.1` / `v2.0` from a config or a file version ("1.1", "v2.0", "2.0", ...)."""
    text = str(version).strip().lower().removeprefix("v")
    if text not in ("1.1", "2.0"):
        raise RefbenchError(f"unknown SQuAD version {version!r} (known: v1.1, v2.0)")
    return f"v{text}"


def features() -> "hf_datasets.Features":
    """The explicit features of every split of both configs."""
    import datasets as hf_datasets

    spans = hf_datasets.Sequence({"text": hf_datasets.Value("string"),
                                  "answer_start": hf_datasets.Value("int32")})
    string = hf_datasets.Value("string")
    return hf_datasets.Features({"id": string, "title": string, "context": string,
                                 "question": string, "answers": spans,
                                 "is_impossible": hf_datasets.Value("bool"),
                                 "plausible_answers": spans})


# -- parsing ---------------------------------------------------------------------------
@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small containers.

    Parsing a train file creates ~10^6 dicts and lists that all stay alive; every
    automatic collection would walk all of them again (4x slower overall). Nothing
    built here is cyclic, so reference counting frees everything anyway.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_json(path: Path) -> tuple[Any, str]:
    """(parsed JSON, text) of a UTF-8 file (a BOM is accepted); errors name file:line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError("file not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError("expected a JSON file, found a folder", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                            path=path) from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path,
                            line=exc.lineno) from None


def line_of_id(text: str, qid: str, nth: int = 1) -> int | None:
    """Line of the `nth` `"id": "<qid>"` in a JSON text (only computed on errors)."""
    pattern = re.compile(r'"id"\s*:\s*' + re.escape(json.dumps(qid)))
    for count, match in enumerate(pattern.finditer(text), start=1):
        if count == nth:
            return text.count("\n", 0, match.start()) + 1
    return None


class _Parser:
    """Walks one parsed file; every problem is raised where it is found."""

    def __init__(self, path: Path, text: str, config: str) -> None:
        self.path, self.text, self.config = path, text, config

    def fail(self, message: str, where: str | None = None, qid: str | None = None,
             nth: int = 1) -> RefbenchError:
        if qid is not None:
            inside = f" {where}" if where else ""
            return RefbenchError(f"question {qid!r}{inside}: {message}", path=self.path,
                                 line=line_of_id(self.text, qid, nth))
        return RefbenchError(message, path=self.path, key=where)

    def field(self, obj: Any, key: str, kind: type, where: str,
              qid: str | None = None) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(f"expected a JSON object, got {type(obj).__name__}", where, qid)
        if key not in obj:
            raise self.fail(f"missing key {key!r}", where, qid)
        value = obj[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{key!r} must be a JSON {_JSON_NAMES[kind.__name__]}, got "
                            f"{json.dumps(value)[:60]}", where, qid)
        return value

    def spans(self, qa: dict, key: str, context: str, qid: str) -> dict[str, list]:
        texts: list[str] = []
        starts: list[int] = []
        for i, answer in enumerate(self.field(qa, key, list, "", qid)):
            at = f"{key}[{i}]"
            text = self.field(answer, "text", str, at, qid)
            start = self.field(answer, "answer_start", int, at, qid)
            if start < 0 or context[start:start + len(text)] != text:
                found = context[max(start, 0):max(start, 0) + len(text)]
                raise self.fail(f"answer_start {start} does not point at its text "
                                f"{_short(text)} (the context there reads {_short(found)})",
                                at, qid)
            texts.append(text)
            starts.append(start)
        return {"text": texts, "answer_start": starts}

    def rows(self, top: Any) -> list[dict]:
        if not isinstance(top, dict):
            raise self.fail(f"expected a JSON object {{\"version\", \"data\"}}, got "
                            f"{type(top).__name__}")
        try:
            found = config_of(self.field(top, "version", str, "version"))
        except RefbenchError as exc:
            if exc.path is not None:
                raise
            raise self.fail(exc.message, "version") from None
        if found != self.config:
            raise self.fail(f"this is a SQuAD {found} file (version "
                            f"{top['version']!r}), expected {self.config}", "version")
        v2 = self.config == "v2.0"
        seen: dict[str, int] = {}
        out: list[dict] = []
        for a_i, article in enumerate(self.field(top, "data", list, "data")):
            where_a = f"data[{a_i}]"
            title = self.field(article, "title", str, where_a)
            for p_i, para in enumerate(self.field(article, "paragraphs", list, where_a)):
                where_p = f"{where_a}.paragraphs[{p_i}]"
                context = self.field(para, "context", str, where_p)
                for q_i, qa in enumerate(self.field(para, "qas", list, where_p)):
                    where_q = f"{where_p}.qas[{q_i}]"
                    qid = self.field(qa, "id", str, where_q)
                    if qid in seen:
                        seen[qid] += 1
                        raise self.fail("duplicate question id", qid=qid, nth=seen[qid])
                    seen[qid] = 1
                    question = self.field(qa, "question", str, "", qid)
                    answers = self.spans(qa, "answers", context, qid)
                    if v2 or "is_impossible" in qa:
                        impossible = self.field(qa, "is_impossible", bool, "", qid)
                    else:
                        impossible = False
                    if impossible and not v2:
                        raise self.fail("is_impossible is true in a SQuAD v1.1 file", qid=qid)
                    if impossible and answers["text"]:
                        raise self.fail("is_impossible is true but the question has answers",
                                        qid=qid)
                    if not impossible and not answers["text"]:
                        raise self.fail("no answers but is_impossible is "
                                        f"{'false' if v2 else 'absent (v1.1)'}", qid=qid)
                    plausible = (self.spans(qa, "plausible_answers", context, qid)
                                 if "plausible_answers" in qa
                                 else {"text": [], "answer_start": []})
                    out.append({"id": qid, "title": title, "context": context,
                                "question": question, "answers": answers,
                                "is_impossible": impossible, "plausible_answers": plausible})
        if not out:
            raise self.fail("the file holds no question", "data")
        return out


def _short(text: str, limit: int = 80) -> str:
    """`repr` of a text cut to `limit` characters, for one-line messages."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


_JSON_NAMES = {"str": "string", "int": "integer", "list": "array", "dict": "object",
               "bool": "boolean (true/false)"}


def read_squad_file(path: Path, version: str | None = None) -> list[dict]:
    """Parse and validate one official SQuAD JSON file into rows (see the module doc).

    `version` ("v1.1"/"v2.0", "1.1", ...) is the release the file must be; by default the
    file's own `version` field decides which rules apply.
    """
    path = Path(path)
    with gc_paused():
        top, text = load_json(path)
        return _rows(path, top, text, version)


def _rows(path: Path, top: Any, text: str, version: str | None) -> list[dict]:
    if version is None:
        if not isinstance(top, dict) or not isinstance(top.get("version"), str):
            raise RefbenchError("missing key 'version' (a string such as \"1.1\" or "
                                "\"v2.0\")", path=path, key="version")
        try:
            config = config_of(top["version"])
        except RefbenchError as exc:
            raise RefbenchError(exc.message, path=path, key="version") from None
    else:
        config = config_of(version)
    return _Parser(path, text, config).rows(top)


# -- the builder -----------------------------------------------------------------------
def locate_files(root: Path, config: str) -> tuple[dict[str, Path], list[Path]]:
    """({split: path} of the official files present, [missing paths]) of one config."""
    names = SPLIT_FILES[config]
    found = {split: Path(root) / name for split, name in names.items()
             if (Path(root) / name).is_file()}
    missing = [Path(root) / name for split, name in names.items() if split not in found]
    return found, missing


def _require_files(root: Path, config: str) -> dict[str, Path]:
    found, missing = locate_files(root, config)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise RefbenchError(f"missing SQuAD {config} file {missing[0].name}{more}",
                            path=missing[0])
    return found


def rows_to_dataset(rows: list[dict], split: str) -> "hf_datasets.Dataset":
    """Rows -> a `datasets.Dataset` with the explicit features (built as one Arrow table,
    4x faster than `Dataset.from_dict` on the train files)."""
    import datasets as hf_datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    feats = features()
    with gc_paused():
        columns = {name: [row[name] for row in rows] for name in COLUMNS}
        table = pa.Table.from_pydict(columns, schema=feats.arrow_schema)
    return hf_datasets.Dataset(InMemoryTable(table), info=hf_datasets.DatasetInfo(features=feats),
                               split=hf_datasets.NamedSplit(split))


# -- hints for `check` --------------------------------------------------------------------
OFFICIAL_NAMES = {name: config for config, names in SPLIT_FILES.items()
                  for name in names.values()}


def add_file_hint(path: Path, report: CheckReport) -> None:
    """The hint for a `--root` that is one JSON file instead of the release folder."""
    config = OFFICIAL_NAMES.get(path.name)
    if config is not None:
        report.hint(f"--root takes the folder holding the SQuAD files, not one file: use "
                    f"--root {path.parent} -c {config}")
    else:
        report.hint(f"--root takes a folder holding the SQuAD files under their official "
                    f"names ({', '.join(OFFICIAL_NAMES)}): put {path.name} into a folder under "
                    f"the name of its version and split, and pass that folder as --root")


def add_hints(root: Path, configs: list[str], complete: list[str], report: CheckReport) -> None:
    """One-line hints: the release one folder below `root`, JSON files under other names
    (here, or below when nothing is here), only some configs complete (suggest `-c`)."""
    root = Path(root)
    official = [name for name in OFFICIAL_NAMES if (root / name).is_file()]
    below = subfolders(root)
    if not official:
        release = next((f for f in below if any((f / n).is_file() for n in OFFICIAL_NAMES)), None)
        if release is not None:
            report.hint(f"{release} holds official SQuAD files: use --root {release}")
            return
    others = [p for p in sorted(root.glob("*.json")) if p.name not in OFFICIAL_NAMES]
    if not others and not official:
        others = [p for f in below for p in sorted(f.glob("*.json"))][:4]
    if others and len(complete) < len(configs):
        shown = ", ".join(p.relative_to(root).as_posix() for p in others[:3])
        more = ", ..." if len(others) > 3 else ""
        report.hint(f"JSON files under other names ({shown}{more}) are not read: refbench reads "
                    f"only the official names {', '.join(OFFICIAL_NAMES)} in the --root folder "
                    f"(copy or link a file there under the name of its version and split)")
    absent = [c for c in configs if c not in complete]
    if complete and absent:
        flags = " ".join(f"-c {c}" for c in complete)
        report.hint(f"only {', '.join(complete)} of SQuAD {', '.join(configs)} is complete here: "
                    f"to check and prepare just that, add {flags}")


_CITATION = """@inproceedings{rajpurkar2016squad,
  title = {{SQuAD}: 100,000+ Questions for Machine Comprehension of Text},
  author = {Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle = {Proceedings of EMNLP},
  year = {2016}
}
@inproceedings{rajpurkar2018know,
  title = {Know What You Don't Know: Unanswerable Questions for {SQuAD}},
  author = {Rajpurkar, Pranav and Jia, Robin and Liang, Percy},
  booktitle = {Proceedings of ACL},
  year = {2018}
}"""


@DATASETS.register("squad")
class SquadBuilder(DatasetBuilder):
    """SQuAD v1.1 and v2.0 (configs `v1.1`, `v2.0`; splits `train`, `validation`)."""

    name = "squad"
    version = "1.0"
    license = "CC BY-SA 4.0 (questions and answers; contexts are from Wikipedia)"
    citation = _CITATION
    homepage = "https://rajpurkar.github.io/SQuAD-explorer/"

    def configs(self) -> list[str]:
        return list(SPLIT_FILES)

    def splits(self, config: str) -> list[str]:
        if config not in SPLIT_FILES:
            self.resolve_configs([config])  # raises with a suggestion
        return list(SPLIT_FILES[config])

    def layout(self) -> str:
        return ("One folder with the official SQuAD files under their official names "
                "(every file of a config is required):\n"
                "  train-v1.1.json, dev-v1.1.json   (config v1.1)\n"
                "  train-v2.0.json, dev-v2.0.json   (config v2.0)\n"
                "The test sets are hidden by the SQuAD authors and not part of the release.")

    def check(self, root: Path, configs: list[str] | None = None) -> CheckReport:
        """`DatasetBuilder.check`, plus a hint when `root` is one JSON file, not the folder."""
        report = super().check(root, configs)
        if Path(root).is_file():
            add_file_hint(Path(root), report)
        return report

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        complete = []
        for config in configs:
            found, missing = locate_files(root, config)
            for path in missing:
                report.add(path, f"missing SQuAD {config} file {path.name}", MISSING_FILE)
            if not missing:
                complete.append(config)
            for path in found.values():
                report.found.append(path.name)
                try:
                    read_squad_file(path, config)
                except RefbenchError as exc:
                    report.problems.append(Problem.from_error(exc, path))
        add_hints(root, configs, complete, report)

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        files = _require_files(Path(root), self.resolve_configs([config])[0])
        return {split: rows_to_dataset(read_squad_file(path, config), split)
                for split, path in files.items()}

    def source_files(self, root: Path, config: str) -> list[Path]:
        return list(_require_files(Path(root), config).values())

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.squad.synth import synthesize_squad

        return synthesize_squad(Path(out), n=n, seed=seed)
