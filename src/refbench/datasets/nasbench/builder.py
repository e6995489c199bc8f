"""Dataset builders of the tabular NAS benchmarks: architecture -> ground-truth tables that
ranking benchmarks score predicted architecture scores against.

- `nasbench_macro`: the complete NAS-Bench-Macro (`nas-bench-macro_cifar10.json` in the
  root): one split, `test` (the accuracies are CIFAR-10 test accuracies), a row per
  architecture: `arch` (8 digits), `choices` (the 8 block choices), `test_acc` (3 seeds),
  `mean_acc`, `std`, `params`, `flops`.
- `naslib_zerocost`: NASLib's NAS-Bench-Suite-Zero files (`zc_nasbench201.json`,
  `zc_nasbench101.json` in the root), one config per table (`nb201-cifar10`,
  `nb201-cifar100`, `nb201-imagenet16-120`, `nb101-cifar10`), one split, `validation`
  (the accuracies are validation accuracies): `arch` (NASLib's tuple string), `idx`
  (NAS-Bench-201's index, -1 for 101), `val_accuracy`, each proxy's score and, for
  NAS-Bench-201, its `<proxy>_seconds`.

Nothing trains on these tables (a supernet trains on the images); a ranking benchmark's
`train_split` is the scored split itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from refbench.datasets.base import MISSING_FILE, CheckReport, DatasetBuilder, Problem
from refbench.datasets.nasbench.readers import (
    MACRO_FILE,
    NASLIB_CONFIGS,
    PROXIES_201,
    read_macro_file,
    read_naslib_table,
)
from refbench.errors import RefbenchError
from refbench.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

_MACRO_CITATION = """@inproceedings{su2021prioritized,
  title = {Prioritized Architecture Sampling with Monto-Carlo Tree Search},
  author = {Su, Xiu and Huang, Tao and Li, Yanxi and You, Shan and Wang, Fei and Qian, Chen
            and Zhang, Changshui and Xu, Chang},
  booktitle = {Proceedings of CVPR},
  year = {2021}
}"""
_NASLIB_CITATION = """@inproceedings{krishnakumar2022bench,
  title = {{NAS-Bench-Suite-Zero}: Accelerating Research on Zero Cost Proxies},
  author = {Krishnakumar, Arjun and White, Colin and Zela, Arber and Tu, Renbo and
            Safari, Mahmoud and Hutter, Frank},
  booktitle = {NeurIPS Datasets and Benchmarks Track},
  year = {2022}
}"""


def macro_features() -> "hf_datasets.Features":
    import datasets as hf

    return hf.Features({"arch": hf.Value("string"), "choices": hf.Sequence(hf.Value("int8")),
                        "test_acc": hf.Sequence(hf.Value("float64")),
                        "mean_acc": hf.Value("float64"), "std": hf.Value("float64"),
                        "params": hf.Value("int64"), "flops": hf.Value("int64")})


def naslib_features(config: str) -> "hf_datasets.Features":
    import datasets as hf

    _, _, space, proxies = NASLIB_CONFIGS[config]
    cols: dict[str, Any] = {"arch": hf.Value("string"), "idx": hf.Value("int64"),
                            "val_accuracy": hf.Value("float64")}
    cols.update({p: hf.Value("float64") for p in proxies})
    if space == "nas-bench-201":
        cols.update({f"{p}_seconds": hf.Value("float64") for p in proxies})
    return hf.Features(cols)


def rows_to_dataset(rows: list[dict[str, Any]], features: "hf_datasets.Features",
                    split: str) -> "hf_datasets.Dataset":
    import datasets as hf

    columns = {name: [row[name] for row in rows] for name in features}
    return hf.Dataset.from_dict(columns, features=features, split=hf.NamedSplit(split))


def _check_file(path: Path, read: Any, report: CheckReport, what: str) -> None:
    if not path.is_file():
        message = f"missing {what} {path.name}" + (" (found a folder)" if path.is_dir() else "")
        report.add(path, message, MISSING_FILE)
        return
    report.found.append(path.name)
    try:
        read(path)
    except RefbenchError as exc:
        report.problems.append(Problem.from_error(exc, path))


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise RefbenchError(f"missing {what}" + (" (found a folder)" if path.is_dir() else ""),
                            path=path)
    return path


@DATASETS.register("nasbench_macro")
class NasBenchMacroBuilder(DatasetBuilder):
    """NAS-Bench-Macro: 6,561 CIFAR-10 architectures x 3 seeds (split `test`)."""

    name = "nasbench_macro"
    version = "1.0"
    license = "Apache-2.0 (released by the benchmark's authors)"
    citation = _MACRO_CITATION
    homepage = "https://github.com/xiusu/NAS-Bench-Macro"

    def configs(self) -> list[str]:
        return ["default"]

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return ["test"]

    def layout(self) -> str:
        return (f"One folder holding the benchmark file under its official name:\n"
                f"  {MACRO_FILE}   {{arch: {{test_acc: [3 seeds], mean_acc, std, params, "
                f"flops}}}}, arch = 8 digits in 0-2")

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        _check_file(root / MACRO_FILE, read_macro_file, report, "NAS-Bench-Macro file")

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        rows = read_macro_file(_require(Path(root) / MACRO_FILE, "NAS-Bench-Macro file"))
        return {"test": rows_to_dataset(rows, macro_features(), "test")}

    def source_files(self, root: Path, config: str) -> list[Path]:
        return [_require(Path(root) / MACRO_FILE, "NAS-Bench-Macro file")]

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.nasbench.synth import synthesize_macro

        return synthesize_macro(Path(out), n=n, seed=seed)


@DATASETS.register("naslib_zerocost")
class NaslibZeroCostBuilder(DatasetBuilder):
    """NASLib's zero-cost proxy tables (NAS-Bench-Suite-Zero) for NAS-Bench-201 and -101:
    validation accuracy plus 11-12 proxy scores per architecture (split `validation`)."""

    name = "naslib_zerocost"
    version = "1.0"
    license = "Apache-2.0 (NASLib; accuracies from NAS-Bench-201 / NAS-Bench-101)"
    citation = _NASLIB_CITATION
    homepage = "https://github.com/automl/NASLib"

    def configs(self) -> list[str]:
        return list(NASLIB_CONFIGS)

    def splits(self, config: str) -> list[str]:
        self.resolve_configs([config])
        return ["validation"]

    def layout(self) -> str:
        lines = ["One folder holding NASLib's files under their official names:"]
        for config, (file, inside, space, proxies) in NASLIB_CONFIGS.items():
            lines.append(f"  {file} [{'.'.join(inside)}]   config {config} ({space}, "
                         f"{len(proxies)} proxies)")
        lines.append(f"Proxies: {', '.join(PROXIES_201)} (NAS-Bench-101 has no nwot).")
        return "\n".join(lines)

    def check_files(self, root: Path, configs: list[str], report: CheckReport) -> None:
        for config in configs:
            file = NASLIB_CONFIGS[config][0]
            _check_file(root / file, lambda p, c=config: read_naslib_table(p, c), report,
                        f"NASLib file (config {config})")

    def generate(self, root: Path, config: str) -> dict[str, "hf_datasets.Dataset"]:
        path = self.source_files(root, config)[0]
        rows = read_naslib_table(path, config)
        return {"validation": rows_to_dataset(rows, naslib_features(config), "validation")}

    def source_files(self, root: Path, config: str) -> list[Path]:
        file = NASLIB_CONFIGS[self.resolve_configs([config])[0]][0]
        return [_require(Path(root) / file, f"NASLib file (config {config})")]

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.nasbench.synth import synthesize_naslib

        return synthesize_naslib(Path(out), n=n, seed=seed)
