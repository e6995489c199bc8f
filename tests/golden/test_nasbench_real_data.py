"""Ranking metrics on the real NAS-Bench-Macro table and NASLib's zero-cost files (read
from the shared data folder, never copied into the repository).

Pinned values were computed with refbench and equal `scipy.stats.kendalltau` /
`spearmanr` (1.17) on the same arrays, which each test recomputes: Kendall tau-b between
seeds 0 and 1 of NAS-Bench-Macro = 0.88195, between params and mean accuracy = 0.21764;
on NAS-Bench-201 CIFAR-10, nwot vs validation accuracy tau-b = 0.59345 and rho = 0.78682,
synflow rho = 0.73587 (the data's notes give 0.882, 0.218, 0.593, 0.787, 0.736).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.base import load_prepared
from refbench.datasets.nasbench import NasBenchMacroBuilder, NaslibZeroCostBuilder
from refbench.evaluation.ranking import kendall_tau, spearman_rho
from refbench.registry import get_spec


@pytest.fixture(scope="module")
def macro_dir(shared_data: Path) -> Path:
    folder = shared_data / "nasbench" / "nas-bench-macro"
    if not (folder / "nas-bench-macro_cifar10.json").is_file():
        pytest.skip(f"NAS-Bench-Macro file not found in {folder}")
    return folder


@pytest.fixture(scope="module")
def naslib_dir(shared_data: Path) -> Path:
    folder = shared_data / "nasbench" / "naslib_zc"
    if not (folder / "zc_nasbench201.json").is_file():
        pytest.skip(f"NASLib zero-cost files not found in {folder}")
    return folder


@pytest.fixture(scope="module")
def macro(macro_dir: Path) -> dict:
    return json.loads((macro_dir / "nas-bench-macro_cifar10.json").read_text())


def test_macro_prepares_every_architecture(macro_dir: Path, tmp_path: Path) -> None:
    builder = NasBenchMacroBuilder()
    assert builder.check(macro_dir).ok
    builder.prepare(macro_dir, tmp_path)
    rows = load_prepared("nasbench_macro", split="test", cache_dir=str(tmp_path))
    assert len(rows) == 6561 == 3 ** 8
    assert len(set(rows["arch"])) == 6561
    first = rows[0]
    assert first["arch"] == "02012100" and first["choices"] == [0, 2, 0, 1, 2, 1, 0, 0]
    assert first["test_acc"] == pytest.approx([89.47000122070312, 88.94999694824219,
                                               89.16999816894531])
    assert (first["params"], first["flops"]) == (890666, 47327744)
    # ties are common: only 2,331 distinct mean accuracies
    assert len(set(rows["mean_acc"])) == 2331


def test_macro_seed_to_seed_tau(macro: dict) -> None:
    seeds = np.array([v["test_acc"] for v in macro.values()])
    tau01 = kendall_tau(seeds[:, 0], seeds[:, 1])
    assert tau01 == pytest.approx(0.8819503052616822, abs=1e-12)
    assert tau01 == pytest.approx(scipy.stats.kendalltau(seeds[:, 0], seeds[:, 1]).statistic,
                                  abs=1e-12)
    assert kendall_tau(seeds[:, 1], seeds[:, 0]) == tau01  # symmetric: order-free
    assert kendall_tau(seeds[:, 0], seeds[:, 2]) == pytest.approx(0.8799778984347189, abs=1e-12)
    assert spearman_rho(seeds[:, 0], seeds[:, 1]) == pytest.approx(
        scipy.stats.spearmanr(seeds[:, 0], seeds[:, 1]).statistic, abs=1e-12)


def test_macro_params_as_a_proxy_through_the_benchmark(macro: dict, macro_dir: Path,
                                                       tmp_path: Path) -> None:
    mean = np.array([v["mean_acc"] for v in macro.values()])
    params = np.array([v["params"] for v in macro.values()], dtype=float)
    sub = tmp_path / "scores.txt"
    sub.write_text("".join(f"{arch}\t{v['params']}\n" for arch, v in macro.items()))
    result = evaluate_file("nasbench-macro-ranking", sub, references=macro_dir, strict=True)
    assert result.metrics["kendall_tau_b"] == pytest.approx(0.21764196901860966, abs=1e-12)
    assert result.metrics["kendall_tau_b"] == pytest.approx(
        scipy.stats.kendalltau(mean, params).statistic, abs=1e-12)
    assert result.metrics["kendall_tau_c"] == pytest.approx(
        scipy.stats.kendalltau(mean, params, variant="c").statistic, abs=1e-12)
    assert result.metrics["spearman_rho"] == pytest.approx(
        scipy.stats.spearmanr(mean, params).statistic, abs=1e-12)
    assert result.counts["architectures/scored"] == 6561
    assert result.metrics["ground_truth/best"] == pytest.approx(mean.max())


def test_macro_missing_architecture_is_refused(macro: dict, macro_dir: Path,
                                               tmp_path: Path) -> None:
    from refbench.errors import RefbenchError

    sub = tmp_path / "scores.txt"
    sub.write_text("".join(f"{arch}\t{v['params']}\n" for arch, v in list(macro.items())[1:]))
    with pytest.raises(RefbenchError, match="1 id\\(s\\) of the references have no prediction"):
        evaluate_file("nasbench-macro-ranking", sub, references=macro_dir)


def test_naslib_zero_cost_proxies(naslib_dir: Path, tmp_path: Path) -> None:
    builder = NaslibZeroCostBuilder()
    assert builder.check(naslib_dir).ok
    builder.prepare(naslib_dir, tmp_path)
    sizes = {c: len(load_prepared("naslib_zerocost", split="validation", config=c,
                                  cache_dir=str(tmp_path))) for c in builder.configs()}
    assert sizes == {"nb201-cifar10": 724, "nb201-cifar100": 725,
                     "nb201-imagenet16-120": 724, "nb101-cifar10": 500}
    rows = load_prepared("naslib_zerocost", split="validation", config="nb201-cifar10",
                         cache_dir=str(tmp_path))
    acc, nwot = np.array(rows["val_accuracy"]), np.array(rows["nwot"])
    assert np.isneginf(nwot).sum() == 1  # the official file's -Infinity (one per dataset), kept
    assert kendall_tau(acc, nwot) == pytest.approx(0.5934457517554349, abs=1e-12)
    assert kendall_tau(acc, nwot) == pytest.approx(scipy.stats.kendalltau(acc, nwot).statistic,
                                                   abs=1e-12)
    assert spearman_rho(acc, nwot) == pytest.approx(0.786822930599039, abs=1e-12)
    synflow = np.array(rows["synflow"])
    assert spearman_rho(acc, synflow) == pytest.approx(0.7358652523828024, abs=1e-12)
    # the same through the format and the scorer, on a spec for this table
    spec = get_spec("nasbench-macro-ranking")
    spec = dataclasses.replace(
        spec, name="nb201-cifar10-ranking",
        dataset=dataclasses.replace(spec.dataset, name="naslib_zerocost", config="nb201-cifar10"),
        train_split="validation", split="validation",
        metric=dataclasses.replace(spec.metric, args=(("ks", [10]), ("sample_size", 724))))
    sub = tmp_path / "nwot.txt"
    sub.write_text("".join(f"{a}\t{s!r}\n" for a, s in zip(rows["arch"], rows["nwot"])))
    result = evaluate_file(spec, sub, references=naslib_dir)
    assert result.metrics["kendall_tau_b"] == pytest.approx(0.5934457517554349, abs=1e-12)
