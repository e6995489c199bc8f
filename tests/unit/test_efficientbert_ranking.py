"""EfficientBERT as the second client of the ranking-consistency benchmark: the integer
architecture codes (round trip, pinned token table, one-line errors, read back through the
`nas_ranking` format), the client's sampling, and the benchmark end to end at a micro
setting (3 architectures, tiny teacher, a few steps) through the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from refbench.baselines.nlp.efficientbert.encoder import PUBLISHED_EFFICIENTBERT
from refbench.baselines.nlp.efficientbert.encoding import (
    TOKENS,
    code_of,
    code_space,
    decode,
    encode_expression,
    expressions_of,
    parse_code,
)
from refbench.baselines.nlp.efficientbert.space import (
    enumerate_linear_types,
    format_expression,
    parse_valid,
    random_expression,
)
from refbench.datasets.nasbench.spaces import ArchitectureError
from refbench.errors import RefbenchError
from tests.helpers import one_thread, run_cli, tiny_glue_teacher

TANH = "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))"
MUL = "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"


# -- the codes ----------------------------------------------------------------------------------
def test_token_table_is_pinned() -> None:
    assert len(TOKENS) == 29
    assert TOKENS[:3] == ("x", "wb1", "wb2") and TOKENS[3] == "gelu" and TOKENS[9] == "swish"
    assert TOKENS[10:13] == ("add", "mul", "max")
    assert [TOKENS[13 + i] for i in range(16)] == [t.name for t in enumerate_linear_types()]
    assert TOKENS[13] == "linear1_1" and TOKENS[28] == "linear4_4"
    # tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2)) in prefix order
    assert encode_expression(parse_valid(TANH)) == (5, 26, 3, 26, 0, 1, 2)
    assert code_of([TANH, MUL]) == "5.26.3.26.0.1.2/14.6.11.14.0.1.0.2"


def test_published_architecture_round_trips() -> None:
    code = code_of(PUBLISHED_EFFICIENTBERT)
    assert expressions_of(code, 6) == list(PUBLISHED_EFFICIENTBERT)
    space = code_space(6)
    assert space.canonical(code) == code
    assert space.canonical(json.dumps(list(PUBLISHED_EFFICIENTBERT))) == code
    flat = parse_code(code, 6)
    assert all(isinstance(t, int) for t in flat)
    assert [format_expression(e) for e in decode(flat, 6)] == list(PUBLISHED_EFFICIENTBERT)


def test_random_expressions_round_trip() -> None:
    rng = random.Random(0)
    exprs = [random_expression(rng) for _ in range(300)]
    for a, b in zip(exprs[::2], exprs[1::2]):
        code = code_of([a, b])
        assert expressions_of(code, 2) == [format_expression(a), format_expression(b)]
        assert code_space(2).canonical(code) == code


@pytest.mark.parametrize("text, message", [
    ("5.26.3.26.0.1.2", "has 1 layer(s)"),
    ("5.26.3.26.0.1.2/5.26.3.26.0.1", "ends inside an expression"),
    ("5.26.3.26.0.1.2/5.26.3.26.0.1.2.0", "1 integer(s) after the expression"),
    ("5.26.3.26.0.1.2/5.29.3.29.0.1.2", "integer 29 at position 1 is not a node (0-28)"),
    ("5.26.3.26.0.1.2/5.a.3", "is not integers joined by '.'"),
    ("5.26.3.26.0.1.2/5.5.26.3.26.0.1.2", "layer 2: "),  # tanh(tanh(...)): nested activation
    ("5.26.3.26.0.1.2/5.26.3.27.0.1.2", "linear pair mismatch"),
    ('["tanh(x)"', "malformed JSON"),
    (json.dumps([TANH]), "1 expression(s), expected 2"),
    (json.dumps([TANH, 3]), "a list of expression strings"),
    (json.dumps([TANH, "tanh(linear4_2(x,wb1))"]), "layer 2: "),
])
def test_malformed_codes_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ArchitectureError) as info:
        code_space(2).parse(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_codes_go_through_the_submission_format(tmp_path: Path) -> None:
    from refbench.benchmarks.formats.nas_ranking import read_scores, write_scores

    space = code_space(2)
    code = code_of([TANH, MUL])
    path = tmp_path / "scores.txt"
    write_scores(path, {json.dumps([MUL, TANH]): -0.5, code: 1.25}, space)
    assert read_scores(path, space) == {code_of([MUL, TANH]): -0.5, code: 1.25}
    path.write_text(f"{code}\t1.0\n5.26.3.26/1.2\t2.0\n")
    with pytest.raises(RefbenchError) as info:
        read_scores(path, space)
    assert "scores.txt" in str(info.value) and "2" in str(info.value)


def test_candidate_fitness_per_proxy() -> None:
    """The one larger-is-better number a supernet score file holds, and the search's order."""
    import math

    from refbench.baselines.nlp.efficientbert.sampler import Candidate
    from refbench.baselines.nlp.efficientbert.supernet import Architecture

    arch = Architecture.parse([TANH, MUL])
    a = Candidate("joint", 1, 1, "random", arch, 10, "h", metric=90.0, heldout_loss=0.5,
                  pred_loss=0.30)
    b = Candidate("joint", 1, 2, "random", arch, 10, "h", metric=90.0, heldout_loss=0.4,
                  pred_loss=0.35)
    bad = Candidate("joint", 1, 3, "random", arch, 10, "h")
    assert (a.fitness("metric"), a.fitness("loss"), a.fitness("pred")) == (90.0, -0.5, -0.3)
    assert bad.fitness("pred") == -math.inf and not bad.valid
    order = {p: [c.order for c in sorted((bad, b, a), key=lambda c: c.sort_key(p))]
             for p in ("metric", "loss", "pred")}
    assert order == {"metric": [2, 1, 3], "loss": [2, 1, 3], "pred": [1, 2, 3]}
    assert a.to_json("accuracy", "pred")["proxy_name"] == "heldout_pred_loss"


# -- the client and the benchmark ------------------------------------------------------------
STUDENT = ["model.hidden_size=32", "model.num_heads=4", "search.warmup_steps=3",
           "search.proxy_steps=2", "search.val_ratio=0.25", "search.proxy=pred",
           "trainer.batch_size=8"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_glue_teacher(tmp_path_factory.mktemp("ebrank"), n=60, steps=3)


def _client(env: dict[str, Path]) -> Any:
    from refbench.baselines.nlp.efficientbert.ranking import EfficientBertRankingClient

    return EfficientBertRankingClient(str(env["teacher"]), overrides=tuple(STUDENT),
                                      standalone_steps=2, cache_dir=str(env["cache"]))


def test_client_samples_distinct_in_budget_codes(env: dict[str, Path]) -> None:
    client = _client(env)
    codes = client.sample(6, seed=3)
    assert codes == client.sample(6, seed=3) and len(set(codes)) == 6
    assert codes != client.sample(6, seed=4)
    budget = client.setup.budget
    from refbench.baselines.nlp.efficientbert.supernet import Architecture

    for code in codes:
        assert client.space().canonical(code) == code
        arch = Architecture.parse(expressions_of(code, 2))
        assert budget.fits(arch.types)


@pytest.mark.slow  # ~10 s on an idle core: 3 stand-alone students, a supernet, 3 fitnesses
def test_ranking_end_to_end_micro(env: dict[str, Path]) -> None:
    from refbench.results import load_result

    out = env["base"] / "ranking"
    sets = [x for item in STUDENT for x in ("--set", item)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with one_thread(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_cli(["search", "efficientbert-ranking", "--benchmark", "glue-sst2",
                        "--teacher", str(env["teacher"]), "--out", str(out), "--cache-dir",
                        str(env["cache"]), "--archs", "3", "--truth-seeds", "0",
                        "--methods", "sampled", "--supernet-seeds", "0", "--ks", "1",
                        "--standalone-steps", "2", "--workers", "1", "--json", *sets])
    assert code == 0, stderr.getvalue()
    summary = json.loads((out / "ranking.json").read_text())
    assert summary["benchmark"] == "efficientbert-ranking" and summary["sampling"]["n"] == 3
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert [t["arch"] for t in truth] == summary["architectures"]
    assert all(0.0 <= t["accuracy"] <= 100.0 for t in truth)
    result = load_result(out / "sampled" / "seed0" / "result.json")
    assert result.primary == "kendall_tau_b" and -1.0 <= result.metrics["kendall_tau_b"] <= 1.0
    scores = (out / "sampled" / "seed0" / "scores.txt").read_text().splitlines()
    assert len(scores) == 3 and all(float(s.split("\t")[1]) <= 0 for s in scores)  # -pred loss
    assert (out / "supernets" / "sampled-s0" / "supernet.safetensors").is_file()
    assert "pred" in (out / "score_vs_accuracy.svg").read_text()
    # a second run reuses every finished training (same settings) and gives the same numbers
    with one_thread(), contextlib.redirect_stdout(io.StringIO()):
        assert run_cli(["search", "efficientbert-ranking", "--benchmark", "glue-sst2",
                        "--teacher", str(env["teacher"]), "--out", str(out), "--cache-dir",
                        str(env["cache"]), "--archs", "3", "--truth-seeds", "0",
                        "--supernets", str(out / "supernets" / "sampled-s0"), "--ks", "1",
                        "--standalone-steps", "2", "--workers", "1", *sets]) == 0
    again = load_result(out / "sampled" / "seed0" / "result.json")
    assert again.metrics["kendall_tau_b"] == result.metrics["kendall_tau_b"]


def test_supernet_job_then_scores_on_its_own_heldout_split(env: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from refbench.baselines.nlp.efficientbert.ranking import score_archs, train_supernet

    common = dict(benchmark="glue-sst2", teacher=str(env["teacher"]),
                  recipe="efficientbert_tiny_glue", cache_dir=str(env["cache"]))
    archs = _client(env).sample(2, seed=0)
    with one_thread():
        run = train_supernet(**common, overrides=STUDENT, method="sampled", seed=0,
                             out=str(tmp_path))
        assert train_supernet(**common, overrides=STUDENT, method="sampled", seed=0,
                              out=str(tmp_path)) == run  # reused, not retrained
        scores = score_archs(**common, overrides=STUDENT, run=run, seed=0, archs=archs)
        assert set(scores) == set(archs) and all(s < 0 for s in scores.values())  # -pred loss
        with pytest.raises(RefbenchError, match="another held-out split"):
            score_archs(**common, overrides=[*STUDENT, "search.val_ratio=0.5"], run=run,
                        seed=0, archs=archs)
        with pytest.raises(RefbenchError, match="unknown supernet method"):
            train_supernet(**common, overrides=STUDENT, method="spos", seed=0,
                           out=str(tmp_path))


def _micro(env: dict[str, Path], out: Path, *extra: str) -> dict[str, Any]:
    sets = [x for item in STUDENT for x in ("--set", item)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_cli(["search", "efficientbert-ranking", "--benchmark", "glue-sst2",
                        "--teacher", str(env["teacher"]), "--out", str(out), "--cache-dir",
                        str(env["cache"]), "--archs", "3", "--truth-seeds", "0",
                        "--methods", "sampled", "--supernet-seeds", "0", "--ks", "1",
                        "--standalone-steps", "2", *extra, *sets]) == 0
    return json.loads((out / "ranking.json").read_text())


@pytest.mark.slow
def test_ranking_on_ray_equals_the_local_pool(env: dict[str, Path]) -> None:
    pytest.importorskip("ray")
    local = _micro(env, env["base"] / "local", "--workers", "2")
    ray = _micro(env, env["base"] / "ray", "--address", "local")
    assert ray["architectures"] == local["architectures"]
    for name in ("ground_truth.jsonl", "sampled/seed0/scores.txt"):
        assert (env["base"] / "ray" / name).read_text() == \
            (env["base"] / "local" / name).read_text()
    assert ray["methods"] == local["methods"]


def test_bad_inputs_are_one_line_errors(env: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["search", "efficientbert-ranking", "--benchmark", "glue-sst2", "--teacher",
            str(env["teacher"]), "--cache-dir", str(env["cache"]), "--workers", "1",
            *[x for item in STUDENT for x in ("--set", item)]]
    for extra, message in ((["--methods", "bogus"], "unknown supernet method"),
                           (["--archs", "2"], "must be >= 3"),
                           (["--supernets", str(tmp_path)], "supernet.json")):
        out = tmp_path / f"out-{extra[0][2:]}"
        assert run_cli([*base, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
