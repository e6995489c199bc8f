"""Semantic segmentation submissions: a folder of single-channel PNG label maps, scored
against the official annotation folder of ADE20K or Cityscapes.

Ids are image names: a PNG's stem with a known suffix removed (`_leftImg8bit`,
`_gtFine_labelIds`, `_gtFine_labelTrainIds`), so `frankfurt_000000_000294_leftImg8bit.png`
(prediction) meets `frankfurt_000000_000294_gtFine_labelIds.png` (ground truth) and
`ADE_val_00000001.png` meets itself. Folders are searched recursively (Cityscapes keeps a
folder per city); for Cityscapes references only `*_gtFine_labelIds.png` (or, with
`label_ids: trainIds`, `*_gtFine_labelTrainIds.png`) are read, so the colour and instance
PNGs beside them are skipped. Values follow the layout (`refbench.evaluation.segmentation`):
ADE20K 1..150 (0 = other), Cityscapes labelIds (or trainIds with `prediction_ids`).

Refused with one line naming the file: a name given twice, a PNG that is not a
single-channel label map (RGB), a truncated or unreadable image, a size that differs from
its ground truth. A missing prediction is refused, as the Cityscapes script refuses it
("Found no prediction for ground truth"); extra PNGs are ignored and reported. Images are
decoded lazily, one at a time, while the metric streams.
"""

from __future__ import annotations

import io
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


def image_id(path: Path) -> str:
    stem = Path(path).stem
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


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


def collect(folder: Path, pattern: str, what: str) -> dict[str, SegmentationPair]:
    """`{image id: lazy label map}` of the PNGs below `folder` matching `pattern`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RefbenchError(f"expected a folder of {what} PNGs", path=folder)
    out: dict[str, SegmentationPair] = {}
    where: dict[str, Path] = {}
    for path in sorted(folder.rglob(pattern)):
        key = image_id(path)
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
    references_required = True
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
        return collect(Path(path), "*.png", "prediction")

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        return {k: v.array() for k, v in references.items()}

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        layout, label_ids = _layout(spec)
        if layout == "cityscapes":
            suffix = "_gtFine_labelIds" if label_ids == "labelIds" else "_gtFine_labelTrainIds"
            return collect(Path(path), f"*{suffix}.png", "Cityscapes ground-truth")
        return collect(Path(path), "*.png", "ADE20K annotation")

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        raise RefbenchError(f"{spec.name} is scored against the official annotation folder: "
                            f"pass --references")
