"""Semantic segmentation submissions: a folder of single-channel PNG label maps, scored
against the official annotation folder of ADE20K or Cityscapes.

Ids are image names: ADE20K a PNG's stem (`ADE_val_00000001.png` meets the annotation of
the same name, as the challenge's submission expects); Cityscapes the `<city>_<seq>_<frame>`
part of the file name, which is how the official evaluation finds the prediction of a
ground-truth file (`frankfurt_000000_000294_leftImg8bit.png`, `..._pred.png`, any name
holding it). Folders are searched recursively (Cityscapes keeps a folder per city).

References (`--references`, a leaderboard's hidden copy) are either
- the dataset's release root (ADE20K `ADEChallengeData2016/` or its parent, Cityscapes the
  folder holding `leftImg8bit/` and `gtFine/`): the spec's split is read through the
  builder (`references_from_release`), which pairs every image with its label map; a
  Cityscapes image whose labelIds PNG is absent is scored from its labelTrainIds PNG;
- or an annotation folder (`annotations/validation`, `gtFine/val`, or their parent, in
  which case the spec's split folder is used): for Cityscapes only `*_gtFine_labelIds.png`
  (or, with `label_ids: trainIds`, `*_gtFine_labelTrainIds.png`) are read, so the colour and
  instance PNGs beside them are skipped;
- or, without `--references`, the prepared split (its annotation paths). Values follow the layout (`refbench.evaluation.segmentation`):
ADE20K 1..150 (0 = other), Cityscapes labelIds (or trainIds with `prediction_ids`).

Refused with one line naming the file: a name given twice, a PNG that is not a
single-channel label map (RGB), a truncated or unreadable image, a size that differs from
its ground truth, a label outside the layout's values (the metric's check). A missing prediction is refused, as the Cityscapes script refuses it
("Found no prediction for ground truth"); extra PNGs are ignored and reported. Images are
decoded lazily, one at a time, while the metric streams.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.evaluation.segmentation import SegmentationPair
from refbench.io import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

SUFFIXES = ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_labelTrainIds")
CITYSCAPES_NAME = re.compile(r"[a-z]+_\d{6}_\d{6}")
#: the release's split folders per layout (refbench split -> folder)
SPLIT_FOLDERS = {"ade20k": {"train": "training", "validation": "validation"},
                 "cityscapes": {"train": "train", "validation": "val", "test": "test"}}


def image_id(path: Path) -> str:
    stem = Path(path).stem
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def cityscapes_id(path: Path) -> str:
    """`<city>_<seq>_<frame>` of a Cityscapes file name (the official evaluation's match),
    else the stem without a known suffix."""
    match = CITYSCAPES_NAME.search(Path(path).stem)
    return match.group(0) if match else image_id(path)


def read_label_png(path: Path) -> np.ndarray:
    """A single-channel PNG as an int64 array; errors name the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16"):
                raise RefbenchError(f"a label map is a single-channel PNG, this one is "
                                    f"{image.mode}", path=path)
            image.load()
            return np.asarray(image, dtype=np.int64)
    except FileNotFoundError:
        raise RefbenchError("label map not found", path=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise RefbenchError(f"unreadable PNG ({exc})", path=path) from None


def collect(folder: Path, pattern: str, what: str,
            key_of: Any = image_id) -> dict[str, SegmentationPair]:
    """`{image id: lazy label map}` of the PNGs below `folder` matching `pattern`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RefbenchError(f"expected a folder of {what} PNGs", path=folder)
    out: dict[str, SegmentationPair] = {}
    where: dict[str, Path] = {}
    for path in sorted(folder.rglob(pattern)):
        key = key_of(path)
        if key in out:
            raise RefbenchError(f"image {key} is given twice (also {where[key]})", path=path)
        out[key] = SegmentationPair(str(path), lambda p=path: read_label_png(p))
        where[key] = path
    if not out:
        raise RefbenchError(f"no {what} PNG ({pattern}) in this folder", path=folder)
    return out


def _layout(spec: "BenchmarkSpec") -> tuple[str, str]:
    args = spec.metric.kwargs()
    return str(args.get("layout", "ade20k")), str(args.get("label_ids", "labelIds"))


@FORMATS.register("segmentation_png")
class SegmentationPngFormat(SubmissionFormat):
    """A folder of PNG label maps (one per image), scored against annotation PNGs."""

    missing = "refuse"
    missing_refused_because = ("every image needs a label map, as the Cityscapes script "
                               "refuses a prediction folder that lacks one")
    missing_scored_as = "refused: every image needs a label map"
    extra_scored_as = "ignored: images outside the annotation folder"
    is_folder = True

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        from PIL import Image

        folder = Path(path)
        for key, value in predictions.items():
            array = value.array() if isinstance(value, SegmentationPair) else np.asarray(value)
            if array.ndim != 2 or array.min(initial=0) < 0 or array.max(initial=0) > 255:
                raise RefbenchError(f"image {key}: a label map is 2-D with values 0..255",
                                    path=folder)
            buffer = io.BytesIO()
            Image.fromarray(array.astype(np.uint8), mode="L").save(buffer, format="PNG")
            atomic_write_bytes(folder / f"{key}.png", buffer.getvalue())

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"segmentation_png takes no read options, got {sorted(options)}")
        layout, _ = _layout(spec)
        return collect(Path(path), "*.png", "prediction",
                       cityscapes_id if layout == "cityscapes" else image_id)

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        return {k: v.array() for k, v in references.items()}

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        layout, label_ids = _layout(spec)
        path = Path(path)
        if _is_release(path, layout):
            return self.references_from_release(path, spec)
        folder = SPLIT_FOLDERS[layout].get(spec.split, spec.split)
        if (path / folder).is_dir():  # the annotation root: the spec's split only
            path = path / folder
        if layout == "cityscapes":
            suffix = "_gtFine_labelIds" if label_ids == "labelIds" else "_gtFine_labelTrainIds"
            return collect(path, f"*{suffix}.png", "Cityscapes ground-truth", cityscapes_id)
        return collect(path, "*.png", "ADE20K annotation")

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        """`{id: lazy label map}` of a prepared split (or one read from the release), each
        map in the convention the spec's metric expects (`label_ids`)."""
        import datasets as hf

        missing = {"id", "annotation", "label_ids"} - set(dataset.column_names)
        if missing:
            raise RefbenchError(f"the split lacks column(s) {sorted(missing)}: not a "
                                f"segmentation dataset")
        _, wanted = _layout(spec)
        rows = dataset.select_columns(["id", "annotation", "label_ids"]).cast_column(
            "annotation", hf.Image(decode=False))
        out: dict[str, SegmentationPair] = {}
        for row in rows:
            if row["annotation"] is None or not row["annotation"].get("path"):
                raise RefbenchError(f"image {row['id']} has no label map in split "
                                    f"{spec.split}: it cannot be scored")
            path = Path(row["annotation"]["path"])
            out[row["id"]] = SegmentationPair(str(path), _loader(path, row["label_ids"], wanted))
        return out


def _is_release(path: Path, layout: str) -> bool:
    if layout == "cityscapes":
        return (path / "gtFine").is_dir() and (path / "leftImg8bit").is_dir()
    from refbench.datasets.segmentation.ade20k import RELEASE

    return (path / RELEASE).is_dir() or ((path / "images").is_dir()
                                         and (path / "annotations").is_dir())


def _loader(path: Path, stored: str, wanted: str) -> Any:
    """A lazy reader of `path` (in convention `stored`) giving convention `wanted`: a
    Cityscapes labelTrainIds map becomes the labelIds map that scores the same (each train
    id to its label id, 255 to 0 = unlabeled), and the other way round."""
    from refbench.evaluation.segmentation import CITYSCAPES_TRAIN_IDS, label_ids_to_train_ids

    if stored == wanted or stored == "ade20k":
        return lambda: read_label_png(path)
    if stored == "labelIds":  # wanted trainIds
        return lambda: label_ids_to_train_ids(read_label_png(path))
    inverse = np.zeros(256, dtype=np.int64)
    inverse[:] = -1  # not a train id: refused by the metric's range check
    inverse[255] = 0
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        inverse[train_id] = label_id

    def load() -> np.ndarray:
        labels = read_label_png(path)
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise RefbenchError("a labelTrainIds map holds values 0..18 and 255", path=path)
        converted = inverse[labels]
        if (converted < 0).any():
            value = int(labels[converted < 0][0])
            raise RefbenchError(f"label {value} is not a Cityscapes trainId (0..18, 255)",
                                path=path)
        return converted

    return load
