"""The references of the M5Product benchmarks: item labels of a split (and of its gallery),
from the prepared dataset or from the official release folder.

- Prepared (`refbench.load_dataset("m5product", split)`): the rows' `id` and `label`
  columns; a retrieval benchmark's gallery is the matching `*_gallery` split of the same
  cache (`bind_splits`, else the cache the rows were read from).
- Official (`--references ROOT`, the leaderboard's hidden folder): the release root read
  with `refbench.datasets.m5product.readers`: the split's id list (`LIST_FILES`) and the
  labels of the id -> info JSON (`INFO_FILES`; for the `fine_*` splits an item's entry in
  the fine-grained JSON (`FINE_INFO_FILES`) comes first, as the dataset builder reads it).
  Only the listed items are kept, so the multi-million-item JSON is streamed, not held.

An item without a label (the info JSON's entry has none) cannot be scored: an error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refbench.benchmarks.formats.base import SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.m5product.retrieval import GalleryLabels, M5Query

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

LoadSplit = Callable[[str], "hf_datasets.Dataset"]
#: the query split of a retrieval benchmark -> its gallery split
GALLERY_OF = {"coarse_query": "coarse_gallery", "fine_query": "fine_gallery"}
#: the splits a classification / clustering benchmark scores
LABELLED_SPLITS = ("cls_test", "cls_train")


def canonical_split(spec: BenchmarkSpec, allowed: tuple[str, ...]) -> str:
    """The spec's split under refbench's name (official aliases accepted), one of `allowed`."""
    from refbench.datasets.m5product.readers import SPLIT_ALIASES

    split = SPLIT_ALIASES.get(spec.split, spec.split)
    if split not in allowed:
        raise RefbenchError(f"{spec.name}: this M5Product format scores the "
                            f"{' or '.join(allowed)} split, not {spec.split!r}", key="split")
    return split


def dataset_labels(rows: hf_datasets.Dataset, what: str) -> dict[str, str]:
    """`{id: label}` of prepared rows (columns `id`, `label`); a repeated id or an item
    without a label is an error."""
    lacking = {"id", "label"} - set(rows.column_names)
    if lacking:
        raise RefbenchError(f"{what} lacks column(s) {sorted(lacking)}")
    columns = rows.select_columns(["id", "label"])
    out: dict[str, str] = {}
    for item, label in zip(columns["id"], columns["label"]):
        if item in out:
            raise RefbenchError(f"{what} holds id {item!r} twice")
        if not label:
            raise RefbenchError(f"{what}: item {item!r} has no label, so it cannot be scored")
        out[item] = label
    return out


def load_split(name: str, rows: hf_datasets.Dataset, spec: BenchmarkSpec,
               loader: LoadSplit | None) -> hf_datasets.Dataset:
    """Another prepared split of the benchmark's dataset: through the scorer's loader, else
    from the cache the rows were read from, else from the default cache."""
    if loader is not None:
        return loader(name)
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


def _root(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise RefbenchError("references not found", path=path)
    if not path.is_dir():
        raise RefbenchError("expected the M5Product release folder (the info JSON and the "
                            "id lists), got a file", path=path)
    return path


def official_labels(path: Path, splits: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`{split: {id: label}}` of the release folder at `path`, for each of `splits`, in
    list order (module docstring)."""
    from refbench.datasets.m5product import readers

    root = _root(path)
    lists: dict[str, list[str]] = {}
    for split in splits:
        list_path = readers.list_file(root, split)
        if list_path is None:
            raise RefbenchError(f"no id list of the {split} split (one of "
                                f"{', '.join(readers.LIST_FILES[split][:2])}, ...)", path=root)
        lists[split] = readers.read_id_list(list_path)
    main = readers.find_file(root, readers.INFO_FILES)
    if main is None:
        raise RefbenchError(f"no info JSON ({' or '.join(readers.INFO_FILES[:2])})", path=root)
    sources = [(main, set().union(*lists.values()))]
    fine_ids = set().union(*(v for k, v in lists.items() if k.startswith("fine_")))
    fine = readers.find_file(root, readers.FINE_INFO_FILES) if fine_ids else None
    if fine is not None:
        sources.insert(0, (fine, fine_ids))
    found: list[dict[str, tuple[str, Path, int]]] = []
    for info_path, wanted in sources:
        labels: dict[str, tuple[str, Path, int]] = {}
        for key, info in readers.iter_info(info_path):
            if key in wanted:
                labels[key] = (info.label, info_path, info.line)
        found.append(labels)
    out: dict[str, dict[str, str]] = {}
    for split, ids in lists.items():
        chain = found if split.startswith("fine_") else found[-1:]
        labels_of: dict[str, str] = {}
        for item in ids:
            entry = next((f[item] for f in chain if item in f), None)
            if entry is None:
                raise RefbenchError(f"item id {item} of the {split} list is not in the info "
                                    f"JSON", path=readers.list_file(root, split))
            if not entry[0]:
                raise RefbenchError(f"item {item} has no label, so it cannot be scored",
                                    path=entry[1], line=entry[2])
            labels_of[item] = entry[0]
        out[split] = labels_of
    return out


class M5RetrievalFormat(SubmissionFormat):
    """What the retrieval formats share: the references (`{query_id: M5Query}` with one
    `GalleryLabels`), and a check of the submission against the gallery that runs as soon
    as both are read, whichever comes first (`refbench evaluate` reads the predictions
    first, the leaderboard the references)."""

    missing = "refuse"
    missing_scored_as = "refused: the official script averages over the submitted lines"
    missing_refused_because = ("a benchmark submission ranks every query of the split, since "
                               "the official script averages over the submitted lines (a "
                               "file that left out hard queries would score higher)")
    extra = "ignore"
    extra_scored_as = "ignored: the benchmark scores its split's queries"

    def __init__(self) -> None:
        self._load_split: LoadSplit | None = None
        self._refs: dict[str, M5Query] | None = None
        self._preds: dict[str, Any] | None = None
        self._pred_path: Path | None = None

    def check_submission(self, predictions: dict[str, Any], references: dict[str, M5Query],
                         path: Path) -> None:
        """Refuse what the official pipeline cannot have produced (format-specific)."""

    def _predictions_read(self, predictions: dict[str, Any], path: Path) -> dict[str, Any]:
        self._preds, self._pred_path = predictions, Path(path)
        if self._refs is not None:
            self.check_submission(predictions, self._refs, self._pred_path)
        return predictions

    def _references_read(self, refs: dict[str, M5Query]) -> dict[str, M5Query]:
        self._refs = refs
        if self._preds is not None and self._pred_path is not None:
            self.check_submission(self._preds, refs, self._pred_path)
        return refs

    def bind_splits(self, load_split: LoadSplit) -> None:
        self._load_split = load_split

    def read_references(self, path: Path, spec: BenchmarkSpec) -> dict[Any, Any]:
        split = canonical_split(spec, tuple(GALLERY_OF))
        labels = official_labels(path, (split, GALLERY_OF[split]))
        return self._references_read(queries(labels[split], labels[GALLERY_OF[split]]))

    def references_from_dataset(self, dataset: hf_datasets.Dataset,
                                spec: BenchmarkSpec) -> dict[Any, Any]:
        split = canonical_split(spec, tuple(GALLERY_OF))
        gallery = load_split(GALLERY_OF[split], dataset, spec, self._load_split)
        return self._references_read(queries(dataset_labels(dataset, "the prepared split"),
                                             dataset_labels(gallery, "the prepared gallery")))


def queries(query_labels: dict[str, str], gallery_labels: dict[str, str]) -> dict[str, M5Query]:
    """`{query_id: M5Query}` over one shared gallery."""
    gallery = GalleryLabels(list(gallery_labels), list(gallery_labels.values()))
    return {item: M5Query(item, label, gallery) for item, label in query_labels.items()}


class M5LabelFormat(SubmissionFormat):
    """What the classification and clustering formats share: `{item_id: label}`
    references of the scored split."""

    def read_references(self, path: Path, spec: BenchmarkSpec) -> dict[Any, Any]:
        split = canonical_split(spec, LABELLED_SPLITS)
        return official_labels(path, (split,))[split]

    def references_from_dataset(self, dataset: hf_datasets.Dataset,
                                spec: BenchmarkSpec) -> dict[Any, Any]:
        canonical_split(spec, LABELLED_SPLITS)
        return dataset_labels(dataset, "the prepared split")
