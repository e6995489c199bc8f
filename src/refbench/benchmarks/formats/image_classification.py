"""The image-classification submission format: labels per image id, as CSV or JSON, and
the ILSVRC2012 devkit's ranked-ID lines.

- CSV (any name but `*.json`): the header `id,label` (or `id,labels`), then one row per
  image, `id,label` or `id,l1 l2 l3 l4 l5` (ranked labels, best first, separated by
  spaces). A label is a class name of the dataset's label set (ImageNet: the wnid,
  `n01440764`; CIFAR: `airplane`; digits: `0`..`9`) or a 0-based class index in the
  dataset's label order (sorted wnids for ImageNet, the meta file's order for CIFAR); a
  name is matched first, so names that are digits read the same either way. Ids are
  compared verbatim; a UTF-8 byte-order mark and CRLF line ends are accepted.
- JSON (`*.json`): one object `{id: label | [ranked labels] | {"scores": [...]}}`, a
  label being a class index (integer) or name (string); scores are one finite number per
  class in label order, ranking the classes best first (ties: lower index).
- The ILSVRC2012 devkit's classification submission (`imagenet` benchmarks): one line
  per validation image in file-name order (line i is `ILSVRC2012_val_{i:08d}`) holding
  1 to 5 ILSVRC2012_IDs (the devkit's `meta.mat` numbering, not the sorted-wnid order),
  best first, separated by spaces. It is recognised by its first line (integers, no
  comma) and needs `meta.mat` (`--devkit-meta`). As in `eval_flat.m`, a line with fewer
  than 5 labels has misses for its missing guesses, and a missing line is refused (the
  devkit asserts one line per image).

Strict reading: a missing header, a blank line, a row without exactly one comma, an
empty label, a label ranked twice, a repeated id, NaN or infinite scores, a JSON value of
another type, more than 5 IDs on a devkit line: one error naming the file and line (JSON:
the id). Unknown names and indices out of range are refused once the label set is known
(by the metric, naming the file and line).

Missing and extra ids: an image without a prediction is scored as wrong (it counts in
top-1 and top-5, as `encoding.utils.accuracy` counts every image of the split); ids
outside the references are ignored; both are reported, and strict scoring refuses them.

References: the prepared split (its `label` ClassLabel names are the label set), or with
`--references` a file in this format (one label per id), ImageNet's Caffe `val.txt` (+
`synsets.txt`), the devkit's `ILSVRC2012_validation_ground_truth.txt` (+ `meta.mat`),
Kaggle's `LOC_val_solution.csv` (+ `LOC_synset_mapping.txt`) or an ImageNet root, or a
CIFAR release folder (python or binary version).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.image_classification import (NO_GUESS, TOP_K, ClassNames, ClassRef,
                                                     Guesses, resolve_token)
from refbench.io import atomic_write_text
from refbench.options import Option

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

HEADERS = ("id,label", "id,labels")
#: the devkit's rule: "the number of labels per line can vary but must be no more than 5"
MAX_DEVKIT_LABELS = 5


# -- reading submissions ---------------------------------------------------------------
def text_lines(path: Path, what: str = "prediction file") -> list[str]:
    """The file's lines (a UTF-8 BOM dropped, CRLF accepted, the last newline optional)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise RefbenchError(f"expected a file ({what}), found a folder", path=path) from None
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path, line=line) from None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise RefbenchError(f"empty {what}", path=path)
    return lines


def _repeat_check(labels: list[str], path: Path, line: int) -> None:
    if len(set(labels)) != len(labels):
        again = next(x for i, x in enumerate(labels) if x in labels[:i])
        raise RefbenchError(f"label {again!r:.40} is ranked twice", path=path, line=line)


def read_csv(path: Path) -> dict[str, Guesses]:
    """`{id: Guesses}` of a CSV submission, strictly (module docstring)."""
    lines = text_lines(path)
    if lines[0].strip() not in HEADERS:
        raise RefbenchError(f"expected the header 'id,label', found {lines[0][:60]!r}",
                            path=path, line=1)
    out: dict[str, Guesses] = {}
    first: dict[str, int] = {}
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            raise RefbenchError("blank line", path=path, line=number)
        if raw.count(",") != 1:
            raise RefbenchError(f"expected 'id,label' (one comma), found {raw.count(',') + 1} "
                                f"fields", path=path, line=number)
        key, _, value = (part.strip() for part in raw.partition(","))
        labels = value.split()
        if not key or not labels:
            raise RefbenchError(f"id {key}: no label" if key else "empty id", path=path,
                                line=number)
        if key in first:
            raise RefbenchError(f"id {key} repeats line {first[key]}", path=path, line=number)
        _repeat_check(labels, path, number)
        first[key] = number
        out[key] = Guesses(labels=tuple(labels), path=str(path), line=number, id=key)
    if not out:
        raise RefbenchError("no prediction after the header", path=path)
    return out


def _json_label(value: Any, where: Guesses) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise where.error(f"a label must be a class index (integer) or name (string), got "
                          f"{json.dumps(value)[:40]}")
    if isinstance(value, int) and value < 0:
        raise where.error(f"class index {value} is negative")
    if isinstance(value, str) and (not value or value != value.strip()):
        raise where.error(f"label {value!r:.40} is empty or padded with spaces")
    return value


def _json_scores(value: Any, where: Guesses) -> np.ndarray:
    scores = value.get("scores") if isinstance(value, dict) and set(value) == {"scores"} else None
    if not isinstance(scores, list) or not scores or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
        raise where.error('expected {"scores": [one number per class]}')
    array = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(array).all():
        raise where.error(f"score {int(np.flatnonzero(~np.isfinite(array))[0])} is NaN or "
                          f"infinite")
    return array


def read_json(path: Path) -> dict[str, Guesses]:
    """`{id: Guesses}` of a JSON submission, strictly (module docstring)."""
    lines = text_lines(path)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            again = next(k for i, k in enumerate(keys) if k in keys[:i])
            raise RefbenchError(f"id {again} appears twice in one object", path=path)
        return dict(pairs)

    def refuse(constant: str) -> float:
        raise RefbenchError(f"{constant} is not a score (scores must be finite)", path=path)

    try:
        data = json.loads("\n".join(lines), object_pairs_hook=unique, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise RefbenchError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(data, dict) or not data:
        raise RefbenchError("expected a non-empty object {id: label, ...}", path=path)
    out: dict[str, Guesses] = {}
    for key, value in data.items():
        where = Guesses(path=str(path), id=key)
        if not key:
            raise where.error("empty id")
        if isinstance(value, list):
            if not value:
                raise where.error("empty list of labels")
            labels = [_json_label(v, where) for v in value]
            if len({(type(x), x) for x in labels}) != len(labels):
                raise where.error("a label is ranked twice")
            out[key] = Guesses(labels=tuple(labels), path=str(path), id=key)
        elif isinstance(value, dict):
            out[key] = Guesses(scores=_json_scores(value, where), path=str(path), id=key)
        else:
            out[key] = Guesses(labels=(_json_label(value, where),), path=str(path), id=key)
    return out


def _devkit_classes(meta: Path) -> dict[int, int]:
    """ILSVRC2012_ID -> class index (sorted-wnid order), from the devkit's meta.mat."""
    from refbench.datasets.imagenet.readers import read_meta_mat

    wnid_of_id = read_meta_mat(Path(meta)).wnid_of_id
    index = {w: i for i, w in enumerate(sorted(wnid_of_id.values()))}
    return {key: index[w] for key, w in wnid_of_id.items()}


def read_devkit(path: Path, meta: Path, image_name: str) -> dict[str, Guesses]:
    """`{image id: Guesses}` of a devkit classification submission (module docstring);
    `image_name` formats the 1-based line number into the image id."""
    label_of = _devkit_classes(meta)
    lines = text_lines(path)
    out: dict[str, Guesses] = {}
    for number, raw in enumerate(lines, start=1):
        tokens = raw.split()
        if not tokens:
            raise RefbenchError("blank line (each line is one image's labels)", path=path,
                                line=number)
        if len(tokens) > MAX_DEVKIT_LABELS:
            raise RefbenchError(f"{len(tokens)} labels; the devkit allows at most "
                                f"{MAX_DEVKIT_LABELS} per image", path=path, line=number)
        _repeat_check(tokens, path, number)
        labels = []
        for token in tokens:
            if not (token.isascii() and token.isdigit()) or int(token) not in label_of:
                raise RefbenchError(f"{token!r:.20} is not an ILSVRC2012_ID of meta.mat "
                                    f"(1..{len(label_of)})", path=path, line=number)
            labels.append(label_of[int(token)])
        labels += [NO_GUESS] * (TOP_K - len(labels))
        key = image_name.format(number)
        out[key] = Guesses(labels=tuple(labels), path=str(path), line=number, id=key)
    return out


# -- writing ---------------------------------------------------------------------------
def _tokens(value: Any, key: Any) -> list[int | str] | np.ndarray:
    """A prediction as labels (indices stay integers, names strings) or a score array."""
    if isinstance(value, Guesses):
        if value.scores is not None:
            return value.scores
        value = [x for x in value.labels if x != NO_GUESS]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value
    if isinstance(value, (int, str, np.integer, np.str_, ClassRef)):
        value = [value]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise RefbenchError(f"id {key}: expected a label, ranked labels or scores, got "
                            f"{type(value).__name__}")
    out: list[int | str] = []
    for item in value:
        item = item.index if isinstance(item, ClassRef) else item
        item = int(item) if isinstance(item, np.integer) else item
        text = str(item)
        if isinstance(item, bool) or not isinstance(item, (int, str)) or not text or \
                text.startswith("-") or any(c.isspace() or c == "," for c in text):
            raise RefbenchError(f"id {key}: label {item!r:.40} cannot be written")
        out.append(item)
    return out


def _check_id(key: Any) -> str:
    text = str(key)  # what a reader would give back verbatim
    if not text or text != text.strip() or any(c in text for c in ",\n\r"):
        raise RefbenchError(f"id {text!r:.60} cannot be written (empty, padded, or holds a "
                            f"comma or line break)")
    return text


def write_csv(path: Path, predictions: Mapping[Any, Any]) -> None:
    """`id,label` rows (ranked labels space-separated; scores as their 5 best classes)."""
    rows = ["id,label"]
    for key, value in predictions.items():
        tokens = _tokens(value, key)
        if isinstance(tokens, np.ndarray):
            tokens = [str(int(i)) for i in np.argsort(-tokens, kind="stable")[:TOP_K]]
        rows.append(f"{_check_id(key)},{' '.join(map(str, tokens))}")
    atomic_write_text(path, "\n".join(rows) + "\n")


def write_json(path: Path, predictions: Mapping[Any, Any]) -> None:
    """`{id: index | name | [ranked] | {"scores": [...]}}`, indices written as integers."""
    out: dict[str, Any] = {}
    for key, value in predictions.items():
        tokens = _tokens(value, key)
        if isinstance(tokens, np.ndarray):
            if not np.isfinite(tokens).all():
                raise RefbenchError(f"id {key}: scores hold NaN or infinite values")
            out[_check_id(key)] = {"scores": [float(s) for s in tokens]}
            continue
        out[_check_id(key)] = tokens[0] if len(tokens) == 1 else tokens
    atomic_write_text(path, json.dumps(out, allow_nan=False) + "\n")


def read_submission(path: Path, spec: "BenchmarkSpec", devkit_meta: Path | None = None
                    ) -> tuple[str, dict[str, Guesses]]:
    """(kind: `json`, `devkit` or `csv`, `{id: Guesses}`) of any accepted submission, told
    apart by name (`*.json`) or first line (devkit-style integers, else the CSV header)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return "json", read_json(path)
    lines = text_lines(path)
    tokens = lines[0].split()  # the devkit's first line: integers separated by spaces
    if spec.dataset.name == "imagenet" and tokens and all(t.isascii() and t.isdigit()
                                                          for t in tokens):
        from refbench.datasets.imagenet.readers import VAL_NAME

        if devkit_meta is None:
            raise RefbenchError("a devkit-style file names ILSVRC2012_IDs: pass the devkit's "
                                "meta.mat with --devkit-meta (ILSVRC2012_devkit_t12/data/"
                                "meta.mat)", path=path, line=1)
        if spec.split != "validation":
            raise RefbenchError(f"devkit-style files are read for the validation split, not "
                                f"{spec.split!r}", path=path)
        return "devkit", read_devkit(path, Path(devkit_meta), VAL_NAME.removesuffix(".JPEG"))
    return "csv", read_csv(path)


@FORMATS.register("image_classification")
class ImageClassificationFormat(SubmissionFormat):
    """Labels per image id: CSV `id,label`, JSON, or the ILSVRC2012 devkit's lines."""

    missing = "score"
    missing_scored_as = "scored as wrong (counted in top-1 and top-5 as a miss)"
    extra = "ignore"
    extra_scored_as = "ignored"
    read_options = (Option(
        "devkit_meta", "path",
        "The ILSVRC2012 devkit's data/meta.mat, to read a devkit-style submission (lines of "
        "ILSVRC2012_IDs) into classes."),)

    def __init__(self) -> None:
        self._load_split: Callable[[str], "hf_datasets.Dataset"] | None = None

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        options = dict(options or {})
        unknown = sorted(set(options) - {o.name for o in self.read_options})
        if unknown:
            raise RefbenchError(f"unknown read option(s) {unknown} for image_classification "
                                f"(known: devkit_meta)")
        kind, out = read_submission(Path(path), spec, options.get("devkit_meta"))
        if kind == "devkit":
            self.missing = "refuse"
            self.missing_refused_because = ("the devkit's eval_flat.m needs one line per image "
                                            "(it asserts as many lines as labels)")
        return out

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        if Path(path).suffix.lower() == ".json":
            write_json(Path(path), predictions)
        else:
            write_csv(Path(path), predictions)

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """The true class first, then the lowest other classes: top-1 and top-5 of 100."""
        out: dict[Any, Any] = {}
        for key, ref in references.items():
            count = len(ref.classes) if isinstance(ref, ClassRef) and ref.classes else 0
            index = ref.index if isinstance(ref, ClassRef) else int(ref)
            others = [c for c in range(min(count, TOP_K + 1)) if c != index]
            out[key] = Guesses(labels=tuple([index, *others][:TOP_K]), id=str(key))
        return out

    def bind_splits(self, load_split: Callable[[str], "hf_datasets.Dataset"]) -> None:
        self._load_split = load_split

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        found = official_references(Path(path), spec)
        if found is not None:
            return found
        if Path(path).is_dir():  # the release itself (digits, an ImageFolder tree)
            return self.references_from_release(Path(path), spec)
        return self._file_references(Path(path), spec)

    def _file_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        """A references file in the submission format: one label per id, resolved like
        predictions against the prepared split's label set (indices only without one)."""
        _, rows = read_submission(path, spec)
        try:
            classes = classes_of(self._load_split(spec.split)) if self._load_split else None
        except RefbenchError:
            classes = None
        if classes is None and any(not str(g.labels[0]).isdigit() for g in rows.values()):
            raise RefbenchError("class names in a references file need the prepared dataset's "
                                "label set (prepare it, or write class indices)", path=path)
        out: dict[Any, Any] = {}
        for key, guess in rows.items():
            if guess.scores is not None or len(guess.labels) != 1:
                raise guess.error("a references file gives exactly one label per id")
            count = len(classes) if classes else None
            out[key] = ClassRef(resolve_token(guess.labels[0], classes, count, guess), classes)
        return out

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        return dataset_references(dataset)


def classes_of(dataset: "hf_datasets.Dataset") -> ClassNames:
    """The label set of a prepared split (its `label` ClassLabel's names)."""
    feature = (dataset.features or {}).get("label")
    names = getattr(feature, "names", None)
    if not names:
        raise RefbenchError("the prepared split has no `label` ClassLabel with class names")
    return ClassNames(names)


def dataset_references(dataset: "hf_datasets.Dataset") -> dict[str, ClassRef]:
    """`{id: ClassRef}` of a prepared split (columns `id`, `label`); unlabelled rows (-1)
    and repeated ids are refused."""
    lacking = {"id", "label"} - set(dataset.column_names)
    if lacking:
        raise RefbenchError(f"the prepared split lacks column(s) {sorted(lacking)}")
    classes = classes_of(dataset)
    columns = dataset.select_columns(["id", "label"])
    out: dict[str, ClassRef] = {}
    for key, label in zip(columns["id"], columns["label"]):
        if key in out:
            raise RefbenchError(f"the prepared split holds id {key!r} twice")
        if label is None or (isinstance(label, float) and math.isnan(label)) or label < 0:
            raise RefbenchError(f"image {key} has no label (-1): references must be a labelled "
                                f"split")
        out[key] = ClassRef(int(label), classes)
    return out


# -- official label files ------------------------------------------------------------------
def _imagenet_references(path: Path, spec: "BenchmarkSpec") -> dict[str, ClassRef] | None:
    """ImageNet validation labels from an official file or root (module docstring)."""
    from refbench.datasets.imagenet import readers
    from refbench.datasets.imagenet.builder import Classes, image_root, val_labels
    from refbench.datasets.images.imagefolder import class_folders, class_images

    if spec.split != "validation":
        raise RefbenchError(f"official ImageNet label files label the validation split, not "
                            f"{spec.split!r}", path=path)
    beside = {"val.txt": "synsets.txt", readers.GROUND_TRUTH: "meta.mat",
              "LOC_val_solution.csv": "LOC_synset_mapping.txt"}
    if path.is_file() and path.name in beside and not (path.parent / beside[path.name]).is_file():
        raise RefbenchError(f"{path.name} needs {beside[path.name]} beside it (its labels are "
                            f"read through that file)", path=path)
    val = image_root(path) / "val"
    if path.is_dir() and val.is_dir() and class_folders(val):  # val/<wnid>/*.JPEG
        entries, source = [(None, p.stem, w) for w, p in class_images(val)], val
        wnids = Classes(path).wnids
    elif path.is_dir():
        classes = Classes(path)
        found = val_labels(path, classes)
        if found is None:
            raise RefbenchError("no ImageNet validation labels in this folder (val.txt + "
                                "synsets.txt, the devkit's ground truth + meta.mat, "
                                "LOC_val_solution.csv, or val/<wnid>/)", path=path)
        (entries, source), wnids = found, classes.wnids
    elif path.name == "val.txt":
        order = readers.read_synsets(path.parent / "synsets.txt")
        entries, source, wnids = readers.read_caffe_val(path, order), path, sorted(order)
    elif path.name == readers.GROUND_TRUTH:
        devkit = readers.read_meta_mat(path.parent / "meta.mat")
        entries, source = readers.read_ground_truth(path, devkit), path
        wnids = sorted(devkit.wnid_of_id.values())
    elif path.name == "LOC_val_solution.csv":
        entries, source = readers.read_loc_val_solution(path), path
        wnids = Classes(path.parent).wnids
    else:
        return None
    label_set = ClassNames(wnids)
    out: dict[str, ClassRef] = {}
    for line, key, wnid in entries:
        if wnid not in label_set.index or key in out:
            problem = "is labelled twice" if key in out else f"has the unknown wnid {wnid}"
            raise RefbenchError(f"image {key} {problem}", path=source, line=line)
        out[key] = ClassRef(label_set.index[wnid], label_set)
    return out


def _cifar_references(path: Path, spec: "BenchmarkSpec") -> dict[str, ClassRef] | None:
    """The labels of the spec's split from a CIFAR release folder (or a file in it)."""
    from refbench.datasets.base import get_builder
    from refbench.datasets.cifar.builder import find_release

    builder = get_builder(spec.dataset.name)
    release = find_release(path if path.is_dir() else path.parent, builder.variant)
    if release is None:
        return None
    if spec.split not in release.variant.py_files:
        raise RefbenchError(f"a CIFAR release has no split {spec.split!r}", path=path)
    fine, _ = release.names()
    label_set = ClassNames(fine)
    out: dict[str, ClassRef] = {}
    for batch in release.read(spec.split):
        stem = batch.path.name.removesuffix(".bin")  # the builder's ids: `test_batch/00042`
        for row, label in enumerate(batch.labels):
            out[f"{stem}/{row:05d}"] = ClassRef(int(label), label_set)
    return out


def official_references(path: Path, spec: "BenchmarkSpec") -> dict[str, ClassRef] | None:
    """References from a dataset's official label file or folder; None when `path` is
    none of them (then it is read as a file in the submission format)."""
    if not path.exists():
        raise RefbenchError("references not found", path=path)
    if spec.dataset.name == "imagenet":
        found = _imagenet_references(path, spec)
    elif spec.dataset.name in ("cifar10", "cifar100"):
        found = _cifar_references(path, spec)
    else:
        found = None
    if found is not None and not found:
        raise RefbenchError("the references hold no labelled image", path=path)
    return found
