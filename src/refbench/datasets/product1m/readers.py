"""Readers of the official Product1M files.

* The item files `product1m_{dev,test,gallery}_ossurl_v2.txt`: one item a line, five
  fields split by `#####` (item id, title, image URL, OSS mirror URL, instance labels
  joined by `#;#`). The released files end their lines with CRLF; like the official
  `evaluate_suit.py` (`line.strip().split("#####")`) a line is stripped as a whole and its
  fields and labels are kept as they are (labels such as `欧缇丽  护手乳霜` keep their two
  spaces, duplicate labels are kept). A leading UTF-8 BOM is dropped.
* `train_id_info.json` (`{item_id: {"title": ...}}`), streamed entry by entry: the real
  file holds over a million entries, more than `json.load` should hold at once.

Both read bytes and decode line by line, so a bad byte or line is a `RefbenchError` that
names the file and line. The region-feature LMDBs are read in `features.py`.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from refbench.errors import RefbenchError

FIELD_SEP = "#####"
LABEL_SEP = "#;#"
NUM_FIELDS = 5
#: the official query files, by refbench split name
QUERY_FILES = {"validation": "product1m_dev_ossurl_v2.txt", "test": "product1m_test_ossurl_v2.txt"}
GALLERY_FILE = "product1m_gallery_ossurl_v2.txt"
#: a training list in the query files' format (not released; read instead of the JSON if present)
TRAIN_FILE = "product1m_train_ossurl_v2.txt"
TRAIN_INFO = "train_id_info.json"
#: bytes read at a time from the JSON file
_BLOCK = 1 << 20
#: the most text one JSON entry may span (more is an error, not a reason to read on)
_MAX_ENTRY = 16 << 20


class Digest(Protocol):
    """What `hashlib.sha256()` offers: the readers hash the bytes they read (one pass)."""

    def update(self, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class Item:
    """One product: an item-file line or a `train_id_info.json` entry (no URLs, no labels)."""

    id: str
    title: str
    image_url: str
    mirror_url: str
    labels: tuple[str, ...]
    line: int


def require_file(path: Path) -> None:
    """Raise unless `path` is a file (a missing file and a folder in its place differ)."""
    if path.is_dir():
        raise RefbenchError(f"a folder, but {path.name} must be a file", path=path)
    if not path.is_file():
        raise RefbenchError(f"missing file {path.name}", path=path)


def parse_item_line(text: str, path: Path, line: int, require_labels: bool) -> Item | None:
    """The item of one decoded line (None for a blank line), as the official scripts split
    it; `require_labels` makes an empty label list an error (query and gallery files)."""
    text = text.strip()
    if not text:
        return None
    fields = text.split(FIELD_SEP)
    if len(fields) != NUM_FIELDS:
        raise RefbenchError(f"expected {NUM_FIELDS} fields separated by {FIELD_SEP!r} (id, "
                            f"title, image URL, mirror URL, labels), found {len(fields)}",
                            path=path, line=line)
    item_id, title, image_url, mirror_url, label_field = fields
    if not item_id:
        raise RefbenchError("empty item id", path=path, line=line)
    labels: tuple[str, ...] = tuple(label_field.split(LABEL_SEP)) if label_field else ()
    if require_labels and not labels:
        raise RefbenchError(f"item {item_id} has no instance labels (the fifth field is "
                            f"empty; query and gallery items need at least one)",
                            path=path, line=line)
    if any(not label for label in labels):
        raise RefbenchError(f"item {item_id} has an empty instance label in {label_field!r} "
                            f"(labels are joined by {LABEL_SEP!r})", path=path, line=line)
    return Item(item_id, title, image_url, mirror_url, labels, line)


def decode_line(raw: bytes, path: Path, line: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1} of the "
                            f"line)", path=path, line=line) from None
    return text.removeprefix("\ufeff") if line == 1 else text


def iter_item_file(path: Path, require_labels: bool = True,
                   digest: Digest | None = None) -> Iterator[Item]:
    """Stream the items of an item file in file order; duplicate ids within the file are an
    error naming both lines. `digest` (if given) is fed every byte read."""
    path = Path(path)
    require_file(path)
    first_line: dict[str, int] = {}
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if digest is not None:
                digest.update(raw)
            item = parse_item_line(decode_line(raw, path, number), path, number,
                                   require_labels)
            if item is None:
                continue
            seen = first_line.setdefault(item.id, number)
            if seen != number:
                raise RefbenchError(f"duplicate item id {item.id} (first on line {seen})",
                                    path=path, line=number)
            yield item


class JsonStream:
    """A growing window over a UTF-8 JSON file: text from `pos` on, the line `pos` is on."""

    def __init__(self, handle: Any, path: Path, digest: Digest | None) -> None:
        self.handle, self.path, self.digest = handle, path, digest
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False
        self._raw_lines = 1  # lines of the bytes handed to the decoder so far

    def fill(self) -> bool:
        """Read one more block (dropping what was consumed); False at end of file."""
        if self.eof:
            return False
        raw = self.handle.read(_BLOCK)
        if self.digest is not None and raw:
            self.digest.update(raw)
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            line = self._raw_lines + raw.count(b"\n", 0, max(exc.start, 0))
            raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=self.path,
                                line=line) from None
        self._raw_lines += raw.count(b"\n")
        self.line += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos = self.buf[self.pos:] + text, 0
        self.eof = not raw
        return bool(raw)

    def where(self, pos: int | None = None) -> int:
        """The line number of `pos` (default: the current position)."""
        return self.line + self.buf.count("\n", 0, self.pos if pos is None else pos)

    def skip_space(self) -> str:
        """Skip whitespace; the next character ('' at end of file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos:self.pos + 1]

    def value(self, decoder: json.JSONDecoder) -> Any:
        """Decode one JSON value at the position, reading more while it may be cut off."""
        while True:
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos < _MAX_ENTRY and self.fill():
                    continue
                raise RefbenchError(f"invalid JSON: {exc.msg}", path=self.path,
                                    line=self.where(exc.pos)) from None
            if end == len(self.buf) and self.fill():
                continue  # a number or literal may go on in the next block
            self.pos = end
            return obj

    def expect(self, chars: str, what: str) -> str:
        char = self.skip_space()
        if not char or char not in chars:
            found = repr(char) if char else "end of file"
            raise RefbenchError(f"invalid JSON: expected {what}, found {found}",
                                path=self.path, line=self.where())
        self.pos += 1
        return char


def iter_json_object(path: Path, what: str,
                     digest: Digest | None = None) -> Iterator[tuple[str, Any, int]]:
    """Stream a JSON object of `{item_id: entry, ...}` in file order, one `(id, entry,
    line)` at a time, without holding the file in memory (`what` describes the entries
    in the error for a file that is not an object). Malformed JSON, a non-string key and
    data after the object are errors naming the line."""
    path = Path(path)
    require_file(path)
    decoder = json.JSONDecoder()
    with open(path, "rb") as handle:
        stream = JsonStream(handle, path, digest)
        stream.expect("{", f"'{{' (an object of item id -> {what})")
        if stream.skip_space() == "}":
            stream.pos += 1
        else:
            while True:
                stream.skip_space()
                line = stream.where()
                key = stream.value(decoder)
                if not isinstance(key, str):
                    raise RefbenchError("invalid JSON: expected an item id string", path=path,
                                        line=line)
                stream.expect(":", "':'")
                stream.skip_space()
                yield key, stream.value(decoder), line
                if stream.expect(",}", "',' or '}'") == "}":
                    break
        if stream.skip_space():
            raise RefbenchError("invalid JSON: extra data after the object", path=path,
                                line=stream.where())


def iter_train_info(path: Path, digest: Digest | None = None) -> Iterator[Item]:
    """Stream `train_id_info.json` (`{item_id: {"title": ...}, ...}`) in file order, one
    entry at a time; duplicate ids, entries without a string title and malformed JSON are
    errors naming the line. Training items have no URLs and unknown labels."""
    first_line: dict[str, int] = {}
    for key, entry, line in iter_json_object(path, '{"title": ...}', digest):
        title = entry.get("title") if isinstance(entry, dict) else None
        if not isinstance(title, str):
            raise RefbenchError(f"item {key}: expected {{\"title\": string}}, found "
                                f"{json.dumps(entry, ensure_ascii=False)[:60]}",
                                path=path, line=line)
        seen = first_line.setdefault(key, line)
        if seen != line:
            raise RefbenchError(f"duplicate item id {key} (first on line {seen})",
                                path=path, line=line)
        yield Item(key, title, "", "", (), line)


def train_source(root: Path) -> Path | None:
    """The file the train split is read from: the item-format training list if present,
    else `train_id_info.json`, else None (no training data)."""
    for name in (TRAIN_FILE, TRAIN_INFO):
        if (Path(root) / name).exists():
            return Path(root) / name
    return None


def iter_split_items(root: Path, split: str, digest: Digest | None = None) -> Iterator[Item]:
    """The items of one refbench split (`train`, `validation`, `test`, `gallery`)."""
    root = Path(root)
    if split == "train":
        source = train_source(root)
        if source is None:
            return iter(())
        if source.name == TRAIN_INFO:
            return iter_train_info(source, digest)
        return iter_item_file(source, require_labels=False, digest=digest)
    name = GALLERY_FILE if split == "gallery" else QUERY_FILES[split]
    return iter_item_file(root / name, require_labels=True, digest=digest)
