"""The hosted leaderboard end to end in a real headless Chromium.

The board is set up the way an owner would (the `refbench leaderboard` CLI), served by
`refbench leaderboard serve` in its own process with the scoring worker, and used the
way a submitter would: log in, upload through the form, wait for scoring, read the table
and sort it in the browser. Along the way it checks what unit tests cannot: the page
loads nothing from elsewhere, the Content-Security-Policy blocks none of the site's own
inline script and style (a violation shows up as a console error), and the hidden
references never leak into a page or the server's log.

Skips when the `playwright` package or a system Chromium is missing; it never downloads
a browser.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed")

from refbench.leaderboard.db import LeaderboardDB  # noqa: E402
from refbench.registry import METRICS  # noqa: E402
from refbench.results import ModelInfo, Provenance, Result  # noqa: E402

MARKER = "QZV_PLANTED_MARKER_4417"
N = 50
TEAM = "alpha"
WIDE = "kitti-car-3d"  # a benchmark whose metric reports dozens of keys
WIDE_PRIMARY = "Car/3d/moderate/R40"
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture()
def chromium() -> str:
    """The system Chromium's path (checked before any server starts); the test never
    fetches a browser of its own."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no system Chromium (/usr/bin/chromium or `chromium` on PATH)")


def labels() -> list[int]:
    return [(i * 5 + i // 4) % 2 for i in range(N)]


def predictions(wrong: set[int] = frozenset()) -> bytes:
    rows = [f"{i}\t{1 - y if i in wrong else y}" for i, y in enumerate(labels())]
    return ("index\tprediction\n" + "\n".join(rows) + "\n").encode()


def cli(*args: str) -> str:
    """Run `python -m refbench leaderboard ...` as the owner would; its stdout."""
    done = subprocess.run([sys.executable, "-m", "refbench", "leaderboard", *args],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    log: Path


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not answer {url} within {timeout:.0f} s:\n{log.read_text()}")


@contextlib.contextmanager
def serving(db: str, tmp_path: Path, token: str, *extra: str) -> Iterator[Server]:
    """`refbench leaderboard serve` on `db` at a free local port, always stopped after."""
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "refbench", "leaderboard", "serve", "--db", db,
             "--host", "127.0.0.1", "--port", str(port), "--time-limit", "30", *extra],
            stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/", process, log)
        yield Server(url, token, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    """A board with hidden SST-2 references (every sentence carries MARKER), one team with
    a token, served on a free local port; the server is always stopped afterwards."""
    refs = tmp_path / "hidden" / "SST-2"
    refs.mkdir(parents=True)
    (refs / "dev.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{MARKER} sentence {i}\t{y}\n" for i, y in enumerate(labels())))
    db = str(tmp_path / "lb.sqlite")
    cli("init", "--db", db, "--references", str(tmp_path / "hidden"))
    cli("benchmark", "add", "glue-sst2", "--references", "SST-2/dev.tsv", "--seed", "5",
        "--db", db)
    cli("team", "add", TEAM, "--db", db)
    token = cli("token", "issue", TEAM, "--db", db).strip().splitlines()[-1]
    assert token.startswith("rbt_"), token
    with serving(db, tmp_path, token) as running:
        yield running


def wide_metrics(primary_value: float, shift: float) -> dict[str, float]:
    """Every key of a metric with dozens of keys (the many-metric benchmark's)."""
    keys = list(METRICS.get("kitti_ap")(classes=["Car"]).keys)
    return {k: round(10.0 + i * 1.37 + shift, 4) for i, k in enumerate(keys)} | {
        WIDE_PRIMARY: primary_value}


@pytest.fixture()
def wide_server(tmp_path: Path) -> Iterator[Server]:
    """A board whose benchmark reports dozens of metric keys, with long model names, two
    verified rows (written straight into the store: no metric needs to run) and a
    self-reported one, served without a worker."""
    (tmp_path / "hidden" / "wide").mkdir(parents=True)
    db = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "lb.sqlite.data")
    db.set_references_dir(tmp_path / "hidden")
    db.set_setting("decimals", 2)
    db.add_benchmark(WIDE, "wide")
    for team in ("refbench-demo", "trivial-baselines"):
        db.add_team(team)
    for team, model, value, shift in (
            ("refbench-demo", "second_tiny_kitti (second_tiny_kitti-car-3d-long-name)",
             26.86, 0.0), ("trivial-baselines", "empty-detections", 0.0, -10.0)):
        sub = db.submit(db.team_id(team), WIDE, "label_2.zip", b"x", model=model,
                        params=1_234_567)
        claim = db.claim("w", lease_s=60)
        assert claim is not None and claim.submission_id == sub
        metrics = wide_metrics(value, shift)
        db.complete(claim, metrics, metrics, {k: "higher" for k in metrics}, WIDE_PRIMARY,
                    {"references": 40})
    metrics = wide_metrics(34.36, 1.0)
    db.add_self_reported(db.team_id("refbench-demo"), Result(
        benchmark=WIDE, benchmark_version=1, split="validation", metrics=metrics,
        directions={k: "higher" for k in metrics}, primary=WIDE_PRIMARY,
        model=ModelInfo("second_tiny_kitti", params=1_234_567, recipe="second_tiny_kitti"),
        provenance=Provenance("0.1.0", "abc123", "f" * 64, "l" * 64, "p" * 64, 0, "cpu",
                              12.0)))
    db.close()
    with serving(str(tmp_path / "lb.sqlite"), tmp_path, "", "--no-worker") as running:
        yield running


def row_models(page: Any) -> list[str]:
    """The model column of the board table, top to bottom, as the browser shows it now."""
    return page.locator("table.board tbody tr").evaluate_all(
        "rows => rows.map(r => r.cells[2].textContent)")


def test_submit_score_and_sort_in_a_real_browser(chromium: str, server: Server,
                                                  tmp_path: Path) -> None:
    good, bad = tmp_path / "good" / "SST-2.tsv", tmp_path / "bad" / "SST-2.tsv"
    for path, body in ((good, predictions()), (bad, predictions(wrong=set(range(0, N, 3))))):
        path.parent.mkdir()
        path.write_bytes(body)

    requests: list[str] = []
    console_errors: list[str] = []
    html_seen: list[str] = []
    origin = urlsplit(server.url)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(10_000)
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console_errors.append(f"console: {m.text} at {m.location}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))

            def seen() -> str:
                html_seen.append(page.content())
                return html_seen[-1]

            # an empty board, reached by clicking from the index
            page.goto(server.url + "/")
            seen()
            page.get_by_role("link", name=re.compile(r"^glue-sst2")).click()
            page.wait_for_url(re.compile(r"/b/glue-sst2"))
            assert "No results yet" in seen()

            # log in with the team's token
            page.goto(server.url + "/login")
            seen()
            page.fill("input[name=token]", server.token)
            page.click("form.box button")
            page.wait_for_url(re.compile(r"/submit$"))
            assert f"Submit as {TEAM}" in seen()

            def submit(path: Path, model: str) -> str:
                page.goto(server.url + "/submit")
                values = page.locator("select[name=benchmark] option").evaluate_all(
                    "options => options.map(o => o.value)")
                page.select_option("select[name=benchmark]",
                                   next(v for v in values if v.startswith("glue-sst2")))
                page.set_input_files("input[name=file]", str(path))
                page.fill("input[name=model]", model)
                page.click("form.box button")
                page.wait_for_url(re.compile(r"/submit\?submitted=\d+$"))
                sub_id = page.url.rsplit("=", 1)[1]
                assert f"submission {sub_id} received" in page.locator("p.message").inner_text()
                seen()
                return sub_id

            def wait_scored(sub_id: str, timeout: float = 30.0) -> None:
                cell = page.locator(f"table.own tr:has(a[href='/submissions/{sub_id}']) td.status")
                deadline = time.monotonic() + timeout
                while (status := cell.inner_text()) != "scored":
                    assert status in ("queued", "scoring"), (status, seen())
                    assert time.monotonic() < deadline, f"submission {sub_id} still {status}"
                    time.sleep(0.3)
                    page.reload()
                seen()

            first = submit(good, "web-good")
            wait_scored(first)

            # the board shows the verified row, the primary column and the plot
            page.goto(server.url + "/b/glue-sst2")
            seen()
            row = page.locator("table.board tbody tr")
            assert row.count() == 1
            cells = row.first.locator("td")
            assert cells.nth(1).inner_text() == TEAM and cells.nth(2).inner_text() == "web-good"
            assert page.locator("h2#verified .badge.verified").inner_text() == "verified"
            assert row.first.locator("td.primary").inner_text() == "100.00"
            assert page.locator("th.primary[data-col]").count() == 1
            assert page.locator("svg.history path").count() == 1

            # a worse second file ranks below; sorting by the primary column in the
            # browser (inline script, no reload) turns the order around and back
            second = submit(bad, "web-bad")
            wait_scored(second)
            page.goto(server.url + "/b/glue-sst2")
            seen()
            assert row_models(page) == ["web-good", "web-bad"]
            values = page.locator("table.board tbody td.primary").all_inner_texts()
            assert float(values[0]) > float(values[1]), values
            url_before, requests_before = page.url, len(requests)
            page.locator("th.primary[data-col] a").click()
            assert row_models(page) == ["web-bad", "web-good"]
            page.locator("th.primary[data-col] a").click()
            assert row_models(page) == ["web-good", "web-bad"]
            assert page.url == url_before and len(requests) == requests_before  # no reload
            seen()

            # the submission's public page
            page.goto(f"{server.url}/submissions/{first}")
            assert "scored" in seen()
        finally:
            browser.close()

    assert requests, "no request was recorded"
    elsewhere = [u for u in requests
                 if (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)]
    assert not elsewhere, f"requests left the local server: {elsewhere}"
    assert not console_errors, console_errors
    assert html_seen and not [h for h in html_seen if MARKER in h]
    log_text = server.log.read_text(errors="replace")
    assert "POST /submit" in log_text  # the log is captured, so the next check means something
    assert MARKER not in log_text


def test_a_many_metric_board_fits_a_1280_px_viewport(chromium: str, wide_server: Server,
                                                    tmp_path: Path) -> None:
    """A benchmark with dozens of metric keys: its page stays within a 1280 px window (no
    horizontal scrolling of the page or of a table), shows a handful of metric columns
    with the date and the details link on screen, and the details link leads to every
    metric."""
    console_errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: console_errors.append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            for path in ("/", f"/b/{WIDE}", "/submissions/1", "/results/1"):
                page.goto(wide_server.url + path)
                widths = page.evaluate("[document.documentElement.scrollWidth, "
                                       "window.innerWidth]")
                assert widths[0] <= widths[1] == VIEWPORT["width"], (path, widths)
            page.goto(f"{wide_server.url}/b/{WIDE}")
            page.screenshot(path=str(tmp_path / "wide-board.png"), full_page=True)
            tables = page.locator("table.board").evaluate_all(
                "ts => ts.map(t => [t.getBoundingClientRect().right, t.scrollWidth, "
                "t.parentElement.clientWidth])")
            assert len(tables) == 2, tables  # verified, then self-reported
            for right, width, room in tables:
                assert right <= VIEWPORT["width"] and width <= room, tables
            main = page.locator("table.board.verified")
            assert main.locator("thead th").count() <= 12
            assert main.locator("th.primary[data-col]").inner_text().replace("\u200b", "") \
                .replace("\n", "") == WIDE_PRIMARY
            assert main.locator("td.primary").all_inner_texts() == ["26.86", "0.00"]
            for cell in ("td.date", "td:last-child a"):  # date and details on screen
                box = main.locator(f"tbody tr >> nth=0 >> {cell}").bounding_box()
                assert box is not None and box["x"] + box["width"] <= VIEWPORT["width"]
            own = page.locator("table.board.self-reported")
            assert own.locator("td.primary").all_inner_texts() == ["34.36"]
            main.locator("tbody tr >> nth=0 >> td:last-child a").click()
            page.wait_for_url(re.compile(r"/submissions/1$"))
            assert page.locator("table.metrics tbody tr").count() == len(wide_metrics(0, 0))
        finally:
            browser.close()
    assert not console_errors, console_errors
