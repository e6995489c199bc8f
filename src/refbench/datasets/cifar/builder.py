"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), read from either official release format.

```
ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}          cifar10
ROOT/cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin, batches.meta.txt}
ROOT/cifar-100-python/{train, test, meta}                                     cifar100
ROOT/cifar-100-binary/{train.bin, test.bin, fine_label_names.txt, coarse_label_names.txt}
```

ROOT may also be the batch folder itself. The python format is used when both are there.
Splits `train` (the five batches in order, 50,000 images) and `test` (10,000); the
official release has no validation split. Each row is one image: `id` is the batch file
and row (`data_batch_3/00042`, `test/09999`: the same in both formats), `image` the 32x32
RGB image as lossless PNG bytes (exactly the official uint8 values), `label` and
`class_name`, `filename` (the python format's original file name; the binary format has
none and gets `NNNNN.png`), and for CIFAR-100 `label` is the fine label and
`coarse_label` the superclass.

Every file is validated as it is read (`batches.py`): the restricted unpickler, uint8
data of shape (rows, 3072), labels in range, as many labels and names as rows, and for
CIFAR-10 the rows each batch must hold (`num_cases_per_batch` of batches.meta, 10,000
in the official release); CIFAR-100 fine labels must each lie in one superclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from refbench.datasets.base import MISSING_FILE, CheckReport, DatasetBuilder, Problem
from refbench.datasets.cifar.batches import (
    CIFAR100_TRAIN_ROWS,
    ROWS_PER_BATCH,
    Batch,
    check_coarse_consistent,
    class_names,
    load_pickle,
    read_binary_batch,
    read_name_lines,
    read_python_batch,
)
from refbench.datasets.images.schema import empty_rows, encode_png, rows_to_dataset
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Variant:
    """The file names of one CIFAR release in its two formats."""

    classes: int
    coarse: int | None
    py_folder: str
    py_meta: str
    py_files: dict[str, tuple[str, ...]]
    bin_folder: str
    bin_meta: tuple[str, ...]
    official_rows: dict[str, int]

    def bin_files(self, split: str) -> tuple[str, ...]:
        return tuple(f"{name}.bin" for name in self.py_files[split])


CIFAR10 = Variant(10, None, "cifar-10-batches-py", "batches.meta",
                  {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                   "test": ("test_batch",)},
                  "cifar-10-batches-bin", ("batches.meta.txt",),
                  {"train": 5 * ROWS_PER_BATCH, "test": ROWS_PER_BATCH})
CIFAR100 = Variant(100, 20, "cifar-100-python", "meta",
                   {"train": ("train",), "test": ("test",)},
                   "cifar-100-binary", ("fine_label_names.txt", "coarse_label_names.txt"),
                   {"train": CIFAR100_TRAIN_ROWS, "test": ROWS_PER_BATCH})


@dataclass(frozen=True)
class Release:
    """Where a CIFAR release was found and in which format (`python` or `binary`)."""

    folder: Path
    format: str
    variant: Variant

    def meta_files(self) -> list[Path]:
        names = (self.variant.py_meta,) if self.format == "python" else self.variant.bin_meta
        return [self.folder / n for n in names]

    def batch_files(self, split: str) -> list[Path]:
        names = self.variant.py_files[split] if self.format == "python" \
            else self.variant.bin_files(split)
        return [self.folder / n for n in names]

    def names(self) -> tuple[list[str], list[str] | None]:
        """(class names, CIFAR-100 superclass names or None) from the meta file(s)."""
        v = self.variant
        if self.format == "binary":
            files = self.meta_files()
            fine = read_name_lines(files[0], v.classes)
            return fine, None if v.coarse is None else read_name_lines(files[1], v.coarse)
        path = self.meta_files()[0]
        meta = load_pickle(path)
        if v.coarse is None:
            return class_names(meta, "label_names", v.classes, path), None
        return (class_names(meta, "fine_label_names", v.classes, path),
                class_names(meta, "coarse_label_names", v.coarse, path))

    def rows_per_batch(self) -> int | None:
        """CIFAR-10 python: `num_cases_per_batch` of batches.meta (10,000 officially)."""
        if self.format != "python" or self.variant.coarse is not None:
            return None
        path = self.meta_files()[0]
        value = load_pickle(path).get("num_cases_per_batch")
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise RefbenchError(f"num_cases_per_batch must be a positive integer, found "
                                f"{value!r}", path=path, key="num_cases_per_batch")
        return value

    def read(self, split: str) -> list[Batch]:
        v = self.variant
        if self.format == "binary":
            batches = [read_binary_batch(p, v.classes, v.coarse) for p in self.batch_files(split)]
        else:
            rows = self.rows_per_batch()
            batches = [read_python_batch(p, v.classes, v.coarse, rows)
                       for p in self.batch_files(split)]
        return batches

    def read_all(self) -> dict[str, list[Batch]]:
        """Every split's batches; CIFAR-100's fine labels checked across all of them."""
        out = {split: self.read(split) for split in SPLITS}
        if self.variant.coarse is not None:
            check_coarse_consistent([b for split in SPLITS for b in out[split]])
        return out


def find_release(root: Path, variant: Variant) -> Release | None:
    """The python-format folder, else the binary one (below ROOT or ROOT itself)."""
    root = Path(root)
    for fmt, folder, meta in (("python", variant.py_folder, variant.py_meta),
                              ("binary", variant.bin_folder, variant.bin_meta[0])):
        for candidate in (root / folder, root):
            if (candidate / meta).is_file():
                return Release(candidate, fmt, variant)
    return None


class CifarBuilder(DatasetBuilder):
    """Shared reading of the CIFAR releases; subclasses name their `variant`."""

    variant: Variant
    version = "1.0"
    license = "no explicit licence (cite Krizhevsky 2009)"
    citation = ("@techreport{krizhevsky2009learning, author = {Krizhevsky, Alex}, "
                "title = {Learning Multiple Layers of Features from Tiny Images}, "
                "institution = {University of Toronto}, year = {2009}}")
    homepage = "https://www.cs.toronto.edu/~kriz/cifar.html"

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLITS)

    def layout(self) -> str:
        v = self.variant
        py = ", ".join(v.py_files["train"] + v.py_files["test"] + (v.py_meta,))
        binary = ", ".join(v.bin_files("train") + v.bin_files("test") + v.bin_meta)
        return (f"The official CIFAR release, python or binary version:\n"
                f"  ROOT/{v.py_folder}/{{{py}}}\n  ROOT/{v.bin_folder}/{{{binary}}}\n"
                f"(ROOT may be the batch folder itself)")

    def release(self, root: Path) -> Release:
        found = find_release(root, self.variant)
        if found is None:
            raise RefbenchError(f"no {self.variant.py_folder}/{self.variant.py_meta} or "
                                f"{self.variant.bin_folder}/{self.variant.bin_meta[0]} found",
                                path=root)
        return found

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        found = find_release(root, self.variant)
        if found is None:
            report.add(Path(root) / self.variant.py_folder / self.variant.py_meta,
                       f"not found (nor the binary version's {self.variant.bin_folder}/)",
                       MISSING_FILE)
            return
        paths = found.meta_files() + [p for s in SPLITS for p in found.batch_files(s)]
        missing = [p for p in paths if not p.exists()]
        for path in missing:
            report.add(path, "not found", MISSING_FILE)
        report.found.extend(str(p.relative_to(root)) for p in paths if p.exists())
        if missing:
            return
        try:
            found.names()
            batches = found.read_all()
            for split in SPLITS:
                rows = sum(len(b.labels) for b in batches[split])
                official = self.variant.official_rows[split]
                if rows != official:
                    report.hint(f"{split}: {rows:,} images (the official release has "
                                f"{official:,})")
        except RefbenchError as exc:
            report.problems.append(Problem.from_error(exc, found.folder))

    def source_files(self, root: Path, config: str) -> list[Path]:
        found = self.release(Path(root))
        return found.meta_files() + [p for s in SPLITS for p in found.batch_files(s)]

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        import datasets as hf

        self.resolve_configs([config])
        found = self.release(Path(root))
        for path in self.source_files(root, config):
            if not path.exists():
                raise RefbenchError("missing file", path=path)
        fine, coarse = found.names()
        extra = {"filename": hf.Value("string")}
        if coarse is not None:
            extra["coarse_label"] = hf.ClassLabel(names=coarse)
        out = {}
        batches = found.read_all()
        for split in SPLITS:
            rows = {**empty_rows(), **{k: [] for k in extra}}
            for batch in batches[split]:
                stem = batch.path.name.removesuffix(".bin")
                for row, (pixels, label) in enumerate(zip(batch.images(), batch.labels)):
                    rows["id"].append(f"{stem}/{row:05d}")
                    rows["image"].append({"bytes": encode_png(pixels), "path": None})
                    rows["label"].append(int(label))
                    rows["class_name"].append(fine[label])
                    rows["filename"].append(batch.filenames[row])
                    if batch.coarse is not None:
                        rows["coarse_label"].append(int(batch.coarse[row]))
            out[split] = rows_to_dataset(rows, fine, split, extra)
        return out

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.cifar.synth import synthesize_cifar

        return synthesize_cifar(Path(out), self.variant, n=n, seed=seed)


@DATASETS.register("cifar10")
class Cifar10Builder(CifarBuilder):
    """CIFAR-10: 10 classes, 50,000 train and 10,000 test 32x32 images."""

    name = "cifar10"
    variant = CIFAR10


@DATASETS.register("cifar100")
class Cifar100Builder(CifarBuilder):
    """CIFAR-100: 100 fine classes in 20 superclasses, 50,000 train and 10,000 test images."""

    name = "cifar100"
    variant = CIFAR100
