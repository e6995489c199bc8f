"""The `efficientbert-ranking-tiny` benchmark: scores over EfficientBERT integer codes,
scored against the stand-alone accuracies of `refbench search efficientbert-ranking`
(`ground_truth.jsonl`); codes of any layer count that agree within a file; its refusals;
and its trip through the leaderboard."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from scipy import stats

from refbench.baselines.nlp.efficientbert.encoding import code_of, code_space, layers_of
from refbench.baselines.nlp.efficientbert.space import random_expression
from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.formats.sample_ranking import (
    TRUTH_FILE,
    EfficientbertRankingFormat,
    read_ground_truth,
)
from refbench.benchmarks.scoring import evaluate_file
from refbench.datasets.nasbench.spaces import ArchitectureError
from refbench.errors import RefbenchError
from refbench.registry import get_spec
from tests.helpers import run_cli

SPEC = "efficientbert-ranking-tiny"
TANH = "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))"
MUL = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"


def sample_codes(n: int, layers: int = 2, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen.setdefault(code_of([random_expression(rng) for _ in range(layers)]), None)
    return list(seen)


def write_truth(path: Path, truth: dict[str, float]) -> Path:
    path.write_text("".join(json.dumps({"arch": a, "accuracy": v, "per_seed": {"0": v}}) + "\n"
                            for a, v in truth.items()))
    return path


@pytest.fixture()
def truth(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    codes = sample_codes(8)
    values = {c: 50.0 + 2.5 * i for i, c in enumerate(codes)}
    return write_truth(tmp_path / TRUTH_FILE, values), values


def test_spec_pins_its_choices() -> None:
    spec = get_spec(SPEC)
    assert spec.submission.format == "efficientbert_ranking"
    assert spec.primary == "kendall_tau_b" and spec.metric.kwargs() == {"ks": [2]}
    assert (spec.dataset.name, spec.dataset.config, spec.split) == ("glue", "sst2", "validation")
    assert FORMATS.get("efficientbert_ranking").references_required


def test_codes_of_any_layer_count_must_agree_in_a_file(tmp_path: Path) -> None:
    space = code_space(None)
    two, six = code_of([TANH, MUL]), code_of([TANH, MUL, TANH, MUL, TANH, MUL])
    assert space.canonical(two) == two and space.canonical(six) == six
    assert space.canonical(json.dumps([TANH, MUL])) == two
    assert (layers_of(two), layers_of(six)) == (2, 6)
    path = tmp_path / "mixed.txt"
    path.write_text(f"{two}\t1.0\n{six}\t2.0\n")
    with pytest.raises(RefbenchError, match=r"mix codes of \[2, 6\] layers") as info:
        EfficientbertRankingFormat().read(path, get_spec(SPEC))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ArchitectureError, match="is not integers joined by"):
        space.parse("")


def _lines(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scores.txt"
    path.write_text(text)
    return path


def test_scores_equal_scipy_and_name_the_top_pick(truth: tuple[Path, dict[str, float]],
                                                  tmp_path: Path) -> None:
    path, values = truth
    codes = list(values)
    rng = random.Random(1)
    predicted = {c: v + rng.gauss(0.0, 6.0) for c, v in values.items()}
    sub = _lines(tmp_path, "".join(f"{c}\t{s!r}\n" for c, s in predicted.items()))
    result = evaluate_file(SPEC, sub, references=path, strict=True)
    tau = stats.kendalltau([values[c] for c in codes], [predicted[c] for c in codes]).statistic
    assert result.metrics["kendall_tau_b"] == pytest.approx(tau)
    best = max(codes, key=predicted.__getitem__)
    assert result.metrics["top_pick/ground_truth"] == values[best]
    assert result.counts["architectures/scored"] == 8
    # the same ground truth through the output folder, and as a JSON list of expressions
    assert evaluate_file(SPEC, sub, references=path.parent).metrics == result.metrics
    first = codes[0]
    from refbench.baselines.nlp.efficientbert.encoding import expressions_of

    as_json = {json.dumps(expressions_of(c, 2)) if c == first else c: s
               for c, s in predicted.items()}
    json_file = tmp_path / "scores.json"
    json_file.write_text(json.dumps(as_json))
    assert evaluate_file(SPEC, json_file, references=path).metrics == result.metrics


def test_refusals(truth: tuple[Path, dict[str, float]], tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> None:
    path, values = truth
    codes = list(values)
    spec = get_spec(SPEC)
    cases = [
        (f"{codes[0]}\tnan\n", r":1: score is NaN"),
        (f"{codes[0]}\t1\n{codes[0]}\t2\n", r":2: architecture .* is scored twice"),
        ("5.26.3.26.0.1.2/5.29.3.29.0.1.2\t1\n", r":1: integer 29 at position 1 is not a node"),
        ("5.26.3.26.0.1.2/5.26.3.26.0.1\t1\n", r":1: code ends inside an expression"),
        ("".join(f"{c}\t1\n" for c in codes[:-1]), r"1 id.s. of the references have no prediction"),
    ]
    for text, message in cases:
        with pytest.raises(RefbenchError, match=message):
            evaluate_file(spec, _lines(tmp_path, text), references=path)
    # the ground truth's own refusals name the file and line
    (tmp_path / "bad").mkdir()
    bad = write_truth(tmp_path / "bad" / TRUTH_FILE, {**values, "5.26.3.26.0.1.2": 1.0})
    with pytest.raises(RefbenchError, match=r"ground truth's architectures mix codes of \[1, 2\]"):
        read_ground_truth(bad, code_space(None), "layers", layers_of)
    # the CLI: exit 2, one line; without --references it says what to pass
    sub = _lines(tmp_path, "".join(f"{c}\t{v}\n" for c, v in values.items()))
    capsys.readouterr()
    assert run_cli(["evaluate", SPEC, "--predictions", str(sub)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ground_truth.jsonl, or the folder holding it, that refbench search " \
        "efficientbert-ranking wrote" in err
    assert run_cli(["evaluate", SPEC, "--predictions", str(sub), "--references",
                    str(path)]) == 0


def test_ranking_results_on_the_leaderboard(truth: tuple[Path, dict[str, float]],
                                            tmp_path: Path) -> None:
    import shutil

    from refbench.evaluation.ranking import RankingConsistency
    from refbench.leaderboard.db import LeaderboardDB
    from refbench.leaderboard.split import partition
    from refbench.leaderboard.worker import Worker

    path, values = truth
    hidden = tmp_path / "hidden" / "eb"
    hidden.mkdir(parents=True)
    shutil.copy(path, hidden / TRUTH_FILE)
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    board.set_references_dir(hidden.parent)
    board.add_benchmark(SPEC, f"eb/{TRUTH_FILE}", seed=5)
    team = board.add_team("beta")
    rng = random.Random(2)
    predicted = {c: v + rng.gauss(0.0, 4.0) for c, v in values.items()}
    text = "".join(f"{c}\t{s!r}\n" for c, s in predicted.items()).encode()
    good = board.submit(team, SPEC, "scores.txt", text)
    extra = board.submit(team, SPEC, "scores.txt", text + b"5.26.3.26.0.1.2/5.26.3.26.0.1.2\t1\n")
    assert Worker(board, context="fork", time_limit=120.0).run(until_idle=True) == 2
    assert board.submission(good)["status"] == "scored", board.submission(good)["error"]
    parts = board.scores(good, reveal=True)
    refs = EfficientbertRankingFormat().read_references(path, get_spec(SPEC))
    public, private = partition(list(refs), 5, 0.5)
    assert len(public) + len(private) == 8 and min(len(public), len(private)) > 2
    for part, ids in (("public", public), ("private", private)):
        metric = RankingConsistency(ks=[2])
        metric.update([predicted[a] for a in ids], [refs[a] for a in ids])
        assert {k: parts[part][k] for k in metric.compute()} == pytest.approx(metric.compute())
    failed = board.submission(extra)
    assert failed["status"] == "failed" and "\n" not in failed["error"]


def test_a_ranking_of_another_search_is_named(truth: tuple[Path, dict[str, float]],
                                              tmp_path: Path) -> None:
    """A Pi-NAS ranking handed to the EfficientBERT benchmark, and the reverse: one line
    saying the codes belong to another search, not a parse error about integers."""
    path, values = truth
    pinas = _lines(tmp_path, "3 0 1 3\t0.5\n0 1 2 3\t0.4\n")
    with pytest.raises(RefbenchError, match=r"scores.txt:1: this code is of another search "
                                            r"\(format pinas_ranking\), not of "
                                            r"efficientbert-ranking-tiny"):
        evaluate_file(SPEC, pinas, references=path)
    eb = tmp_path / "eb.txt"
    eb.write_text("".join(f"{c}\t1.0\n" for c in values))
    with pytest.raises(RefbenchError, match=r"format efficientbert_ranking\), not of "
                                            r"pinas-ranking-tiny"):
        evaluate_file("pinas-ranking-tiny", eb, references=path)
    # a code of neither search keeps the space's own error
    with pytest.raises(RefbenchError, match="is not integers joined by"):
        evaluate_file(SPEC, _lines(tmp_path, "x.y/z\t1\n"), references=path)
