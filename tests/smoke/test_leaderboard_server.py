"""The real leaderboard server as a subprocess (`refbench leaderboard serve`), driven by the
real CLI client and by raw HTTP: scores reach the submitter and the board, rejected files
and bad tokens are one-line exit-2 errors, the hidden labels never leak into any output or
log, folder submissions are zipped and scored like `refbench evaluate`, and a server
SIGKILLed among concurrent uploads loses nothing it acknowledged, doubles nothing, cleans
up only old orphan uploads at its next start, and every submission is scored exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.scoring import align, compute_metrics, evaluate_file
from refbench.registry import get_spec
from refbench.leaderboard.archive import zip_folder
from refbench.leaderboard.db import LeaderboardDB, Quotas
from refbench.leaderboard.split import partition, split_pairs
from refbench.leaderboard.worker import Worker
from refbench.results import ModelInfo, Provenance, Result

pytestmark = pytest.mark.timeout(180)

MARKER = "WKV_PLANTED_SERVER_MARKER_9052"
SRC = Path(__file__).resolve().parents[2] / "src"
CLI = [sys.executable, "-m", "refbench"]
N_SST2 = 60
N_COLA = 40
OLD = 2 * 3600.0  # older than the server's orphan grace period (one hour)


# -- data ------------------------------------------------------------------------------
def sst2_labels() -> list[int]:
    return [(i * 7 + i // 3) % 2 for i in range(N_SST2)]


def cola_labels() -> list[int]:
    return [(i * 3 + i // 5) % 2 for i in range(N_COLA)]


def write_references(root: Path) -> None:
    """Hidden references whose every sentence holds MARKER: `SST-2/dev.tsv` for glue-sst2
    and a GLUE root `glue/` (SST-2 and CoLA dev files) for the whole-GLUE benchmark."""
    sst2 = "sentence\tlabel\n" + "".join(f"{MARKER} sentence {i}\t{y}\n"
                                         for i, y in enumerate(sst2_labels()))
    cola = "".join(f"gj04\t{y}\t\t{MARKER} cola sentence {i}\n" for i, y in enumerate(cola_labels()))
    for folder, name, text in (("SST-2", "dev.tsv", sst2), ("glue/SST-2", "dev.tsv", sst2),
                               ("glue/CoLA", "dev.tsv", cola)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_text(text)


def sst2_file(path: Path, wrong: set[int] = frozenset(), drop: set[int] = frozenset()) -> Path:
    """A GLUE server file for glue-sst2, written by the glue_tsv format."""
    preds = {i: (1 - y if i in wrong else y) for i, y in enumerate(sst2_labels()) if i not in drop}
    FORMATS.get("glue_tsv")().write(path, preds, get_spec("glue-sst2"))
    return path


def result_json(path: Path, value: float) -> Path:
    Result(benchmark="glue-sst2", benchmark_version=1, split="validation",
           metrics={"accuracy": value}, directions={"accuracy": "higher"}, primary="accuracy",
           model=ModelInfo("reported-bert", params=4_400_000),
           provenance=Provenance("0.1.0", "abc123", "f" * 64, "l" * 64, "p" * 64, 0, "cpu",
                                 12.0)).write(path)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- processes -------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REFBENCH_TOKEN"}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)})
    return env


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, env=child_env(), capture_output=True,
                          text=True, timeout=120, check=False)


def ok(*args: str | Path) -> str:
    done = cli(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`refbench leaderboard serve` in its own process group, output captured to files."""

    def __init__(self, db: Path, logs: Path, worker: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logs.mkdir(parents=True, exist_ok=True)
        stem = logs / f"server-{self.port}"
        self.log_files = [stem.with_suffix(".out"), stem.with_suffix(".err")]
        with open(self.log_files[0], "wb") as out, open(self.log_files[1], "wb") as err:
            self.proc = subprocess.Popen(
                [*CLI, "leaderboard", "serve", "--db", str(db), "--host", "127.0.0.1", "--port",
                 str(self.port), "--worker" if worker else "--no-worker", "--time-limit", "20"],
                env=child_env(), stdout=out, stderr=err, start_new_session=True)
        self._wait_ready()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_files if p.exists())

    def _wait_ready(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/api/benchmarks", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"server did not answer in {timeout:g} s:\n{self.logs()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and anything it started (scoring children)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def servers() -> Iterator[Callable[..., Server]]:
    """Start servers; every one is killed at teardown, whatever the tests did."""
    started: list[Server] = []

    def start(db: Path, logs: Path, worker: bool = True) -> Server:
        server = Server(db, logs, worker)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def http(method: str, url: str, token: str | None = None, body: bytes | None = None,
         timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, done.stderr)
    assert lines[0].startswith("refbench: error: "), lines[0]
    return lines[0]


# -- a board served with its worker: glue-sst2 and the whole GLUE ----------------------
@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory,
          servers: Callable[..., Server]) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("lb-server")
    hidden, db = base / "hidden", base / "lb.sqlite"
    write_references(hidden)
    ok("leaderboard", "init", "--db", db, "--references", hidden, "--daily", "20")
    assert "added glue-sst2@1" in ok("leaderboard", "benchmark", "add", "glue-sst2",
                                     "--references", "SST-2/dev.tsv", "--db", db)
    assert "added glue@1" in ok("leaderboard", "benchmark", "add", "glue", "--references",
                                "glue", "--db", db)
    tokens = {}
    for team in ("alpha", "beta"):
        ok("leaderboard", "team", "add", team, "--db", db)
        tokens[team] = ok("leaderboard", "token", "issue", team, "--db", db).strip()
        assert tokens[team].startswith("rbt_")
    server = servers(db, base / "logs", worker=True)
    return {"base": base, "hidden": hidden, "db": db, "tokens": tokens, "server": server}


def test_cli_client_round_trip_never_shows_the_hidden_labels(board: dict[str, Any]) -> None:
    base, url, tokens = board["base"], board["server"].url, board["tokens"]
    outputs: list[str] = []

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        done = cli(*args)
        outputs.extend([done.stdout, done.stderr])
        return done

    wrong = {1, 4, 5, 9, 30, 31, 50}
    good = sst2_file(base / "SST-2.tsv", wrong=wrong)
    done = run("leaderboard", "submit", "glue-sst2", good, "--server", url, "--token",
               tokens["alpha"], "--model", "m", "--params", "100")
    assert done.returncode == 0, done.stderr
    sub_id = int(done.stdout.split()[1])
    assert f"submission {sub_id} scored (public part): accuracy=" in done.stdout
    # the printed score is the public part, scored like `refbench evaluate` on those ids
    spec, y = get_spec("glue-sst2"), sst2_labels()
    public_ids, _ = partition(list(range(N_SST2)), seed=0)
    expected, _ = compute_metrics(spec, [1 - y[i] if i in wrong else y[i] for i in public_ids],
                                  [y[i] for i in public_ids])
    assert f"accuracy={expected['accuracy']:.4f}" in done.stdout
    status, info = http("GET", f"{url}/api/submissions/{sub_id}", tokens["alpha"])
    assert status == 200 and info["status"] == "scored" and "private" not in info["scores"]
    assert info["scores"]["public"]["accuracy"] == pytest.approx(expected["accuracy"])

    # a file that omits one id is rejected by the worker: exit 2, one line
    missing = sst2_file(base / "missing" / "SST-2.tsv", drop={17})
    line = one_line_error(run("leaderboard", "submit", "glue-sst2", missing, "--server", url,
                              "--token", tokens["alpha"]))
    assert "rejected" in line and "1 id(s) of the references have no prediction" in line

    # no valid token: the server answers 401, the client exits 2 with one line
    fake = "rbt_0000000000000000_" + "x" * 43
    for token in (fake, tokens["beta"][:-1] + ("A" if tokens["beta"][-1] != "A" else "B"), ""):
        line = one_line_error(run("leaderboard", "submit", "glue-sst2", good, "--server", url,
                                  "--token", token))
        assert "401" in line, line
    status, _ = http("POST", f"{url}/api/submissions?benchmark=glue-sst2&filename=SST-2.tsv",
                     None, good.read_bytes())
    assert status == 401

    # a self-reported result.json
    done = run("leaderboard", "report", result_json(base / "result.json", 91.25), "--server",
               url, "--token", tokens["beta"])
    assert done.returncode == 0 and "self-reported result" in done.stdout, done.stderr

    done = run("leaderboard", "show", "glue-sst2", "--server", url, "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert (view["benchmark"], view["part"], view["primary"]) == ("glue-sst2@1", "public",
                                                                  "accuracy")
    # two separate rankings; the rejected file has no row in either
    (own,), (reported,) = view["rows"], view["self_reported"]
    rows = {True: own, False: reported}
    assert own["verified"] and not reported["verified"] and own["rank"] == reported["rank"] == 1
    assert (rows[True]["team"], rows[True]["model"], rows[True]["params"],
            rows[True]["submission_id"]) == ("alpha", "m", 100, sub_id)
    assert rows[True]["value"] == round(expected["accuracy"], 2)
    assert (rows[False]["team"], rows[False]["value"], rows[False]["model"]) == (
        "beta", 91.25, "reported-bert")
    done = run("leaderboard", "show", "glue-sst2", "--server", url)  # the rich tables
    assert done.returncode == 0 and "alpha" in done.stdout and "self-reported" in done.stdout
    assert done.stdout.index("alpha") < done.stdout.index("self-reported") \
        < done.stdout.index("beta")  # the verified ranking first, the self-reported below
    done = run("leaderboard", "show", "--server", url)  # no benchmark: the board's list
    assert done.returncode == 0 and "glue-sst2@1" in done.stdout and "accuracy" in done.stdout
    assert f"{expected['accuracy']:.2f}" in done.stdout
    line = one_line_error(run("leaderboard", "show", "glue-sts2", "--server", url))
    assert "404" in line and "did you mean glue-sst2@1?" in line

    # the hidden sentences appear nowhere: CLI output, API answers, the server's logs
    _, own = http("GET", f"{url}/api/submissions", tokens["alpha"])
    failed = [s for s in own["submissions"] if s["status"] == "failed"]
    assert len(failed) == 1 and "have no prediction" in failed[0]["error"]
    outputs.append(json.dumps(own))
    logs = board["server"].logs()
    assert "POST /api/submissions" in logs  # the log files really capture the server
    for text in outputs + [logs]:
        assert MARKER not in text


def test_missing_token_option_is_a_one_line_usage_error(tmp_path: Path) -> None:
    """No --token and no REFBENCH_TOKEN: a usage error, exit 2, no traceback."""
    done = cli("leaderboard", "submit", "glue-sst2", sst2_file(tmp_path / "SST-2.tsv"),
               "--server", "http://127.0.0.1:9")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "token" in done.stderr.lower()


def test_folder_submission_is_zipped_and_scored_like_evaluate(board: dict[str, Any]) -> None:
    base, url, token = board["base"], board["server"].url, board["tokens"]["beta"]
    spec, fmt = get_spec("glue"), FORMATS.get("glue_dir")()
    sst2_wrong, cola_wrong = {0, 3, 11, 40}, {2, 5, 6, 19, 33}
    preds = {("sst2", i): (1 - y if i in sst2_wrong else y) for i, y in enumerate(sst2_labels())}
    preds.update({("cola", i): (1 - y if i in cola_wrong else y)
                  for i, y in enumerate(cola_labels())})
    folder = base / "glue_submission"
    fmt.write(folder, preds, spec)
    assert sorted(p.name for p in folder.iterdir()) == ["CoLA.tsv", "SST-2.tsv"]

    done = cli("leaderboard", "submit", "glue", folder, "--server", url, "--token", token,
               "--model", "folder-model")
    assert done.returncode == 0, done.stderr
    assert MARKER not in done.stdout + done.stderr
    sub_id = int(done.stdout.split()[1])
    assert "scored (public part):" in done.stdout and "score=" in done.stdout
    status, info = http("GET", f"{url}/api/submissions/{sub_id}", token)
    assert status == 200 and info["status"] == "scored", info
    assert info["filename"] == "glue_submission.zip"
    assert info["sha256"] == sha256(zip_folder(folder))  # the CLI uploads the folder's zip

    # the worker's public and private scores equal the local scorer on each part
    references = board["hidden"] / "glue"
    refs = fmt.read_references(references, spec)
    pred_list, ref_list, _ = align(fmt.read(folder, spec), refs, folder, allow_missing=False)
    parts = split_pairs(pred_list, ref_list, list(refs), seed=0)
    expected = {part: compute_metrics(spec, *parts[part])[0] for part in ("public", "private")}
    public = info["scores"]["public"]
    assert set(public) == set(expected["public"]) and {"score", "SST-2/accuracy",
                                                       "CoLA/mcc"} <= set(public)
    assert public == pytest.approx(expected["public"])
    stored = LeaderboardDB(board["db"], board["db"].with_name("lb.sqlite.data"))
    try:
        scores = stored.scores(sub_id, reveal=True)
        assert scores is not None and scores["private"] == pytest.approx(expected["private"])
    finally:
        stored.close()
    # accuracy-like metrics of the two parts combine into `refbench evaluate`'s whole score
    whole = evaluate_file("glue", folder, references).metrics
    public_ids = set(partition(list(refs), seed=0)[0])
    n_public = sum(1 for key in refs if key[0] == "sst2" and key in public_ids)
    combined = (public["SST-2/accuracy"] * n_public
                + scores["private"]["SST-2/accuracy"] * (N_SST2 - n_public)) / N_SST2
    assert combined == pytest.approx(whole["SST-2/accuracy"])
    assert whole["SST-2/accuracy"] == pytest.approx(100.0 * (1 - len(sst2_wrong) / N_SST2))
    assert 0.0 < public["score"] <= 100.0
    assert MARKER not in board["server"].logs()


# -- SIGKILL among concurrent uploads, orphan clean-up, scoring exactly once -------------
N_FILES, N_TEAMS, KILL_AFTER = 32, 4, 10


def _fire(url: str, token: str, data: bytes, delay: float, record: Callable[..., None]) -> None:
    """One raw upload; records (HTTP status or None when the answer was lost, id)."""
    time.sleep(delay)
    request = urllib.request.Request(
        f"{url}/api/submissions?benchmark=glue-sst2&filename=SST-2.tsv", data=data,
        method="POST", headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            record(answer.status, json.loads(answer.read())["id"])
    except urllib.error.HTTPError as exc:
        record(exc.code, None)
    except Exception:  # noqa: BLE001 - refused, reset, truncated: the answer was lost
        record(None, None)


def _rows(db: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [dict(r) for r in con.execute(
            "SELECT s.id, s.sha256, s.status, s.stored_path, s.attempts, t.name AS team FROM "
            "submissions s JOIN teams t ON t.id = s.team_id ORDER BY s.id")]


@pytest.fixture(scope="module")
def crash(tmp_path_factory: pytest.TempPathFactory,
          servers: Callable[..., Server]) -> dict[str, Any]:
    """32 concurrent uploads from 4 teams to a `--no-worker` server SIGKILLed after ~10
    were acknowledged; old and young orphans planted; the server restarted."""
    base = tmp_path_factory.mktemp("lb-crash")
    hidden, db = base / "hidden", base / "lb.sqlite"
    write_references(hidden)
    ok("leaderboard", "init", "--db", db, "--references", hidden, "--daily", "100")
    ok("leaderboard", "benchmark", "add", "glue-sst2", "--references", "SST-2/dev.tsv", "--db", db)
    teams = [f"team{t}" for t in range(N_TEAMS)]
    tokens = {}
    for team in teams:
        ok("leaderboard", "team", "add", team, "--db", db)
        tokens[team] = ok("leaderboard", "token", "issue", team, "--db", db).strip()
    files = []  # (team, bytes): every file different
    for i in range(N_FILES):
        path = sst2_file(base / "files" / f"p{i}.tsv", wrong=set(range(i % 17, N_SST2, 5 + i % 7)))
        files.append((teams[i % N_TEAMS], path.read_bytes()))
    assert len({sha256(data) for _, data in files}) == N_FILES

    server = servers(db, base / "logs", worker=False)
    answers: dict[int, tuple[int | None, int | None]] = {}
    acked = threading.Condition()

    def recorder(i: int) -> Callable[..., None]:
        def record(status: int | None, sub_id: int | None) -> None:
            with acked:
                answers[i] = (status, sub_id)
                acked.notify_all()
        return record

    threads = [threading.Thread(target=_fire, args=(server.url, tokens[team], data, 0.01 * i,
                                                    recorder(i)), daemon=True)
               for i, (team, data) in enumerate(files)]
    for thread in threads:
        thread.start()
    with acked:
        assert acked.wait_for(lambda: sum(s == 202 for s, _ in answers.values()) >= KILL_AFTER,
                              timeout=60), answers
    server.kill()  # SIGKILL mid-stream
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == N_FILES

    after_kill = _rows(db)  # integrity checked in _rows
    uploads = db.with_name(db.name + ".data") / "submissions"
    now = time.time()
    planted = {"old_orphan": "0" * 32 + ".upload", "young_orphan": "1" * 32 + ".upload",
               "old_tmp": "." + "2" * 32 + ".upload.abc123.tmp", "old_other": "notes.txt"}
    for key, name in planted.items():
        (uploads / name).write_bytes(b"index\tprediction\n")
        if key != "young_orphan":
            os.utime(uploads / name, (now - OLD, now - OLD))
    old_referenced = Path(after_kill[0]["stored_path"]).name
    os.utime(uploads / old_referenced, (now - OLD, now - OLD))

    restarted = servers(db, base / "logs", worker=False)
    return {"base": base, "db": db, "uploads": uploads, "files": files, "tokens": tokens,
            "answers": answers, "after_kill": after_kill, "planted": planted,
            "old_referenced": old_referenced, "server": restarted,
            "listing_after_restart": sorted(p.name for p in uploads.iterdir())}


def _table(board: LeaderboardDB) -> list[tuple]:
    return sorted((part, r.team, r.sha256, tuple(sorted(r.metrics.items())))
                  for part in ("public", "private")
                  for r in board.leaderboard("glue-sst2", part=part, decimals=6, reveal=True))


def test_sigkill_among_concurrent_uploads_loses_and_doubles_nothing(crash: dict[str, Any]) -> None:
    files, answers, db = crash["files"], crash["answers"], crash["db"]
    sha_of = {i: sha256(data) for i, (_, data) in enumerate(files)}
    acked = {i: sub_id for i, (status, sub_id) in answers.items() if status == 202}
    # the kill came partway: some answers were lost, none was an error
    assert KILL_AFTER <= len(acked) < N_FILES, answers
    assert {status for status, _ in answers.values()} <= {202, None}
    # every acknowledged upload is there once, as sent; nothing is doubled
    rows = crash["after_kill"]
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows) >= len(acked)
    for i, sub_id in acked.items():
        assert by_id[sub_id]["sha256"] == sha_of[i] and by_id[sub_id]["team"] == files[i][0]
    assert len({r["sha256"] for r in rows}) == len(rows)
    assert {r["sha256"] for r in rows} <= set(sha_of.values())
    assert {r["status"] for r in rows} == {"queued"}

    # the client re-sends what its list of submissions lacks; the restarted server takes it
    url, tokens = crash["server"].url, crash["tokens"]
    present = set()
    for team, token in tokens.items():
        status, own = http("GET", f"{url}/api/submissions", token)
        assert status == 200
        present |= {s["sha256"] for s in own["submissions"]}
    assert present == {r["sha256"] for r in rows}
    for i, (team, data) in enumerate(files):
        if sha_of[i] not in present:
            status, answer = http("POST", f"{url}/api/submissions?benchmark=glue-sst2&"
                                          f"filename=SST-2.tsv", tokens[team], data)
            assert status == 202, answer
    crash["server"].kill()
    rows = _rows(db)
    assert len(rows) == N_FILES and {r["sha256"] for r in rows} == set(sha_of.values())
    for r in rows:  # every upload file a row points to exists and holds what was sent
        assert sha256((db.with_name(db.name + ".data") / r["stored_path"]).read_bytes()) \
            == r["sha256"]

    # a worker SIGKILLed while scoring, then `refbench leaderboard worker --until-idle`
    data_dir = db.with_name(db.name + ".data")
    worker = subprocess.Popen([sys.executable, "-m", "refbench.leaderboard.worker", "--db",
                               str(db), "--data", str(data_dir), "--lease-s", "2"],
                              env=child_env(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now_rows = _rows(db)
            scored = sum(r["status"] == "scored" for r in now_rows)
            scoring = [r["id"] for r in now_rows if r["status"] == "scoring"]
            if (scored >= 6 and scoring) or scored >= 16:
                os.killpg(worker.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    before = _rows(db)
    caught = [r["id"] for r in before if r["status"] == "scoring"]
    scored_before = sum(r["status"] == "scored" for r in before)
    assert 0 < scored_before < N_FILES
    if caught:
        time.sleep(2.2)  # the dead worker's lease expires
    done = cli("leaderboard", "worker", "--db", db, "--until-idle")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"scored {N_FILES - scored_before} submission(s)"
    final = _rows(db)
    assert {r["status"] for r in final} == {"scored"}
    assert all(r["attempts"] == (2 if r["id"] in caught else 1) for r in final), final
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT submission_id) FROM scores"
                           ).fetchone() == (N_FILES, N_FILES)

    # the table equals a fresh board given the same files one by one
    fresh = LeaderboardDB(crash["base"] / "seq.sqlite", crash["base"] / "seq.data",
                          Quotas(daily=100))
    fresh.set_references_dir(crash["base"] / "hidden")
    fresh.add_benchmark("glue-sst2", "SST-2/dev.tsv", seed=0)
    team_ids = {team: fresh.add_team(team) for team in sorted(tokens)}
    for team, data in files:
        fresh.submit(team_ids[team], "glue-sst2", "SST-2.tsv", data)
    assert Worker(fresh, context="fork").run(until_idle=True) == N_FILES
    crashed = LeaderboardDB(db, data_dir)
    try:
        table = _table(crashed)
        assert len(table) == 2 * N_FILES and table == _table(fresh)
        assert crashed.integrity_check() == "ok"
    finally:
        crashed.close()
        fresh.close()


def test_restart_removes_only_old_orphan_uploads(crash: dict[str, Any]) -> None:
    listing, planted = set(crash["listing_after_restart"]), crash["planted"]
    assert planted["old_orphan"] not in listing and planted["old_tmp"] not in listing
    assert {planted["young_orphan"], planted["old_other"], crash["old_referenced"]} <= listing
    referenced = {Path(r["stored_path"]).name for r in crash["after_kill"]}
    assert referenced <= listing  # no upload a row points to was touched
    # whatever else is there is an upload the kill orphaned moments ago (young: kept)
    uploads = crash["uploads"]
    for name in listing - referenced - set(planted.values()):
        assert (uploads / name).exists() and name.endswith((".upload", ".tmp"))
