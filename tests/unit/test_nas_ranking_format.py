"""The `pinas-ranking-tiny` benchmark: the `nas_ranking` scores file over Pi-NAS choice-list
codes, scored against the stand-alone accuracies a ranking benchmark writes
(`ground_truth.jsonl`) or a table file; its refusals; and its trip through the leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from scipy import stats

from refbench.baselines.nas.ranking import RankingSettings, Supernet, run_ranking
from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.formats.sample_ranking import (
    TRUTH_FILE,
    PinasRankingFormat,
    choice_list_space,
    read_ground_truth,
)
from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.nasbench.spaces import SearchSpace
from refbench.engine.jobs import Job
from refbench.errors import RefbenchError
from refbench.registry import get_spec
from tests.helpers import run_cli

HERE = "tests.unit.test_nas_ranking_format"
SPEC = "pinas-ranking-tiny"
BLOCKS, CHOICES = 4, 4  # the tiny Pi-NAS space: one block per stage, four candidates


def truth_of(arch: str, seed: int) -> float:
    """A stand-alone accuracy with seed noise (job target of the fake client)."""
    digits = [int(c) for c in arch.split()]
    return 50.0 + sum((i + 1) * d for i, d in enumerate(digits)) + 0.25 * seed


def noisy_scores(run: str, archs: Sequence[str], seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {a: truth_of(a, 0) + 8.0 * float(rng.normal()) for a in archs}


class PinasCodedClient:
    """A cheap `RankingClient` over the tiny Pi-NAS space, so the benchmark's real writer
    produces the ground-truth and scores files this test reads back."""

    name = "pinas"

    def space(self) -> SearchSpace:
        return choice_list_space(CHOICES)

    def sample(self, n: int, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        seen: dict[str, None] = {}
        while len(seen) < n:
            seen.setdefault(" ".join(map(str, rng.integers(0, CHOICES, BLOCKS))), None)
        return list(seen)

    def standalone_job(self, arch: str, seed: int, out: Path) -> Job:
        return Job(f"sa {arch} s{seed}", f"{HERE}:truth_of", {"arch": arch, "seed": seed})

    def supernet_job(self, method: str, seed: int, out: Path) -> Job:
        raise AssertionError("the test passes trained supernet runs")

    def describe_supernet(self, run: str) -> tuple[str, int]:
        return "pinas", int(run.rsplit("-s", 1)[1])

    def score_job(self, supernet: Supernet, archs: Sequence[str], out: Path) -> Job:
        return Job("score", f"{HERE}:noisy_scores",
                   {"run": supernet.run, "archs": list(archs), "seed": supernet.seed})

    def provenance(self) -> dict[str, Any]:
        return {"truth_split": "validation"}


@pytest.fixture(scope="module")
def benchmark_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ranking")
    settings = RankingSettings(archs=12, truth_seeds=[0, 1], supernets=["run-s0"], ks=[3],
                               workers=1)
    run_ranking(PinasCodedClient(), settings, out)
    return out


def test_spec_pins_its_choices() -> None:
    spec = get_spec(SPEC)
    assert spec.submission.format == "pinas_ranking" and spec.primary == "kendall_tau_b"
    assert spec.metric.kwargs() == {"ks": [3]} and spec.task.type == "architecture-ranking"
    assert FORMATS.get("pinas_ranking").references_required
    assert TRUTH_FILE == "ground_truth.jsonl"


def test_benchmark_files_score_like_the_benchmark(benchmark_out: Path, tmp_path: Path) -> None:
    """The scores.txt the benchmark wrote, scored against its ground_truth.jsonl (or the
    output folder), equals the benchmark's own result.json and scipy's tau-b."""
    from refbench.results import load_result

    scores = benchmark_out / "pinas" / "seed0" / "scores.txt"
    own = load_result(benchmark_out / "pinas" / "seed0" / "result.json")
    for refs in (benchmark_out, benchmark_out / TRUTH_FILE):
        result = evaluate_file(SPEC, scores, references=refs, strict=True)
        assert result.metrics == pytest.approx(own.metrics)
    truth = {r["arch"]: r["accuracy"] for r in map(json.loads, (benchmark_out / TRUTH_FILE)
                                                   .read_text().splitlines())}
    assert len(truth) == 12
    sub = PinasRankingFormat().read(scores, get_spec(SPEC))
    archs = sorted(truth)
    tau = stats.kendalltau([truth[a] for a in archs], [sub[a] for a in archs]).statistic
    assert result.metrics["kendall_tau_b"] == pytest.approx(tau)
    assert result.counts["architectures/scored"] == 12
    # a table file (ARCH<TAB>ACCURACY) is the same ground truth; codes in other spellings
    table = tmp_path / "truth.tsv"
    table.write_text("".join(f"{a.replace(' ', ',')}\t{v!r}\n" for a, v in truth.items()))
    assert {k: v.value for k, v in read_ground_truth(table, choice_list_space(4)).items()} \
        == truth
    again = evaluate_file(SPEC, scores, references=table)
    assert again.metrics == pytest.approx(result.metrics)


def _truth_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / TRUTH_FILE
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = ['{"arch": "0 1 2 3", "accuracy": 70.0}', '{"arch": "3 2 1 0", "accuracy": 60.0}',
        '{"arch": "1 1 1 1", "accuracy": 65.0}', '{"arch": [2, 2, 2, 2], "accuracy": 61.5}']


@pytest.mark.parametrize("bad, message", [
    ('{"arch": "0 1 2 4", "accuracy": 1.0}', r":5 \[arch\]: choice 4 of block 3 is out of range 0\.\.3"),
    ('{"arch": "0 1 x 3", "accuracy": 1.0}', r":5 \[arch\]: choice 'x' of block 2 is not an integer"),
    ('{"arch": "0 1 2 3", "accuracy": 1.0}', r":5: architecture 0 1 2 3 is given twice \(first at line 1\)"),
    ('{"arch": "1 2 3 0", "accuracy": NaN}', r":5 \[accuracy\]: score is NaN"),
    ('{"arch": "1 2 3 0", "accuracy": Infinity}', r":5 \[accuracy\]: accuracy inf is not finite"),
    ('{"arch": "1 2 3 0", "accuracy": "high"}', r":5 \[accuracy\]: score 'high' is not a number"),
    ('{"arch": "1 2 3 0"}', r':5: expected \{"arch": \.\.\., "accuracy": \.\.\.\}'),
    ('{"arch": "1 2 3 0", "accuracy": 1', r":5: malformed JSON"),
    ("", r":5: empty line"),
    ('{"arch": "1 2 3 0 1", "accuracy": 1.0}', r"mix codes of \[4, 5\] blocks"),
])
def test_bad_ground_truth_is_one_line(tmp_path: Path, bad: str, message: str) -> None:
    path = _truth_file(tmp_path, [*GOOD, bad])
    with pytest.raises(RefbenchError, match=message) as caught:
        read_ground_truth(path, choice_list_space(4))
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_missing_ground_truth_and_folder_without_it(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="ground-truth file not found"):
        read_ground_truth(tmp_path, choice_list_space(4))
    (tmp_path / TRUTH_FILE).mkdir()
    with pytest.raises(RefbenchError, match="expected a file, found a folder"):
        read_ground_truth(tmp_path / TRUTH_FILE, choice_list_space(4))
    empty = tmp_path / "e" / TRUTH_FILE
    empty.parent.mkdir()
    empty.write_text("")
    with pytest.raises(RefbenchError, match="names no architecture"):
        read_ground_truth(empty, choice_list_space(4))


def test_submissions_unknown_missing_duplicate_nan(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    truth = _truth_file(tmp_path, GOOD)
    spec = get_spec(SPEC)
    sub = tmp_path / "scores.txt"
    sub.write_text("0 1 2 3\t0.9\n3,2,1,0\t0.1\n1111\t0.5\n2 2 2 2 0.3\n")
    result = evaluate_file(spec, sub, references=truth)
    assert result.metrics["kendall_tau_b"] == pytest.approx(1.0)
    assert result.metrics["top_pick/ground_truth"] == 70.0
    # an architecture outside the sample: ignored and reported; refused when strict
    sub.write_text(sub.read_text() + "3 3 3 3\t0.2\n")
    result = evaluate_file(spec, sub, references=truth)
    assert result.counts["extra"] == 1 and result.metrics["kendall_tau_b"] == pytest.approx(1.0)
    with pytest.raises(RefbenchError, match="prediction id"):
        evaluate_file(spec, sub, references=truth, strict=True)
    # a missing one: refused
    sub.write_text("0 1 2 3\t0.9\n3 2 1 0\t0.1\n1 1 1 1\t0.5\n")
    with pytest.raises(RefbenchError, match="1 id.s. of the references have no prediction"):
        evaluate_file(spec, sub, references=truth)
    for text, message in [("0 1 2 3\t0.9\n0,1,2,3\t0.8\n", r":2: architecture 0 1 2 3 is scored twice"),
                          ("0 1 2 3\tnan\n", r":1: score is NaN"),
                          ("0 1 2 9\t0.5\n", r":1: choice 9 of block 3 is out of range 0\.\.3"),
                          ("0 1 2 3\t0.9\n0 1 2\t0.8\n", r"mix codes of \[3, 4\] blocks")]:
        sub.write_text(text)
        with pytest.raises(RefbenchError, match=message):
            evaluate_file(spec, sub, references=truth)
    # the CLI: exit 2, one line; without --references it says what to pass
    sub.write_text("0 1 2 3\tnan\n")
    capsys.readouterr()
    assert run_cli(["evaluate", SPEC, "--predictions", str(sub), "--references", str(truth)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "score is NaN" in err
    sub.write_text("0 1 2 3\t1\n")
    assert run_cli(["evaluate", SPEC, "--predictions", str(sub)]) == 2
    assert "--references (the ground_truth.jsonl, or the folder holding it, that refbench " \
        "search pinas-ranking wrote)" in capsys.readouterr().err


def test_write_round_trip(tmp_path: Path) -> None:
    fmt, spec = PinasRankingFormat(), get_spec(SPEC)
    refs = fmt.read_references(_truth_file(tmp_path, GOOD), spec)
    best = fmt.perfect_predictions(refs)
    fmt.write(tmp_path / "s.txt", best, spec)
    fmt.write(tmp_path / "s.json", best, spec)
    assert fmt.read(tmp_path / "s.txt", spec) == fmt.read(tmp_path / "s.json", spec) == best
    with pytest.raises(RefbenchError, match="out of range"):
        fmt.write(tmp_path / "bad.txt", {"0 1 2 7": 1.0}, spec)
    assert not (tmp_path / "bad.txt").exists()


def test_ranking_results_on_the_leaderboard(benchmark_out: Path, tmp_path: Path) -> None:
    """The hidden reference is the benchmark's ground_truth.jsonl; the benchmark's own
    scores.txt is scored on both parts; an incomplete file fails in one line."""
    import shutil

    from refbench.leaderboard.db import LeaderboardDB
    from refbench.leaderboard.worker import Worker
    hidden = tmp_path / "hidden"
    (hidden / "pinas").mkdir(parents=True)
    shutil.copy(benchmark_out / TRUTH_FILE, hidden / "pinas" / TRUTH_FILE)
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    board.set_references_dir(hidden)
    board.add_benchmark(SPEC, f"pinas/{TRUTH_FILE}", seed=3)
    team = board.add_team("alpha")
    scores = (benchmark_out / "pinas" / "seed0" / "scores.txt").read_bytes()
    good = board.submit(team, SPEC, "scores.txt", scores)
    short = board.submit(team, SPEC, "scores.txt", b"\n".join(scores.splitlines()[1:]) + b"\n")
    nan = board.submit(team, SPEC, "scores.txt", scores.replace(b"\t", b"\tnan#", 1)
                       .replace(b"nan#", b"nan", 1).split(b"\n", 1)[0] + b"\n")
    assert Worker(board, context="fork", time_limit=120.0).run(until_idle=True) == 3
    row = board.submission(good)
    assert row["status"] == "scored", row["error"]
    parts = board.scores(good, reveal=True)
    # each part is the ranking consistency of its half of the sample, computed here directly
    from refbench.evaluation.ranking import RankingConsistency
    from refbench.leaderboard.split import partition

    fmt, spec = PinasRankingFormat(), get_spec(SPEC)
    refs = fmt.read_references(hidden / "pinas" / TRUTH_FILE, spec)
    preds = fmt.read(benchmark_out / "pinas" / "seed0" / "scores.txt", spec)
    public, private = partition(list(refs), 3, 0.5)
    for part, ids in (("public", public), ("private", private)):
        metric = RankingConsistency(ks=[3])
        metric.update([preds[a] for a in ids], [refs[a] for a in ids])
        expected = metric.compute()
        assert {k: parts[part][k] for k in expected} == pytest.approx(expected), part
        assert math.isfinite(parts[part]["kendall_tau_b"])
    assert len(public) + len(private) == 12 and len(public) >= 3
    for bad in (short, nan):
        failed = board.submission(bad)
        assert failed["status"] == "failed" and "\n" not in failed["error"]
        assert str(hidden) not in failed["error"]
    assert "no prediction" in board.submission(short)["error"]
