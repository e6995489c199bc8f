"""Readers of the official M5Product text files: the id -> info JSON, the label list and
the id lists, plus the documented file names of each.

What the official code reads (`SCALE_code`, `M5Product_toolkit`):

* the id -> info JSON (`subset_v2_id_label.json`; the toolkit's evaluation reads
  `product1m_product5m_id_label.json`, the fine-grained one
  `product1m_product5m_test_id_label.json`): `{item_id: {"title": str, "pv":
  "key#:#value#;#key#:#value...", "label": str}}`, read whole with `json.load`. Here it is
  streamed entry by entry (millions of entries) with the Product1M JSON window.
* the label list (`subset_v2_label_list.json`): a JSON array of label strings; a label's
  class index is its position (`label_map = {label: i for i, label in enumerate(...)}`).
* the id lists: the extraction and conversion scripts read JSON arrays of ids
  (`gallery_fg_image_ids.json`, `subset_train_ids.json`, `subset_test_ids.json`); the
  release's coarse/fine query/gallery lists are not named in any code, so the names in
  `LIST_FILES` (the scripts' `query_c`, `gallery_c`, `query_fg`, `gallery_fg` stems with
  `_ids` / `_image_ids`, as `.json` arrays or `.txt` with one id per line) are accepted.

The `pv` string is split as `convert_example_to_features` does it (`parse_pv`): a string
of length 1 (the release's placeholder) or of only whitespace means "no table", pairs are
separated by `#;#`, key and value by `#:#`. Where the official code crashes (a pair
without `#:#`, hence also an empty pair from a trailing `#;#`) or silently drops text (a
pair with two `#:#`), refbench raises an error naming the file and item id.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refbench.datasets.product1m.readers import (Digest, JsonStream, decode_line,
                                                 iter_json_object,
                                                 require_file)
from refbench.errors import RefbenchError

PV_PAIR_SEP = "#;#"
PV_KV_SEP = "#:#"
#: the id -> info JSON, first found wins (the SCALE scripts' name first)
INFO_FILES = ("subset_v2_id_label.json", "product1m_product5m_id_label.json", "id_label.json",
              "id_info.json")
#: the fine-grained retrieval's own info JSON (its labels are finer); optional: when
#: present, the `fine_*` splits take title, pv and label from it, else from the main one
FINE_INFO_FILES = ("product1m_product5m_test_id_label.json", "fine_id_label.json")
LABEL_LIST_FILES = ("subset_v2_label_list.json", "label_list.json")
_EXTS = (".json", ".txt")


def _names(*stems: str) -> tuple[str, ...]:
    return tuple(stem + ext for stem in stems for ext in _EXTS)


#: refbench split -> accepted id-list file names (first found wins). `train` is optional:
#: without a list, every item of the info JSON is a pretraining item (the SCALE pretraining
#: reads every record of its LMDB with the whole info JSON).
LIST_FILES: dict[str, tuple[str, ...]] = {
    "train": _names("pretrain_ids", "train_ids"),
    "coarse_query": _names("query_c_ids", "query_c_image_ids", "coarse_query_ids", "query_c"),
    "coarse_gallery": _names("gallery_c_ids", "gallery_c_image_ids", "coarse_gallery_ids",
                             "gallery_c"),
    "fine_query": _names("query_fg_ids", "query_fg_image_ids", "fine_query_ids", "query_fg"),
    "fine_gallery": _names("gallery_fg_ids", "gallery_fg_image_ids", "fine_gallery_ids",
                           "gallery_fg"),
    "cls_train": _names("subset_train_ids", "subset_v2_train_ids", "cls_train_ids"),
    "cls_test": _names("subset_test_ids", "subset_v2_test_ids", "cls_test_ids"),
}
#: the official names of the splits (the scripts' LMDB / list stems) -> refbench's
SPLIT_ALIASES: dict[str, str] = {
    "pretrain": "train", "query_c": "coarse_query", "gallery_c": "coarse_gallery",
    "query_fg": "fine_query", "gallery_fg": "fine_gallery", "subset_train": "cls_train",
    "subset_test": "cls_test", "subset_v2_train": "cls_train", "subset_v2_test": "cls_test"}
#: characters an item id may not hold: it names `<id>.npy`, a webdataset key and a field
#: of the comma-separated ranked lists
_BAD_ID_CHARS = frozenset(",./\\")


@dataclass(frozen=True)
class M5Info:
    """One entry of the info JSON: `label` is "" where the entry has none."""

    title: str
    pv: str
    label: str
    line: int = 0


def find_file(root: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` that exists in `root` (a folder in its place counts, so the
    reader can say it is not a file)."""
    for name in names:
        if (Path(root) / name).exists():
            return Path(root) / name
    return None


def list_file(root: Path, split: str) -> Path | None:
    """The id list of a refbench split in `root` (None: not there)."""
    return find_file(root, LIST_FILES[split])


def bad_item_id(item_id: str) -> str:
    """Why `item_id` cannot be an item id ('' when it can)."""
    if not item_id:
        return "an empty item id"
    if any(c.isspace() for c in item_id) or not item_id.isprintable():
        return f"item id {item_id!r} holds whitespace or control characters"
    if _BAD_ID_CHARS.intersection(item_id):
        return f"item id {item_id!r} holds one of , . / \\ (ids name files and list fields)"
    return ""


def parse_pv(pv: str) -> list[tuple[str, str]]:
    """The (key, value) pairs of a `pv` string, as the SCALE dataloader splits them (see
    the module doc); `ValueError` names the malformed pair."""
    if len(pv) == 1 or not pv.strip():
        return []
    pairs = []
    for number, piece in enumerate(pv.split(PV_PAIR_SEP), start=1):
        parts = piece.split(PV_KV_SEP)
        if len(parts) != 2:
            what = "no" if len(parts) == 1 else f"{len(parts) - 1}"
            raise ValueError(f"pv pair {number} {piece!r:.40} has {what} {PV_KV_SEP!r} "
                             f"separator(s); expected key{PV_KV_SEP}value")
        pairs.append((parts[0], parts[1]))
    return pairs


def info_entry(key: str, entry: Any, path: Path, line: int) -> M5Info:
    """Validate one info entry: string `title` and `pv` (both required: the official loader
    indexes them), `label` a string or integer when present; pv must parse."""
    where = {"path": path, "line": line, "key": f"item {key}"}
    if why := bad_item_id(key):
        raise RefbenchError(why, **where)
    if not isinstance(entry, dict):
        raise RefbenchError(f"expected an object {{\"title\", \"pv\", \"label\"}}, found "
                            f"{json.dumps(entry, ensure_ascii=False)[:60]}", **where)
    for name in ("title", "pv"):
        if not isinstance(entry.get(name), str):
            found = "nothing" if name not in entry else type(entry[name]).__name__
            raise RefbenchError(f"field {name!r} must be a string, found {found}", **where)
    label = entry.get("label")
    if isinstance(label, bool) or not isinstance(label, (str, int, type(None))):
        raise RefbenchError(f"field 'label' must be a string, found {type(label).__name__}",
                            **where)
    try:
        parse_pv(entry["pv"])
    except ValueError as exc:
        raise RefbenchError(f"malformed pv: {exc}", **where) from None
    return M5Info(entry["title"], entry["pv"], "" if label is None else str(label), line)


def iter_info(path: Path, digest: Digest | None = None) -> Iterator[tuple[str, M5Info]]:
    """Stream the info JSON in file order, one entry at a time (duplicates are not checked
    here: that needs every id, see `read_info` and the builder's on-disk index)."""
    path = Path(path)
    for key, entry, line in iter_json_object(path, '{"title", "pv", "label"}', digest):
        yield key, info_entry(key, entry, path, line)


def read_info(path: Path) -> dict[str, M5Info]:
    """The whole info JSON as `{item_id: M5Info}`; a duplicate id (which `json.load` would
    silently resolve to the last entry) is an error naming both lines."""
    out: dict[str, M5Info] = {}
    for key, info in iter_info(path):
        if key in out:
            raise RefbenchError(f"duplicate item id (first on line {out[key].line})",
                                path=path, line=info.line, key=f"item {key}")
        out[key] = info
    return out


def read_label_list(path: Path) -> list[str]:
    """The label list: a JSON array of distinct non-empty label strings (index = class)."""
    path = Path(path)
    require_file(path)
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                            path=path) from None
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(data, list):
        raise RefbenchError(f"expected a JSON array of labels, found {type(data).__name__}",
                            path=path)
    seen: dict[str, int] = {}
    for index, label in enumerate(data):
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)
        if not isinstance(label, str) or not label:
            raise RefbenchError(f"label {index} is {json.dumps(label)[:40]}, not a non-empty "
                                f"string", path=path, key=f"index {index}")
        if label in seen:
            raise RefbenchError(f"duplicate label {label!r} (first at index {seen[label]})",
                                path=path, key=f"index {index}")
        seen[label] = index
    return list(seen)


def _check_id(item_id: Any, path: Path, line: int) -> str:
    if not isinstance(item_id, str):
        raise RefbenchError(f"expected an item id string, found {json.dumps(item_id)[:40]}",
                            path=path, line=line)
    if why := bad_item_id(item_id):
        raise RefbenchError(why, path=path, line=line)
    return item_id


def _iter_json_list(path: Path, digest: Digest | None) -> Iterator[tuple[int, str]]:
    decoder = json.JSONDecoder()
    with open(path, "rb") as handle:
        stream = JsonStream(handle, path, digest)
        stream.expect("[", "'[' (a JSON array of item ids)")
        if stream.skip_space() == "]":
            stream.pos += 1
        else:
            while True:
                stream.skip_space()
                line = stream.where()
                yield line, _check_id(stream.value(decoder), path, line)
                if stream.expect(",]", "',' or ']'") == "]":
                    break
        if stream.skip_space():
            raise RefbenchError("invalid JSON: extra data after the array", path=path,
                                line=stream.where())


def _iter_text_list(path: Path, digest: Digest | None) -> Iterator[tuple[int, str]]:
    blank = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if digest is not None:
                digest.update(raw)
            text = decode_line(raw, path, number).strip()
            if not text:
                blank = blank or number
                continue
            if blank:
                raise RefbenchError("empty line inside the id list (one item id a line)",
                                    path=path, line=blank)
            yield number, _check_id(text, path, number)


def iter_id_list(path: Path, digest: Digest | None = None) -> Iterator[tuple[int, str]]:
    """Stream `(line, item_id)` of an id list: a `.json` array of ids, or any other file
    with one id a line (CRLF, a UTF-8 BOM and blank lines at the end are accepted).
    Duplicates are not checked here (see `read_id_list`)."""
    path = Path(path)
    require_file(path)
    if path.suffix.lower() == ".json":
        return _iter_json_list(path, digest)
    return _iter_text_list(path, digest)


def read_id_list(path: Path, known: Container[str] | None = None) -> list[str]:
    """The ids of an id list in file order; a duplicate id, an empty line inside the list
    and (when `known` is given, e.g. the info JSON's ids) an unknown id are errors naming
    the file and line."""
    first: dict[str, int] = {}
    for line, item_id in iter_id_list(path):
        if item_id in first:
            raise RefbenchError(f"duplicate item id {item_id} (first on line "
                                f"{first[item_id]})", path=path, line=line)
        if known is not None and item_id not in known:
            raise RefbenchError(f"item id {item_id} is not in the info JSON", path=path,
                                line=line)
        first[item_id] = line
    return list(first)
