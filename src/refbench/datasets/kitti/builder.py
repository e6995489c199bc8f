"""KITTI 3D object detection, read from the official release layout.

```
ROOT/training/{velodyne/*.bin, label_2/*.txt, calib/*.txt, image_2/*.png, planes/ (optional)}
ROOT/testing/{velodyne, calib, image_2}          (no labels)
ROOT/ImageSets/{train,val,test}.txt              (frame ids, one per line)
```

Splits `train` and `val` (the usual 3712/3769 split of `training/`) and `test` (the
ids of `testing/`). A row holds the frame's points (cropped to the field of view of
camera 2 unless `fov_only=False`), its calibration, image path and shape, and one list
entry per object of the label file (DontCare included; `num_points` and `difficulty`
are -1 for DontCare). Boxes are converted to the lidar frame the OpenPCDet way (see
`kitti_geometry`).

Preparation is resumable: frames are converted in chunks, each chunk saved as an Arrow
shard in a work folder beside the cache and keyed by the size and mtime of its source
files; a re-run after an interruption reuses the finished shards. Content hashes are
taken while the files are read (one pass): velodyne, labels and calib by content, the
images by their size and PNG header only, since only their shape enters the cache.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.datasets.base import (
    MALFORMED_FILE,
    MANIFEST,
    MISSING_FILE,
    MISSING_FOLDER,
    CheckReport,
    ChunkedDatasetBuilder,
    Problem,
    save_quietly,
    subfolders,
)
from refbench.datasets.kitti import geometry as geo
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

SPLIT_PART = {"train": "training", "val": "training", "test": "testing"}
LABEL_COLUMNS = 15
OBJECT_FIELDS = ("name", "truncated", "occluded", "alpha", "bbox", "dimensions", "location",
                 "rotation_y", "boxes_lidar", "difficulty", "num_points")


# -- readers -----------------------------------------------------------------------------
def velodyne_from_bytes(data: bytes, path: str | Path = "<velodyne>") -> np.ndarray:
    """(N, 4) float32 x, y, z, reflectance of a velodyne .bin's bytes."""
    check_velodyne_size(len(data), path)
    return np.frombuffer(data, dtype="<f4").reshape(-1, 4)


def check_velodyne_size(size: int, path: str | Path) -> None:
    """Raise unless `size` bytes hold a whole number of 16-byte points."""
    if size % 16:
        raise RefbenchError(f"size {size} bytes is not a multiple of 16 (4 float32 per "
                            "point): truncated file?", path=path)


def _text(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefbenchError(f"not valid UTF-8 text ({exc.reason} at byte {exc.start})",
                            path=path) from None


def read_velodyne(path: Path) -> np.ndarray:
    """Read one velodyne .bin (checked: a whole number of 16-byte points)."""
    return velodyne_from_bytes(Path(path).read_bytes(), path)


def parse_label_text(text: str, path: str | Path = "<label>", with_score: bool = False
                     ) -> dict[str, np.ndarray]:
    """Columns of a label_2 file (15 per line, 16 with a score); errors name file:line."""
    want = LABEL_COLUMNS + int(with_score)
    names: list[str] = []
    values: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != want:
            raise RefbenchError(f"expected {want} columns, found {len(fields)}", path=path,
                                line=number)
        try:
            values.append([float(v) for v in fields[1:]])
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_number(v))
            raise RefbenchError(f"non-numeric value {bad!r}", path=path, line=number) from None
        names.append(fields[0])
    arr = np.asarray(values, np.float64).reshape(-1, want - 1)
    out = {"name": np.asarray(names, dtype=object), "truncated": arr[:, 0],
           "occluded": arr[:, 1].astype(np.int32), "alpha": arr[:, 2], "bbox": arr[:, 3:7],
           "dimensions": arr[:, 7:10], "location": arr[:, 10:13], "rotation_y": arr[:, 13]}
    if with_score:
        out["score"] = arr[:, 14]
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_image_set(root: Path, split: str) -> list[str]:
    """The frame ids listed in ImageSets/<split>.txt."""
    path = Path(root) / "ImageSets" / f"{split}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RefbenchError(f"missing ImageSets file {split}.txt", path=path) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def frame_files(root: Path, split: str, fid: str) -> dict[str, Path]:
    """{kind: path} of one frame's files (no label for the test split)."""
    base = Path(root) / SPLIT_PART[split]
    files = {"velodyne": base / "velodyne" / f"{fid}.bin", "calib": base / "calib" / f"{fid}.txt",
             "image_2": base / "image_2" / f"{fid}.png"}
    if split != "test":
        files["label_2"] = base / "label_2" / f"{fid}.txt"
    return files


def read_frame(root: Path, split: str, fid: str, fov_only: bool = True
               ) -> tuple[dict[str, Any], dict[str, str]]:
    """(row, {relative source path: sha256}) of one frame; each file is read once."""
    root = Path(root)
    files = frame_files(root, split, fid)
    for path in files.values():
        if not path.is_file():
            raise RefbenchError(f"frame {fid} of ImageSets/{split}.txt has no file {path.name}",
                                path=path)
    shas: dict[str, str] = {}
    raw = files["velodyne"].read_bytes()
    shas[_rel(files["velodyne"], root)] = hashlib.sha256(raw).hexdigest()
    points = velodyne_from_bytes(raw, files["velodyne"])
    raw = files["calib"].read_bytes()
    shas[_rel(files["calib"], root)] = hashlib.sha256(raw).hexdigest()
    calib = geo.read_calib(files["calib"], _text(raw, files["calib"]))
    shape = geo.png_shape(files["image_2"])
    image_id = f"{files['image_2'].stat().st_size}:{shape[0]}x{shape[1]}"
    shas[_rel(files["image_2"], root)] = hashlib.sha256(image_id.encode()).hexdigest()
    mask = geo.fov_mask(points, calib, shape)
    fov = points[mask]
    row: dict[str, Any] = {"id": fid, "points": fov if fov_only else points,
                           "image_path": _rel(files["image_2"], root),
                           "image_shape": list(shape), "calib": calib.to_row()}
    if "label_2" in files:
        raw = files["label_2"].read_bytes()
        shas[_rel(files["label_2"], root)] = hashlib.sha256(raw).hexdigest()
        label = parse_label_text(_text(raw, files["label_2"]), files["label_2"])
        row.update(objects_of(label, calib, fov))
    else:
        row.update({key: [] for key in OBJECT_FIELDS})
    return row, shas


def objects_of(label: dict[str, np.ndarray], calib: geo.Calibration,
               fov_points: np.ndarray) -> dict[str, list]:
    """The per-object row fields of a parsed label file (lidar boxes, difficulty,
    points inside each box counted on the field-of-view points, as OpenPCDet does)."""
    care = label["name"] != "DontCare"
    boxes = geo.boxes_camera_to_lidar(label["location"], label["dimensions"],
                                      label["rotation_y"], calib)
    counts = np.full(len(care), -1, np.int32)
    if care.any():
        counts[care] = geo.count_points_in_boxes(fov_points, boxes[care])
    level = geo.difficulty(label["bbox"], label["occluded"], label["truncated"])
    level[~care] = -1
    return {"name": label["name"].tolist(), "truncated": label["truncated"].tolist(),
            "occluded": label["occluded"].tolist(), "alpha": label["alpha"].tolist(),
            "bbox": label["bbox"].tolist(), "dimensions": label["dimensions"].tolist(),
            "location": label["location"].tolist(), "rotation_y": label["rotation_y"].tolist(),
            "boxes_lidar": boxes.tolist(), "difficulty": level.tolist(),
            "num_points": counts.tolist()}


def _rel(path: Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def features() -> hf_datasets.Features:
    """The explicit features of every split (test rows have empty object lists)."""
    import datasets as hf

    def floats(n: int, dtype: str = "float32") -> hf.Sequence:
        return hf.Sequence(hf.Value(dtype), length=n)

    return hf.Features({
        "id": hf.Value("string"),
        "points": hf.Array2D(shape=(None, 4), dtype="float32"),
        "image_path": hf.Value("string"),
        "image_shape": hf.Sequence(hf.Value("int32"), length=2),
        "calib": {"P2": floats(12, "float64"), "R0_rect": floats(9, "float64"),
                  "Tr_velo_to_cam": floats(12, "float64")},
        "name": hf.Sequence(hf.Value("string")),
        "truncated": hf.Sequence(hf.Value("float32")),
        "occluded": hf.Sequence(hf.Value("int32")),
        "alpha": hf.Sequence(hf.Value("float32")),
        "bbox": hf.Sequence(floats(4)),
        "dimensions": hf.Sequence(floats(3)),
        "location": hf.Sequence(floats(3)),
        "rotation_y": hf.Sequence(hf.Value("float32")),
        "boxes_lidar": hf.Sequence(floats(7)),
        "difficulty": hf.Sequence(hf.Value("int32")),
        "num_points": hf.Sequence(hf.Value("int32")),
    })


def rows_to_dataset(rows: list[dict], split: str) -> hf_datasets.Dataset:
    import datasets as hf

    feats = features()
    columns = {name: [row[name] for row in rows] for name in feats}
    return hf.Dataset.from_dict(columns, features=feats, split=hf.NamedSplit(split))


# -- checking ----------------------------------------------------------------------------
#: the folders of one part of the release (`training/`, `testing/`) that hold frame files
FRAME_FOLDERS = ("velodyne", "calib", "image_2", "label_2")
#: the official archives, each unpacking into training/<folder> and testing/<folder>
#: (the labels into training/ only)
ARCHIVES = ("data_object_velodyne.zip", "data_object_calib.zip", "data_object_image_2.zip",
            "data_object_label_2.zip")


def archives(part_name: str) -> str:
    """The official archives that hold the files of `training/` or `testing/`."""
    return ", ".join(ARCHIVES if part_name == "training" else ARCHIVES[:3])


def check_frame(root: Path, split: str, fid: str) -> list[Problem]:
    """Problems of one frame's files (missing, bad size, first bad label or calib line)."""
    problems = []
    for kind, path in frame_files(root, split, fid).items():
        if not path.is_file():
            problems.append(Problem(str(path), f"frame {fid} listed in ImageSets/{split}.txt "
                                               f"has no {kind} file {path.name}",
                                    kind=MISSING_FILE))
            continue
        try:
            if kind == "velodyne":
                check_velodyne_size(path.stat().st_size, path)
            elif kind == "label_2":
                parse_label_text(_text(path.read_bytes(), path), path)
            elif kind == "calib":
                geo.read_calib(path, _text(path.read_bytes(), path))
            else:
                geo.png_shape(path)
        except RefbenchError as exc:
            problems.append(Problem.from_error(exc, path))
    return problems


def _ids_text(ids: list[str], limit: int = 5) -> str:
    """The first `limit` frame ids, comma-separated (`...` when there are more)."""
    shown = ", ".join(ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")


def is_release_root(folder: Path) -> bool:
    """Whether `folder` looks like a KITTI object release root (ImageSets/ or training/)."""
    return (folder / "ImageSets").is_dir() or (folder / "training" / "velodyne").is_dir()


def add_level_hint(root: Path, report: CheckReport) -> bool:
    """When `root` is one level off (a `training/` or `testing/` folder itself, or a folder
    with the release below it), hint at the right `--root`; True when it was."""
    if is_release_root(root) or (root / "training").is_dir() or (root / "testing").is_dir():
        return False
    inside = [f for f in FRAME_FOLDERS if (root / f).is_dir()]
    if inside:
        report.hint(f"{root} holds {', '.join(f + '/' for f in inside)} itself, so it is the "
                    f"{root.name}/ folder of a KITTI release, not its root: use --root "
                    f"{root.parent}")
        return True
    below = next((f for f in subfolders(root) if is_release_root(f)), None)
    if below is not None:
        report.hint(f"{below} looks like the KITTI release (it holds ImageSets/ or "
                    f"training/): use --root {below}")
        return True
    return False


def check_release(root: Path, report: CheckReport) -> None:
    """Check every list of ImageSets and the frames it names; add notes on how many frames
    of each list are present and hints for the situations a user meets (a subset of the
    frames, no testing part, no ImageSets, `--root` one level off)."""
    listed: dict[str, list[str]] = {}
    present: dict[str, list[str]] = {}
    for split, part_name in SPLIT_PART.items():
        path = root / "ImageSets" / f"{split}.txt"
        if not path.is_file():
            report.add(path, f"missing ImageSets file {split}.txt", MISSING_FILE)
            continue
        report.found.append(_rel(path, root))
        try:
            ids = read_image_set(root, split)
        except UnicodeDecodeError as exc:
            report.add(path, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})",
                       MALFORMED_FILE)
            continue
        listed[split] = ids
        if not ids:
            continue
        part = root / part_name
        if not part.is_dir():
            if not any(p.path == str(part) for p in report.problems):  # train, val share it
                report.add(part, "folder not found", MISSING_FOLDER)
            report.note(MISSING_FOLDER, f"ImageSets/{split}.txt lists {len(ids):,} frames "
                                        f"of {part_name}/")
            continue
        kinds = list(frame_files(root, split, ids[0]))
        missing = [f for f in kinds if not (part / f).is_dir()]
        for folder in missing:
            if not any(p.path == str(part / folder) for p in report.problems):
                report.add(part / folder, "folder not found", MISSING_FOLDER)
        if missing:
            continue
        have = []
        for fid in ids:
            problems = check_frame(root, split, fid)
            report.problems.extend(problems)
            absent = {p.path for p in problems if p.kind == MISSING_FILE}
            report.found.extend(_rel(f, root) for f in frame_files(root, split, fid).values()
                                if str(f) not in absent)
            if not absent:
                have.append(fid)
        present[split] = have
        if len(have) < len(ids):
            report.note(MISSING_FILE, f"{len(have):,} of {len(ids):,} frames of "
                                      f"ImageSets/{split}.txt present")
    add_hints(root, report, listed, present)


def add_hints(root: Path, report: CheckReport, listed: dict[str, list[str]],
              present: dict[str, list[str]]) -> None:
    """The hints of `check_release` (see there), one line each."""
    if add_level_hint(root, report):
        return
    if not (root / "ImageSets").is_dir() and (root / "training").is_dir():
        report.hint("ImageSets/{train,val,test}.txt are not part of the KITTI download: copy "
                    "the standard split lists (e.g. OpenPCDet's data/kitti/ImageSets, 3,712 "
                    f"train / 3,769 val ids) into {root / 'ImageSets'}, or write the ids of "
                    "your frames into them")
    for part_name in ("training", "testing"):
        splits = [s for s, p in SPLIT_PART.items() if p == part_name and listed.get(s)]
        if not splits:
            continue
        lists = ", ".join(f"ImageSets/{s}.txt" for s in splits)
        n_listed = sum(len(listed[s]) for s in splits)
        verb = "lists" if len(splits) == 1 else "list"
        if not (root / part_name).is_dir():
            report.hint(f"{lists} {verb} {n_listed:,} frames but {part_name}/ is missing: "
                        f"unpack the {part_name} part of the official archives "
                        f"({archives(part_name)}) "
                        f"into {root}, or empty {lists} to check and prepare without it")
            continue
        if any(s not in present for s in splits):
            needed = FRAME_FOLDERS if part_name == "training" else FRAME_FOLDERS[:3]
            lacking = [f"{part_name}/{f}/" for f in needed if not (root / part_name / f).is_dir()]
            report.hint(f"{', '.join(lacking)} missing: unpack the official archives "
                        f"({archives(part_name)}) into {root}")
            continue
        have = sorted({fid for s in splits for fid in present[s]})
        if not have:
            report.hint(f"none of the {n_listed:,} frames listed in {lists} is in "
                        f"{part_name}/: unpack the official archives ({archives(part_name)}) "
                        f"into {root}")
        elif len(have) < n_listed:
            report.hint(f"only {len(have):,} of {n_listed:,} frames of {lists} are present "
                        f"({_ids_text(have)}): to use the frames you have, keep only their ids "
                        f"in {lists} (e.g. `ls {part_name}/velodyne | sed 's/\\.bin$//'`), "
                        f"or download the rest of the release")


_CITATION = """@inproceedings{geiger2012kitti,
  title = {Are we ready for Autonomous Driving? The {KITTI} Vision Benchmark Suite},
  author = {Geiger, Andreas and Lenz, Philip and Urtasun, Raquel},
  booktitle = {Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2012}
}"""


@DATASETS.register("kitti")
class KittiBuilder(ChunkedDatasetBuilder):
    """KITTI 3D object detection (config `default`; splits `train`, `val`, `test`)."""

    name = "kitti"
    version = "1.0"
    license = "CC BY-NC-SA 3.0"
    citation = _CITATION
    homepage = "https://www.cvlibs.net/datasets/kitti/eval_object.php?obj_benchmark=3d"
    #: frames per resumable shard
    chunk_size: int = 64
    #: crop the points to the field of view of camera 2 (what KITTI evaluation sees)
    fov_only: bool = True

    def configs(self) -> list[str]:
        return ["default"]

    split_aliases = {"val": "validation"}

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return [self.canonical_split(s) for s in SPLIT_PART]

    def layout(self) -> str:
        return ("The official KITTI 3D object release:\n"
                "  training/{velodyne/*.bin, label_2/*.txt, calib/*.txt, image_2/*.png}\n"
                "  testing/{velodyne/*.bin, calib/*.txt, image_2/*.png}   (no labels)\n"
                "  ImageSets/{train,val,test}.txt   (frame ids; train/val use training/, "
                "test uses testing/)\n"
                "planes/ is optional and not read.")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        check_release(root, report)

    def source_files(self, root: Path, config: str) -> list[Path]:
        root = Path(root)
        out = [root / "ImageSets" / f"{split}.txt" for split in SPLIT_PART]
        for split in SPLIT_PART:
            for fid in read_image_set(root, split):
                out.extend(frame_files(root, split, fid).values())
        return out

    def generate(self, root: Path, config: str) -> dict[str, hf_datasets.Dataset]:
        """All splits in memory (no shards); `prepare` uses the resumable path instead."""
        self.resolve_configs([config])
        out = {}
        for split in SPLIT_PART:
            rows = [read_frame(Path(root), split, fid, self.fov_only)[0]
                    for fid in read_image_set(Path(root), split)]
            out[self.canonical_split(split)] = rows_to_dataset(rows, split)
        return out

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.kitti.synth import synthesize_kitti

        return synthesize_kitti(Path(out), n=n, seed=seed)

    # -- resumable preparation -------------------------------------------------------------

    def _chunk_key(self, root: Path, split: str, ids: list[str]) -> str:
        digest = hashlib.sha256(f"{self.name}@{self.version}:{self.fov_only}:{split}".encode())
        for fid in ids:
            for path in frame_files(root, split, fid).values():
                try:
                    st = path.stat()
                except FileNotFoundError:
                    raise RefbenchError(f"frame {fid} of ImageSets/{split}.txt has no file "
                                        f"{path.name}", path=path) from None
                digest.update(f"{_rel(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:20]

    def convert_chunk(self, root: Path, split: str, ids: list[str], shard: Path) -> dict[str, str]:
        """Convert frames `ids` into the Arrow shard `shard`; returns their source hashes."""
        rows, shas = [], {}
        for fid in ids:
            row, frame_shas = read_frame(root, split, fid, self.fov_only)
            rows.append(row)
            shas.update(frame_shas)
        save_quietly(rows_to_dataset(rows, split), shard)
        atomic_write_json(shard / "sources.json", shas)  # written last: marks the shard done
        return shas

    def prepare_chunks(self, root: Path, tmp: Path, work: Path, progress: bool
                         ) -> dict[str, Any]:
        import datasets as hf

        from refbench import __version__

        started = time.time()
        sources: dict[str, str] = {}
        counts: dict[str, int] = {}
        converted = reused = 0
        for split in SPLIT_PART:
            listing = root / "ImageSets" / f"{split}.txt"
            ids = read_image_set(root, split)
            sources[_rel(listing, root)] = hashlib.sha256(listing.read_bytes()).hexdigest()
            shards = []
            for start in range(0, len(ids), self.chunk_size):
                chunk = ids[start:start + self.chunk_size]
                key = self._chunk_key(root, split, chunk)
                shard = work / split / f"{start // self.chunk_size:05d}-{key}"
                if (shard / "sources.json").is_file():
                    shas = json.loads((shard / "sources.json").read_text(encoding="utf-8"))
                    reused += len(chunk)
                else:
                    shutil.rmtree(shard, ignore_errors=True)
                    shas = self.convert_chunk(root, split, chunk, shard)
                    converted += len(chunk)
                sources.update(shas)
                shards.append(shard)
                if progress:
                    rate = converted / max(time.time() - started, 1e-9)
                    print(f"kitti {split}: {start + len(chunk)}/{len(ids)} frames "
                          f"({rate:.1f} frames/s, {reused} reused)", flush=True)
            if shards:
                parts = [hf.load_from_disk(str(s)) for s in shards]
                ds = parts[0] if len(parts) == 1 else hf.concatenate_datasets(parts)
            else:
                ds = rows_to_dataset([], split)
            save_quietly(ds, tmp / "default" / self.canonical_split(split))
            counts[self.canonical_split(split)] = len(ds)
        seconds = time.time() - started
        digest = hashlib.sha256(f"{self.name}@{self.version}".encode())
        for rel, sha in sorted(sources.items()):
            digest.update(f"{rel}\0{sha}\n".encode())
        manifest = {
            "name": self.name, "version": self.version, "refbench_version": __version__,
            "source_root": str(root.resolve()), "splits": {"default": counts},
            "sources": sources, "fingerprint": digest.hexdigest(),
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 3), "frames_converted": converted,
            "frames_reused": reused,
            "frames_per_second": round(converted / max(seconds, 1e-9), 2),
        }
        if progress:
            print("prepared kitti/default: " + ", ".join(f"{s}={n}" for s, n in counts.items())
                  + f" ({manifest['frames_per_second']} frames/s)", flush=True)
        atomic_write_json(tmp / MANIFEST, manifest)
        return manifest
