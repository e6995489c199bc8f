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
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.datasets.kitti import geometry as geo
from refbench.datasets.base import (
    MANIFEST,
    CheckReport,
    DatasetBuilder,
    Problem,
    _save_quietly,
    default_cache_dir,
)
from refbench.errors import RefbenchError
from refbench.io import atomic_dir_replace, atomic_write_json
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
def check_frame(root: Path, split: str, fid: str) -> list[Problem]:
    """Problems of one frame's files (missing, bad size, first bad label or calib line)."""
    problems = []
    for kind, path in frame_files(root, split, fid).items():
        if not path.is_file():
            problems.append(Problem(str(path), f"frame {fid} listed in ImageSets/{split}.txt "
                                               f"has no {kind} file {path.name}"))
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
            message = f"[{exc.key}] {exc.message}" if exc.key else exc.message
            problems.append(Problem(exc.path or str(path), message, exc.line))
    return problems


_CITATION = """@inproceedings{geiger2012kitti,
  title = {Are we ready for Autonomous Driving? The {KITTI} Vision Benchmark Suite},
  author = {Geiger, Andreas and Lenz, Philip and Urtasun, Raquel},
  booktitle = {Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2012}
}"""


@DATASETS.register("kitti")
class KittiBuilder(DatasetBuilder):
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
        for split, part_name in SPLIT_PART.items():
            path = root / "ImageSets" / f"{split}.txt"
            if not path.is_file():
                report.problems.append(Problem(str(path), f"missing ImageSets file {split}.txt"))
                continue
            report.found.append(_rel(path, root))
            ids = read_image_set(root, split)
            part = root / part_name
            folders = ["velodyne", "calib", "image_2"] + (["label_2"] if split != "test" else [])
            missing = [f for f in folders if not (part / f).is_dir()] if ids else []
            for folder in missing:
                if any(p.path == str(part / folder) for p in report.problems):
                    continue  # train and val share training/
                report.problems.append(Problem(str(part / folder), f"missing folder "
                                               f"{part_name}/{folder}"))
            if missing:
                continue
            for fid in ids:
                report.problems.extend(check_frame(root, split, fid))
            report.found.append(f"{part_name}: {len(ids)} frames of {split}")

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
    def work_dir(self, root: Path, cache: Path) -> Path:
        """Where finished shards of an interrupted prepare of `root` wait to be reused."""
        key = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
        return self.cache_path(cache).parent / f".{self.version}.partial-{key}"

    def prepare(self, root: Path, cache: Path | None = None, configs: list[str] | None = None,
                progress: bool = False) -> dict[str, Any]:
        """Convert every split chunk by chunk (finished chunks survive an interruption),
        then write the cache atomically; a bad input removes the partial work too."""
        root = Path(root)
        if not root.is_dir():
            raise RefbenchError("dataset folder not found", path=root)
        self.resolve_configs(configs)
        cache = Path(cache) if cache is not None else default_cache_dir()
        final = self.cache_path(cache)
        final.parent.mkdir(parents=True, exist_ok=True)
        work = self.work_dir(root, cache)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.version}.", dir=final.parent))
        try:
            manifest = self._prepare_chunked(root, tmp, work, progress)
            atomic_dir_replace(tmp, final)
        except RefbenchError:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # `work` stays: the next run resumes
            raise
        shutil.rmtree(work, ignore_errors=True)
        return manifest

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
        _save_quietly(rows_to_dataset(rows, split), shard)
        atomic_write_json(shard / "sources.json", shas)  # written last: marks the shard done
        return shas

    def _prepare_chunked(self, root: Path, tmp: Path, work: Path, progress: bool
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
            _save_quietly(ds, tmp / "default" / self.canonical_split(split))
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
