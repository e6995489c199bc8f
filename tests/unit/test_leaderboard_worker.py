"""The scoring worker: same scorer as `refbench evaluate`, hidden labels never leak,
missing ids rejected, limits enforced, exactly-once scoring under concurrency and kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.scoring import compute_metrics, evaluate_file
from refbench.registry import get_spec
from refbench.errors import RefbenchError
from refbench.leaderboard.db import LeaderboardDB, Quotas
from refbench.leaderboard.split import is_public, partition, split_pairs
from refbench.leaderboard.worker import REFERENCES_ERROR, Rejected, Worker, score_file
from tests.helpers import run_cli

MARKER = "ZQX_HIDDEN_MARKER_7731"
N_REFS = 60
SRC = Path(__file__).resolve().parents[2] / "src"


def labels() -> list[int]:
    return [(i * 7 + i // 3) % 2 for i in range(N_REFS)]


def make_board(tmp_path: Path, quotas: Quotas | None = None, **kw) -> LeaderboardDB:
    """glue-sst2 scored against a hidden SST-2 dev.tsv whose sentences hold MARKER."""
    refs = tmp_path / "hidden" / "SST-2"
    refs.mkdir(parents=True)
    rows = "".join(f"{MARKER} sentence {i}\t{y}\n" for i, y in enumerate(labels()))
    (refs / "dev.tsv").write_text("sentence\tlabel\n" + rows)
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data", quotas, **kw)
    board.set_references_dir(tmp_path / "hidden")
    board.add_benchmark("glue-sst2", "SST-2/dev.tsv", seed=11)
    return board


def write_predictions(path: Path, wrong: set[int] = frozenset(), drop: set[int] = frozenset()) -> bytes:
    """A real GLUE server file written by the glue_tsv format."""
    preds = {i: (1 - y if i in wrong else y) for i, y in enumerate(labels()) if i not in drop}
    FORMATS.get("glue_tsv")().write(path, preds, get_spec("glue-sst2"))
    return path.read_bytes()


def all_errors(board: LeaderboardDB) -> list[str]:
    return [r["error"] or "" for r in board.submissions()]


def test_scores_equal_the_local_scorer_on_each_part(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    team = board.add_team("alpha")
    wrong = {1, 4, 5, 9, 30, 31, 50}
    data = write_predictions(tmp_path / "SST-2.tsv", wrong)
    sub = board.submit(team, "glue-sst2", "SST-2.tsv", data)
    assert Worker(board, context="fork").run(until_idle=True) == 1
    assert board.submission(sub)["status"] == "scored"
    spec = get_spec("glue-sst2")
    public_ids, private_ids = partition(list(range(N_REFS)), seed=11)
    y = labels()
    for part, ids in (("public", public_ids), ("private", private_ids)):
        expected, _ = compute_metrics(spec, [1 - y[i] if i in wrong else y[i] for i in ids],
                                      [y[i] for i in ids])
        (row,) = board.leaderboard("glue-sst2", part=part, decimals=6, reveal=True)
        assert row.metrics == {k: round(v, 6) for k, v in expected.items()}
    # together the two parts are exactly `refbench evaluate` on the whole file
    whole = evaluate_file("glue-sst2", tmp_path / "SST-2.tsv",
                          tmp_path / "hidden" / "SST-2" / "dev.tsv").metrics["accuracy"]
    pub = board.leaderboard("glue-sst2", decimals=9)[0].value
    priv = board.leaderboard("glue-sst2", part="private", decimals=9, reveal=True)[0].value
    combined = (pub * len(public_ids) + priv * len(private_ids)) / N_REFS
    assert combined == pytest.approx(whole, abs=1e-6)
    assert board.leaderboard("glue-sst2", decimals=1)[0].value == round(pub, 1)


def test_a_public_fraction_of_0_2_scores_exactly_that_fifth(tmp_path: Path) -> None:
    """Every other test splits in halves, where a comparison turned the wrong way round
    still picks *a* half. With `--public-fraction 0.2` on 100 references about a fifth of
    the ids are public, and the worker's public score is the scorer's on exactly the ids
    `split.is_public` selects, its private score the scorer's on the rest."""
    n, seed, fraction = 100, 13, 0.2
    y = [(i * 7 + i // 3) % 2 for i in range(n)]
    refs = tmp_path / "hidden" / "SST-2"
    refs.mkdir(parents=True)
    (refs / "dev.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{MARKER} sentence {i}\t{label}\n" for i, label in enumerate(y)))
    db = tmp_path / "lb.sqlite"
    assert run_cli(["leaderboard", "init", "--db", str(db), "--references",
                    str(tmp_path / "hidden")]) == 0
    assert run_cli(["leaderboard", "benchmark", "add", "glue-sst2", "--references",
                    "SST-2/dev.tsv", "--seed", str(seed), "--public-fraction", str(fraction),
                    "--db", str(db)]) == 0
    assert run_cli(["leaderboard", "team", "add", "alpha", "--db", str(db)]) == 0
    board = LeaderboardDB.at(db)
    assert board.benchmark("glue-sst2")["public_fraction"] == fraction

    public_ids = [i for i in range(n) if is_public(seed, i, fraction)]
    private_ids = [i for i in range(n) if not is_public(seed, i, fraction)]
    assert 10 <= len(public_ids) <= 30, len(public_ids)
    assert (public_ids, private_ids) == partition(list(range(n)), seed, fraction)
    # every public prediction wrong, every private one right: a split that picked the
    # other side (or the halves) would show a very different pair of scores
    wrong = set(public_ids[::2])
    preds = {i: 1 - y[i] if i in wrong else y[i] for i in range(n)}
    FORMATS.get("glue_tsv")().write(tmp_path / "SST-2.tsv", preds, get_spec("glue-sst2"))
    sub = board.submit(board.team_id("alpha"), "glue-sst2", "SST-2.tsv",
                       (tmp_path / "SST-2.tsv").read_bytes())
    assert Worker(board, context="fork").run(until_idle=True) == 1
    scores = board.scores(sub, reveal=True)
    assert scores is not None
    spec = get_spec("glue-sst2")
    for part, ids in (("public", public_ids), ("private", private_ids)):
        expected, _ = compute_metrics(spec, [preds[i] for i in ids], [y[i] for i in ids])
        assert scores[part] == pytest.approx(expected), part
    assert scores["public"]["accuracy"] < 60.0 and scores["private"]["accuracy"] == 100.0
    # the same parts through the worker's own helper, fed in another order
    order = list(reversed(range(n)))
    parts = split_pairs([preds[i] for i in order], [y[i] for i in order], order, seed, fraction)
    assert sorted(parts["public"][1]) == sorted(y[i] for i in public_ids)
    assert len(parts["public"][0]) == len(public_ids)


def test_missing_extra_and_malformed_files_rejected_without_leaking(tmp_path: Path) -> None:
    board = make_board(tmp_path, Quotas(daily=20))
    team = board.add_team("alpha")
    hard = {3, 8, 13}
    full = write_predictions(tmp_path / "full.tsv", wrong=hard)
    omitted = write_predictions(tmp_path / "omit.tsv", drop=hard)  # drops what it gets wrong
    cases = {
        "omit.tsv": (omitted, "3 id(s) of the references have no prediction"),
        "extra.tsv": (full + f"{N_REFS}\t1\n".encode(), "not in the references"),
        "dup.tsv": (full + b"0\t1\n", "duplicate index 0"),
        "nan.tsv": (full.replace(b"\n5\t", b"\n5\tnan\n999999\t", 1), "unknown SST-2 label"),
        "header.tsv": (b"id,label\n0,1\n", "bad header"),
        "binary.pkl": (b"\x80\x04\x95\x00\xff\xfe", "not UTF-8"),
    }
    ids = {name: board.submit(team, "glue-sst2", name, data) for name, (data, _) in cases.items()}
    good = board.submit(team, "glue-sst2", "full.tsv", full)
    Worker(board, context="fork").run(until_idle=True)
    for name, (_, message) in cases.items():
        sub = board.submission(ids[name])
        assert sub["status"] == "failed", name
        assert message in sub["error"] and sub["error"].startswith(name), sub["error"]
        assert "\n" not in sub["error"] and str(tmp_path) not in sub["error"]
    assert board.submission(good)["status"] == "scored"
    (row,) = board.leaderboard("glue-sst2")  # the omitting file got no score at all
    assert row.submission_id == good
    text = repr(board.leaderboard("glue-sst2", part="private", reveal=True)) + repr(row)
    assert MARKER not in text and all(MARKER not in e for e in all_errors(board))


def test_the_worker_is_always_strict_even_where_evaluate_scores(tmp_path: Path) -> None:
    """SQuAD scores a missing question as 0 and ignores a foreign id (with a warning) in
    `refbench evaluate`; the leaderboard refuses both, with one line naming the upload."""
    import json

    context = "Paris is the capital of France."
    qas = [{"id": f"q{i}", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}]}
           for i in range(4)]
    refs = tmp_path / "dev-v1.1.json"
    refs.write_text(json.dumps({"version": "1.1", "data": [
        {"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}))
    full = {f"q{i}": "Paris" for i in range(4)}
    cases = {"omit.json": ({k: v for k, v in full.items() if k != "q2"},
                           "1 id(s) of the references have no prediction (first: q2)"),
             "extra.json": ({**full, "zz": "Rome"},
                            "1 prediction id(s) not in the references (first: zz)")}
    for name, (preds, message) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(preds))
        assert evaluate_file("squad-v1.1", path, refs).counts["scored"] == 4  # scored locally
        with pytest.raises(Rejected) as err:
            score_file("squad-v1.1", path, refs, seed=0, public_fraction=0.5, shown_name=name)
        text = str(err.value)
        assert text.startswith(f"{name}: ") and message in text and "\n" not in text
        assert str(tmp_path) not in text
    exact = tmp_path / "exact.json"
    exact.write_text(json.dumps(full))
    scored = score_file("squad-v1.1", exact, refs, seed=0, public_fraction=0.5)
    assert scored["counts"] == {"references": 4, "predictions": 4, "missing": 0, "extra": 0,
                                "scored": 4}


def test_unreadable_references_give_a_generic_error(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    cola = tmp_path / "hidden" / "CoLA"
    cola.mkdir()
    (cola / "dev.tsv").write_text(f"gj04\t{MARKER}\t\tThe sailors rode the breeze.\n")
    spec = get_spec("glue-cola")
    with pytest.raises(RefbenchError, match=MARKER):  # the plain reader would quote it
        FORMATS.get("glue_tsv")().read_references(cola / "dev.tsv", spec)
    board.add_benchmark("glue-cola", "CoLA/dev.tsv")
    team = board.add_team("alpha")
    sub = board.submit(team, "glue-cola", "CoLA.tsv", b"index\tprediction\n0\t1\n")
    Worker(board, context="fork").run(until_idle=True)
    assert board.submission(sub)["error"] == REFERENCES_ERROR
    assert all(MARKER not in e for e in all_errors(board))


def test_time_and_memory_limits(tmp_path: Path) -> None:
    board = make_board(tmp_path, Quotas(max_bytes=64 * 2 ** 20))
    team = board.add_team("alpha")
    data = write_predictions(tmp_path / "SST-2.tsv")
    slow = board.submit(team, "glue-sst2", "SST-2.tsv", data)
    Worker(board, time_limit=0.001, context="spawn").run(until_idle=True)
    assert "exceeded the time limit" in board.submission(slow)["error"]
    padded = data + b"1" * 40_000_000 + b"\n"  # reading it needs fresh memory
    big = board.submit(team, "glue-sst2", "SST-2.tsv", padded)
    Worker(board, memory_mb=16, context="spawn").run(until_idle=True)  # 16 MB of headroom
    assert "exceeded the memory limit" in board.submission(big)["error"]
    same = board.submit(team, "glue-sst2", "SST-2.tsv", padded)
    Worker(board, context="fork").run(until_idle=True)  # without the cap: a format error
    assert "exceeded" not in board.submission(same)["error"]


def test_expired_leases_requeue_then_give_up_and_stale_leases_write_nothing(tmp_path: Path) -> None:
    now = [1000.0]
    board = make_board(tmp_path, clock=lambda: now[0])
    team = board.add_team("alpha")
    sub = board.submit(team, "glue-sst2", "SST-2.tsv", write_predictions(tmp_path / "p.tsv"))
    first = board.claim("w1", lease_s=10)
    assert first is not None and board.claim("w2", lease_s=10) is None  # leased
    now[0] += 11  # w1 died: its lease expired
    second = board.claim("w2", lease_s=10)
    assert second is not None and second.submission_id == sub and second.attempts == 2
    assert not board.complete(first, {"accuracy": 1.0}, {"accuracy": 1.0},
                              {"accuracy": "higher"}, "accuracy", {})
    assert not board.fail(first, "late")
    assert board.submission(sub)["status"] == "scoring"
    now[0] += 11
    assert board.claim("w3", lease_s=10).attempts == 3
    now[0] += 11
    assert board.claim("w4", lease_s=10) is None
    assert board.submission(sub)["status"] == "failed"
    assert "did not finish in 3 attempts" in board.submission(sub)["error"]


def _worker_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "refbench.leaderboard.worker", "--db",
            str(tmp_path / "lb.sqlite"), "--data", str(tmp_path / "data"), "--context", "fork",
            *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def _table(board: LeaderboardDB) -> list[tuple]:
    out = []
    for part in ("public", "private"):
        for r in board.leaderboard("glue-sst2", part=part, decimals=6, reveal=True):
            out.append((part, r.rank, r.team, r.sha256, tuple(sorted(r.metrics.items()))))
    return sorted(out)


def test_concurrent_workers_score_each_once_like_one_by_one(tmp_path: Path) -> None:
    files = []
    for i in range(32):  # 4 teams x 8, every file different
        files.append((f"team{i % 4}", write_predictions(tmp_path / f"p{i}.tsv",
                                                        wrong=set(range(i % 17, N_REFS, 5 + i % 7)))))
    boards = {}
    for name in ("concurrent", "sequential"):
        folder = tmp_path / name
        board = make_board(folder, Quotas(daily=8))
        teams = {t: board.add_team(t) for t in sorted({t for t, _ in files})}
        for team, data in files:
            board.submit(teams[team], "glue-sst2", "SST-2.tsv", data)
        boards[name] = board
    procs = [subprocess.Popen(_worker_cmd(tmp_path / "concurrent", "--until-idle"), env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        counts.append(int(out.split()[1]))
    assert sum(counts) == 32
    seq = Worker(boards["sequential"], context="fork")
    while seq.run_once() is not None:
        pass
    conc = boards["concurrent"]
    subs = conc.submissions()
    assert [s["status"] for s in subs] == ["scored"] * 32 and {s["attempts"] for s in subs} == {1}
    assert tuple(conc._conn().execute("SELECT COUNT(*), COUNT(DISTINCT submission_id) FROM scores"
                                ).fetchone()) == (32, 32)
    assert _table(conc) == _table(boards["sequential"]) and len(_table(conc)) == 64
    assert conc.integrity_check() == "ok"


def test_sigkill_during_scoring_loses_and_doubles_nothing(tmp_path: Path) -> None:
    board = make_board(tmp_path, Quotas(daily=20))
    team = board.add_team("alpha")
    ids = [board.submit(team, "glue-sst2", "SST-2.tsv",
                        write_predictions(tmp_path / f"p{i}.tsv", wrong={i})) for i in range(4)]
    killed = None
    for _ in range(5):  # catch the worker while a submission is in 'scoring'
        proc = subprocess.Popen(_worker_cmd(tmp_path, "--lease-s", "1", "--context", "spawn"),
                                env=_env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            scoring = [s["id"] for s in board.submissions("scoring")]
            if scoring:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and its scoring child
                proc.wait()
                killed = scoring[0]
                break
            time.sleep(0.002)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if killed is not None and board.submission(killed)["status"] == "scoring":
            break
        killed = None
    assert killed is not None, "never caught the worker mid-scoring"
    fresh = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    assert fresh.integrity_check() == "ok"
    time.sleep(1.1)  # the dead worker's lease expires
    done = subprocess.run(_worker_cmd(tmp_path, "--until-idle"), env=_env(), timeout=120, check=False,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    subs = {s["id"]: s for s in fresh.submissions()}
    assert sorted(subs) == ids and {s["status"] for s in subs.values()} == {"scored"}
    assert subs[killed]["attempts"] == 2
    assert tuple(fresh._conn().execute("SELECT COUNT(*), COUNT(DISTINCT submission_id) FROM scores"
                                 ).fetchone()) == (4, 4)
    assert fresh.integrity_check() == "ok"
