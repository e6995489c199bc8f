"""The hosted leaderboard's SQLite store: schema, tokens, uploads, quotas, tables."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from refbench.errors import RefbenchError
from refbench.leaderboard import db as dbmod
from refbench.leaderboard.db import AuthError, LeaderboardDB, QuotaExceeded, Quotas
from refbench.leaderboard.split import is_public, partition
from refbench.results import ModelInfo, Provenance, Result

N_REFS = 40


def make_board(tmp_path: Path, quotas: Quotas | None = None, **kw) -> LeaderboardDB:
    """A board with glue-sst2 whose hidden references are a small SST-2 dev.tsv."""
    refs = tmp_path / "hidden" / "SST-2"
    refs.mkdir(parents=True)
    rows = "".join(f"a sentence number {i}\t{i % 2}\n" for i in range(N_REFS))
    (refs / "dev.tsv").write_text("sentence\tlabel\n" + rows)
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data", quotas, **kw)
    board.set_references_dir(tmp_path / "hidden")
    board.add_benchmark("glue-sst2", "SST-2/dev.tsv", seed=3)
    return board


def predictions(n: int = N_REFS, wrong: int = 0) -> bytes:
    lines = [f"{i}\t{(i % 2) if i >= wrong else 1 - i % 2}" for i in range(n)]
    return ("index\tprediction\n" + "\n".join(lines) + "\n").encode()


def test_schema_wal_and_version(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    con = sqlite3.connect(tmp_path / "lb.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"benchmarks", "teams", "tokens", "submissions", "scores", "self_reported",
            "settings", "schema_version"} <= tables
    assert board.integrity_check() == "ok"
    LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")  # reopening is idempotent
    assert con.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    with pytest.raises(RefbenchError, match="already"):
        board.add_benchmark("glue-sst2@1", "SST-2/dev.tsv")


def test_references_must_stay_inside_the_folder(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    (tmp_path / "outside.tsv").write_text("sentence\tlabel\nx\t1\n")
    for bad in ("../outside.tsv", str(tmp_path / "outside.tsv"), "SST-2/../../outside.tsv",
                "nothing-here"):
        with pytest.raises(RefbenchError, match="inside the references"):
            board.add_benchmark("glue-cola", bad)
    with pytest.raises(RefbenchError, match="not glue-sst2@9"):
        board.add_benchmark("glue-sst2@9", "SST-2/dev.tsv")


def test_tokens_hashed_and_compared_in_constant_time(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    board = make_board(tmp_path)
    alpha, beta = board.add_team("alpha"), board.add_team("beta")
    token = board.issue_token("alpha")
    other = board.issue_token("beta")
    assert board.authenticate(token) == alpha and board.authenticate(other) == beta
    secret = token.split("_", 2)[2]
    raw = (tmp_path / "lb.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("lb.sqlite-wal"))
    assert secret.encode() not in raw and token.encode() not in raw
    stored = sqlite3.connect(tmp_path / "lb.sqlite").execute("SELECT salt, hash FROM tokens").fetchall()
    assert len({bytes(s) for s, _ in stored}) == 2  # one salt per token
    calls = []
    real = dbmod.hmac.compare_digest
    monkeypatch.setattr(dbmod.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    token_id = token.split("_")[1]
    other_secret = other.split("_", 2)[2]
    for bad in (None, "", "garbage", token[:-1] + ("A" if token[-1] != "A" else "B"),
                f"rbt_{token_id}_{other_secret}", f"rbt_{'0' * 16}_{secret}"):
        with pytest.raises(AuthError):
            board.authenticate(bad)
    assert len(calls) == 6  # compared even when the token id is unknown or malformed
    board.revoke_token(token)
    with pytest.raises(AuthError):
        board.authenticate(token)
    assert board.authenticate(other) == beta


@pytest.mark.parametrize("name", ["../SST-2.tsv", "/etc/passwd", "a/b.tsv", "..", ".hidden",
                                  "a\\b.tsv", "x\0y.tsv", "", "..%2f..%2fx", "a" * 200])
def test_upload_names_validated(tmp_path: Path, name: str) -> None:
    board = make_board(tmp_path)
    team = board.add_team("alpha")
    with pytest.raises(RefbenchError, match="invalid file name"):
        board.submit(team, "glue-sst2", name, predictions())
    (row,) = board.submissions()
    assert row["status"] == "failed" and row["stored_path"] is None
    assert list((tmp_path / "data" / "submissions").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "hidden", "lb.sqlite",
                                                          "lb.sqlite-shm", "lb.sqlite-wal"]


def test_upload_stored_under_server_name_with_hash_and_size(tmp_path: Path) -> None:
    import hashlib

    board = make_board(tmp_path, Quotas(max_bytes=1000))
    team = board.add_team("alpha")
    data = predictions()
    sub = board.submission(board.submit(team, "glue-sst2", "SST-2.tsv", data))
    assert sub["status"] == "queued" and sub["size"] == len(data)
    assert sub["sha256"] == hashlib.sha256(data).hexdigest()
    stored = tmp_path / "data" / sub["stored_path"]
    assert stored.read_bytes() == data and stored.parent == tmp_path / "data" / "submissions"
    assert "SST-2" not in stored.name
    with pytest.raises(RefbenchError, match="limit is 1000"):
        board.submit(team, "glue-sst2", "SST-2.tsv", b"x" * 1001)
    with pytest.raises(RefbenchError, match="empty"):
        board.submit(team, "glue-sst2", "SST-2.tsv", b"")


def test_quotas_exact_under_32_concurrent_submissions(tmp_path: Path) -> None:
    board = make_board(tmp_path, Quotas(daily=5, total=100, failed_daily=20))
    teams = [board.add_team(f"team{i}") for i in range(4)]
    barrier = threading.Barrier(32)
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def one(team: int, k: int) -> None:
        barrier.wait()
        try:
            board.submit(team, "glue-sst2", "SST-2.tsv", predictions(wrong=k))
            result = "ok"
        except QuotaExceeded:
            result = "quota"
        with lock:
            outcomes.append((team, result))

    threads = [threading.Thread(target=one, args=(teams[i % 4], i)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for team in teams:
        assert sorted(r for t, r in outcomes if t == team) == ["ok"] * 5 + ["quota"] * 3
    rows = board.submissions()
    assert len(rows) == 20 and {r["status"] for r in rows} == {"queued"}
    assert len(list((tmp_path / "data" / "submissions").iterdir())) == 20  # refused: no file
    assert board.integrity_check() == "ok"


def test_daily_total_and_separate_failed_caps(tmp_path: Path) -> None:
    now = [1_000_000.0 * 86400]
    board = make_board(tmp_path, Quotas(daily=2, total=3, failed_daily=3), clock=lambda: now[0])
    team = board.add_team("alpha")
    for _ in range(3):
        with pytest.raises(RefbenchError, match="invalid file name"):
            board.submit(team, "glue-sst2", "../x", predictions())
    with pytest.raises(QuotaExceeded, match="3 rejected"):
        board.submit(team, "glue-sst2", "../x", predictions())
    with pytest.raises(QuotaExceeded, match="3 rejected"):  # the failed cap guards everything
        board.submit(team, "glue-sst2", "SST-2.tsv", predictions())
    now[0] += 86400  # next UTC day: failed count resets, accepted ones are not eaten by them
    board.submit(team, "glue-sst2", "SST-2.tsv", predictions())
    board.submit(team, "glue-sst2", "SST-2.tsv", predictions())
    with pytest.raises(QuotaExceeded, match="daily limit of 2 submissions"):
        board.submit(team, "glue-sst2", "SST-2.tsv", predictions())
    now[0] += 86400
    board.submit(team, "glue-sst2", "SST-2.tsv", predictions())
    with pytest.raises(QuotaExceeded, match="total limit of 3"):
        board.submit(team, "glue-sst2", "SST-2.tsv", predictions())
    other = board.add_team("beta")  # quotas are per team
    board.submit(other, "glue-sst2", "SST-2.tsv", predictions())


def _result(tmp_path: Path, accuracy: float, version: int = 1) -> Path:
    result = Result(benchmark="glue-sst2", benchmark_version=version, split="validation",
                    metrics={"accuracy": accuracy, "score": accuracy},
                    directions={"accuracy": "higher", "score": "higher"}, primary="accuracy",
                    model=ModelInfo("tiny-bert", params=4_000_000),
                    provenance=Provenance("0", None, None, "l" * 64, "p" * 64, 0, "cpu", 1.0))
    path = tmp_path / f"result-{accuracy}-{version}.json"
    result.write(path)
    return path


def test_self_reported_results_flagged_and_ranked(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    team = board.add_team("alpha")
    board.add_self_reported(team, _result(tmp_path, 91.23456))
    board.add_self_reported(team, _result(tmp_path, 95.0))
    rows = board.leaderboard("glue-sst2@1", decimals=1)
    assert [(r.rank, r.verified, r.value, r.model) for r in rows] == [
        (1, False, 95.0, "tiny-bert"), (2, False, 91.2, "tiny-bert")]
    assert rows[1].extra["self_reported"] is True and rows[1].extra["split"] == "validation"
    with pytest.raises(RefbenchError, match="unknown benchmark"):
        board.add_self_reported(team, _result(tmp_path, 90.0, version=2))
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1}')
    with pytest.raises(RefbenchError, match="missing required key"):
        board.add_self_reported(team, bad)


def test_private_part_hidden_until_closed(tmp_path: Path) -> None:
    board = make_board(tmp_path)
    with pytest.raises(RefbenchError, match="once the challenge is closed"):
        board.leaderboard("glue-sst2", part="private")
    assert board.leaderboard("glue-sst2", part="private", reveal=True) == []
    board.close_benchmark("glue-sst2")
    assert board.leaderboard("glue-sst2", part="private") == []


def test_public_private_partition_fixed_and_seeded() -> None:
    ids = list(range(2000))
    public, private = partition(ids, seed=3)
    assert sorted(public + private) == ids and not set(public) & set(private)
    assert 900 < len(public) < 1100
    again, _ = partition(list(reversed(ids)), seed=3)
    assert sorted(again) == sorted(public)  # independent of the order
    other, _ = partition(ids, seed=4)
    assert set(other) != set(public)
    assert is_public(3, ("sst2", 5)) == is_public(3, ("sst2", 5))
    with pytest.raises(RefbenchError, match="too few"):
        partition([1], seed=0)


_SUBMIT_LOOP = """
import sys
from refbench.leaderboard.db import LeaderboardDB, Quotas
board = LeaderboardDB(sys.argv[1], sys.argv[2], Quotas(daily=10**6, total=10**6))
team = board.team_id("alpha")
for k in range(100000):
    sub = board.submit(team, "glue-sst2", "SST-2.tsv", b"index\\tprediction\\n0\\t%d\\n" % k)
    print(sub, flush=True)
"""


def test_sigkill_during_submissions_keeps_the_database_sound(tmp_path: Path) -> None:
    import hashlib
    import os
    import signal
    import subprocess
    import sys
    import time

    board = make_board(tmp_path)
    board.add_team("alpha")
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.Popen([sys.executable, "-c", _SUBMIT_LOOP, str(tmp_path / "lb.sqlite"),
                             str(tmp_path / "data")], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(src)})
    assert proc.stdout is not None
    for _ in range(30):  # let it commit a few, then kill it mid-stream
        proc.stdout.readline()
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    acknowledged = [int(x) for x in proc.stdout.read().split()]
    proc.wait()
    fresh = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    assert fresh.integrity_check() == "ok"
    rows = fresh.submissions()
    assert len(rows) >= 30 and [r["id"] for r in rows] == list(range(1, len(rows) + 1))
    assert not acknowledged or acknowledged[-1] <= len(rows)  # nothing acknowledged is lost
    for row in rows:  # every committed row has its complete file
        data = (tmp_path / "data" / row["stored_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]


def test_metric_options_are_board_settings(tmp_path: Path) -> None:
    """A benchmark's declared metric options are fixed per board, checked against the
    metric, handed to the scorer with each claim, and old boards gain the column."""
    import json as json_mod

    from refbench.leaderboard.worker import score_file

    board = make_board(tmp_path)
    squad = tmp_path / "hidden" / "dev-v2.0.json"
    qas = [{"id": f"q{i}", "question": "who sat", "is_impossible": i % 2 == 1,
            "answers": [] if i % 2 else [{"text": "the cat", "answer_start": 0}]}
           for i in range(8)]
    squad.write_text(json_mod.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": "the cat sat", "qas": qas}]}]}))
    with pytest.raises(RefbenchError, match="no option 'na_prob_tresh'"):
        board.add_benchmark("squad-v2.0", "dev-v2.0.json", options={"na_prob_tresh": "0.5"})
    board.add_benchmark("squad-v2.0", "dev-v2.0.json", options={"na_prob_thresh": "0.5"})
    team = board.add_team("lab")
    answers = {q["id"]: "" if q["is_impossible"] else "the cat" for q in qas}
    board.submit(team, "squad-v2.0", "predictions.json", json_mod.dumps(answers).encode())
    claim = board.claim("w1", lease_s=60)
    assert claim is not None and claim.options == {"na_prob_thresh": 0.5}
    scored = score_file(claim.benchmark, claim.stored_path, claim.references, claim.seed,
                        claim.public_fraction, metric_options=claim.options)
    assert scored["public"]["exact"] == scored["private"]["exact"] == 100.0
    # a board made before the column existed gains it on open
    con = sqlite3.connect(tmp_path / "lb.sqlite")
    con.execute("ALTER TABLE benchmarks DROP COLUMN options")
    con.commit()
    con.close()
    reopened = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    assert reopened.benchmark("glue-sst2")["options"] == "{}"
