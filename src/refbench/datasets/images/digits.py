"""`digits`: scikit-learn's bundled handwritten digits, real images without a download.

scikit-learn ships `sklearn/datasets/data/digits.csv.gz`: 1,797 rows of 65 comma-separated
integers, the 8x8 block counts (0-16, row-major) of a UCI "optdigits" scan followed by
the digit. `load_digits` reads that file; this builder reads the same file from ROOT:

```
ROOT/digits.csv.gz   (or ROOT/digits.csv)
```

`refbench datasets synthesize digits --out DIR` copies the bundled file (real data, not
synthetic) into DIR, so `prepare --root DIR` needs nothing else. Each image is stored as
an 8x8 greyscale PNG whose pixel is round(count * 255 / 16), so 16 maps to 255 and the
17 grey levels stay distinct; `id` is the row number (`00000`..`01796`).

The split is fixed and documented, interleaved so that every part mixes the file's
writers and classes: row i goes to `test` when i % 5 == 4, to `validation` when
i % 5 == 3, else to `train` (1,079 / 359 / 359 rows of the bundled file).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from refbench.datasets.base import MISSING_FILE, CheckReport, DatasetBuilder, Problem
from refbench.datasets.images.schema import empty_rows, encode_png, rows_to_dataset
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

FILES = ("digits.csv.gz", "digits.csv")
SIDE = 8
MAX_COUNT = 16
NAMES = tuple(str(d) for d in range(10))
SPLITS = ("train", "validation", "test")


def bundled_file() -> Path:
    """scikit-learn's copy of the digits file (scikit-learn is a core dependency)."""
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "data" / FILES[0]


def digits_file(root: Path) -> Path | None:
    """The digits file in ROOT (the gzip first), None when there is none."""
    return next((Path(root) / n for n in FILES if (Path(root) / n).is_file()), None)


def split_of(row: int) -> str:
    """The documented split of row `row` (0-based)."""
    return "test" if row % 5 == 4 else "validation" if row % 5 == 3 else "train"


def read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """`(pixels (n, 8, 8) uint8 counts 0-16, labels (n,) int64)`; any malformed line is a
    `RefbenchError` naming it."""
    opener = gzip.open if path.name.endswith(".gz") else open
    pixels: list[list[int]] = []
    labels: list[int] = []
    try:
        with opener(path, "rt", encoding="ascii", newline="") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.rstrip("\r\n")
                if not text:
                    continue
                fields = text.split(",")
                if len(fields) != SIDE * SIDE + 1:
                    raise RefbenchError(f"expected {SIDE * SIDE + 1} comma-separated values, "
                                        f"found {len(fields)}", path=path, line=number)
                try:
                    values = [float(f) for f in fields]
                except ValueError:
                    raise RefbenchError("a value is not a number", path=path,
                                        line=number) from None
                if not all(v.is_integer() for v in values):  # NaN and inf are not integers
                    raise RefbenchError("values must be whole numbers (no NaN)", path=path,
                                        line=number)
                *counts, label = (int(v) for v in values)
                if not all(0 <= c <= MAX_COUNT for c in counts):
                    raise RefbenchError(f"a pixel count lies outside 0..{MAX_COUNT}", path=path,
                                        line=number)
                if not 0 <= label <= 9:
                    raise RefbenchError(f"digit label {label} is not 0-9", path=path,
                                        line=number)
                pixels.append(counts)
                labels.append(label)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"unreadable digits file ({exc})", path=path) from None
    if not labels:
        raise RefbenchError("no digit rows", path=path)
    return (np.asarray(pixels, np.uint8).reshape(-1, SIDE, SIDE),
            np.asarray(labels, np.int64))


def to_grey(counts: np.ndarray) -> np.ndarray:
    """Block counts 0-16 as 0-255 grey levels (round(count * 255 / 16))."""
    return np.rint(counts.astype(np.float64) * 255.0 / MAX_COUNT).astype(np.uint8)


@DATASETS.register("digits")
class DigitsBuilder(DatasetBuilder):
    """scikit-learn's 1,797 real 8x8 digit scans (config `default`; train, validation, test)."""

    name = "digits"
    version = "1.0"
    license = "CC BY 4.0 (UCI Optical Recognition of Handwritten Digits); BSD-3 as bundled"
    citation = ("@misc{alpaydin1998optdigits, author = {Alpaydin, E. and Kaynak, C.}, "
                "title = {Optical Recognition of Handwritten Digits}, year = {1998}, "
                "howpublished = {UCI Machine Learning Repository}, "
                "doi = {10.24432/C50P49}}")
    homepage = "https://archive.ics.uci.edu/dataset/80"

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLITS)

    def layout(self) -> str:
        return ("scikit-learn's digits file: ROOT/digits.csv.gz (or digits.csv), 65 integers "
                "per line (64 block counts 0-16, then the digit).\n"
                "`refbench datasets synthesize digits --out DIR` copies the bundled file.")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        path = digits_file(root)
        if path is None:
            report.add(root / FILES[0], "not found", MISSING_FILE)
            report.hint(f"scikit-learn bundles it: {bundled_file()} (or run `refbench datasets "
                        f"synthesize digits --out DIR`, which copies it)")
            return
        report.found.append(path.name)
        try:
            read_digits(path)
        except RefbenchError as exc:
            report.problems.append(Problem.from_error(exc, path))

    def source_files(self, root: Path, config: str) -> list[Path]:
        path = digits_file(root)
        return [] if path is None else [path]

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        self.resolve_configs([config])
        path = digits_file(Path(root))
        if path is None:
            raise RefbenchError("missing file digits.csv.gz", path=Path(root) / FILES[0])
        pixels, labels = read_digits(path)
        rows = {split: empty_rows() for split in SPLITS}
        for i, (counts, label) in enumerate(zip(pixels, labels)):
            part = rows[split_of(i)]
            part["id"].append(f"{i:05d}")
            part["image"].append({"bytes": encode_png(to_grey(counts)), "path": None})
            part["label"].append(int(label))
            part["class_name"].append(NAMES[label])
        return {split: rows_to_dataset(rows[split], NAMES, split) for split in SPLITS}

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        """Copy scikit-learn's real digits file into `out` (all 1,797 rows: `n` and `seed`
        are ignored, the data are real)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        source = bundled_file()
        if not source.is_file():
            raise RefbenchError("scikit-learn's bundled digits file is missing", path=source)
        tmp = out / f".{FILES[0]}.tmp"
        shutil.copyfile(source, tmp)
        tmp.replace(out / FILES[0])
        return out
