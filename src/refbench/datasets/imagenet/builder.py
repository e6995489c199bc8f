"""ImageNet (ILSVRC2012 classification) from its official layouts; images stay on disk.

```
ROOT/train/<wnid>/*.JPEG                          split `train`            (config default)
ROOT/val/ILSVRC2012_val_XXXXXXXX.JPEG             split `validation` (alias val), labelled
                                                  by the first of: val/<wnid>/ folders,
  ROOT/LOC_val_solution.csv                       Kaggle
  ROOT/[ILSVRC2012_devkit_t12/data/]ILSVRC2012_validation_ground_truth.txt + meta.mat
  ROOT/val.txt + ROOT/synsets.txt                 Caffe's ILSVRC2012 auxiliary files
ROOT/meta/*.txt                                   OpenSelfSup lists (config `lists`)
```

ROOT may also be the Kaggle folder whose images lie in `ILSVRC/Data/CLS-LOC/{train,val}`.
The classes are the wnids of `LOC_synset_mapping.txt`, else `synsets.txt`, else the
leaves of `meta.mat`, else the train/ folders; labels index them in sorted-wnid order
(`readers.py`), `class_name` holds their words when a class file gives them. Ids are
image file stems (`n01440764_10026`, `ILSVRC2012_val_00000001`).

Config `lists` reads the OpenSelfSup list files Pi-NAS uses, each one split:
`train` = meta/train_labeled.txt (else meta/train.txt), `validation` =
meta/val_labeled.txt (else meta/val.txt), `bn_recalibration` =
meta/train_labeled_50000_random_shuffle.txt, `search_val` = meta/my_val_labeled.txt; an
absent list gives an empty split. A list's paths are relative to train/ or val/ (which
one is decided by where its first line's image is, and then holds for every line); a
label must agree with the wnid folder it names, and a line without a label takes its
folder's label (-1 where the path names no wnid folder). Ids are the listed paths.

Everything the splits name must exist and look like a whole image (`sniff_image`): a
missing or truncated image, an unknown wnid, a malformed or repeated line is a one-line
error naming the file and line, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from refbench.datasets.base import MISSING_FOLDER, CheckReport, Problem
from refbench.datasets.images.imagefolder import class_images, class_folders
from refbench.datasets.images.ondisk import OnDiskImageBuilder
from refbench.datasets.images.schema import (
    check_image_file,
    empty_rows,
    is_image_name,
    rows_to_dataset,
    stored_path,
)
from refbench.datasets.imagenet import readers
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

KAGGLE_IMAGES = "ILSVRC/Data/CLS-LOC"
LISTS = {"train": ("train_labeled.txt", "train.txt"), "validation": ("val_labeled.txt", "val.txt"),
         "bn_recalibration": ("train_labeled_50000_random_shuffle.txt",),
         "search_val": ("my_val_labeled.txt",)}


def image_root(root: Path) -> Path:
    """Where train/ and val/ are: ROOT, or the Kaggle ILSVRC/Data/CLS-LOC below it."""
    kaggle = Path(root) / KAGGLE_IMAGES
    return kaggle if kaggle.is_dir() and not (Path(root) / "train").is_dir() else Path(root)


def devkit_file(root: Path, name: str) -> Path | None:
    return next((p for f in readers.DEVKIT_FOLDERS if (p := Path(root) / f / name).is_file()),
                None)


class Classes:
    """The class wnids (sorted), their words, and where they were read from."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        words: dict[str, str] = {}
        self.source: Path | None = None
        if (p := root / "LOC_synset_mapping.txt").is_file():
            words, self.source = readers.read_synset_words(p), p
        elif (p := root / "synsets.txt").is_file():
            self.source = p
            names = root / "synset_words.txt"
            given = readers.read_synset_words(names) if names.is_file() else {}
            words = {w: given.get(w, "") for w in readers.read_synsets(p)}
        elif (p := devkit_file(root, "meta.mat")) is not None:
            words, self.source = readers.read_meta_mat(p).words, p
        else:
            train = image_root(root) / "train"
            folders = class_folders(train) if train.is_dir() else []
            words = {w: "" for w in folders}
            for w in folders:
                readers._wnid(w, train / w, None)  # type: ignore[arg-type]
        self.wnids = sorted(words)
        self.words = words
        self.index = {w: i for i, w in enumerate(self.wnids)}

    def label(self, wnid: str, path: Path, line: int | None = None) -> int:
        try:
            return self.index[wnid]
        except KeyError:
            source = self.source.name if self.source else "the train/ folders"
            raise RefbenchError(f"unknown wnid {wnid} (not a class of {source})", path=path,
                                line=line) from None


def val_labels(root: Path, classes: Classes) -> tuple[list[tuple[int, str, str]], Path] | None:
    """(line, image id, wnid) of the validation images and the file they come from; None
    when no label source exists (val/<wnid>/ folders are read by the builder)."""
    root = Path(root)
    if (p := root / "LOC_val_solution.csv").is_file():
        return readers.read_loc_val_solution(p), p
    gt, meta = devkit_file(root, readers.GROUND_TRUTH), devkit_file(root, "meta.mat")
    if gt is not None:
        if meta is None:
            raise RefbenchError("the devkit ground truth needs data/meta.mat beside it "
                                "(it maps ILSVRC2012_ID to wnid)", path=gt)
        return readers.read_ground_truth(gt, readers.read_meta_mat(meta)), gt
    if (p := root / "val.txt").is_file():
        synsets = root / "synsets.txt"
        if not synsets.is_file():
            raise RefbenchError("Caffe's val.txt needs synsets.txt beside it (its labels index "
                                "that file)", path=p)
        return readers.read_caffe_val(p, readers.read_synsets(synsets)), p
    return None


@DATASETS.register("imagenet")
class ImageNetBuilder(OnDiskImageBuilder):
    """ILSVRC2012 (configs `default`: train, validation; `lists`: OpenSelfSup list files)."""

    name = "imagenet"
    version = "1.0"
    license = "ImageNet terms of access (non-commercial research and education only)"
    citation = ("@article{russakovsky2015imagenet, author = {Russakovsky, Olga and others}, "
                "title = {{ImageNet Large Scale Visual Recognition Challenge}}, journal = "
                "{IJCV}, volume = {115}, number = {3}, pages = {211--252}, year = {2015}}")
    homepage = "https://image-net.org/challenges/LSVRC/2012/"
    gated = True
    split_aliases: ClassVar[dict[str, str]] = {"val": "validation"}

    def configs(self) -> list[str]:
        return ["default", "lists"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return ["train", "validation"] if config == "default" else list(LISTS)

    def layout(self) -> str:
        return ("ILSVRC2012 (see `refbench datasets info imagenet`):\n"
                "  train/<wnid>/*.JPEG; val/ILSVRC2012_val_XXXXXXXX.JPEG (or val/<wnid>/)\n"
                "  val labels: LOC_val_solution.csv | ILSVRC2012_devkit_t12/data/"
                "{ILSVRC2012_validation_ground_truth.txt, meta.mat} | val.txt + synsets.txt\n"
                "  classes: LOC_synset_mapping.txt | synsets.txt [+ synset_words.txt] | "
                "meta.mat | the train/ folders\n"
                "  meta/{train_labeled,val_labeled,train_labeled_50000_random_shuffle,"
                "my_val_labeled}.txt   (config `lists`, OpenSelfSup 'path label' lines)")

    # -- rows ------------------------------------------------------------------------------
    def _rows(self, names: Classes, items: list[tuple[str, str, Path, Path | None, int | None,
                                                    int]]) -> dict[str, list]:
        rows = empty_rows()
        seen: dict[str, str] = {}
        for key, wnid, path, where, line, label in items:
            if key in seen:
                raise RefbenchError(f"duplicate id {key} (also {seen[key]})",
                                    path=where or path, line=line)
            seen[key] = f"{where}:{line}" if where else str(path)
            check_image_file(path, where, line)
            rows["id"].append(key)
            rows["image"].append({"bytes": None, "path": stored_path(path)})
            rows["label"].append(label)
            rows["class_name"].append(names.words.get(wnid, "") if wnid else "")
        return rows

    def _train_items(self, root: Path, names: Classes) -> list:
        train = image_root(root) / "train"
        if not train.is_dir():
            raise RefbenchError("missing folder train/ (train/<wnid>/*.JPEG)", path=train)
        return [(p.stem, w, p, None, None, names.label(w, train / w))
                for w, p in class_images(train)]

    def _val_items(self, root: Path, names: Classes) -> list:
        val = image_root(root) / "val"
        if val.is_dir() and class_folders(val):
            return [(p.stem, w, p, None, None, names.label(w, val / w))
                    for w, p in class_images(val)]
        found = val_labels(root, names)
        if found is None:
            raise RefbenchError("no validation labels: LOC_val_solution.csv, the devkit's "
                                "ground truth + meta.mat, Caffe's val.txt + synsets.txt, or "
                                "val/<wnid>/ folders", path=root)
        entries, source = found
        return [(key, w, val / f"{key}.JPEG", source, line, names.label(w, source, line))
                for line, key, w in entries]

    def _list_items(self, root: Path, names: Classes, split: str) -> list:
        path = next((p for n in LISTS[split] if (p := Path(root) / "meta" / n).is_file()), None)
        if path is None:
            return []
        entries = readers.read_image_list(path, len(names.wnids))
        base = image_root(root)
        prefixes = [base / "train", base / "val", base]
        prefix = next((p for p in prefixes if entries and (p / entries[0].path).is_file()),
                      prefixes[0])
        items = []
        for e in entries:
            parts = Path(e.path).parts
            wnid = parts[0] if len(parts) > 1 and parts[0] in names.index else ""
            label = e.label
            if wnid and label >= 0 and label != names.index[wnid]:
                raise RefbenchError(f"label {label} but {wnid} is class {names.index[wnid]} "
                                    f"(sorted wnid order)", path=path, line=e.line)
            if wnid and label < 0:
                label = names.index[wnid]
            items.append((e.path, wnid, prefix / e.path, path, e.line, label))
        return items

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        self.resolve_configs([config])
        names = Classes(Path(root))
        if not names.wnids:
            raise RefbenchError("no classes: no LOC_synset_mapping.txt, synsets.txt, meta.mat "
                                "or train/<wnid>/ folders", path=root)
        if config == "default":
            parts = {"train": self._train_items(root, names),
                     "validation": self._val_items(root, names)}
        else:
            parts = {split: self._list_items(root, names, split) for split in LISTS}
        return {split: rows_to_dataset(self._rows(names, items), names.wnids, split)
                for split, items in parts.items()}

    # -- files -----------------------------------------------------------------------------
    def source_files(self, root: Path, config: str) -> list[Path]:
        root = Path(root)
        names = Classes(root)
        out = [names.source] if names.source else []
        if names.source and names.source.name == "synsets.txt" and \
                (root / "synset_words.txt").is_file():
            out.append(root / "synset_words.txt")
        if config == "default":
            found = None if (image_root(root) / "val").is_dir() and \
                class_folders(image_root(root) / "val") else val_labels(root, names)
            if found is not None:
                out.append(found[1])
                if found[1].name == readers.GROUND_TRUTH:
                    out.append(devkit_file(root, "meta.mat"))  # type: ignore[arg-type]
                if found[1].name == "val.txt":
                    out.append(root / "synsets.txt")
        else:
            out.extend(p for names_ in LISTS.values() for n in names_[:2]
                       if (p := root / "meta" / n).is_file())
        return sorted({p for p in out if p is not None})

    def image_files(self, root: Path, config: str) -> list[Path]:
        base = image_root(root)
        return sorted(p for split in ("train", "val") if (base / split).is_dir()
                      for p in (base / split).rglob("*") if is_image_name(p.name))

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        base = image_root(root)
        for split in ("train", "val"):
            if (base / split).is_dir():
                report.found.append(f"{split}/")
            else:
                report.add(base / split, "not found", MISSING_FOLDER)
        for config in configs:
            try:
                self.generate(root, config)
            except RefbenchError as exc:
                report.problems.append(Problem.from_error(exc, root))
        if "lists" in configs and not (Path(root) / "meta").is_dir():
            report.hint("no meta/ folder: config `lists` (OpenSelfSup list files) is empty")
        if Classes(Path(root)).source is None:
            report.hint("no class list (LOC_synset_mapping.txt, synsets.txt or meta.mat): "
                        "the classes are the train/ folders, without their words")

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.imagenet.synth import synthesize_imagenet

        return synthesize_imagenet(Path(out), n=n, seed=seed)
