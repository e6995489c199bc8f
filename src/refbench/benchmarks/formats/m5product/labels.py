"""The M5Product classification and clustering submissions: one JSON object per file.

No official file exists for either (SCALE's `train_cls.py` prints its accuracy; no
clustering code was released), so refbench defines them:

- classification, `predictions.json`: `{"item_id": "label", ...}`, the label string of
  the id -> info JSON (`label`), one entry per item of the scored split. A JSON object,
  not `id,label` lines, because labels are free text (category names may hold commas).
- clustering, `clusters.json`: `{"item_id": cluster, ...}`, the cluster as a
  non-negative integer, one entry per item.

Read strictly, one error naming the file and line: bytes that are not UTF-8, a byte-order
mark, invalid JSON, anything but an object at the top, an empty id, a key given twice
(JSON would keep the last silently), NaN or Infinity, a value of the wrong type (an
empty label, a negative, fractional or boolean cluster). Missing and extra ids: a missing
classification prediction is scored wrong and reported; a clustering must assign every
item, so a missing one is refused; extra ids are ignored and reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refbench.benchmarks.formats.base import FORMATS
from refbench.benchmarks.formats.m5product.references import M5LabelFormat
from refbench.errors import RefbenchError
from refbench.io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from refbench.benchmarks.spec import BenchmarkSpec


class _Bad(ValueError):
    def __init__(self, message: str, key: str | None = None, token: str | None = None) -> None:
        super().__init__(message)
        self.key, self.token = key, token


def _line_of(text: str, key: str | None, occurrence: int = 1) -> int | None:
    """The line of the `occurrence`-th appearance of `"key":` in the text (a best effort
    for messages: JSON does not keep positions)."""
    if key is None:
        return None
    pattern = re.compile(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:")
    found = list(pattern.finditer(text))
    if len(found) < occurrence:
        pattern = re.compile(re.escape(json.dumps(key)) + r"\s*:")
        found = list(pattern.finditer(text))
    if len(found) < occurrence:
        return None
    return text.count("\n", 0, found[occurrence - 1].start()) + 1


def read_json_map(path: Path, check: Callable[[str, Any], Any], what: str) -> dict[str, Any]:
    """`{id: value}` of a JSON object file, each value passed through `check` (which raises
    ValueError with the reason); errors name the file and line (module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError(f"expected a file ({what}), found a folder", path=path) from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise RefbenchError("starts with a UTF-8 byte-order mark", path=path, line=1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path,
                            line=data.count(b"\n", 0, exc.start) + 1) from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _Bad(f"id {key!r} is given twice (JSON would keep the last silently)",
                           key)
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise _Bad(f"{name} is not a valid value", token=name)

    try:
        obj = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except _Bad as exc:
        line = (_line_of(text, exc.key, 2) if exc.token is None
                else text.count("\n", 0, max(text.find(exc.token), 0)) + 1)
        raise RefbenchError(str(exc), path=path, line=line) from None
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON ({exc.msg}, column {exc.colno})", path=path,
                            line=exc.lineno) from None
    if not isinstance(obj, dict):
        raise RefbenchError(f"expected a JSON object {{\"item_id\": ...}}, got "
                            f"{type(obj).__name__}", path=path, line=1)
    if not obj:
        raise RefbenchError(f"empty {what}", path=path)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        try:
            if not key:
                raise _Bad("empty item id")
            out[key] = check(key, value)
        except _Bad as exc:
            raise RefbenchError(str(exc), path=path, line=_line_of(text, key)) from None
    return out


def _label(key: str, value: Any) -> str:
    if isinstance(value, dict) or not isinstance(value, str) or not value:
        raise _Bad(f"item {key!r}: the label must be a non-empty string, got {value!r}")
    return value


def _cluster(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad(f"item {key!r}: the cluster must be a non-negative integer, got {value!r}")
    return value


def write_json_map(path: Path, predictions: Mapping[Any, Any],
                   check: Callable[[str, Any], Any]) -> None:
    """Write `{id: value}` as a JSON object, atomically, after checking every entry."""
    out: dict[str, Any] = {}
    for key, value in predictions.items():
        if not isinstance(key, str) or not key:
            raise RefbenchError(f"item ids are non-empty strings, got {key!r}", path=path)
        try:
            out[key] = check(key, value)
        except _Bad as exc:
            raise RefbenchError(str(exc), path=path) from None
    text = "{\n" + ",\n".join(f"  {json.dumps(k, ensure_ascii=False)}: "
                              f"{json.dumps(v, ensure_ascii=False)}" for k, v in out.items())
    atomic_write_text(path, text + "\n}\n")


@FORMATS.register("m5product_labels")
class M5ProductLabelsFormat(M5LabelFormat):
    """`{"item_id": "label"}`: one predicted label per item of the scored split."""

    missing = "score"
    missing_scored_as = "scored as wrong answers"
    extra = "ignore"

    def read(self, path: Path, spec: BenchmarkSpec,
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"m5product_labels takes no read options, got "
                                f"{', '.join(sorted(options))}")
        return read_json_map(path, _label, "prediction file")

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: BenchmarkSpec) -> None:
        write_json_map(Path(path), predictions, _label)


@FORMATS.register("m5product_clusters")
class M5ProductClustersFormat(M5LabelFormat):
    """`{"item_id": cluster}`: a non-negative integer cluster for every item of the split."""

    missing = "refuse"
    missing_scored_as = "refused: a clustering assigns every item"
    missing_refused_because = ("a clustering assigns every item of the split (NMI and purity "
                               "of a part would not be comparable)")
    extra = "ignore"

    def read(self, path: Path, spec: BenchmarkSpec,
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"m5product_clusters takes no read options, got "
                                f"{', '.join(sorted(options))}")
        return read_json_map(path, _cluster, "cluster file")

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: BenchmarkSpec) -> None:
        write_json_map(Path(path), predictions, _cluster)

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """One cluster per reference label."""
        codes: dict[str, int] = {}
        return {item: codes.setdefault(label, len(codes)) for item, label in references.items()}
