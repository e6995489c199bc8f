"""The M5Product ranked-list submission: the file SCALE's `retrieval_unit_id_list_v2.py`
writes (`{type}_feature_retrieval_id_list.txt`) and `evaluate_unit_v2.py` reads.

One line per query, `query_id,id_1,...,id_n`: the query's item id, then its ranked gallery
ids, best first, separated by commas (the script writes `"{},{}\\n".format(q, ",".join(ids))`
and reads each line with `strip().split(",")`). The official ranking keeps the `max_topk`
= 10 best gallery items and drops the query's own id, so a line holds 10 ids, or 9 when
the query is a gallery item ranked in its own top 10.

Read strictly, one error naming the file and line for each of: a byte-order mark, bytes
that are not UTF-8, an empty line, whitespace in a line (ids hold none), a query without
ranked ids (the script divides by k' = 0), an empty id, more than `MAX_IDS` ids, a query
ranked twice (the script would average it twice), an id ranked twice in a line (a hit
each time). Checked against the gallery once both are read: a ranked id that is no gallery
item, the query's own id (the official ranking drops it; the script would count it as a
hit) and a list shorter than the official ranking's (`min(10, |gallery|)`, one less for a
query that is a gallery item), which would cut k' = min(k, |pos|, |list|) and so raise
the score. A benchmark file ranks every query of the split exactly once: a missing query is
refused (the script averages over the lines), a query id outside the split is ignored and
reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refbench.benchmarks.formats.base import FORMATS
from refbench.benchmarks.formats.m5product.references import M5RetrievalFormat
from refbench.errors import RefbenchError
from refbench.evaluation.m5product.retrieval import MAX_TOPK, M5Query
from refbench.evaluation.retrieval import Ranking
from refbench.io import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from refbench.benchmarks.spec import BenchmarkSpec

#: refbench's limit on a line's ranked ids (the official keys read the first 10; the
#: standard Recall@K and mAP@R may use more)
MAX_IDS = 100


def read_lines(path: Path, what: str) -> list[str]:
    """A UTF-8 text file's lines (universal newlines, no trailing empty line); a missing
    file, a folder, a byte-order mark, bytes that are not UTF-8 and an empty file are
    errors naming the file (and line)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError(f"expected a file ({what}), found a folder", path=path) from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise RefbenchError("starts with a UTF-8 byte-order mark, which the official script "
                            "would read as part of the first query id", path=path, line=1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path,
                            line=data.count(b"\n", 0, exc.start) + 1) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise RefbenchError(f"empty {what}", path=path)
    return lines


def _line_problem(query: str, ids: Sequence[str]) -> str:
    """What is wrong with one line's fields ('' when nothing is)."""
    if not query:
        return "empty query id"
    if not ids:
        return (f"query {query!r} ranks no id (the official script divides by k' = 0); a "
                f"line is query_id,id_1,...,id_n")
    for rank, item in enumerate(ids, start=1):
        if not item:
            return f"empty ranked id {rank} (two commas in a row or a trailing comma)"
    if len(ids) > MAX_IDS:
        return f"query {query!r} ranks {len(ids)} ids; at most {MAX_IDS}"
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        again = next(item for item in ids if item in seen or seen.add(item))
        return (f"query {query!r} ranks id {again!r} twice (the official script would count "
                f"it as a hit each time)")
    return ""


def read_ranked_file(path: Path) -> dict[str, Ranking]:
    """`{query_id: Ranking}` of a ranked-list file, strictly (module docstring)."""
    path = Path(path)
    out: dict[str, Ranking] = {}
    for number, line in enumerate(read_lines(path, "prediction file"), start=1):
        if not line:
            raise RefbenchError("empty line (the official script would stop at it with a "
                                "KeyError)", path=path, line=number)
        if any(c.isspace() for c in line):
            raise RefbenchError("whitespace in the line (a line is query_id,id_1,...,id_n "
                                "without spaces)", path=path, line=number)
        query, *ids = line.split(",")
        problem = _line_problem(query, ids)
        if problem:
            raise RefbenchError(problem, path=path, line=number)
        if query in out:
            raise RefbenchError(f"query {query!r} is ranked again (first on line "
                                f"{out[query].line})", path=path, line=number)
        out[query] = Ranking(ids, line=number)
    return out


def write_ranked_file(path: Path, predictions: Mapping[Any, Any]) -> None:
    """Write `{query_id: ranked ids or Ranking}` as a ranked-list file, atomically, after
    checking every line as the reader would."""
    lines = []
    for query, value in predictions.items():
        ids = value.ids if isinstance(value, Ranking) else value
        if not isinstance(query, str) or isinstance(ids, (str, bytes)) \
                or not isinstance(ids, Sequence) or not all(isinstance(x, str) for x in ids):
            raise RefbenchError(f"query {query!r}: expected a string id and a sequence of "
                                f"string gallery ids, got {type(ids).__name__}", path=path)
        problem = _line_problem(query, ids)
        if not problem and any(c.isspace() or c == "," for c in "".join((query, *ids))):
            problem = f"query {query!r}: an id holds whitespace or a comma"
        if problem:
            raise RefbenchError(problem, path=path)
        lines.append(",".join((query, *ids)))
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def shortest_list(query: M5Query) -> int:
    """How many ids the official ranking (`max_topk` 10, own id dropped) gives at least."""
    gallery = query.gallery
    return min(MAX_TOPK, len(gallery)) - (query.id in gallery.row_of)


@FORMATS.register("m5product_ranked")
class M5ProductRankedFormat(M5RetrievalFormat):
    """SCALE's `*_feature_retrieval_id_list.txt`: `query_id,id_1,...,id_10` per query."""

    def read(self, path: Path, spec: BenchmarkSpec,
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"m5product_ranked takes no read options, got "
                                f"{', '.join(sorted(options))}")
        return self._predictions_read(read_ranked_file(Path(path)), Path(path))

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: BenchmarkSpec) -> None:
        write_ranked_file(Path(path), predictions)

    def check_submission(self, predictions: dict[str, Any], references: dict[str, M5Query],
                         path: Path) -> None:
        for query, ranking in predictions.items():
            ref = references.get(query)
            if ref is None:
                continue  # an extra query: ignored and reported by the scorer
            row_of = ref.gallery.row_of
            stray = next((item for item in ranking.ids if item not in row_of), None)
            if query in ranking.ids:
                raise RefbenchError(f"query {query!r} ranks its own id (the official ranking "
                                    f"drops it; the script would count it as a hit)",
                                    path=path, line=ranking.line)
            if stray is not None:
                raise RefbenchError(f"query {query!r} ranks {stray!r}, which is not an item "
                                    f"of the gallery", path=path, line=ranking.line)
            need = shortest_list(ref)
            if len(ranking) < need:
                raise RefbenchError(f"query {query!r} ranks {len(ranking)} id(s); the "
                                    f"official ranking gives {need} (the top {MAX_TOPK} "
                                    f"without the query itself), and a shorter list would "
                                    f"cut k' = min(k, |pos|, |list|)", path=path,
                                    line=ranking.line)

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """Every query's gallery positives first, then other gallery items, as many as the
        official ranking gives: the best score the script can give."""
        members: dict[int, dict[str, list[str]]] = {}
        out: dict[Any, Any] = {}
        for query, ref in references.items():
            gallery = ref.gallery
            if id(gallery) not in members:
                groups: dict[str, list[str]] = {}
                for item, label in zip(gallery.ids, gallery.labels):
                    groups.setdefault(label, []).append(item)
                members[id(gallery)] = groups
            positives = [x for x in members[id(gallery)].get(ref.label, []) if x != query]
            need = max(shortest_list(ref), min(len(positives), MAX_TOPK))
            ranked = positives[:need]
            taken = set(ranked)
            for item in gallery.ids:
                if len(ranked) >= need:
                    break
                if item != query and item not in taken:
                    ranked.append(item)
            out[query] = tuple(ranked)
        return out
