"""COVID-19 CT (gated) and CX-CHR (private): Chinese report datasets in one layout.

Both read the layout of `layout.py` (reports.jsonl, terms.txt, splits/, images/); refbench
never downloads either. Rows of both: `study_id`, `patient_id`, `report` (the Chinese
findings text: what the benchmark scores), `findings`, `impression` ("" when absent),
`terms` (terminology labels, Sequence(str)), `image_paths` (root-relative, in slice or
view order).

**COVID-19 CT** (`covid19_ct`) adds a fixed-size volume, so every study batches alike:
`slices` is `Array4D((NUM_SLICES, 2, SLICE_SIZE, SLICE_SIZE), uint8)`: `NUM_SLICES` (16)
slices spread evenly over the ordered series (`dicom.sample_indices`), each resized to
`SLICE_SIZE` (128) square, channel 0 through the lung window (-600/1500), channel 1
through the mediastinal window (40/400). DICOM series are converted to HU and ordered by
`dicom.py`; PNG/JPG slices (already windowed by whoever exported them; no HU) fill both
channels with their gray values and are ordered by name. Also kept: `source_format`
(`dicom`, `png`, `jpg`), `num_source_slices`, `spacing` (z, row, col in mm; 0 when
unknown), `slice_thickness` (mm; 0 when unknown) and `series_problems` (uneven spacing,
missing slices, ...: reported and kept, not fatal).

**CX-CHR** (`cx_chr`) adds `images`: `Sequence(Image(decode=False))` with each view's
original PNG/JPG bytes, as the IU X-ray builder stores them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.datasets.base import MISSING_FILE, CheckReport, DatasetBuilder, Problem
from refbench.datasets.chinese_reports.layout import (
    RASTER,
    REPORTS,
    SPLITS,
    LayoutReading,
    ReportStudy,
    read_layout,
)
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

NUM_SLICES = 16
SLICE_SIZE = 128


def _text_features() -> dict[str, Any]:
    import datasets as hf

    text = hf.Value("string")
    return {"study_id": text, "patient_id": text, "report": text, "findings": text,
            "impression": text, "terms": hf.Sequence(text), "image_paths": hf.Sequence(text)}


def _text_row(study: ReportStudy) -> dict[str, Any]:
    return {"study_id": study.study_id, "patient_id": study.patient_id,
            "report": study.findings, "findings": study.findings,
            "impression": study.impression, "terms": list(study.terms),
            "image_paths": list(study.image_paths)}


def _raster(path: Path) -> np.ndarray:
    """A PNG/JPG as 2-D uint8 gray values (errors name the file)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"unreadable or truncated image: {exc}", path=path) from None


def source_format(root: Path, study: ReportStudy, allow_dicom: bool = True) -> str:
    """`dicom`, `png` or `jpg` for a CT study folder (one series: mixed kinds are an
    error); for X-ray views (`allow_dicom=False`) PNG and JPG may mix (`png`/`jpg` is the
    first view's). Unknown files are errors."""
    from refbench.datasets.dicom import is_dicom

    kinds = set()
    for rel in study.image_paths:
        path = Path(root) / rel
        suffix = path.suffix.lower()
        if suffix in RASTER:
            kinds.add("jpg" if suffix in (".jpg", ".jpeg") else "png")
        elif allow_dicom and is_dicom(path):
            kinds.add("dicom")
        else:
            allowed = "a DICOM file, PNG or JPG" if allow_dicom else "a PNG or JPG X-ray view"
            raise RefbenchError(f"study {study.study_id}: not {allowed}", path=path)
    if not allow_dicom:
        return "jpg" if Path(study.image_paths[0]).suffix.lower() in (".jpg", ".jpeg") else "png"
    if len(kinds) > 1:
        raise RefbenchError(f"study {study.study_id} mixes {' and '.join(sorted(kinds))} "
                            f"files; a study folder holds one series", path=Path(root) /
                            Path(study.image_paths[0]).parent)
    return kinds.pop()


def ct_volume(root: Path, study: ReportStudy) -> dict[str, Any]:
    """The CT columns of one study (see the module docstring)."""
    from refbench.datasets.dicom import (
        LUNG_WINDOW,
        MEDIASTINAL_WINDOW,
        read_series,
        resize,
        sample_indices,
    )

    kind = source_format(root, study)
    files = [Path(root) / p for p in study.image_paths]
    out = np.zeros((NUM_SLICES, 2, SLICE_SIZE, SLICE_SIZE), np.uint8)
    if kind == "dicom":
        series = read_series(files)
        order = [s.path.relative_to(root).as_posix() for s in series.slices]
        for i, k in enumerate(sample_indices(len(series.slices), NUM_SLICES)):
            out[i, 0] = resize(LUNG_WINDOW.apply(series.volume[k]), SLICE_SIZE)
            out[i, 1] = resize(MEDIASTINAL_WINDOW.apply(series.volume[k]), SLICE_SIZE)
        spacing, thickness, problems = series.spacing, series.slice_thickness, series.problems
    else:
        order = list(study.image_paths)
        for i, k in enumerate(sample_indices(len(files), NUM_SLICES)):
            out[i, 0] = out[i, 1] = resize(_raster(files[k]), SLICE_SIZE)
        spacing, thickness, problems = (0.0, 0.0, 0.0), None, []
    return {"image_paths": order, "source_format": kind, "num_source_slices": len(files),
            "spacing": [float(v) for v in spacing], "slice_thickness": float(thickness or 0.0),
            "series_problems": list(problems), "slices": out}


def xray_images(root: Path, study: ReportStudy) -> dict[str, Any]:
    """The CX-CHR `images` column of one study: each view's bytes, checked to decode."""
    source_format(root, study, allow_dicom=False)
    images = []
    for rel in study.image_paths:
        data = (Path(root) / rel).read_bytes()
        _raster_bytes(data, Path(root) / rel)
        images.append({"bytes": data, "path": rel})
    return {"images": images}


def _raster_bytes(data: bytes, path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"unreadable or truncated image: {exc}", path=path) from None


class ChineseReportBuilder(DatasetBuilder):
    """The layout-reading half both builders share; subclasses add their image columns."""

    gated = True
    #: how access is obtained, shown by `check` when the layout is not there
    access: str = ""

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLITS)

    def image_features(self) -> dict[str, Any]:
        raise NotImplementedError

    def image_columns(self, root: Path, study: ReportStudy) -> dict[str, Any]:
        raise NotImplementedError

    def features(self) -> hf_datasets.Features:
        import datasets as hf

        return hf.Features({**_text_features(), **self.image_features()})

    def layout(self) -> str:
        from refbench.datasets.chinese_reports import layout

        return f"{self.access}\n{layout.__doc__}"

    def check(self, root: Path, configs: list[str] | None = None) -> CheckReport:
        report = super().check(root, configs)
        if not (Path(root) / REPORTS).is_file():
            report.hint(self.access)
        return report

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        root = Path(root)
        if not (root / REPORTS).exists():
            report.add(root / REPORTS, "not found (see the layout: refbench datasets info "
                       f"{self.name})", MISSING_FILE)
            return
        try:
            reading = read_layout(root)
        except RefbenchError as exc:
            report.problems.append(Problem.from_error(exc, root / REPORTS))
            return
        report.found.append(f"{REPORTS}: {len(reading.studies):,} studies in splits, "
                            f"{len(reading.vocabulary):,} terms")
        for reason, where in reading.skipped.items():
            report.hint(f"skipped {len(where):,} ({reason}; first: {where[0]})")
        self._check_leak(reading, report)
        flagged = 0
        for study in reading.studies:
            try:
                flagged += bool(self.check_study(root, study))
            except RefbenchError as exc:
                report.problems.append(Problem.from_error(exc, root / study.image_paths[0]))
        if flagged:
            report.hint(f"{flagged:,} series with uneven spacing or missing slices (kept; "
                        f"listed per study in the series_problems column)")

    def check_study(self, root: Path, study: ReportStudy) -> list[str]:
        """Validate one study's images cheaply; return its geometry problems."""
        source_format(root, study)
        return []

    @staticmethod
    def _check_leak(reading: LayoutReading, report: CheckReport) -> None:
        splits: dict[str, set[str]] = {}
        for study in reading.studies:
            splits.setdefault(study.patient_id, set()).add(study.split)
        leaked = sorted(p for p, s in splits.items() if len(s) > 1)
        if leaked:
            report.hint(f"{len(leaked):,} patient(s) have studies in more than one split "
                        f"(first: {leaked[0]}): scores may be optimistic")

    def source_files(self, root: Path, config: str) -> list[Path]:
        from refbench.datasets.chinese_reports.layout import SPLIT_DIR, TERMS

        root = Path(root)
        splits = sorted((root / SPLIT_DIR).glob("*.txt")) if (root / SPLIT_DIR).is_dir() else []
        return [p for p in (root / REPORTS, root / TERMS) if p.is_file()] + splits

    def generate(self, root: Path, config: str) -> dict[str, hf_datasets.Dataset]:
        import datasets as hf

        self.resolve_configs([config])
        root = Path(root)
        reading = read_layout(root)
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for study in reading.studies:
            rows[study.split].append({**_text_row(study), **self.image_columns(root, study)})
        feats = self.features()
        return {split: hf.Dataset.from_dict({k: [r[k] for r in items] for k in feats},
                                            features=feats, split=hf.NamedSplit(split))
                for split, items in rows.items()}


_COVID_CITATION = """@article{liu2021medical,
  title   = {Medical-VLBERT: Medical Visual Language BERT for COVID-19 CT Report Generation With Alternate Learning},
  author  = {Liu, Guangyi and Liao, Yinghong and Wang, Fuyu and Zhang, Bin and Zhang, Lu and Liang, Xiaodan and Wan, Xiang and Li, Shaozai and Li, Zhen and Zhang, Shuixing and Cui, Shuguang},
  journal = {IEEE Transactions on Neural Networks and Learning Systems},
  volume  = {32}, number = {9}, pages = {3786--3797}, year = {2021}
}"""


@DATASETS.register("covid19_ct")
class Covid19CTBuilder(ChineseReportBuilder):
    """COVID-19 CT report generation (gated; Chinese findings, terms, CT series)."""

    name = "covid19_ct"
    version = "1.0"
    license = "gated: research use under the dataset's signed confidentiality agreement"
    citation = _COVID_CITATION
    homepage = "https://covid19ct.github.io/"
    split_aliases = {"val": "validation"}
    access = ("COVID-19 CT is gated: download the confidentiality agreement "
              "(COVID-19_license.pdf) from https://covid19ct.github.io/, sign it and e-mail it "
              "to the contact named there; refbench never downloads the data. Then arrange "
              "it in the layout of `refbench datasets info covid19_ct` (reports.jsonl, "
              "terms.txt, splits/, images/<patient>/<study>/ DICOM or PNG/JPG slices).")

    def image_features(self) -> dict[str, Any]:
        import datasets as hf

        return {"source_format": hf.Value("string"), "num_source_slices": hf.Value("int32"),
                "spacing": hf.Sequence(hf.Value("float32"), length=3),
                "slice_thickness": hf.Value("float32"),
                "series_problems": hf.Sequence(hf.Value("string")),
                "slices": hf.Array4D(shape=(NUM_SLICES, 2, SLICE_SIZE, SLICE_SIZE),
                                     dtype="uint8")}

    def image_columns(self, root: Path, study: ReportStudy) -> dict[str, Any]:
        return ct_volume(root, study)

    def check_study(self, root: Path, study: ReportStudy) -> list[str]:
        if source_format(root, study) != "dicom":
            return []
        from refbench.datasets.dicom import read_series

        return read_series([Path(root) / p for p in study.image_paths], pixels=False).problems

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.chinese_reports.synth import synthesize_covid_ct

        return synthesize_covid_ct(Path(out), n=n, seed=seed)


@DATASETS.register("cx_chr")
class CXCHRBuilder(ChineseReportBuilder):
    """CX-CHR chest X-ray reports (private; Chinese findings, terms, X-ray views)."""

    name = "cx_chr"
    version = "1.0"
    license = "private: not released by its authors; use only under your own agreement"
    citation = _COVID_CITATION
    homepage = "https://covid19ct.github.io/"
    split_aliases = {"val": "validation"}
    access = ("CX-CHR is private: its authors have not released it and refbench cannot "
              "obtain it. If you hold a copy, arrange it in the layout of `refbench datasets "
              "info cx_chr` (reports.jsonl, terms.txt, splits/, images/<patient>/<study>/ "
              "PNG or JPG views).")

    def image_features(self) -> dict[str, Any]:
        import datasets as hf

        return {"images": hf.Sequence(hf.Image(decode=False))}

    def image_columns(self, root: Path, study: ReportStudy) -> dict[str, Any]:
        return xray_images(root, study)

    def check_study(self, root: Path, study: ReportStudy) -> list[str]:
        source_format(root, study, allow_dicom=False)
        return []

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.chinese_reports.synth import synthesize_cx_chr

        return synthesize_cx_chr(Path(out), n=n, seed=seed)
