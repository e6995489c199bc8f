"""The SQuAD submission format: the official prediction file, plus v2.0's na-prob file.

A prediction file is one JSON object `{question_id: answer_text}` (`""` = no answer in
v2.0), the file `evaluate-v1.1.py` / `evaluate-v2.0.py` read. For v2.0 an optional
na-prob file `{question_id: number}` gives each prediction's no-answer probability (the
scripts' `--na-prob-file`; any real score works, only its order and the threshold
matter). `write` puts it beside the predictions as `<stem>.na_prob.json`, and
`companions` hands it back to the scorer, so a run is scored with its own na_probs.

Reading is strict where the scripts would crash or silently keep the last of two values:
invalid JSON (file:line), a top level that is not an object, a non-string answer, a
duplicate key, a non-number, boolean or non-finite na_prob, a predicted question without
an na_prob. Like the scripts, na-prob entries for questions without a prediction are
ignored. Maps are `{qid: {"text", "na_prob", "order"}}`: `order` is the question's
position in the na-prob file (else in the prediction file), the order in which the v2.0
script breaks na_prob ties. References are `{qid: [gold answer texts]}` (`[]` when
unanswerable); a question without a prediction scores 0, as in the scripts (see
`refbench.evaluation.squad`), and a predicted id outside the references is ignored, as the
scripts ignore it; the scorer reports both.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.io import atomic_write_text
from refbench.options import Option

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

NA_PROB_SUFFIX = ".na_prob.json"


def spec_config(spec: "BenchmarkSpec") -> str:
    """`v1.1` or `v2.0`: the spec's dataset config (its metric version must agree)."""
    from refbench.datasets.squad.builder import config_of

    config = config_of(spec.dataset.config)
    version = spec.metric.kwargs().get("version")
    if version is not None and config_of(version) != config:
        raise RefbenchError(f"{spec.name}: dataset config {spec.dataset.config} but metric "
                            f"version {version}", key="metric.args.version")
    return config


def na_prob_path(path: Path) -> Path:
    """Where `write` puts the na-prob file of a prediction file: `<stem>.na_prob.json`."""
    path = Path(path)
    return path.with_name(path.stem + NA_PROB_SUFFIX)


# -- strict JSON objects -----------------------------------------------------------------
class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _line_of_key(text: str, key: str, nth: int) -> int | None:
    """Line of the `nth` occurrence of `"key":` in a JSON text (error path only)."""
    import re

    pattern = re.compile(re.escape(json.dumps(key)) + r"\s*:")
    for count, match in enumerate(pattern.finditer(text), start=1):
        if count == nth:
            return text.count("\n", 0, match.start()) + 1
    return None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object with unique keys; errors name file, line, key."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise RefbenchError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError(f"expected a JSON file ({what}), found a folder", path=path) from None
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                            path=path) from None
    try:
        obj = json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path,
                            line=exc.lineno) from None
    except _DuplicateKey as dup:
        raise RefbenchError(f"duplicate question id {dup.key!r}", path=path,
                            line=_line_of_key(text, dup.key, 2), key=dup.key) from None
    if not isinstance(obj, dict):
        raise RefbenchError(f"expected one JSON object {{question_id: ...}} ({what}), got a "
                            f"JSON {type(obj).__name__}", path=path, line=1)
    return obj


def _number(value: Any) -> float | None:
    """A finite float, or None when `value` is not a (non-boolean) finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def read_predictions(path: Path, na_prob_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """`{qid: {"text", "na_prob", "order"}}` from a prediction file (and na-prob file)."""
    path = Path(path)
    raw = read_json_object(path, "prediction file")
    out: dict[str, dict[str, Any]] = {}
    for order, (qid, text) in enumerate(raw.items()):
        if not isinstance(text, str):
            raise RefbenchError(f"the prediction of question {qid!r} must be a string (\"\" = "
                                f"no answer), got {json.dumps(text)[:60]}", path=path,
                                line=_key_line(path, qid), key=qid)
        out[qid] = {"text": text, "na_prob": None, "order": order}
    if na_prob_file is None:
        return out
    na_path = Path(na_prob_file)
    na_probs = read_json_object(na_path, "na-prob file")
    position = {qid: i for i, qid in enumerate(na_probs)}
    for qid, value in na_probs.items():
        if _number(value) is None:
            raise RefbenchError(f"the na_prob of question {qid!r} must be a finite number, got "
                                f"{json.dumps(value)[:60]}", path=na_path,
                                line=_key_line(na_path, qid), key=qid)
    for qid, entry in out.items():
        if qid not in na_probs:
            raise RefbenchError(f"no na_prob for question {qid!r} (the na-prob file must "
                                f"cover every prediction)", path=na_path, key=qid)
        entry["na_prob"] = _number(na_probs[qid])
        entry["order"] = position[qid]
    return out


def _key_line(path: Path, key: str) -> int | None:
    """Line of a key's first occurrence (error path only: the file is read again)."""
    return _line_of_key(Path(path).read_text(encoding="utf-8-sig"), key, 1)


# -- writing -----------------------------------------------------------------------------
def _entry(qid: Any, value: Any, config: str) -> tuple[str, float | None]:
    if not isinstance(qid, str):
        raise RefbenchError(f"SQuAD question ids are strings, got {qid!r}")
    if isinstance(value, str):
        return value, None
    if not isinstance(value, Mapping) or not isinstance(value.get("text"), str):
        raise RefbenchError(f"the prediction of question {qid!r} must be a string or "
                            f"{{'text': str, 'na_prob': float | None}}, got {value!r:.80}",
                            key=qid)
    unknown = set(value) - {"text", "na_prob", "order"}
    if unknown:
        raise RefbenchError(f"the prediction of question {qid!r} has unknown field(s) "
                            f"{sorted(unknown)}", key=qid)
    na_prob = value.get("na_prob")
    if na_prob is not None:
        if config == "v1.1":
            raise RefbenchError(f"question {qid!r} has an na_prob, but SQuAD v1.1 has no "
                                f"unanswerable questions", key=qid)
        if _number(na_prob) is None:
            raise RefbenchError(f"the na_prob of question {qid!r} must be a finite number, "
                                f"got {na_prob!r}", key=qid)
        na_prob = float(na_prob)
    return value["text"], na_prob


def write_predictions(path: Path, predictions: Mapping[Any, Any], config: str) -> None:
    """Write the official prediction file and, when na_probs are given, its na-prob file.

    Everything is validated before anything is written; both files are written
    atomically. A stale na-prob file of an earlier write is removed when this one has
    no na_probs, so `companions` never pairs predictions with old probabilities.
    """
    path = Path(path)
    texts: dict[str, str] = {}
    na_probs: dict[str, float] = {}
    lacking: str | None = None
    for qid, value in predictions.items():
        text, na_prob = _entry(qid, value, config)
        texts[qid] = text
        if na_prob is None:
            lacking = lacking if lacking is not None else qid
        else:
            na_probs[qid] = na_prob
    if na_probs and lacking is not None:
        raise RefbenchError(f"question {lacking!r} has no na_prob while others have one: give "
                            f"every prediction an na_prob or none", path=path, key=lacking)
    companion = na_prob_path(path)
    if na_probs:
        atomic_write_text(companion, json.dumps(na_probs, indent=2, allow_nan=False) + "\n")
    atomic_write_text(path, json.dumps(texts, indent=2, ensure_ascii=False) + "\n")
    if not na_probs and companion.is_file():
        companion.unlink()


# -- references --------------------------------------------------------------------------
def read_reference_file(path: Path, spec: "BenchmarkSpec") -> dict[str, list[str]]:
    """`{qid: [gold texts]}` from an official SQuAD JSON file, or from the file of the
    spec's split inside a SQuAD root folder (`dev-v2.0.json`, ...)."""
    from refbench.datasets.squad.builder import SPLIT_FILES, read_squad_file

    config = spec_config(spec)
    path = Path(path)
    if path.is_dir():
        name = SPLIT_FILES[config].get(spec.split)
        if name is None or not (path / name).is_file():
            wanted = name or ", ".join(SPLIT_FILES[config].values())
            raise RefbenchError(f"no {wanted} in this folder", path=path)
        path = path / name
    return {row["id"]: list(row["answers"]["text"]) for row in read_squad_file(path, config)}


def dataset_references(dataset: "hf_datasets.Dataset") -> dict[str, list[str]]:
    """`{qid: [gold texts]}` of a prepared split (columns `id`, `answers`)."""
    missing = {"id", "answers"} - set(dataset.column_names)
    if missing:
        raise RefbenchError(f"prepared split lacks column(s) {sorted(missing)}")
    out: dict[str, list[str]] = {}
    for qid, answers in zip(dataset["id"], dataset["answers"]):
        if qid in out:
            raise RefbenchError(f"duplicate question id {qid!r} in the prepared split")
        out[qid] = list(answers["text"])
    return out


@FORMATS.register("squad_json")
class SquadJsonFormat(SubmissionFormat):
    """The official SQuAD prediction file `{question_id: answer_text}` (+ na-prob file)."""

    missing = "score"
    missing_scored_as = "scored 0, as the official scripts do"
    extra_scored_as = "ignored, as the official scripts ignore them"
    read_options = (Option("na_prob_file", "path",
                           "SQuAD v2.0 only: JSON {question_id: no-answer probability} of the "
                           "predictions (evaluate-v2.0.py's --na-prob-file)."),)

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_predictions(Path(path), predictions, spec_config(spec))

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        options = dict(options or {})
        known = [o.name for o in self.read_options]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise RefbenchError(f"unknown read option(s) {unknown} for squad_json (known: "
                                f"{', '.join(known)})")
        na_prob_file = options.get("na_prob_file")
        if na_prob_file is not None and spec_config(spec) == "v1.1":
            raise RefbenchError("an na-prob file applies to SQuAD v2.0 only; v1.1 has no "
                                "unanswerable questions", path=na_prob_file)
        return read_predictions(Path(path), None if na_prob_file is None else Path(na_prob_file))

    def companions(self, path: Path, spec: "BenchmarkSpec") -> dict[str, Any]:
        companion = na_prob_path(Path(path))
        return {"na_prob_file": companion} if companion.is_file() else {}

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """The first gold answer of each question ("" for an unanswerable one)."""
        return {qid: golds[0] if golds else "" for qid, golds in references.items()}

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        return read_reference_file(Path(path), spec)

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        spec_config(spec)
        return dataset_references(dataset)
