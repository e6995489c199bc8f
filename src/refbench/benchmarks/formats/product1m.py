"""The Product1M submission format: CAPTURE's `retrieval_id_list.txt`, and the official
query and gallery files as references.

A submission is the file `CAPTURE/evaluate_suit.py` reads: one line per query,
`query_id,id_1,...,id_100` (comma-separated, best first, up to 100 gallery ids). It is read
strictly where the script would silently score something else: a byte-order mark (the
script would glue it to the first query id), an empty line (scored as a query worth 0), an
empty id or whitespace around an id (the script compares ids verbatim, so the README's
"query, id" example would never match), a repeated query (the script would average it
twice), a repeated id within a line (a hit each time), more than 100 ids. Each is one
error naming the file and line. Ids that are not gallery items cannot be seen here: the
metric scores them as the script does and reports them.

Maps are `{query_id: Ranking}` (the ids and the file line, so the metric adds the lines in
the script's order) and `{query_id: Product1MQuery}` (the query's labels and the shared
`GalleryIndex`, whose repr is the gallery's fingerprint, so the label-set hash covers it).

References: a folder holding `product1m_gallery_ossurl_v2.txt` and the scored split's
query file (`product1m_dev_ossurl_v2.txt` for `validation`, `product1m_test_ossurl_v2.txt`
for `test`), or one query file with the gallery file beside it, read as the dataset
builder reads them (a leading byte-order mark dropped, blank lines skipped); or the
prepared split, with the gallery from the prepared `gallery` split of the same cache
(`bind_splits`, else the copy the rows were read from). A query is scored against its own
split's labels; under official averaging against the script's merged dictionary.

Policy. A benchmark submission ranks every query of the split exactly once (the script
averages over the submitted lines, so a file that omits queries would score higher):
a missing query is refused; a query id outside the split is ignored and reported.
`--official-averaging` reproduces the script on any file instead: the average runs over
the submitted lines, a query of the other split is scored against its labels (the script
merges dev and test) and an unknown one counts 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.product1m import GalleryIndex, Product1MQuery
from refbench.evaluation.retrieval import Ranking, decimal_keys, repeated_ids
from refbench.io import atomic_write_text
from refbench.options import Option

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

#: the README's "up to 100 item ids" per query
MAX_IDS = 100
GALLERY_FILE = "product1m_gallery_ossurl_v2.txt"
QUERY_FILES = {"validation": "product1m_dev_ossurl_v2.txt", "test": "product1m_test_ossurl_v2.txt"}
SPLIT_NAMES = {"validation": "validation", "dev": "validation", "test": "test"}
FIELD_SEP, LABEL_SEP = "#####", "#;#"
_SPACE = re.compile(r"\s")
#: the ASCII characters `\s` matches, but the line breaks
_ASCII_SPACE = " \t\x0b\x0c\x1c\x1d\x1e\x1f"


def _lines(path: Path, what: str, drop_bom: bool = False) -> list[str]:
    """The file's lines as the script's `readlines()` sees them (no trailing empty one); a
    leading byte-order mark is dropped when `drop_bom`, else refused."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError(f"expected a file ({what}), found a folder", path=path) from None
    if data.startswith(b"\xef\xbb\xbf") and drop_bom:
        data = data[3:]
    elif data.startswith(b"\xef\xbb\xbf"):
        raise RefbenchError("starts with a UTF-8 byte-order mark, which the official script "
                            "would read as part of the first id", path=path, line=1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path, line=line) from None
    if "\r" in text:  # universal newlines, as the script's text-mode readlines()
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise RefbenchError(f"empty {what}", path=path)
    return lines


def split_of(spec: "BenchmarkSpec") -> str:
    """`validation` or `test`: the query split a spec scores."""
    split = SPLIT_NAMES.get(spec.split)
    if split is None:
        raise RefbenchError(f"{spec.name}: Product1M scores the validation (dev) or test "
                            f"queries, not {spec.split!r}", key="split")
    return split


# -- official label files ----------------------------------------------------------------
def read_label_file(path: Path, what: str = "query file") -> dict[str, tuple[str, ...]]:
    """`{item_id: labels}` from an official `product1m_*_ossurl_v2.txt` file, split as the
    script splits it (a line stripped as a whole, 5 fields split by `#####`, labels joined
    by `#;#`, file order, repeats kept) and as the dataset builder reads it (a leading
    byte-order mark dropped, blank lines skipped). Not 5 fields, an empty id, no label or
    an empty label, and a repeated id are errors naming file and line."""
    out: dict[str, tuple[str, ...]] = {}
    lines = _lines(path, what, drop_bom=True)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.count(FIELD_SEP) != 4:  # title and URLs are not needed: not split out
            raise RefbenchError(f"expected 5 fields separated by {FIELD_SEP!r} (id, title, "
                                f"url, mirror url, labels), got {len(line.split(FIELD_SEP))}",
                                path=path, line=number)
        item, _, rest = line.partition(FIELD_SEP)
        field = rest.rpartition(FIELD_SEP)[2]
        labels = tuple(field.split(LABEL_SEP))
        if not item:
            raise RefbenchError("empty item id", path=path, line=number)
        if "" in labels:
            raise RefbenchError(f"item {item} has an empty instance label in {field!r} "
                                f"(labels are joined by {LABEL_SEP!r})", path=path, line=number)
        if item in out:
            first = next(i for i, x in enumerate(lines, start=1)
                         if x.strip().split(FIELD_SEP, 1)[0] == item)
            raise RefbenchError(f"item id {item!r} repeats line {first}", path=path, line=number)
        out[item] = labels
    if not out:
        raise RefbenchError(f"no item in this {what}", path=path)
    return out


def read_gallery_file(path: Path) -> GalleryIndex:
    """The gallery index (each item's first label) of `product1m_gallery_ossurl_v2.txt`."""
    items = read_label_file(path, "gallery file")
    return GalleryIndex(list(items), [labels[0] for labels in items.values()])


# -- the submission file -----------------------------------------------------------------
def _id_problem(query: str, ids: Sequence[str]) -> str:
    """What is wrong with a line's ids ("" when nothing is): an empty id, whitespace, a
    comma inside an id (a writer's problem: the reader splits on commas)."""
    named = (("query id", query), *((f"ranked id {i}", x) for i, x in enumerate(ids, start=1)))
    for where, item in named:
        if not item:
            return f"empty {where}"
        if _SPACE.search(item):
            return (f"{where} {item!r} holds whitespace; the official script compares ids "
                    f"verbatim, so it would never match")
        if "," in item:
            return f"{where} {item!r} holds a comma, the file's separator"
    return ""


def _may_hold_space(lines: list[str]) -> bool:
    """False when no line can hold whitespace (checked at C speed on ASCII text, the usual
    case), so the per-line search is skipped."""
    for start in range(0, len(lines), 4096):
        block = "\n".join(lines[start:start + 4096])
        if not block.isascii() or any(c in block for c in _ASCII_SPACE):
            return True
    return False


def read_ranked_file(path: Path) -> dict[str, Ranking]:
    """`{query_id: Ranking}` from a `retrieval_id_list.txt`, strictly (module docstring).
    Decimal ids (Product1M's) are also parsed to int64 keys at once (`decimal_keys`)."""
    path = Path(path)
    lines = _lines(path, "prediction file")
    check_space = _may_hold_space(lines)
    entries: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip() if check_space else raw
        if not line:
            raise RefbenchError("empty line (the official script would average it in as a "
                                "query scoring 0)", path=path, line=number)
        query, comma, rest = line.partition(",")
        if (check_space and _SPACE.search(line)) or not query or comma and (
                not rest or rest[0] == "," or rest[-1] == "," or ",," in rest):
            ids = tuple(rest.split(",")) if comma else ()
            raise RefbenchError(_id_problem(query, ids), path=path, line=number)
        count = rest.count(",") + 1 if comma else 0
        if count > MAX_IDS:
            raise RefbenchError(f"query {query!r} ranks {count} ids; at most {MAX_IDS}",
                                path=path, line=number)
        if query in entries:
            raise RefbenchError(f"query {query!r} is ranked again (first on line "
                                f"{entries[query][1]})", path=path, line=number)
        entries[query] = (rest, number)
    texts = [rest for rest, _ in entries.values()]
    keys = decimal_keys(texts)
    repeated = (repeated_ids(keys) if keys is not None
                else [len(set(t.split(","))) != t.count(",") + 1 if t else False for t in texts])
    for (query, (rest, number)), twice in zip(entries.items(), repeated):
        if twice:
            seen: set[str] = set()
            again = next(item for item in rest.split(",") if item in seen or seen.add(item))
            raise RefbenchError(f"query {query!r} ranks id {again!r} twice (the official "
                                f"script would count it as a hit each time)", path=path,
                                line=number)
    return {query: Ranking(text=rest, line=number, keys=None if keys is None else keys[i])
            for i, (query, (rest, number)) in enumerate(entries.items())}


def write_ranked_file(path: Path, predictions: Mapping[Any, Any]) -> None:
    """Write `{query_id: ranked ids or Ranking}` as `retrieval_id_list.txt`, atomically;
    everything is validated first, as the reader would."""
    lines = []
    for query, value in predictions.items():
        ids = value.ids if isinstance(value, Ranking) else value
        if not isinstance(query, str) or isinstance(ids, (str, bytes)) \
                or not isinstance(ids, Sequence) or not all(isinstance(x, str) for x in ids):
            raise RefbenchError(f"query {query!r}: expected a string id and a sequence of "
                                f"string gallery ids, got {type(ids).__name__}")
        problem = _id_problem(query, ids)
        if not problem and len(ids) > MAX_IDS:
            problem = f"{len(ids)} ranked ids; at most {MAX_IDS}"
        if not problem and len(set(ids)) != len(ids):
            problem = "a gallery id is ranked twice"
        if problem:
            raise RefbenchError(f"query {query!r}: {problem}", path=path)
        lines.append(",".join((query, *ids)))
    atomic_write_text(path, "".join(line + "\n" for line in lines))


@FORMATS.register("product1m_ranked")
class Product1MRankedFormat(SubmissionFormat):
    """CAPTURE's `retrieval_id_list.txt`: `query_id,id_1,...,id_100` per query."""

    missing = "refuse"
    missing_scored_as = "refused: the official script averages over the submitted lines"
    missing_refused_because = ("a benchmark file ranks every query of the split, since the "
                               "official script averages over the submitted lines; "
                               "--official-averaging scores it as the script does")
    extra = "ignore"
    extra_scored_as = ("ignored: the benchmark scores its split's queries (the official "
                       "script would average them in; --official-averaging does)")
    read_options = (Option(
        "official_averaging", "bool",
        "Average over the file's lines exactly as evaluate_suit.py does, to reproduce "
        "published numbers from a file that omits queries: queries of the split without a "
        "line are left out, queries of the other split are scored against their labels "
        "and unknown ids count 0 (all reported).", False),)

    def __init__(self) -> None:
        self._load_split: Callable[[str], "hf_datasets.Dataset"] | None = None
        self._gallery: GalleryIndex | None = None
        self._other: dict[str, tuple[str, ...]] = {}

    # -- reading and writing predictions --
    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        options = dict(options or {})
        unknown = sorted(set(options) - {o.name for o in self.read_options})
        if unknown:
            raise RefbenchError(f"unknown read option(s) {unknown} for product1m_ranked "
                                f"(known: official_averaging)")
        if options.get("official_averaging"):
            self.missing, self.extra = "score", "score"
            self.missing_scored_as = ("left out of the average, as the official script "
                                      "averages over the submitted lines")
            self.extra_scored_as = ("scored as the official script scores them (the other "
                                    "split's queries against their labels, unknown ids as 0)")
        return read_ranked_file(Path(path))

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        write_ranked_file(Path(path), predictions)

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """Every query's positives, label by label in turn (a label once per occurrence),
        up to 100: the best mAP, Prec and mAR the script can give."""
        out: dict[Any, Any] = {}
        for query, ref in references.items():
            pools = [ref.gallery.members(label) for label in ref.labels or ()]
            ranked: list[str] = []
            seen: set[str] = set()
            while len(ranked) < MAX_IDS and any(pools):
                for pool in pools:
                    while pool and pool[0] in seen:
                        pool.pop(0)
                    if pool and len(ranked) < MAX_IDS:
                        seen.add(pool[0])
                        ranked.append(pool.pop(0))
            out[query] = tuple(ranked)
        return out

    # -- references --
    def bind_splits(self, load_split: Callable[[str], "hf_datasets.Dataset"]) -> None:
        self._load_split = load_split

    def extra_reference(self, key: Any) -> Any:
        """An id outside the split, under official averaging: the other split's labels, or
        None (an unknown query, which scores 0)."""
        if self._gallery is None:
            raise RefbenchError("the references must be read before extra ids are scored")
        return Product1MQuery(self._other.get(key), self._gallery)

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        split, path = split_of(spec), Path(path)
        folder = path if path.is_dir() else path.parent
        query_file = folder / QUERY_FILES[split] if path.is_dir() else path
        if path.is_dir() and not query_file.is_file():
            raise RefbenchError(f"no {QUERY_FILES[split]} in this folder", path=path)
        if path.name == GALLERY_FILE:
            raise RefbenchError(f"this is the gallery; pass the {QUERY_FILES[split]} query "
                                f"file or the folder holding both", path=path)
        gallery_file = folder / GALLERY_FILE
        if not gallery_file.is_file():
            raise RefbenchError(f"no {GALLERY_FILE} beside the query file: the gallery decides "
                                f"the positives", path=folder)
        queries = read_label_file(query_file)
        self._gallery = read_gallery_file(gallery_file)
        if self.extra == "score":
            others = {name: folder / QUERY_FILES[name] for name in QUERY_FILES if name != split}
            queries = self._merge(split, queries, {name: read_label_file(file)
                                                   for name, file in others.items()
                                                   if file.is_file()})
        return {query: Product1MQuery(labels, self._gallery) for query, labels in queries.items()}

    def _merge(self, split: str, queries: dict[str, tuple[str, ...]],
               others: dict[str, dict[str, tuple[str, ...]]]) -> dict[str, tuple[str, ...]]:
        """Under official averaging, the script's one ground-truth dictionary (test read
        first, so an id in both query files takes its dev labels) for the extra ids; the
        split's queries are returned with those labels."""
        parts = {**others, split: queries}
        self._other = {**parts.get("test", {}), **parts.get("validation", {})}
        return {query: self._other[query] for query in queries}

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        split = split_of(spec)
        self._gallery = self._prepared_gallery(dataset, spec)
        queries = dataset_labels(dataset, "the prepared split")
        if self.extra == "score":
            other = "test" if split == "validation" else "validation"
            queries = self._merge(split, queries, {
                other: dataset_labels(self._split(other, dataset, spec), f"the {other} split")})
        return {query: Product1MQuery(labels, self._gallery) for query, labels in queries.items()}

    def _split(self, name: str, rows: "hf_datasets.Dataset",
               spec: "BenchmarkSpec") -> "hf_datasets.Dataset":
        """A prepared split of the benchmark's dataset: through the scorer's loader, else
        from the cache the rows were read from, else from the default cache."""
        if self._load_split is not None:
            return self._load_split(name)
        from refbench.datasets.base import get_builder, load_prepared

        cache = None
        builder = get_builder(spec.dataset.name)
        for entry in getattr(rows, "cache_files", None) or []:
            parents = Path(entry["filename"]).parents
            cache = next((p for p in parents
                          if builder.cache_path(p) / spec.dataset.config in parents), None)
            if cache is not None:
                break
        return load_prepared(spec.dataset.name, split=name, config=spec.dataset.config,
                             cache_dir=None if cache is None else str(cache))

    def _prepared_gallery(self, rows: "hf_datasets.Dataset", spec: "BenchmarkSpec") -> GalleryIndex:
        items = dataset_labels(self._split("gallery", rows, spec), "the prepared gallery")
        return GalleryIndex.from_label_lists(list(items), list(items.values()))


def dataset_labels(dataset: "hf_datasets.Dataset", what: str) -> dict[str, tuple[str, ...]]:
    """`{id: labels}` of prepared rows (columns `id`, `labels`), refusing a repeated id."""
    lacking = {"id", "labels"} - set(dataset.column_names)
    if lacking:
        raise RefbenchError(f"{what} lacks column(s) {sorted(lacking)}")
    columns = dataset.select_columns(["id", "labels"])
    out: dict[str, tuple[str, ...]] = {}
    for item, labels in zip(columns["id"], columns["labels"]):
        if item in out:
            raise RefbenchError(f"{what} holds id {item!r} twice")
        out[item] = tuple(labels)
    return out
