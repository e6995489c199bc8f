"""The try-on submission format: a folder of result images named by pair, plus optional
front/back depth maps (zipped for the leaderboard, which extracts it first).

```
RESULTS/<pair_id>.png | .jpg | .jpeg     the try-on result of a pair (RGB, the release's size)
RESULTS/<pair_id>_depth.npy              front depth (world z, as M3D-VTON's DRM writes it)
RESULTS/<pair_id minus "front">back_depth.npy   back depth, aligned with the front
```

`pair_id` is the name the official test script gives a result (the dataset's `pair_id`
column): MPV3D and VITON the person's file stem (M3D-VTON's `tryon/<person>.png` and
`final-depth/` names, CP-VTON's `try-on/<person>`), VITON-HD HR-VITON's
`<person stem>_<cloth stem>`. So M3D-VTON's `tryon/` and `final-depth/` folders copied into
one folder are a submission as they are.

Reading is strict: a file with another extension, a sub-folder, a pair given twice (`.png`
and `.jpg`), results of different sizes, a result of another size than the spec's
`resolution`, a depth map with only one side, NaN or the wrong shape are one error naming
the file. Hidden files and `__MACOSX/` (zip tools add them) are skipped. A pair of the
references without a result is refused (each pair is one image of the averages; an
omitted pair would change them); a result outside the references is ignored and reported.

Image benchmarks (`tryon_image`) read the images: `{pair_id: path}` against the person
images (the paired setting's ground truth; for FID/KID the real set); the depth benchmark
(`tryon_depth`) reads the depth maps: `{pair_id: DepthPair(front, back)}` against the
release's viewport depth, converted by the metric as the official loader does.
References are the release folder (`--references ROOT`, read with the dataset's layout) or
the prepared split (decoded from the cache; the label-set hash covers their pixels).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.errors import RefbenchError
from refbench.io import atomic_dir_replace

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIX = "_depth.npy"
DEPTH_METRIC = "tryon_depth"


class HashedArray(np.ndarray):
    """A reference array whose `str()`/`repr()` is its name and the sha256 of its pixels,
    so the result's label-set hash covers the content, not numpy's elided print-out."""

    name: str

    def __new__(cls, array: np.ndarray, name: str) -> "HashedArray":
        obj = np.ascontiguousarray(array).view(cls)
        obj.name = name
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.name = getattr(obj, "name", "")

    def __str__(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self).tobytes()).hexdigest()
        return f"{self.name} {self.dtype}{list(self.shape)} sha256:{digest}"

    __repr__ = __str__


def depth_names(pair_id: str) -> tuple[str, str]:
    """The front and back depth file names of a pair, as M3D-VTON's DRM names them (its
    pair ids, person stems, end in `front`: `..._front_depth.npy`, `..._back_depth.npy`)."""
    if not pair_id.endswith("front"):
        raise RefbenchError(f"pair {pair_id}: depth results are named after MPV3D persons "
                            f"(<...>front_depth.npy / <...>back_depth.npy)")
    return pair_id + DEPTH_SUFFIX, pair_id[:-5] + "back" + DEPTH_SUFFIX


def _depth_key(name: str) -> tuple[str, str]:
    """(pair_id, side) of a depth file name."""
    stem = name[: -len(DEPTH_SUFFIX)]
    if stem.endswith("back"):
        return stem[:-4] + "front", "back"
    return stem, "front"


def _is_depth(spec: "BenchmarkSpec") -> bool:
    return spec.metric.name == DEPTH_METRIC


def _members(folder: Path) -> list[Path]:
    out = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name == "__MACOSX":
            continue
        if path.is_dir():
            raise RefbenchError("a sub-folder in a results folder (results are files named by "
                                "pair directly in it)", path=path)
        out.append(path)
    return out


def read_results(folder: Path, spec: "BenchmarkSpec") -> dict[str, Any]:
    """`{pair_id: path}` (images) or `{pair_id: DepthPair}` (depth) of a results folder."""
    from PIL import Image

    from refbench.evaluation.tryon.depth import load_depth
    from refbench.evaluation.tryon.metrics import DepthPair

    folder = Path(folder)
    images: dict[str, Path] = {}
    depth: dict[str, dict[str, Path]] = {}
    for path in _members(folder):
        lower = path.name.lower()
        if lower.endswith(DEPTH_SUFFIX):
            key, side = _depth_key(path.name)
            depth.setdefault(key, {})[side] = path
        elif lower.endswith(IMAGE_SUFFIXES):
            key = path.name.rsplit(".", 1)[0]
            if key in images:
                raise RefbenchError(f"pair {key} has two results ({images[key].name} and "
                                    f"{path.name})", path=path)
            images[key] = path
        else:
            raise RefbenchError(f"not a try-on result: expected <pair>.png/.jpg or "
                                f"<pair>{DEPTH_SUFFIX}", path=path)
    if _is_depth(spec):
        shape = spec.metric.kwargs().get("shape")
        first: tuple[tuple[int, ...], Path] | None = None
        out: dict[str, Any] = {}
        for key, sides in depth.items():
            for side in ("front", "back"):
                if side not in sides:
                    name = depth_names(key)[0 if side == "front" else 1]
                    other = next(iter(sides.values()))
                    raise RefbenchError(f"pair {key} has a {'back' if side == 'front' else 'front'}"
                                        f" depth map but no {side} one ({name})", path=other)
                array = load_depth(sides[side], f"{side} depth", None if shape is None
                                   else tuple(shape))
                if first is None:
                    first = (array.shape, sides[side])
                elif array.shape != first[0]:
                    raise RefbenchError(f"depth map is {array.shape[0]}x{array.shape[1]} (HxW) but "
                                        f"{first[1].name} is {first[0][0]}x{first[0][1]}",
                                        path=sides[side])
            out[key] = DepthPair(sides["front"], sides["back"], name=key)
        if not out:
            raise RefbenchError(f"no depth map (<pair>{DEPTH_SUFFIX}) in this results folder",
                                path=folder)
        return out
    if not images:
        raise RefbenchError("no result image (<pair>.png or .jpg) in this results folder",
                            path=folder)
    wanted = spec.metric.kwargs().get("resolution")
    size: tuple[tuple[int, int], Path] | None = None
    for key, path in images.items():
        try:
            with Image.open(path) as handle:
                width, height = handle.size
        except (OSError, SyntaxError, ValueError) as exc:
            raise RefbenchError(f"cannot read result image: {' '.join(str(exc).split())}",
                                path=path) from None
        if wanted is not None and [height, width] != [int(v) for v in wanted]:
            raise RefbenchError(f"result is {width}x{height} (WxH); benchmark {spec.name} scores "
                                f"{wanted[1]}x{wanted[0]}", path=path)
        if size is None:
            size = ((height, width), path)
        elif size[0] != (height, width):
            raise RefbenchError(f"result is {width}x{height} (WxH) but {size[1].name} is "
                                f"{size[0][1]}x{size[0][0]}", path=path)
    return dict(images)


def _write_value(folder: Path, key: str, value: Any) -> None:
    from PIL import Image

    from refbench.evaluation.tryon.images import EncodedImage
    from refbench.evaluation.tryon.metrics import DepthPair

    if isinstance(value, DepthPair) or isinstance(value, dict):
        front, back = (value.front, value.back) if isinstance(value, DepthPair) else (
            value["front"], value["back"])
        for name, array in zip(depth_names(key), (front, back)):
            if isinstance(array, (str, Path)):
                shutil.copyfile(array, folder / name)
            else:
                np.save(folder / name, np.asarray(array, dtype=np.float32))
    elif isinstance(value, (str, Path)):
        source = Path(value)
        shutil.copyfile(source, folder / f"{key}{source.suffix.lower()}")
    elif isinstance(value, EncodedImage):
        Image.fromarray(value.decode(), mode="RGB").save(folder / f"{key}.png")
    elif isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3:
        Image.fromarray(np.asarray(value), mode="RGB").save(folder / f"{key}.png")
    else:
        raise RefbenchError(f"pair {key}: expected a result image (path or uint8 H x W x 3) or "
                            f"a DepthPair, got {type(value).__name__}")


@FORMATS.register("tryon_results")
class TryOnResultsFormat(SubmissionFormat):
    """A folder of try-on results named by pair (+ depth `.npy`), module docstring."""

    is_folder = True
    missing = "refuse"
    missing_scored_as = "refused: every pair of the split needs a result"
    missing_refused_because = ("every pair of the split needs a result (each pair is one "
                               "image of the averages and of FID's generated set)")
    extra = "ignore"
    extra_scored_as = "ignored (not pairs of the scored split)"

    def read(self, path: Path, spec: "BenchmarkSpec",
             options: Mapping[str, Any] | None = None) -> dict[Any, Any]:
        if options:
            raise RefbenchError(f"tryon_results takes no read options, got {sorted(options)}")
        path = Path(path)
        if not path.is_dir():
            raise RefbenchError("expected a folder of try-on results", path=path)
        return read_results(path, spec)

    def write(self, path: Path, predictions: Mapping[Any, Any], spec: "BenchmarkSpec") -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            for key, value in predictions.items():
                _write_value(tmp, str(key), value)
            atomic_dir_replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def perfect_predictions(self, references: Mapping[Any, Any]) -> dict[Any, Any]:
        """The ground truth: the person images, or the reference depth in world z."""
        from refbench.evaluation.tryon.depth import gt_to_world, load_depth
        from refbench.evaluation.tryon.metrics import DepthPair

        out: dict[Any, Any] = {}
        for key, ref in references.items():
            if isinstance(ref, DepthPair):
                out[key] = DepthPair(gt_to_world(load_depth(ref.front), "front"),
                                     gt_to_world(load_depth(ref.back), "back"), name=key)
            else:
                out[key] = ref
        return out

    def read_references(self, path: Path, spec: "BenchmarkSpec") -> dict[Any, Any]:
        """From the release folder, read with the dataset's layout."""
        from refbench.datasets.base import get_builder
        from refbench.datasets.tryon import readers
        from refbench.datasets.tryon.builder import TryOnBuilder, split_pairs
        from refbench.evaluation.tryon.metrics import DepthPair

        builder = get_builder(spec.dataset.name)
        if not isinstance(builder, TryOnBuilder):
            raise RefbenchError(f"{spec.dataset.name} is not a try-on dataset")
        root = Path(path)
        if not root.is_dir():
            raise RefbenchError(f"pass the {spec.dataset.name} release folder as --references",
                                path=root)
        layout, split = builder.release, builder.canonical_split(spec.split)
        pairs, source, _ = split_pairs(layout, root, spec.dataset.config, split)
        if source is None:
            raise RefbenchError(f"no {split} pairs list in this {spec.dataset.name} folder",
                                path=root)
        out: dict[Any, Any] = {}
        for pair, _ in pairs:
            files = layout.files(root, split, pair.person, pair.cloth)
            key = layout.pair_id(pair.person, pair.cloth)
            if _is_depth(spec):
                front, back = files.optional.get("depth_front"), files.optional.get("depth_back")
                if front is None or back is None:
                    raise RefbenchError(f"{spec.dataset.name} has no depth maps")
                shape = readers.image_size(files.person, "person image")
                out[key] = DepthPair(HashedArray(readers.read_depth(front, shape), front.name),
                                     HashedArray(readers.read_depth(back, shape), back.name),
                                     name=key)
            else:
                if not files.person.is_file():
                    raise RefbenchError(f"person image {files.person.name} of pair "
                                        f"'{pair.person} {pair.cloth}' not found", path=source,
                                        line=pair.line)
                out[key] = files.person
        return out

    def references_from_dataset(self, dataset: "hf_datasets.Dataset",
                                spec: "BenchmarkSpec") -> dict[Any, Any]:
        """From prepared rows: the person images (still encoded), or viewport depth."""
        from refbench.evaluation.tryon.images import EncodedImage
        from refbench.evaluation.tryon.metrics import DepthPair

        depth = _is_depth(spec)
        columns = ["pair_id"] + (["depth_front", "depth_back"] if depth else ["person"])
        lacking = sorted(set(columns) - set(dataset.column_names))
        if lacking:
            raise RefbenchError(f"the prepared split lacks column(s) {lacking}")
        out: dict[Any, Any] = {}
        for row in dataset.select_columns(columns):
            key = row["pair_id"]
            if key in out:
                raise RefbenchError(f"the prepared split holds pair {key!r} twice")
            if depth:
                if row["depth_front"] is None or row["depth_back"] is None:
                    raise RefbenchError(f"pair {key} has no depth in the prepared split")
                out[key] = DepthPair(
                    HashedArray(np.asarray(row["depth_front"], np.float32), f"{key} front"),
                    HashedArray(np.asarray(row["depth_back"], np.float32), f"{key} back"),
                    name=key)
            else:  # kept encoded: the metric decodes a chunk at a time
                out[key] = EncodedImage(row["person"]["bytes"], key)
        return out
