"""Waymo Open Dataset v2 (Parquet), read with pyarrow alone (no TensorFlow).

The release is `{split}/{component}/{context_name}.parquet` (splits `training`,
`validation`, `testing`); each component is one table per segment whose columns follow the
official v2 schema: keys `key.segment_context_name`, `key.frame_timestamp_micros`,
`key.laser_name`, `key.laser_object_id`, and fields `[Component].field.sub`.

Read components (required: `lidar`, `lidar_calibration`, plus `lidar_box` outside
`testing`; optional: `lidar_pose` with `vehicle_pose`, `stats`):
- `lidar`: per frame and laser, range images of the first and second return
  ([H, W, 4]: range, intensity, elongation, no-label-zone). A pixel with range > 0 is a
  point. Rows of the image map to beam inclinations (the calibration's per-row `values`
  when present, else uniform between `min` and `max` at pixel centres), in reversed order
  (row 0 is the highest beam); columns map to azimuths `(2 (W - 0.5 - c) / W - 1) pi`
  minus the extrinsic's yaw, so that after the sensor->vehicle extrinsic column 0 looks
  backwards. Points are in the vehicle frame. When the `lidar_pose` component holds a
  per-pixel pose (the TOP lidar's rolling-shutter correction), points go through the
  pixel's vehicle->world pose and back with the frame's `vehicle_pose`, as the official
  `convert_range_image_to_point_cloud` does.
- `lidar_box`: 7-DOF boxes (centre, size = length/width/height, heading), `type`
  (1 vehicle, 2 pedestrian, 3 sign, 4 cyclist), `difficulty_level.detection`,
  `num_lidar_points_in_box`, `key.laser_object_id`.

Prepared rows (one per frame, sorted by segment then timestamp): `context_name`,
`timestamp` (int64 micros), `points` Array2D((None, 5), float32) (x, y, z, intensity,
elongation; both returns), `boxes` [[7]], `types`, `difficulty`, `num_points`, `ids`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from refbench.datasets.base import (
    MISSING_FILE,
    MISSING_FOLDER,
    CheckReport,
    DatasetBuilder,
    subfolders,
)
from refbench.datasets.waymo.reader import (
    OPTIONAL,
    REQUIRED,
    SPLITS,
    missing_components,
    read_boxes,
    read_lidar_points,
    segments,
)
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets


# -- the builder -----------------------------------------------------------------------------
def features() -> "hf_datasets.Features":
    import datasets as hf_datasets

    return hf_datasets.Features({
        "context_name": hf_datasets.Value("string"), "timestamp": hf_datasets.Value("int64"),
        "points": hf_datasets.Array2D((None, 5), "float32"),
        "boxes": hf_datasets.Sequence(hf_datasets.Sequence(hf_datasets.Value("float32"),
                                                           length=7)),
        "types": hf_datasets.Sequence(hf_datasets.Value("int32")),
        "difficulty": hf_datasets.Sequence(hf_datasets.Value("int32")),
        "num_points": hf_datasets.Sequence(hf_datasets.Value("int32")),
        "ids": hf_datasets.Sequence(hf_datasets.Value("string")),
    })


def segment_rows(root: Path, split: str, seg: str) -> Iterator[dict[str, Any]]:
    """The prepared rows of one segment, in timestamp order."""
    folder = Path(root) / split
    comp = {c: folder / c / f"{seg}.parquet" for c in (*REQUIRED[split], *OPTIONAL)}
    has = {c: p.is_file() for c, p in comp.items()}
    points = read_lidar_points(comp["lidar"], comp["lidar_calibration"],
                               comp["lidar_pose"] if has["lidar_pose"] else None,
                               comp["vehicle_pose"] if has["vehicle_pose"] else None)
    labels = read_boxes(comp["lidar_box"]) if "lidar_box" in REQUIRED[split] else {}
    empty = {"boxes": np.zeros((0, 7)), "types": [], "difficulty": [], "num_points": [],
             "ids": []}
    for stamp in sorted(points):
        lab = labels.get(stamp, empty)
        yield {"context_name": seg, "timestamp": stamp, "points": points[stamp],
               "boxes": np.asarray(lab["boxes"], np.float32).reshape(-1, 7),
               "types": list(lab["types"]), "difficulty": list(lab["difficulty"]),
               "num_points": list(lab["num_points"]), "ids": list(lab["ids"])}


def _generate_split(root: str, split: str, sources: str) -> Iterator[dict[str, Any]]:
    """Rows of one split; `sources` (names, sizes, mtimes) only keys the HF generator cache,
    so edited files are never served from a stale cache."""
    for seg in sorted(segments(Path(root), split)):
        yield from segment_rows(Path(root), split, seg)


def _source_stamp(root: Path, split: str) -> str:
    parts = []
    for path in sorted((Path(root) / split).rglob("*.parquet")):
        stat = path.stat()
        parts.append(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


# -- hints for `check` --------------------------------------------------------------------
def has_segments(folder: Path) -> bool:
    """Whether `folder` is a v2 root: a split folder with at least one component Parquet."""
    return any(segments(folder, split) for split in SPLITS)


def v1_records(root: Path, limit: int = 1000) -> list[Path]:
    """The v1 `*.tfrecord` files in `root` and the folders up to three levels below it."""
    out: list[Path] = []
    for folder in [Path(root), *subfolders(root, depth=3)]:
        out.extend(sorted(folder.glob("*.tfrecord")))
        if len(out) >= limit:
            break
    return out[:limit]


def add_hints(root: Path, report: CheckReport) -> None:
    """One-line hints for the situations a user meets: `--root` one level off (a folder
    holding `v2/`, a split or a component folder itself), v1 TFRecords instead of the v2
    Parquet release, splits or components not downloaded."""
    root = Path(root)
    if not has_segments(root):
        component_dirs = [p.name for p in subfolders(root, depth=1) if any(p.glob("*.parquet"))]
        below = next((f for f in subfolders(root) if has_segments(f)), None)
        if root.name in SPLITS or component_dirs:
            named = ", ".join(f"{c}/" for c in component_dirs[:4]) or "no component folder yet"
            report.hint(f"{root} is one split folder of the v2 release ({named}): use --root "
                        f"{root.parent}, the folder holding {', '.join(f'{s}/' for s in SPLITS)}")
        elif any(root.glob("*.parquet")):
            report.hint(f"{root} holds *.parquet files itself, so it is one component folder "
                        f"(like training/lidar/): use --root {root.parent.parent}")
        elif below is not None:
            splits = ", ".join(f"{s}/" for s in SPLITS if (below / s).is_dir())
            report.hint(f"{below} holds the v2 Parquet release ({splits}): use --root {below}")
    records = v1_records(root)
    if records:
        first = records[0].relative_to(root).as_posix()
        more = f" and {len(records) - 1} more" if len(records) > 1 else ""
        report.hint(f"{len(records)} Waymo v1 TFRecord file(s) found ({first}{more}): "
                    "`datasets prepare waymo` reads only the v2 Parquet release "
                    "({split}/{component}/{segment}.parquet), so download v2 from "
                    "waymo.com/open and pass its folder as --root; of v1, refbench reads only "
                    "the TFRecord container (refbench.datasets.waymo.v1: checksummed records, "
                    "frame context and timestamp, laser labels) and gt.bin/pred.bin Objects "
                    "files in `refbench evaluate waymo-3d`")
    present = [s for s in SPLITS if segments(root, s)]
    if present and len(present) < len(SPLITS):
        verb = "holds" if len(present) == 1 else "hold"
        report.hint(f"only {', '.join(f'{s}/' for s in present)} {verb} segments: prepare "
                    f"needs all of {', '.join(f'{s}/' for s in SPLITS)}, each segment with "
                    "the components lidar, lidar_calibration and (outside testing) lidar_box")
    if any(missing_components(root, s) for s in present):
        report.hint("the v2 release is downloaded component by component: every segment "
                    "needs lidar, lidar_calibration and (outside testing) lidar_box; "
                    f"{', '.join(OPTIONAL)} are optional, other components are not read")


_CITATION = """@inproceedings{sun2020scalability,
  title = {Scalability in Perception for Autonomous Driving: {Waymo} Open Dataset},
  author = {Sun, Pei and Kretzschmar, Henrik and Dotiwalla, Xerxes and others},
  booktitle = {Proceedings of CVPR},
  year = {2020}
}"""


@DATASETS.register("waymo")
class WaymoBuilder(DatasetBuilder):
    """Waymo Open Dataset v2 perception (lidar + 3D boxes); splits training/validation/testing."""

    name = "waymo"
    version = "2.0"
    license = "Waymo Dataset License Agreement for Non-Commercial Use"
    citation = _CITATION
    homepage = "https://waymo.com/open/"
    gated = True

    def configs(self) -> list[str]:
        return ["default"]

    split_aliases = {"training": "train", "testing": "test"}

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return [self.canonical_split(s) for s in SPLITS]

    def layout(self) -> str:
        return ("The v2 Parquet release, downloaded by the user (gated):\n"
                "  {training,validation,testing}/{component}/{context_name}.parquet\n"
                "required components: lidar, lidar_calibration, lidar_box (not in testing);\n"
                "optional: lidar_pose + vehicle_pose (TOP lidar per-pixel pose), stats.")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        for split in SPLITS:
            found = segments(root, split)
            if not found:
                kind = MISSING_FILE if (root / split).is_dir() else MISSING_FOLDER
                report.add(root / split, f"no {split} segment found (expected "
                                         f"{split}/lidar/<segment>.parquet)", kind)
                continue
            report.found.extend(f"{split}/{c}/{s}.parquet" for s, cs in sorted(found.items())
                                for c in sorted(cs))
            for seg, missing, present in missing_components(root, split):
                report.add(root / split / missing[0] / f"{seg}.parquet",
                           f"segment {seg}: missing required component(s) {', '.join(missing)} "
                           f"(present: {', '.join(present)})", MISSING_FILE)
        add_hints(root, report)

    def _require(self, root: Path) -> None:
        for problem in self.check(root).problems:
            raise RefbenchError(problem.message, path=problem.path)

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        import datasets as hf_datasets
        from datasets.utils import logging as hf_logging

        self.resolve_configs([config])
        root = Path(root)
        self._require(root)
        out = {}
        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            for split in SPLITS:
                out[self.canonical_split(split)] = hf_datasets.Dataset.from_generator(
                    _generate_split, features=features(),
                    gen_kwargs={"root": str(root.resolve()), "split": split,
                                "sources": _source_stamp(root, split)},
                    split=hf_datasets.NamedSplit(split))
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()
        return out

    def source_files(self, root: Path, config: str) -> list[Path]:
        root = Path(root)
        return sorted(p for split in SPLITS for c in (*REQUIRED[split], *OPTIONAL)
                      for p in (root / split / c).glob("*.parquet"))

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.waymo.synth import synthesize_waymo

        return synthesize_waymo(Path(out), n=n, seed=seed)
