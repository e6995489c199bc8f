"""What the three try-on builders share: rows built from a pairs list, the two settings,
checking, and the explicit features (the schema is described in the package docstring).

A release's `Layout` says where each modality of a person or a garment lives and how the
official test script names a result; `TryOnBuilder` turns the layout into `paired` /
`unpaired` configs with `train` and `test` splits. Every file a row names is read and
validated before anything is written: a pair whose person or garment is missing, images
of different sizes, a cut file, a pose JSON without people, an unknown parse label, depth
with NaN or the wrong shape are each one `RefbenchError` naming the file (and the pairs
list's line).
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

import numpy as np

from refbench.datasets.base import (
    MISSING_FILE,
    CheckReport,
    ChunkedDatasetBuilder,
    Problem,
)
from refbench.datasets.tryon import readers
from refbench.errors import RefbenchError
from refbench.options import Option

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

CONFIGS = ("paired", "unpaired")
SPLITS = ("train", "test")
#: image columns (bytes + path, `datasets.Image(decode=False)`) in schema order
IMAGE_COLUMNS = ("person", "cloth", "cloth_mask", "parse", "parse_agnostic", "agnostic",
                 "pose_image", "densepose", "palm_mask", "sobel_x", "sobel_y", "aligned_cloth",
                 "aligned_cloth_mask")
#: masks are stored binarized (0 / 255 PNG) at the official loaders' threshold
MASK_COLUMNS = ("cloth_mask", "palm_mask", "aligned_cloth_mask")
PARSE_COLUMNS = ("parse", "parse_agnostic")


def features(pose_points: int, depth_shape: tuple[int, int] | None) -> "hf_datasets.Features":
    """The explicit features of a release (`depth_shape` None: no depth columns)."""
    import datasets as hf

    cols: dict[str, Any] = {
        "pair_id": hf.Value("string"), "person_id": hf.Value("string"),
        "cloth_id": hf.Value("string"), "paired": hf.Value("bool"),
        "height": hf.Value("int32"), "width": hf.Value("int32"),
    }
    cols.update({name: hf.Image(decode=False) for name in IMAGE_COLUMNS})
    cols["pose"] = hf.Array2D(shape=(pose_points, 3), dtype="float32")
    if depth_shape is not None:
        cols["depth_front"] = hf.Array2D(shape=tuple(depth_shape), dtype="float32")
        cols["depth_back"] = hf.Array2D(shape=tuple(depth_shape), dtype="float32")
    cols["derived"] = hf.Sequence(hf.Value("string"))
    return hf.Features(cols)


@dataclass
class RowFiles:
    """The files of one pair: modality -> path (None where the release has none)."""

    person: Path
    cloth: Path
    optional: dict[str, Path | None] = field(default_factory=dict)


class Layout(ABC):
    """Where a release keeps each file, and how its official test script names a result."""

    #: keypoints of its OpenPose JSON (BODY_25 or COCO-18)
    pose_points: ClassVar[int]
    #: whether rows carry MPV3D's front/back depth
    has_depth: ClassVar[bool] = False

    @abstractmethod
    def pairs_file(self, root: Path, split: str) -> Path | None:
        """The pairs list of a split (None: the release has none)."""

    @abstractmethod
    def files(self, root: Path, split: str, person: str, cloth: str) -> RowFiles:
        """The files of a pair (whether they exist or not)."""

    @abstractmethod
    def own_cloth(self, root: Path, split: str, person: str) -> str | None:
        """The person's own garment (the paired setting), None when the release lacks it."""

    @abstractmethod
    def pair_id(self, person: str, cloth: str) -> str:
        """The result's file stem, as the official test script names it."""

    def extra_sources(self, root: Path) -> list[Path]:
        """Files besides the pairs' that `prepare` reads (hashed into the manifest)."""
        return []

    def check_extra(self, root: Path, report: CheckReport) -> None:
        """Release-wide checks (MPV3D's camera.txt)."""

    def derive(self, files: RowFiles, row: dict[str, Any], decoded: dict[str, Any],
               options: Mapping[str, Any]) -> list[str]:
        """Fill modalities the release lacks from the others (MPV3D's preprocessing, VITON-HD's
        agnostic inputs) with the builder's prepare `options`; returns their column names.
        The default derives nothing."""
        return []


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def read_row(layout: Layout, root: Path, split: str, pair: readers.Pair, paired: bool,
             pairs_path: Path, derive: Mapping[str, Any] | None) -> dict[str, Any]:
    """One validated row (module docstring); errors name the file and the list's line.
    `derive`: the prepare options to derive with, None to derive nothing."""
    files = layout.files(root, split, pair.person, pair.cloth)
    for what, path in (("person image", files.person), ("cloth image", files.cloth)):
        if not path.is_file():
            problem = "a folder" if path.is_dir() else "missing"
            raise RefbenchError(f"the {what} {_rel(path, root)} of pair '{pair.person} "
                                f"{pair.cloth}' is {problem}", path=pairs_path, line=pair.line)
    person = readers.read_rgb(files.person, "person image")
    height, width = person.shape[:2]
    row: dict[str, Any] = {
        "pair_id": layout.pair_id(pair.person, pair.cloth), "person_id": pair.person,
        "cloth_id": pair.cloth, "paired": paired, "height": height, "width": width,
        "pose": None, "derived": []}
    decoded: dict[str, Any] = {"person": person}

    def sized(path: Path, shape: tuple[int, ...]) -> None:
        if tuple(shape[:2]) != (height, width):
            raise RefbenchError(f"is {shape[1]}x{shape[0]} (WxH) but the person image "
                                f"{_rel(files.person, root)} is {width}x{height}", path=path)

    all_files = {"person": files.person, "cloth": files.cloth, **files.optional}
    for name in IMAGE_COLUMNS:
        path = all_files.get(name)
        if path is None or not path.exists():
            row[name] = None
            continue
        if name in MASK_COLUMNS:
            mask = readers.read_mask(path, name.replace("_", " "))
            sized(path, mask.shape)
            decoded[name] = mask
            row[name] = {"bytes": _png(mask * np.uint8(255)), "path": _rel(path, root)}
            continue
        if name in PARSE_COLUMNS:
            array = readers.read_parse(path)
        elif name == "person":
            array = person
        else:
            array = readers.read_rgb(path, name.replace("_", " "))
        sized(path, array.shape)
        decoded[name] = array
        row[name] = {"bytes": path.read_bytes(), "path": _rel(path, root)}
    pose_path = files.optional.get("pose")
    if pose_path is not None and pose_path.exists():
        row["pose"] = readers.read_pose(pose_path, layout.pose_points)
    decoded["pose"] = row["pose"]
    if layout.has_depth:
        for side in ("front", "back"):
            path = files.optional.get(f"depth_{side}")
            row[f"depth_{side}"] = (readers.read_depth(path, (height, width))
                                    if path is not None and path.exists() else None)
    if derive is not None:
        row["derived"] = layout.derive(files, row, decoded, derive)
    return row


def split_pairs(layout: Layout, root: Path, config: str, split: str
                ) -> tuple[list[tuple[readers.Pair, bool]], Path | None, list[str]]:
    """The pairs of a config's split with their `paired` flag, the list they come from and
    the persons left out of the paired setting (no own garment in the release)."""
    path = layout.pairs_file(root, split)
    if path is None:
        return [], None, []
    listed = readers.read_pairs(path)
    out: list[tuple[readers.Pair, bool]] = []
    lacking: list[str] = []
    if config == "unpaired":
        for pair in listed:
            own = layout.own_cloth(root, split, pair.person)
            out.append((pair, own == pair.cloth))
    else:
        seen: set[str] = set()
        for pair in listed:
            if pair.person in seen:
                continue
            seen.add(pair.person)
            own = layout.own_cloth(root, split, pair.person)
            if own is None:
                lacking.append(pair.person)
            else:
                out.append((readers.Pair(pair.person, own, pair.line), True))
    ids: dict[str, int] = {}
    for pair, _ in out:
        key = layout.pair_id(pair.person, pair.cloth)
        if key in ids:
            raise RefbenchError(f"pair '{pair.person} {pair.cloth}' would write the result "
                                f"{key} again (line {ids[key]} already does)", path=path,
                                line=pair.line)
        ids[key] = pair.line
    return out, path, lacking


class TryOnBuilder(ChunkedDatasetBuilder):
    """A try-on release: configs `paired` / `unpaired`, splits `train` / `test`.

    `prepare` converts `chunk_size` rows at a time and resumes an interrupted run
    (`chunked.py`); `generate` builds every split in memory (small releases, tests)."""

    release: ClassVar[Layout]
    prepare_options: ClassVar[tuple[Option, ...]] = ()
    #: rows per resumable shard of `prepare`
    chunk_size: int = 32

    def check_prepare_inputs(self, root: Path) -> None:
        """Refuse a release without a test pairs list (every benchmark scores the test
        pairs; an empty prepared split would only fail later), naming near misses."""
        root = Path(root)
        if self.release.pairs_file(root, "test") is None:
            others = sorted(p.name for p in root.glob("test_pairs*.txt"))
            near = (f" (found {', '.join(others)}: a pairs list must be named "
                    f"test_pairs.txt)" if others else "")
            raise RefbenchError(f"pairs list not found{near}", path=root / "test_pairs.txt")

    def prepare_chunks(self, root: Path, tmp: Path, work: Path, progress: bool
                       ) -> dict[str, Any]:
        from refbench.datasets.tryon.chunked import prepare_release

        return prepare_release(self, Path(root), tmp, work, progress)

    def configs(self) -> list[str]:
        return list(CONFIGS)

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLITS)

    def _derive(self) -> Mapping[str, Any] | None:
        options = self.options
        return options if options.get("derive", False) else None

    def iter_rows(self, root: Path, config: str, split: str) -> Iterator[dict[str, Any]]:
        pairs, path, _ = split_pairs(self.release, Path(root), config, split)
        for pair, paired in pairs:
            assert path is not None
            yield read_row(self.release, Path(root), split, pair, paired, path, self._derive())

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        import datasets as hf

        self.resolve_configs([config])
        rows = {split: list(self.iter_rows(root, config, split)) for split in SPLITS}
        shapes = {(r["height"], r["width"]) for split_rows in rows.values() for r in split_rows}
        if len(shapes) > 1:
            first = next(r for rs in rows.values() for r in rs)
            other = next(r for rs in rows.values() for r in rs
                         if (r["height"], r["width"]) != (first["height"], first["width"]))
            raise RefbenchError(f"person image {other['person']['path']} is {other['width']}x"
                                f"{other['height']} (WxH) but {first['person']['path']} is "
                                f"{first['width']}x{first['height']}: a release has one size",
                                path=root)
        depth = next(iter(shapes)) if self.release.has_depth and shapes else (
            (1, 1) if self.release.has_depth else None)
        feats = features(self.release.pose_points, depth)
        return {split: hf.Dataset.from_list(split_rows, features=feats, split=split)
                if split_rows else hf.Dataset.from_dict({k: [] for k in feats}, features=feats)
                for split, split_rows in rows.items()}

    def source_files(self, root: Path, config: str) -> list[Path]:
        root = Path(root)
        out: set[Path] = set(self.release.extra_sources(root))
        for split in SPLITS:
            pairs, path, _ = split_pairs(self.release, root, config, split)
            if path is not None:
                out.add(path)
            for pair, _ in pairs:
                files = self.release.files(root, split, pair.person, pair.cloth)
                out.update(p for p in (files.person, files.cloth, *files.optional.values())
                           if p is not None and p.is_file())
        return sorted(out)

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        root = Path(root)
        self.release.check_extra(root, report)
        reported: set[str] = set()  # the configs share the lists: one problem, not one each
        for config in configs:
            for split in SPLITS:
                try:
                    pairs, path, lacking = split_pairs(self.release, root, config, split)
                except RefbenchError as exc:
                    report.problems.append(Problem.from_error(exc, root))
                    continue
                if path is None:
                    if split == "test" and split not in reported:
                        reported.add(split)
                        others = sorted(p.name for p in root.glob(f"{split}_pairs*.txt"))
                        near = (f" (found {', '.join(others)}: a pairs list must be named "
                                f"{split}_pairs.txt)" if others else "")
                        report.add(root / f"{split}_pairs.txt", f"pairs list not found{near}",
                                   MISSING_FILE)
                    elif split == "test":
                        continue
                    else:
                        report.hint(f"no {split} pairs list: prepare writes an empty {split} "
                                    f"split")
                    continue
                report.found.append(f"{_rel(path, root)} ({config}: {len(pairs)} pairs)")
                if lacking:
                    report.hint(f"{config}/{split}: {len(lacking)} person(s) have no own "
                                f"garment in the release (first: {lacking[0]}); the paired "
                                f"setting leaves them out")
                for pair, paired in pairs:
                    try:
                        read_row(self.release, root, split, pair, paired, path, derive=None)
                    except RefbenchError as exc:
                        report.problems.append(Problem.from_error(exc, path))
