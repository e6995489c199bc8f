"""Ranking consistency (Kendall tau-a/b/c, Spearman rho, precision@k, top pick), the
nas_ranking submission format and the NAS table readers, on hand-computed and synthetic
cases (real tables: tests/golden/test_nasbench_real_data.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from refbench.benchmarks.formats.nas_ranking import (
    NasRankingFormat,
    read_scores,
    sample,
)
from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.nasbench import NasBenchMacroBuilder, NaslibZeroCostBuilder
from refbench.datasets.nasbench.readers import (
    MACRO_FILE,
    read_macro_file,
    read_naslib_table,
)
from refbench.datasets.nasbench.spaces import SPACES
from refbench.errors import RefbenchError
from refbench.evaluation.ranking import (
    ArchitectureTruth,
    RankingConsistency,
    _inversions,
    kendall_counts,
    kendall_tau,
    precision_at_k,
    spearman_rho,
)
from refbench.registry import get_spec
from tests.helpers import run_cli

MACRO = SPACES["nas-bench-macro"]


def _metric(truth, pred, ids=None, **args) -> RankingConsistency:
    ids = ids or [f"{i:08d}" for i in range(len(truth))]
    metric = RankingConsistency(**args)
    metric.update(list(pred), [ArchitectureTruth(a, v) for a, v in zip(ids, truth)])
    return metric


# -- the statistics ---------------------------------------------------------------------
def test_kendall_by_hand_without_and_with_ties() -> None:
    # one discordant pair of six
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # pairs: (0,1) tied in truth, (1,2) tied in prediction, the other 4 concordant
    counts = kendall_counts([1, 1, 2, 3], [1, 2, 2, 3])
    assert (counts.concordant_minus_discordant, counts.ties_truth, counts.ties_pred) == (4, 1, 1)
    assert counts.tau("b") == pytest.approx(4 / 5)
    assert counts.tau("a") == pytest.approx(4 / 6)
    # identical orders with ties: tau-b is 1, tau-a is not
    assert kendall_tau([1, 1, 2], [5, 5, 7], "b") == pytest.approx(1.0)
    assert kendall_tau([1, 1, 2], [5, 5, 7], "a") == pytest.approx(2 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_statistics_equal_scipy_on_random_tied_data() -> None:
    rng = np.random.default_rng(7)
    for _ in range(150):
        n = int(rng.integers(2, 80))
        x = rng.integers(0, int(rng.integers(1, 9)), n).astype(float)
        y = rng.integers(0, int(rng.integers(1, 9)), n).astype(float)
        for variant in ("b", "c"):
            ours = kendall_tau(x, y, variant)
            ref = scipy.stats.kendalltau(x, y, variant=variant).statistic
            assert (math.isnan(ours) and math.isnan(ref)) or ours == pytest.approx(ref, abs=1e-12)
        if np.unique(x).size > 1 and np.unique(y).size > 1:
            assert spearman_rho(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic,
                                                       abs=1e-12)


def test_inversion_count_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 3, 7, 16, 33):
        values = rng.integers(0, 5, n)
        brute = sum(int(values[i] > values[j]) for i, j in itertools.combinations(range(n), 2))
        assert _inversions(values) == brute


def test_precision_at_k_breaks_ties_by_id() -> None:
    ids = ["a", "b", "c", "d"]
    truth = np.array([4.0, 3.0, 2.0, 1.0])
    assert precision_at_k(truth, np.array([1.0, 2.0, 3.0, 4.0]), ids, 2) == 0.0
    assert precision_at_k(truth, np.array([9.0, 1.0, 8.0, 0.0]), ids, 2) == 0.5
    # b, c, d tie: the top 2 are a and b (id order), whatever the file order
    assert precision_at_k(truth, np.array([9.0, 1.0, 1.0, 1.0]), ids, 2) == 1.0
    with pytest.raises(RefbenchError, match="1 <= k <= 4"):
        precision_at_k(truth, truth, ids, 5)


# -- the metric -------------------------------------------------------------------------
def test_metric_keys_counts_and_top_pick() -> None:
    truth = [90.0, 91.0, 92.0, 93.0, 89.0]
    pred = [0.1, 0.5, 0.9, 0.2, 0.9]  # two tied best predictions: 92 (rank 2) and 89 (rank 5)
    metric = _metric(truth, pred, ks=[2])
    out = metric.compute()
    assert set(out) == set(metric.output_keys())
    assert out["kendall_tau_b"] == pytest.approx(scipy.stats.kendalltau(truth, pred).statistic)
    assert out["spearman_rho"] == pytest.approx(scipy.stats.spearmanr(truth, pred).statistic)
    assert out["top_pick/ground_truth"] == pytest.approx((92.0 + 89.0) / 2)
    assert out["top_pick/rank"] == pytest.approx((2 + 5) / 2)
    assert out["ground_truth/best"] == 93.0
    assert metric.counts()["top_pick/tied"] == 2
    assert any("share the best predicted score" in w for w in metric.warnings())
    assert any("only 5 architectures" in w for w in metric.warnings())


def test_metric_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(0)
    truth, pred = rng.normal(size=40), rng.normal(size=40)
    ids = [f"{i:08d}" for i in range(40)]
    whole = _metric(truth, pred, ids, ks=[5]).compute()
    left = _metric(truth[:15], pred[:15], ids[:15], ks=[5])
    left.merge(_metric(truth[15:], pred[15:], ids[15:], ks=[5]))
    assert left.compute() == whole


@pytest.mark.parametrize("truth, pred, ids, args, message", [
    ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], None, {}, "every predicted score is 1.0"),
    ([1.0, 1.0], [1.0, 2.0], None, {}, "every ground truth is 1.0"),
    ([1.0, 2.0], [1.0, float("nan")], None, {}, "is not a number"),
    ([1.0, 2.0], [1.0, None], None, {}, "no predicted score"),
    ([1.0, 2.0], [1.0, 2.0], ["00000000", "00000000"], {}, "scored twice"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], None, {"sample_size": 4}, "fixes the sample at 4"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], None, {"ks": [4]}, "at least 4 architectures"),
    ([1.0], [1.0], None, {}, "at least 2"),
])
def test_metric_refuses(truth, pred, ids, args, message) -> None:
    with pytest.raises(RefbenchError, match=message):
        _metric(truth, pred, ids, **args).compute()


def test_metric_arguments_are_checked() -> None:
    with pytest.raises(RefbenchError, match="takes ks"):
        RankingConsistency(variant="a")
    with pytest.raises(RefbenchError, match="positive integers"):
        RankingConsistency(ks=[0])


# -- the submission format and the benchmark ---------------------------------------------
@pytest.fixture(scope="module")
def macro_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return NasBenchMacroBuilder().synthesize(tmp_path_factory.mktemp("macro"), n=6561, seed=2)


def test_spec_pins_tau_b_full_space_and_order() -> None:
    spec = get_spec("nasbench-macro-ranking")
    args = spec.metric.kwargs()
    assert spec.primary == "kendall_tau_b"
    assert args["sample_size"] == 6561 == 3 ** 8
    assert args["ks"] == [10, 50, 100]
    assert spec.task.type == "architecture-ranking"


def test_benchmark_scores_a_file_like_scipy(macro_root: Path, tmp_path: Path) -> None:
    rows = read_macro_file(macro_root / MACRO_FILE)
    truth = np.array([r["mean_acc"] for r in rows])
    proxy = np.array([r["test_acc"][0] for r in rows])
    sub = tmp_path / "scores.txt"
    sub.write_text("".join(f"{r['arch']},{float(p)!r}\n" for r, p in zip(rows, proxy)))
    result = evaluate_file("nasbench-macro-ranking", sub, references=macro_root)
    assert result.metrics["kendall_tau_b"] == pytest.approx(
        scipy.stats.kendalltau(truth, proxy).statistic, abs=1e-12)
    assert result.counts["architectures/scored"] == 6561
    assert result.directions["top_pick/rank"] == "lower"


def test_cli_exit_2_on_malformed_and_duplicate_codes(macro_root: Path, tmp_path: Path) -> None:
    bad = {"short": "0201210\t0.5\n", "range": "02012103\t0.5\n",
           "dup": "02012100\t0.5\n02012100 0.7\n", "nan": "02012100\tnan\n",
           "empty": "02012100\t0.5\n\n01111111\t0.2\n"}
    for name, text in bad.items():
        (tmp_path / f"{name}.txt").write_text(text)
        code = run_cli(["evaluate", "nasbench-macro-ranking", "--predictions",
                        str(tmp_path / f"{name}.txt"), "--references", str(macro_root)])
        assert code == 2, name


@pytest.mark.parametrize("text, message", [
    ("0201210\t0.5\n", r"s\.txt:1: .*has length 7, expected 8"),
    ("02012100\t0.5\n02012103\t0.5\n", r"s\.txt:2: .*layer 8 choice 3 is out of range 0-2"),
    ("02012100\t0.5\n02012100 0.7\n", r"s\.txt:2: architecture 02012100 is scored twice \(first at line 1\)"),
    ("02012100\tNaN\n", r"s\.txt:1: score is NaN"),
    ("02012100\tabc\n", r"s\.txt:1: score 'abc' is not a number"),
    ("02012100\n", r"s\.txt:1: expected 'ARCH SCORE'"),
    ("", "scores no architecture"),
])
def test_text_reader_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.txt"
    path.write_text(text)
    with pytest.raises(RefbenchError, match=message):
        read_scores(path, MACRO)


def test_json_reader_and_canonical_tuples(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"arch": "(0,2,3,2,3,1)", "score": 1.5},
                                {"arch": "(1, 1, 1, 1, 1, 1)", "score": "-inf"}]))
    assert read_scores(path, SPACES["nas-bench-201"]) == {"(0, 2, 3, 2, 3, 1)": 1.5,
                                                          "(1, 1, 1, 1, 1, 1)": -math.inf}
    path.write_text('{"02012100": 1, "02012100": 2}')
    with pytest.raises(RefbenchError, match=r"s\.json \[02012100\]: key '02012100' appears twice"):
        read_scores(path, MACRO)
    path.write_text('{"02012100": NaN}')
    with pytest.raises(RefbenchError, match=r"\[02012100\]: score is NaN"):
        read_scores(path, MACRO)
    path.write_text('[{"arch": "(0, 2, 3, 2, 3, 5)", "score": 1}]')
    with pytest.raises(RefbenchError, match=r"\[\[0\]\.arch\]: .*edge 6 operation 5 is out of range"):
        read_scores(path, SPACES["nas-bench-201"])


def test_sample_is_fixed_by_seed_and_size() -> None:
    spec = get_spec("nasbench-macro-ranking")
    refs = {f"{i:08d}": ArchitectureTruth(f"{i:08d}", float(i)) for i in range(50)}
    small = dataclasses.replace(spec, metric=dataclasses.replace(
        spec.metric, args=(("sample_seed", 3), ("sample_size", 10))))
    first, again = sample(refs, small), sample(refs, small)
    assert list(first) == list(again) and len(first) == 10
    assert sample(refs, dataclasses.replace(spec, metric=dataclasses.replace(
        spec.metric, args=(("sample_size", 50),)))) == refs


def test_format_round_trip(macro_root: Path, tmp_path: Path) -> None:
    spec = get_spec("nasbench-macro-ranking")
    fmt = NasRankingFormat()
    refs = fmt.read_references(macro_root / MACRO_FILE, spec)
    fmt.write(tmp_path / "p.txt", fmt.perfect_predictions(refs), spec)
    assert fmt.read(tmp_path / "p.txt", spec) == {a: t.value for a, t in refs.items()}


# -- the table readers -------------------------------------------------------------------
def test_macro_reader_refuses_bad_tables(tmp_path: Path) -> None:
    good = {"test_acc": [90.0, 91.0, 92.0], "mean_acc": 91.0, "std": 0.8, "params": 1, "flops": 2}
    cases = {
        "0120": ({"0120": good}, r"\[0120\]: .*has length 4"),
        "seeds": ({"01201201": {**good, "test_acc": [90.0, 91.0]}}, r"\[01201201.test_acc\]"),
        "nan": ({"01201201": {**good, "mean_acc": float("nan")}},
                r"\[01201201.mean_acc\]: nan is not a finite number"),
        "params": ({"01201201": {**good, "params": -3}}, r"\[01201201.params\]"),
    }
    for name, (table, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(table))
        with pytest.raises(RefbenchError, match=message):
            read_macro_file(path)
    with pytest.raises(RefbenchError, match="file not found"):
        read_macro_file(tmp_path / "absent.json")
    with pytest.raises(RefbenchError, match="found a folder"):
        read_macro_file(tmp_path)
    (tmp_path / "cut.json").write_text('{"01201201": {"test_acc": [9')
    with pytest.raises(RefbenchError, match="invalid JSON"):
        read_macro_file(tmp_path / "cut.json")


def test_naslib_reader_checks_keys_and_arch(tmp_path: Path) -> None:
    root = NaslibZeroCostBuilder().synthesize(tmp_path / "zc", n=20, seed=0)
    assert NaslibZeroCostBuilder().check(root).ok
    data = json.loads((root / "zc_nasbench201.json").read_text())
    arch = next(iter(data["cifar10"]))
    data["cifar10"][arch]["arch"] = "(0, 0, 0, 0, 0, 0)"
    (root / "zc_nasbench201.json").write_text(json.dumps(data))
    with pytest.raises(RefbenchError, match=r"its 'arch' field .* differs from its key"):
        read_naslib_table(root / "zc_nasbench201.json", "nb201-cifar10")
    report = NaslibZeroCostBuilder().check(root)
    assert not report.ok and "differs from its key" in report.problems[0].message
