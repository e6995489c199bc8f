"""The leaderboard server through a test client: API, pages, auth, uploads, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from refbench.leaderboard.app import ServerOptions, create_app  # noqa: E402
from refbench.leaderboard.db import LeaderboardDB, Quotas  # noqa: E402
from refbench.leaderboard.export import export_site  # noqa: E402
from refbench.leaderboard.worker import Worker  # noqa: E402
from refbench.results import ModelInfo, Provenance, Result  # noqa: E402

MARKER = "QZV_PLANTED_MARKER_4417"
N = 50


def labels() -> list[int]:
    return [(i * 5 + i // 4) % 2 for i in range(N)]


def predictions(wrong: set[int] = frozenset(), drop: set[int] = frozenset()) -> bytes:
    rows = [f"{i}\t{1 - y if i in wrong else y}" for i, y in enumerate(labels()) if i not in drop]
    return ("index\tprediction\n" + "\n".join(rows) + "\n").encode()


@pytest.fixture()
def board(tmp_path: Path) -> LeaderboardDB:
    refs = tmp_path / "hidden" / "SST-2"
    refs.mkdir(parents=True)
    (refs / "dev.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{MARKER} sentence {i}\t{y}\n" for i, y in enumerate(labels())))
    db = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data",
                       Quotas(daily=3, total=10, failed_daily=4, max_bytes=4096))
    db.set_references_dir(tmp_path / "hidden")
    db.add_benchmark("glue-sst2", "SST-2/dev.tsv", seed=5)
    for team in ("alpha", "beta"):
        db.add_team(team)
    return db


@pytest.fixture()
def client(board: LeaderboardDB):
    with TestClient(create_app(board, ServerOptions(run_worker=False))) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(client: TestClient, token: str, data: bytes, name: str = "SST-2.tsv", **query):
    params = {"benchmark": "glue-sst2", "filename": name, **query}
    return client.post("/api/submissions", params=params, content=data, headers=auth(token))


def score_all(board: LeaderboardDB) -> int:
    return Worker(board, context="fork").run(until_idle=True)


def result_doc(value: float, model: str = "tiny-bert") -> dict:
    return Result(benchmark="glue-sst2", benchmark_version=1, split="validation",
                  metrics={"accuracy": value}, directions={"accuracy": "higher"},
                  primary="accuracy", model=ModelInfo(model, params=4_400_000),
                  provenance=Provenance("0.1.0", "abc123", "f" * 64, "l" * 64, "p" * 64, 0,
                                        "cpu", 12.0)).to_json()


def test_requests_without_a_valid_token_are_rejected(client: TestClient,
                                                     board: LeaderboardDB) -> None:
    token = board.issue_token("alpha")
    for headers in ({}, auth("rbt_0000000000000000_" + "x" * 43), auth("garbage"),
                    auth(token[:-1] + ("A" if token[-1] != "A" else "B"))):
        answer = client.post("/api/submissions", params={"benchmark": "glue-sst2",
                                                         "filename": "SST-2.tsv"},
                             content=predictions(), headers=headers)
        assert answer.status_code == 401, headers
        assert client.get("/api/submissions", headers=headers).status_code == 401
        assert client.post("/api/results", content=json.dumps(result_doc(1.0)),
                           headers=headers).status_code == 401
    assert board.submissions() == []
    board.revoke_token(token)
    assert upload(client, token, predictions()).status_code == 401


def test_submit_score_and_see_the_row(client: TestClient, board: LeaderboardDB) -> None:
    token = board.issue_token("alpha")
    answer = upload(client, token, predictions(wrong={0, 1, 2}), model="tiny", params=1234)
    assert answer.status_code == 202, answer.text
    sub_id = answer.json()["id"]
    assert client.get(f"/api/submissions/{sub_id}", headers=auth(token)).json()["status"] == "queued"
    assert score_all(board) == 1
    info = client.get(f"/api/submissions/{sub_id}", headers=auth(token)).json()
    assert info["status"] == "scored" and "private" not in info["scores"]
    view = client.get("/api/benchmarks/glue-sst2").json()
    (row,) = view["rows"]
    assert (row["team"], row["verified"], row["model"], row["params"]) == ("alpha", True, "tiny", 1234)
    assert row["value"] == round(info["scores"]["public"]["accuracy"], 2)
    assert view["part"] == "public" and view["primary"] == "accuracy" and view["higher_is_better"]
    # another team cannot read this submission's status
    other = board.issue_token("beta")
    assert client.get(f"/api/submissions/{sub_id}", headers=auth(other)).status_code == 404
    # pages: index, table with the row and badges, CSV, submission page
    assert "glue-sst2@1" in client.get("/").text
    page = client.get("/b/glue-sst2").text
    assert "alpha" in page and "badge verified" in page and 'class="num primary"' in page
    assert f">{info['scores']['public']['accuracy']:.2f}<" in page  # the board's 2 decimals
    assert "<svg" in page and f"/submissions/{sub_id}" in page
    csv_text = client.get("/api/benchmarks/glue-sst2@1.csv").text
    assert csv_text.splitlines()[0].startswith("rank,team,model,params,verified,accuracy")
    assert "alpha" in client.get(f"/submissions/{sub_id}").text


def test_self_reported_results_with_provenance(client: TestClient, board: LeaderboardDB) -> None:
    token = board.issue_token("beta")
    answer = client.post("/api/results", content=json.dumps(result_doc(97.5)), headers=auth(token))
    assert answer.status_code == 201, answer.text
    entry = answer.json()["id"]
    view = client.get("/api/benchmarks/glue-sst2").json()
    assert view["rows"] == []  # the verified ranking holds verified rows only
    (row,) = view["self_reported"]
    assert not row["verified"] and row["self_reported_id"] == entry and row["value"] == 97.5
    assert row["rank"] == 1 and row["split"] == "validation"
    page = client.get("/b/glue-sst2").text
    assert "badge self" in page and f"/results/{entry}" in page
    assert "No verified results yet" in page and "may be on another split" in page
    assert view["best_over_time"] == []  # a self-reported value is never plotted
    prov = client.get(f"/results/{entry}").text
    assert "abc123" in prov and "self-reported" in prov
    bad = result_doc(1.0)
    del bad["provenance"]
    answer = client.post("/api/results", content=json.dumps(bad), headers=auth(token))
    assert answer.status_code == 400 and answer.json()["field"] == "provenance"
    answer = client.post("/api/results", content=b"{not json", headers=auth(token))
    assert answer.status_code == 400


def test_sorting_and_ranking(client: TestClient, board: LeaderboardDB) -> None:
    alpha, beta = board.issue_token("alpha"), board.issue_token("beta")
    upload(client, alpha, predictions(wrong=set(range(0, N, 3))), model="zeta")
    upload(client, beta, predictions(), model="alef")
    score_all(board)
    rows = client.get("/api/benchmarks/glue-sst2").json()["rows"]
    assert [r["team"] for r in rows] == ["beta", "alpha"] and rows[0]["value"] == 100.0
    by_model = client.get("/b/glue-sst2", params={"sort": "model", "order": "asc"}).text
    assert by_model.index("alef") < by_model.index("zeta")
    by_model = client.get("/b/glue-sst2", params={"sort": "model", "order": "desc"}).text
    assert by_model.index("zeta") < by_model.index("alef")
    history = client.get("/api/benchmarks/glue-sst2").json()["best_over_time"]
    assert history[-1]["value"] == 100.0


def test_rejected_files_show_one_line_errors_and_never_the_marker(
        client: TestClient, board: LeaderboardDB, caplog: pytest.LogCaptureFixture) -> None:
    token, other = board.issue_token("alpha"), board.issue_token("beta")
    bodies = [predictions(drop={3}), predictions() + b"999\t1\n",
              b"index\tprediction\n0\tNaN\n", b"\x00\x01garbage"]
    for body in bodies:  # each is rejected by the worker: it counts against the failed cap
        assert upload(client, token, body).status_code == 202
        score_all(board)
    answer = upload(client, token, predictions()[:40])
    assert answer.status_code == 429 and "rejected submissions" in answer.json()["error"]
    assert upload(client, other, predictions()[:40]).status_code == 202
    score_all(board)
    seen = []
    for key in (token, other):
        for sub in client.get("/api/submissions", headers=auth(key)).json()["submissions"]:
            assert sub["status"] == "failed" and "\n" not in sub["error"], sub
            seen.append(json.dumps(sub))
            seen.append(client.get(f"/submissions/{sub['id']}",
                                   cookies={"refbench_token": key}).text)
    assert len(seen) == 10
    seen += [client.get(p).text for p in ("/", "/b/glue-sst2", "/api/benchmarks",
                                          "/api/benchmarks/glue-sst2", "/login")]
    seen.append(client.get("/submit", cookies={"refbench_token": token}).text)
    seen.append(caplog.text)
    assert not any(MARKER in text for text in seen)
    assert any("have no prediction" in text for text in seen)
    # a failed submission is not public
    failed_id = board.submissions(status="failed")[0]["id"]
    assert client.get(f"/submissions/{failed_id}").status_code == 404


def test_upload_limits_names_and_quotas(client: TestClient, board: LeaderboardDB) -> None:
    token = board.issue_token("alpha")
    too_big = upload(client, token, b"x" * 5000)
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
    for name in ("../SST-2.tsv", "a/b.tsv", "x" * 200):
        answer = upload(client, token, predictions(), name=name)
        assert answer.status_code == 400 and answer.json()["field"] == "filename", name
    assert len(board.submissions(status="failed")) == 3  # counted against the failed cap
    for _ in range(3):
        assert upload(client, token, predictions()).status_code == 202
    answer = upload(client, token, predictions())
    assert answer.status_code == 429 and "daily limit" in answer.json()["error"]
    assert len(board.submissions(status="queued")) == 3
    assert client.get("/api/benchmarks/nope").status_code == 404
    stored = {p.name for p in (board.data_dir / "submissions").iterdir()}
    assert len(stored) == 3 and all(re.fullmatch(r"[0-9a-f]{32}\.upload", n) for n in stored)


def test_web_login_submit_form_and_logout(client: TestClient, board: LeaderboardDB) -> None:
    token = board.issue_token("alpha")
    assert client.get("/submit", follow_redirects=False).headers["location"] == "/login"
    bad = client.post("/login", data={"token": "rbt_nope"})
    assert bad.status_code == 401 and "invalid" in bad.text
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    client.cookies.set("refbench_token", token)
    answer = client.post("/submit", data={"benchmark": "glue-sst2@1", "model": "web-model"},
                         files={"file": ("SST-2.tsv", predictions(), "text/tab-separated-values")},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["location"]).text
    assert "received" in page and "queued" in page
    score_all(board)
    assert "scored" in client.get("/submit").text
    assert "web-model" in client.get("/b/glue-sst2").text
    answer = client.post("/submit", data={"benchmark": "glue-sst2@1"},
                         files={"file": ("../../etc.tsv", b"x", "text/plain")})
    assert answer.status_code == 400 and "invalid file name" in answer.text
    client.post("/logout")
    client.cookies.clear()
    assert client.get("/submit", follow_redirects=False).status_code == 303


def test_pages_load_nothing_external(client: TestClient, board: LeaderboardDB) -> None:
    token = board.issue_token("alpha")
    upload(client, token, predictions())
    score_all(board)
    for path in ("/", "/b/glue-sst2", "/login", "/submissions/1"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", answer.text), path


def test_private_scores_appear_when_the_challenge_closes(client: TestClient,
                                                          board: LeaderboardDB) -> None:
    token = board.issue_token("alpha")
    upload(client, token, predictions(wrong={0, 1, 2, 3, 4, 5, 6, 7}))
    score_all(board)
    public = client.get("/api/benchmarks/glue-sst2").json()
    board.close_benchmark("glue-sst2")
    private = client.get("/api/benchmarks/glue-sst2").json()
    assert (public["part"], private["part"]) == ("public", "private")
    expected = board.leaderboard("glue-sst2", part="private")[0].value
    assert private["rows"][0]["value"] == expected
    info = client.get("/api/submissions/1", headers=auth(token)).json()
    assert "private" in info["scores"]


def test_static_export_matches_the_api(tmp_path: Path, client: TestClient,
                                       board: LeaderboardDB) -> None:
    token = board.issue_token("alpha")
    upload(client, token, predictions(wrong={4}), model="m1")
    client.post("/api/results", content=json.dumps(result_doc(88.0)), headers=auth(token))
    score_all(board)
    out = tmp_path / "site"
    counts = export_site(board, out)
    assert counts == {"benchmarks": 1, "submissions": 1, "results": 1}
    exported = json.loads((out / "glue-sst2@1.json").read_text())
    assert exported == client.get("/api/benchmarks/glue-sst2").json()
    assert (out / "glue-sst2@1.csv").read_text() == client.get(
        "/api/benchmarks/glue-sst2.csv").text
    page = (out / "b" / "glue-sst2@1.html").read_text()
    assert 'href="../s/1.html"' in page and 'href="../r/1.html"' in page
    for path in out.rglob("*.html"):
        assert MARKER not in path.read_text()
        for link in re.findall(r'href="(?!data:)([^"#?]+)"', path.read_text()):
            assert (path.parent / link).resolve().exists(), (path, link)
    export_site(board, out)  # replacing an existing site works
    assert not list(tmp_path.glob(".site*"))
