"""The M5Product embeddings submission: the feature folders SCALE's `extract_features.py`
writes and `retrieval_unit_id_list_v2.py` reads, one for the queries and one for the
gallery.

A submission is a folder (a zip of it on the leaderboard):

    <submission>/query/id.npy                 item ids, a 1-D string (or integer) array
    <submission>/query/{m}_feature_np.npy     (items x dims) float features per modality m
    <submission>/gallery/id.npy, <submission>/gallery/{m}_feature_np.npy

with m one of the SCALE modalities `t` (title), `p` (property table), `i` (image), `v`
(video), `a` (audio), a combination (`tp`, ..., `tpiva`) or `dense` (one embedding per
item, what `extract_features_cls.py` writes). Row r of a feature file belongs to id r of
`id.npy`. The read option `modalities` picks the embedding: a combination's own file when
both folders hold it (the script reads exactly that file), else the sum of its
single-modality files in the order t, p, i, v, a (as `extract_features.py` sums the
pooled [CLS] vectors, so float32 sums agree bit for bit). Its default, `auto`, sums every
single-modality file present (all five: SCALE's headline `tpiva`), or takes the one
feature file there is.

Strict: a missing folder or file, a truncated or pickled `.npy`, ids that are not 1-D,
empty, repeated or differing in number from the feature rows, features that are not 2-D
floats, NaN or infinity (the first bad id named), different widths, different modality
files in the two folders: one error naming the file. The gallery ids must be exactly the
benchmark's gallery (checked once the references are read): an item left out could never
be retrieved. The metric ranks the queries itself (exact inner-product search, `max_topk`
10, own id dropped: `refbench.evaluation.m5product.retrieval`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.benchmarks.formats.base import FORMATS
from refbench.benchmarks.formats.m5product.references import M5RetrievalFormat
from refbench.errors import RefbenchError
from refbench.evaluation.m5product.retrieval import (
    M5Query,
    QueryEmbedding,
    SubmittedGallery,
    check_gallery_ids,
)
from refbench.io import atomic_dir_replace
from refbench.options import Option

if TYPE_CHECKING:  # pragma: no cover
    from refbench.benchmarks.spec import BenchmarkSpec

#: SCALE's modalities, in the order `extract_features.py` sums them
MODALITIES = "tpiva"
SUFFIX = "_feature_np.npy"
FOLDERS = ("query", "gallery")


def load_npy(path: Path) -> np.ndarray:
    """A `.npy` array, never unpickled; a missing, truncated or pickled file is an error."""
    from refbench.datasets.m5product.media import npy_info

    if not path.exists():
        raise RefbenchError("missing file", path=path)
    npy_info(path)  # header, pickle and truncation checks, each naming the file
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RefbenchError(f"not a readable .npy file ({str(exc).splitlines()[0][:80]})",
                            path=path) from None


def read_ids(path: Path) -> list[str]:
    """The ids of an `id.npy`: a 1-D array of strings (or integers), distinct, non-empty."""
    array = load_npy(path)
    if array.ndim != 1:
        raise RefbenchError(f"ids must be a 1-D array, got shape {array.shape}", path=path)
    if array.dtype.kind == "S":
        try:
            ids = [x.decode("utf-8") for x in array.tolist()]
        except UnicodeDecodeError:
            raise RefbenchError("ids are bytes that are not UTF-8", path=path) from None
    elif array.dtype.kind in "Uiu":
        ids = [str(x) for x in array.tolist()]
    else:
        raise RefbenchError(f"ids must be strings or integers, got dtype {array.dtype}",
                            path=path)
    if not ids:
        raise RefbenchError("no ids", path=path)
    first: dict[str, int] = {}
    for row, item in enumerate(ids):
        if not item:
            raise RefbenchError(f"empty id at row {row}", path=path)
        if item in first:
            raise RefbenchError(f"id {item!r} at rows {first[item]} and {row}", path=path)
        first[item] = row
    return ids


def read_features(path: Path, ids: list[str]) -> np.ndarray:
    """A (len(ids) x dims) float32 feature file; NaN or infinity names the first bad id."""
    array = load_npy(path)
    if array.ndim != 2 or array.dtype.kind != "f":
        raise RefbenchError(f"features must be a 2-D float array (items x dims), got "
                            f"{array.dtype} of shape {array.shape}", path=path)
    if array.shape[0] != len(ids):
        raise RefbenchError(f"{array.shape[0]} feature rows for {len(ids)} ids in id.npy",
                            path=path)
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(array, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(out.sum(axis=1, dtype=np.float64)))
    if bad.size:
        raise RefbenchError(f"NaN or infinite value (float32) in the features of id "
                            f"{ids[int(bad[0])]!r} (row {int(bad[0])}; {bad.size} row(s) in "
                            f"all)", path=path)
    return out


def feature_names(folder: Path) -> list[str]:
    """The feature kinds in a folder (`t`, `tp`, `dense`, ...)."""
    if not folder.is_dir():
        raise RefbenchError(f"no {folder.name}/ folder (a submission holds query/ and "
                            f"gallery/, each with id.npy and *{SUFFIX} files)", path=folder)
    return sorted(p.name[:-len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


def choose(modalities: str, root: Path) -> tuple[list[str], str]:
    """The files to sum (one kind, or single modalities in SCALE's order) and the name of
    the embedding, from the option and the files both folders hold."""
    kinds = [feature_names(root / folder) for folder in FOLDERS]
    if kinds[0] != kinds[1]:
        raise RefbenchError(f"query/ holds features {kinds[0]}, gallery/ holds {kinds[1]}: "
                            f"both need the same", path=root)
    present = kinds[0]
    if not present:
        raise RefbenchError(f"no *{SUFFIX} feature file in query/", path=root)
    singles = [m for m in MODALITIES if m in present]
    if modalities == "auto":
        if singles:
            return singles, "".join(singles)
        if len(present) == 1:
            return present, present[0]
        raise RefbenchError(f"several feature files ({', '.join(present)}) and no single "
                            f"modality: choose one with --option modalities=NAME", path=root)
    if modalities in present:
        return [modalities], modalities
    if not modalities or set(modalities) - set(MODALITIES) or \
            len(set(modalities)) != len(modalities):
        raise RefbenchError(f"modalities {modalities!r}: no such feature file; a combination "
                            f"is letters of {MODALITIES!r}, each once (present: "
                            f"{', '.join(present)})", key="modalities")
    lacking = [m for m in modalities if m not in present]
    if lacking:
        raise RefbenchError(f"modalities {modalities!r}: no {lacking[0]}{SUFFIX} to sum and no "
                            f"{modalities}{SUFFIX}", path=root / "query")
    return [m for m in MODALITIES if m in modalities], modalities


def read_embeddings(root: Path, modalities: str = "auto"
                    ) -> tuple[list[str], np.ndarray, SubmittedGallery]:
    """(query ids, query embeddings, gallery) of a submission folder (module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise RefbenchError("expected the submission folder (query/ and gallery/)", path=root)
    files, _ = choose(modalities, root)
    out: list[tuple[list[str], np.ndarray]] = []
    for folder in FOLDERS:
        ids = read_ids(root / folder / "id.npy")
        total: np.ndarray | None = None
        for kind in files:
            path = root / folder / f"{kind}{SUFFIX}"
            features = read_features(path, ids)
            if total is not None and features.shape[1] != total.shape[1]:
                raise RefbenchError(f"{features.shape[1]} dimensions, {files[0]}{SUFFIX} has "
                                    f"{total.shape[1]}: modalities are summed", path=path)
            total = features if total is None else total + features
        out.append((ids, total))  # type: ignore[arg-type]
    (qids, queries), (gids, gallery) = out
    if queries.shape[1] != gallery.shape[1]:
        raise RefbenchError(f"query embeddings have {queries.shape[1]} dimensions, gallery "
                            f"embeddings {gallery.shape[1]}", path=root)
    return qids, queries, SubmittedGallery(gids, gallery)


@FORMATS.register("m5product_embeddings")
class M5ProductEmbeddingsFormat(M5RetrievalFormat):
    """SCALE's feature folders (`query/`, `gallery/`: `id.npy` + `*_feature_np.npy`)."""

    is_folder = True
    read_options = (Option(
        "modalities", "str", "Which embedding to rank with: a feature file's name (t, tp, "
        "tpiva, dense, ...) or a combination of t, p, i, v, a summed from the "
        "single-modality files; 'auto' sums every single-modality file present.", "auto"),)

    def read(self, path: Path, spec: BenchmarkSpec,
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        options = dict(options or {})
        unknown = sorted(set(options) - {"modalities"})
        if unknown:
            raise RefbenchError(f"unknown read option(s) {unknown} for m5product_embeddings "
                                f"(known: modalities)")
        qids, vectors, gallery = read_embeddings(Path(path), str(options.get("modalities",
                                                                             "auto")))
        preds = {q: QueryEmbedding(v, gallery) for q, v in zip(qids, vectors)}
        return self._predictions_read(preds, Path(path))

    def check_submission(self, predictions: dict[str, Any], references: dict[str, M5Query],
                         path: Path) -> None:
        first = next(iter(predictions.values()), None)
        ref = next(iter(references.values()), None)
        if first is None or ref is None:
            return
        try:
            check_gallery_ids(first.gallery.ids, ref.gallery)
        except RefbenchError as exc:
            raise RefbenchError(exc.message, path=Path(path) / "gallery" / "id.npy") from None

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: BenchmarkSpec) -> None:
        """Write `{query_id: QueryEmbedding}` (one shared gallery) as a submission folder
        with one `dense` embedding per item, atomically."""
        values = list(predictions.values())
        if not values or not all(isinstance(v, QueryEmbedding) for v in values):
            raise RefbenchError("embeddings submissions are written from QueryEmbedding "
                                "predictions", path=path)
        gallery = values[0].gallery
        if any(v.gallery is not gallery for v in values):
            raise RefbenchError("the query embeddings do not share one gallery", path=path)
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            for folder, ids, rows in (("query", list(predictions), np.stack(
                    [np.asarray(v.vector, dtype=np.float32) for v in values])),
                                      ("gallery", gallery.ids, gallery.embeddings)):
                (tmp / folder).mkdir()
                np.save(tmp / folder / "id.npy", np.asarray([str(i) for i in ids]))
                np.save(tmp / folder / f"dense{SUFFIX}", rows)
            atomic_dir_replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """One-hot label embeddings: every gallery positive outscores every other item."""
        refs = list(references.values())
        if not refs:
            return {}
        gallery_labels = refs[0].gallery
        codes = dict(gallery_labels.label_code)
        for ref in refs:
            codes.setdefault(ref.label, len(codes))
        eye = np.eye(len(codes), dtype=np.float32)
        gallery = SubmittedGallery(gallery_labels.ids,
                                   eye[[codes[x] for x in gallery_labels.labels]])
        return {q: QueryEmbedding(eye[codes[ref.label]], gallery)
                for q, ref in references.items()}
