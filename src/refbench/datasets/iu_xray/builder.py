"""IU X-ray (Open-i, Indiana University chest X-rays) in its three public layouts.

```
config r2gen (default)   ROOT/annotation.json                 R2Gen split (train/val/test)
                         ROOT/images/<id>/<k>.png             optional images
                         ROOT/NLMCXR_reports.tgz or ecgen-radiology/   optional: the
                                                              other report sections
config openi             ROOT/NLMCXR_reports.tgz  or  ROOT/ecgen-radiology/<n>.xml
                         ROOT/NLMCXR_png/<image id>.png       optional images
config kaggle            ROOT/indiana_reports.csv + ROOT/indiana_projections.csv
                         ROOT/images/images_normalized/<filename>   optional images
```

`prepare` without `--config` prepares every layout found in the root (auto-detect); with
`--config` the named ones, whose files must be there.

Rows (every config, every split): `study_id`, `uid` (readers.py: how ids map),
`report` (the scored text: R2Gen's `report`, which equals the Open-i FINDINGS; for
`openi`/`kaggle` the FINDINGS text), `findings`, `impression`, `indication`,
`comparison` ("" when absent), `mesh` (MeSH major terms as written), `terms` (their
normalised descriptors), `image_paths` (relative to the root; the expected place when a
file is absent), `has_images` (every image of the study is a file under the root) and
`images`: `Sequence(Image(decode=False))` holding each image's bytes (and its relative
path) when `has_images`, else empty, so the prepared cache is self-contained.

Splits: `r2gen` uses R2Gen's split (aliases `val` and the four-space key of the
SERPENT-VLM copy). Open-i has no split, so `openi` and `kaggle` apply `hash_split`
(sha256 of the uid: 7:1:2), identical for both layouts and reproducible anywhere; use
`r2gen` for numbers comparable to published tables.

Counted skips (never errors, shown by `check`): reports with empty FINDINGS, Kaggle image
rows whose uid has no report, PNGs in `NLMCXR_png/` that belong to no report. Errors
(one line naming file and line or key): missing files, a folder in a file's place, bad
UTF-8, malformed XML/JSON/CSV, an XML without a FINDINGS section, duplicate ids, empty
R2Gen reports, unreadable or truncated images.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from refbench.datasets.base import (
    MISSING_FILE,
    CheckReport,
    DatasetBuilder,
    Problem,
    subfolders,
)
from refbench.datasets.iu_xray.readers import (
    ANNOTATION,
    PROJECTIONS_CSV,
    REPORTS_CSV,
    XML_ARCHIVE,
    XML_FOLDER,
    Reading,
    Study,
    openi_sections,
    read_kaggle,
    read_openi,
    read_r2gen,
)
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

CONFIGS = ("r2gen", "openi", "kaggle")
SPLITS = ("train", "validation", "test")
#: the file(s) whose presence selects each config
MARKERS: dict[str, tuple[str, ...]] = {"r2gen": (ANNOTATION,),
                                       "openi": (XML_ARCHIVE, XML_FOLDER),
                                       "kaggle": (REPORTS_CSV,)}
_PNG = b"\x89PNG\r\n\x1a\n"


def features() -> hf_datasets.Features:
    """The explicit features of every config and split."""
    import datasets as hf

    text = hf.Value("string")
    return hf.Features({
        "study_id": text, "uid": text, "report": text, "findings": text,
        "impression": text, "indication": text, "comparison": text,
        "mesh": hf.Sequence(text), "terms": hf.Sequence(text),
        "image_paths": hf.Sequence(text), "has_images": hf.Value("bool"),
        "images": hf.Sequence(hf.Image(decode=False)),
    })


def detect_configs(root: Path) -> list[str]:
    """The layouts present in `root`, in `CONFIGS` order."""
    return [c for c in CONFIGS if any((Path(root) / m).exists() for m in MARKERS[c])]


def read_config(root: Path, config: str) -> Reading:
    """The studies of one layout (R2Gen rows get the Open-i sections when they are here)."""
    if config == "r2gen":
        return read_r2gen(root, openi_sections(root))
    if config == "openi":
        return read_openi(root)
    return read_kaggle(root)


def image_bytes(root: Path, rel: str) -> bytes:
    """The bytes of one image, checked to be a complete PNG or JPEG (Pillow verifies)."""
    import PIL.Image

    path = Path(root) / rel
    data = path.read_bytes()
    if not (data.startswith(_PNG) or data.startswith(b"\xff\xd8")):
        raise RefbenchError("not a PNG or JPEG image", path=path)
    try:
        import io

        with PIL.Image.open(io.BytesIO(data)) as img:
            img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"unreadable or truncated image: {exc}", path=path) from None
    return data


def has_all_images(root: Path, study: Study) -> bool:
    return bool(study.image_paths) and all((Path(root) / p).is_file()
                                           for p in study.image_paths)


def study_row(root: Path, study: Study) -> dict[str, Any]:
    """One dataset row (images read only when all of the study's are present)."""
    present = has_all_images(root, study)
    images = ([{"bytes": image_bytes(root, p), "path": p} for p in study.image_paths]
              if present else [])
    return {"study_id": study.study_id, "uid": study.uid, "report": study.report,
            "findings": study.findings, "impression": study.impression,
            "indication": study.indication, "comparison": study.comparison,
            "mesh": list(study.mesh), "terms": list(study.terms),
            "image_paths": list(study.image_paths), "has_images": present, "images": images}


def rows_to_dataset(rows: list[dict[str, Any]], split: str) -> hf_datasets.Dataset:
    import datasets as hf

    feats = features()
    columns = {name: [row[name] for row in rows] for name in feats}
    return hf.Dataset.from_dict(columns, features=feats, split=hf.NamedSplit(split))


def _skip_lines(config: str, reading: Reading) -> list[str]:
    total = len(reading.studies) + sum(len(v) for k, v in reading.skipped.items()
                                       if not k.startswith("image"))
    lines = []
    for reason, where in reading.skipped.items():
        of = "" if reason.startswith("image") else f" of {total:,}"
        lines.append(f"{config}: skipped {len(where):,}{of} ({reason}; first: {where[0]})")
    if reading.unmatched_images:
        lines.append(f"{config}: {len(reading.unmatched_images):,} image file(s) match no "
                     f"report and are skipped (first: {reading.unmatched_images[0]})")
    return lines


_CITATION = """@article{demner2016preparing,
  title   = {Preparing a collection of radiology examinations for distribution and retrieval},
  author  = {Demner-Fushman, Dina and Kohli, Marc D and Rosenman, Marc B and Shooshan, Sonya E and Rodriguez, Laritza and Antani, Sameer and Thoma, George R and McDonald, Clement J},
  journal = {Journal of the American Medical Informatics Association},
  volume  = {23}, number = {2}, pages = {304--310}, year = {2016}
}
@inproceedings{chen2020generating,
  title     = {Generating Radiology Reports via Memory-driven Transformer},
  author    = {Chen, Zhihong and Song, Yan and Chang, Tsung-Hui and Wan, Xiang},
  booktitle = {Proceedings of EMNLP}, pages = {1439--1449}, year = {2020}
}"""


@DATASETS.register("iu_xray")
class IUXrayBuilder(DatasetBuilder):
    """IU X-ray reports (configs `r2gen`, `openi`, `kaggle`; splits train/validation/test)."""

    name = "iu_xray"
    version = "1.0"
    license = "CC BY-NC-ND 4.0 (Open-i / Indiana University; non-commercial, no derivatives)"
    citation = _CITATION
    homepage = "https://openi.nlm.nih.gov/faq#collection"
    split_aliases: ClassVar[dict[str, str]] = {"val": "validation", "    ": "test"}

    def configs(self) -> list[str]:
        return list(CONFIGS)

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return list(SPLITS)

    def layout(self) -> str:
        return ("IU X-ray (Open-i), one of three layouts in ROOT (prepare detects which):\n"
                f"  r2gen:  {ANNOTATION} (R2Gen split; keys train/val/test, '    ' read as "
                "test) + optional images/<id>/<k>.png; Open-i reports beside it fill the "
                "other sections\n"
                f"  openi:  {XML_ARCHIVE} or {XML_FOLDER}/<n>.xml + optional "
                "NLMCXR_png/<image id>.png (split: sha256 of the uid, 7:1:2)\n"
                f"  kaggle: {REPORTS_CSV} + {PROJECTIONS_CSV} + optional "
                "images/images_normalized/<filename> (same split as openi)\n"
                "  scored report = FINDINGS; studies with empty FINDINGS are skipped and "
                "counted")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        root = Path(root)
        found = detect_configs(root)
        chosen = found if sorted(configs) == sorted(CONFIGS) else configs
        if not chosen:
            for config in CONFIGS:
                report.add(root / MARKERS[config][0], f"not found ({config} layout)",
                           MISSING_FILE)
            below = next((f for f in subfolders(root) if detect_configs(f)), None)
            if below is not None:
                report.hint(f"{below} holds IU X-ray files: use --root {below}")
            return
        for config in chosen:
            if config not in found:
                report.add(root / MARKERS[config][0], f"not found ({config} layout)",
                           MISSING_FILE)
                continue
            try:
                reading = read_config(root, config)
            except RefbenchError as exc:
                report.problems.append(Problem.from_error(exc, root))
                continue
            report.found.append(f"{config}: {len(reading.studies):,} studies")
            for line in _skip_lines(config, reading):
                report.hint(line)
            with_images = sum(has_all_images(root, s) for s in reading.studies)
            report.hint(f"{config}: {with_images:,} of {len(reading.studies):,} studies have "
                        f"all their images under the root")
        if "r2gen" in chosen and "openi" not in found:
            report.hint(f"r2gen: no Open-i reports here, so findings = report and impression,"
                        f" indication, comparison, terms are empty; put {XML_ARCHIVE} beside "
                        f"{ANNOTATION} to fill them")

    def source_files(self, root: Path, config: str) -> list[Path]:
        root = Path(root)
        if config == "r2gen":
            names = [ANNOTATION] + ([XML_ARCHIVE] if not (root / XML_FOLDER).is_dir() else [])
        elif config == "openi":
            if (root / XML_FOLDER).is_dir():
                return sorted((root / XML_FOLDER).glob("*.xml"))
            names = [XML_ARCHIVE]
        else:
            names = [REPORTS_CSV, PROJECTIONS_CSV]
        out = [root / n for n in names if (root / n).is_file()]
        if config == "r2gen" and (root / XML_FOLDER).is_dir():
            out += sorted((root / XML_FOLDER).glob("*.xml"))
        return out

    def prepare(self, root: Path, cache: Path | None = None, configs: list[str] | None = None,
                progress: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Prepare the named configs, or (none named) every layout found in `root`."""
        if not configs and Path(root).is_dir():
            configs = detect_configs(Path(root))
            if not configs:
                raise RefbenchError(f"no IU X-ray layout found ({ANNOTATION}, {XML_ARCHIVE} "
                                    f"or {XML_FOLDER}/, {REPORTS_CSV}); see `refbench datasets "
                                    f"check iu_xray`", path=root)
        return super().prepare(root, cache, configs, progress, **kwargs)

    def generate(self, root: Path, config: str) -> dict[str, hf_datasets.Dataset]:
        self.resolve_configs([config])
        root = Path(root)
        reading = read_config(root, config)
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for study in reading.studies:
            rows[study.split].append(study_row(root, study))
        return {split: rows_to_dataset(items, split) for split, items in rows.items()}

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.iu_xray.synth import synthesize_iu_xray

        return synthesize_iu_xray(Path(out), n=n, seed=seed)
