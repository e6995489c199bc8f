"""`perf/efficientbert_search.py --spread`: criterion (1) of the tiny setting, do random
same-budget architectures differ by more than training-seed noise? The statistics are
checked against hand-computed values on a fake trainer (no training, runs in milliseconds)."""

from __future__ import annotations

import importlib.util
import statistics
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

PERF = Path(__file__).resolve().parents[2] / "perf" / "efficientbert_search.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("efficientbert_search_perf", PERF)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class _Arch:
    strings: list[str]


@dataclass
class _Run:
    metric: float | None


class _FakeTrainer:
    """Architecture i trained with seed s scores TABLE[i][s // 1000]."""

    def __init__(self, table: list[list[float | None]]) -> None:
        self.table = table

    def random_architectures(self, count: int, seed: int) -> list[_Arch]:
        return [_Arch([f"arch{i}"]) for i in range(count)]

    def params(self, arch: _Arch) -> int:
        return 100

    def train(self, arch: _Arch, seed: int) -> _Run:
        return _Run(self.table[int(arch.strings[0][4:])][seed // 1000])


def test_spread_reports_seed_noise_against_architecture_differences(capsys) -> None:  # noqa: ANN001
    table: list[list[float | None]] = [[60.0, 62.0, 61.0], [70.0, 71.0, 72.0], [65.0, 65.0, 68.0]]
    out = _module().spread(_FakeTrainer(table), 3, 3)
    means = [61.0, 71.0, 66.0]
    within = statistics.fmean([1.0, 1.0, 3.0])  # per-architecture sample variances
    assert [r["mean"] for r in out["rows"]] == means
    assert out["within_sd"] == pytest.approx(within ** 0.5)
    assert out["between_sd_of_means"] == pytest.approx(5.0)
    assert out["noise_sd_of_means"] == pytest.approx((within / 3) ** 0.5)
    assert out["mean_range"] == pytest.approx(10.0)
    assert out["anova_f"] == pytest.approx(3 * 25.0 / within)
    # F(2, 6) = 45 -> p = (1 + 45 * 2 / 6) ** -3 (closed form of the F(2, 2k) tail)
    assert out["anova_p"] == pytest.approx((1 + 45.0 / 3) ** -3, rel=1e-9)
    assert "ANOVA F=45.00" in capsys.readouterr().out


def test_spread_counts_a_diverged_training_as_zero() -> None:
    table: list[list[float | None]] = [[50.0, None], [50.0, 50.0]]
    out = _module().spread(_FakeTrainer(table), 2, 2)
    assert out["rows"][0]["per_seed"] == [50.0, 0.0]
    assert out["within_sd"] > 0


def test_anova_of_a_comparison_row_equals_scipy() -> None:
    """The per-seed check of the searched-vs-random comparison (do its random architectures
    differ?) is scipy's one-way ANOVA."""
    from scipy.stats import f_oneway

    groups = [[66.9, 67.4, 67.0], [67.8, 68.1, 67.5], [66.1, 66.8, 66.5], [67.0, 67.0, 67.3]]
    out = _module().anova(groups)
    ref = f_oneway(*groups)
    assert out["anova_f"] == pytest.approx(ref.statistic)
    assert out["anova_p"] == pytest.approx(ref.pvalue)
    assert out["mean_min"] == pytest.approx(66.4666667) and out["mean_max"] == pytest.approx(67.8)
    assert "ANOVA F=" in _module().anova_line(out)


def test_anova_without_any_variation_says_no_difference() -> None:
    module = _module()
    same = module.anova([[50.0, 50.0], [50.0, 50.0]])
    assert same["anova_f"] == 0.0 and same["anova_p"] == 1.0
    apart = module.anova([[50.0, 50.0], [60.0, 60.0]])
    assert apart["anova_f"] == float("inf") and apart["anova_p"] == 0.0


def test_trained_averages_the_truth_seeds_it_is_given() -> None:
    """`_trained(..., truth_seeds=2, first=1)` trains seeds s + 1000 and s + 2000 only."""
    seen: list[int] = []

    class Trainer(_FakeTrainer):
        primary = "accuracy"

        def train(self, arch: _Arch, seed: int, init: object = None) -> "_Run2":
            seen.append(seed)
            return _Run2(float(seed // 1000), seed)

    @dataclass
    class _Run2:
        metric: float
        seed: int

        def to_json(self, primary: str) -> dict[str, float]:
            return {primary: self.metric}

    out = _module()._trained(Trainer([]), _Arch(["arch0"]), 7, 2, None, first=1)
    assert seen == [1007, 2007]
    assert out["per_seed"] == [1.0, 2.0] and out["metric"] == 1.5
    assert out["seeds"] == [1007, 2007]
