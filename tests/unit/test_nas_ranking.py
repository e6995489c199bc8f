"""The ranking-consistency benchmark, generic over searches (`baselines/nas/ranking.py`):
driven here by clients whose jobs are cheap functions of this module (a synthetic one, and
one over the real NAS-Bench-Macro table), and the Pi-NAS client's fast parts."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from scipy import stats

from refbench.baselines.nas.ranking import (MIN_ARCHS, PLOT_FILE, SUMMARY_FILE, TRUTH_FILE,
                                            RankingSettings, Supernet, figure_lines,
                                            run_ranking, summary_lines)
from refbench.datasets.nasbench.spaces import SPACES, SearchSpace
from refbench.engine.jobs import Job
from refbench.errors import RefbenchError

HERE = "tests.unit.test_nas_ranking"


# -- job targets (importable, JSON-like arguments, as the job pool requires) ------------------
def truth_of(arch: str, seed: int) -> float:
    """A ground truth with seed noise: the digit sum, plus a small per-seed offset."""
    return float(sum(int(c) for c in arch)) * 10.0 + 0.1 * seed


def fake_standalone(arch: str, seed: int) -> float:
    return truth_of(arch, seed)


def fake_supernet(method: str, seed: int, out: str) -> str:
    return f"{out}/{method}-s{seed}"


def fake_scores(run: str, archs: Sequence[str], noise: float, seed: int) -> dict[str, float]:
    """Truth plus Gaussian noise (0: a perfect supernet; negative: every score the same)."""
    if noise < 0:
        return {a: 49.0 for a in archs}
    rng = np.random.default_rng(seed)
    return {a: truth_of(a, 0) + noise * float(rng.normal()) for a in archs}


def failing_standalone(arch: str, seed: int) -> float:
    raise ValueError(f"out of memory training {arch}")


def table_accuracy(path: str, arch: str, seed: int) -> float:
    """NAS-Bench-Macro: the CIFAR-10 test accuracy of `arch`'s stand-alone training `seed`."""
    return float(_macro(path)[arch]["test_acc"][seed])


def table_params(path: str, archs: Sequence[str]) -> dict[str, float]:
    """A proxy scoring: the parameter count of each architecture."""
    table = _macro(path)
    return {a: float(table[a]["params"]) for a in archs}


_TABLES: dict[str, Any] = {}


def _macro(path: str) -> Any:
    if path not in _TABLES:
        _TABLES[path] = json.loads(Path(path).read_text())
    return _TABLES[path]


@dataclass
class FakeClient:
    """Codes of NAS-Bench-Macro's spelling (8 digits 0-2); truth = digit sum."""

    noise: dict[str, float] = field(default_factory=lambda: {"good": 0.0, "noisy": 30.0})
    standalone: str = "fake_standalone"
    name: str = "fake"
    duplicate: bool = False

    def space(self) -> SearchSpace:
        return SPACES["nas-bench-macro"]

    def sample(self, n: int, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        codes = list(dict.fromkeys("".join(map(str, rng.integers(0, 3, 8))) for _ in range(4 * n)))
        return codes[:n] if not self.duplicate else [codes[0]] * n

    def standalone_job(self, arch: str, seed: int, out: Path) -> Job:
        return Job(f"sa {arch} {seed}", f"{HERE}:{self.standalone}", {"arch": arch, "seed": seed})

    def supernet_job(self, method: str, seed: int, out: Path) -> Job:
        return Job(f"sn {method} {seed}", f"{HERE}:fake_supernet",
                   {"method": method, "seed": seed, "out": str(out)})

    def describe_supernet(self, run: str) -> tuple[str, int]:
        method, _, seed = Path(run).name.rpartition("-s")
        return method, int(seed)

    def score_job(self, supernet: Supernet, archs: Sequence[str], out: Path) -> Job:
        return Job(f"score {supernet.run}", f"{HERE}:fake_scores",
                   {"run": supernet.run, "archs": list(archs),
                    "noise": self.noise[supernet.method], "seed": supernet.seed})

    def provenance(self) -> dict[str, Any]:
        return {"truth_split": "validation", "supernet_recipe": "fake_recipe",
                "score_label": "fake fitness <x>"}


def _settings(**kw: Any) -> RankingSettings:
    base = dict(archs=10, truth_seeds=[0, 1], methods=["good", "noisy"], supernet_seeds=[0, 1, 2],
                ks=[3], workers=1)
    return RankingSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_min_archs_pinned() -> None:
    assert MIN_ARCHS == 3


def test_benchmark_end_to_end(tmp_path: Path) -> None:
    from refbench.results import load_result

    summary = run_ranking(FakeClient(), _settings(), tmp_path)
    archs = summary["architectures"]
    assert len(archs) == len(set(archs)) == 10
    assert summary["sampling"] == {"n": 10, "how": summary["sampling"]["how"], "seed": 0}
    assert summary["ground_truth"]["seeds_per_architecture"] == 2
    truth = [json.loads(line) for line in (tmp_path / TRUTH_FILE).read_text().splitlines()]
    assert [t["arch"] for t in truth] == archs
    for row in truth:  # the mean of the two seeds' values
        assert row["accuracy"] == pytest.approx(truth_of(row["arch"], 0) + 0.05)
    # a perfect supernet ranks exactly like the ground truth, on every seed
    good = load_result(tmp_path / "good" / "result.json")
    assert good.benchmark == "fake-ranking" and good.primary == "kendall_tau_b"
    assert good.metrics["kendall_tau_b"] == pytest.approx(1.0)
    assert good.aggregate is not None and good.aggregate["seeds"] == [0, 1, 2]
    assert good.aggregate["std"]["kendall_tau_b"] == pytest.approx(0.0)
    assert good.metrics["top_pick/ground_truth"] == good.metrics["ground_truth/best"]
    # a noisy one: the benchmark's numbers are scipy's on the written score files
    mean = {t["arch"]: t["accuracy"] for t in truth}
    taus = []
    for seed in (0, 1, 2):
        lines = (tmp_path / "noisy" / f"seed{seed}" / "scores.txt").read_text().splitlines()
        scored = {a: float(s) for a, s in (line.split("\t") for line in lines)}
        taus.append(stats.kendalltau([mean[a] for a in archs], [scored[a] for a in archs])[0])
        one = load_result(tmp_path / "noisy" / f"seed{seed}" / "result.json")
        assert one.metrics["kendall_tau_b"] == pytest.approx(taus[-1], abs=1e-12)
        assert one.counts["ground_truth/seeds_per_architecture"] == 2
        assert one.provenance.seed == seed and one.settings["sample_size"] == 10
    noisy = load_result(tmp_path / "noisy" / "result.json")
    assert noisy.aggregate is not None
    assert noisy.aggregate["per_seed"]["kendall_tau_b"] == pytest.approx(taus)
    assert noisy.metrics["kendall_tau_b"] == pytest.approx(float(np.mean(taus)))
    assert noisy.aggregate["std"]["kendall_tau_b"] == pytest.approx(float(np.std(taus, ddof=1)))
    assert summary["methods"]["noisy"]["kendall_tau_b"]["per_seed"] == pytest.approx(taus)
    # the plot: one panel per method, a point per architecture and supernet
    svg = ET.parse(tmp_path / PLOT_FILE).getroot()
    circles = svg.findall(".//{http://www.w3.org/2000/svg}circle")
    assert len(circles) == 2 * 3 * 10
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["plot"] == PLOT_FILE


def test_summary_lines_and_plot_label(tmp_path: Path) -> None:
    """The generic printout (mean +- std per method) and the x-axis label the client names."""
    summary = run_ranking(FakeClient(), _settings(archs=4, supernet_seeds=[0, 1]), tmp_path)
    lines = summary_lines(summary, tmp_path)
    assert len(lines) == 3 and lines[0].startswith("good: Kendall tau-b 1.000 +- 0.000")
    assert "(2 supernet seeds, N=4)" in lines[0] and SUMMARY_FILE in lines[-1]
    assert "fake fitness &lt;x&gt;" in (tmp_path / PLOT_FILE).read_text()
    assert summary["client"]["score_label"] == "fake fitness <x>"


def test_given_supernets_are_scored_not_trained(tmp_path: Path) -> None:
    runs = [str(tmp_path / "x" / "good-s4"), str(tmp_path / "x" / "good-s7")]
    summary = run_ranking(FakeClient(), _settings(methods=[], supernets=runs, archs=5), tmp_path)
    assert [(s["method"], s["seed"]) for s in summary["supernets"]] == [("good", 4), ("good", 7)]
    assert summary["methods"]["good"]["kendall_tau_b"]["per_seed"] == [1.0, 1.0]


@pytest.mark.parametrize("change, message", [
    ({"archs": 2}, "must be >= 3"),
    ({"truth_seeds": [0, 0]}, "distinct seeds"),
    ({"supernet_seeds": []}, "distinct seeds"),
    ({"methods": []}, "methods to compare"),
    ({"ks": [11]}, "1 <= k <= archs"),
])
def test_bad_settings_refused_before_any_job(change: dict[str, Any], message: str,
                                             tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match=message):
        run_ranking(FakeClient(standalone="no_such_target"), _settings(**change), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_failed_job_is_one_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match=r"jobs failed: sa \d{8} 0: ValueError: out of memory"):
        run_ranking(FakeClient(standalone="failing_standalone"), _settings(), tmp_path)
    assert not (tmp_path / SUMMARY_FILE).exists()


def test_client_sampling_duplicates_refused(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="1 distinct"):
        run_ranking(FakeClient(duplicate=True), _settings(), tmp_path)


def test_output_that_is_a_file_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(RefbenchError, match="not a folder"):
        run_ranking(FakeClient(), _settings(), tmp_path / "f")


# -- real data: NAS-Bench-Macro's three stand-alone trainings as the ground truth -------------
@dataclass
class MacroTableClient(FakeClient):
    """Ground truth read from the real table (one 'training' per seed); scores = params."""

    path: str = ""
    name: str = "nas-bench-macro"

    def sample(self, n: int, seed: int) -> list[str]:
        ids = sorted(_macro(self.path))
        return [ids[i] for i in np.random.default_rng(seed).choice(len(ids), n, replace=False)]

    def standalone_job(self, arch: str, seed: int, out: Path) -> Job:
        return Job(f"sa {arch} {seed}", f"{HERE}:table_accuracy",
                   {"path": self.path, "arch": arch, "seed": seed})

    def score_job(self, supernet: Supernet, archs: Sequence[str], out: Path) -> Job:
        return Job(f"score {supernet.run}", f"{HERE}:table_params",
                   {"path": self.path, "archs": list(archs)})


def test_real_macro_table_params_proxy(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "nasbench" / "nas-bench-macro" / "nas-bench-macro_cifar10.json"
    if not path.is_file():
        pytest.skip(f"NAS-Bench-Macro file not found at {path}")
    client = MacroTableClient(path=str(path))
    settings = _settings(archs=200, truth_seeds=[0, 1, 2], methods=["params"],
                         supernet_seeds=[0], ks=[10, 50], sample_seed=3)
    summary = run_ranking(client, settings, tmp_path)
    table = _macro(str(path))
    archs = summary["architectures"]
    mean = [float(np.mean(table[a]["test_acc"])) for a in archs]
    assert mean == pytest.approx([table[a]["mean_acc"] for a in archs], abs=1e-9)
    params = [table[a]["params"] for a in archs]
    from refbench.results import load_result

    result = load_result(tmp_path / "params" / "seed0" / "result.json")
    assert result.metrics["kendall_tau_b"] == pytest.approx(stats.kendalltau(mean, params)[0],
                                                            abs=1e-12)
    assert result.metrics["spearman_rho"] == pytest.approx(stats.spearmanr(mean, params)[0],
                                                           abs=1e-12)
    # parameter count is a known, positive but imperfect proxy on this space
    assert 0.2 < result.metrics["kendall_tau_b"] < 0.9
    best = max(range(len(archs)), key=lambda i: (params[i], -i))
    assert result.metrics["top_pick/ground_truth"] == pytest.approx(mean[best])
    assert math.isfinite(result.metrics["P@50"])


def test_a_constant_supernet_is_undefined_not_averaged(tmp_path: Path) -> None:
    """A supernet scoring every architecture alike has no tau (not 0): it is written apart
    (scores + undefined.json) and left out of its method's mean; a method with only such
    supernets has no figures, and the run still finishes."""
    client = FakeClient(noise={"good": 0.0, "flat": -1.0})
    summary = run_ranking(client, _settings(methods=["good", "flat"], supernet_seeds=[0, 1]),
                          tmp_path)
    assert summary["methods"]["good"]["kendall_tau_b"]["per_seed"] == [1.0, 1.0]
    assert summary["methods"]["good"]["undefined_seeds"] == []
    assert summary["methods"]["flat"] == {"undefined_seeds": [0, 1]}
    why = json.loads((tmp_path / "flat" / "seed0" / "undefined.json").read_text())
    assert "undefined for a constant ranking" in why["reason"]
    assert (tmp_path / "flat" / "seed0" / "scores.txt").exists()
    assert not (tmp_path / "flat" / "result.json").exists()
    lines = summary_lines(summary, tmp_path)
    assert any(line.startswith("flat: every supernet scored all architectures alike") for line in lines)
    assert (tmp_path / SUMMARY_FILE).exists()
    table = figure_lines(summary, tmp_path, width=6)
    assert table[0].startswith("good   kendall_tau_b 1.000 +- 0.000")
    assert "flat   ranking undefined" in table
    assert any("undefined (constant scores) for supernet seeds 0, 1" in line for line in table)
