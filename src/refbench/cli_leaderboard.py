"""`refbench leaderboard ...`: run a hidden-label leaderboard on one machine.

The owner's side works on the SQLite database directly (`init`, `benchmark add|close`,
`team add`, `token issue`, `serve`, `worker`, `show`, `export`); a submitter's side talks
to a running server over HTTP (`submit`, `report`, `status`, `show --server`). Tokens are
read from `--token` or, better (shell history), the `REFBENCH_TOKEN` environment variable.
Heavy modules (fastapi, uvicorn) are imported only by the commands that need them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

import typer

from refbench.errors import RefbenchError

leaderboard_app = typer.Typer(
    help="A hidden-label leaderboard: SQLite store, scoring worker, web server and static export.",
    no_args_is_help=True)
benchmark_app = typer.Typer(help="Put benchmarks on the board and close challenges.",
                            no_args_is_help=True)
team_app = typer.Typer(help="Teams that may submit.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens of teams.", no_args_is_help=True)
leaderboard_app.add_typer(benchmark_app, name="benchmark")
leaderboard_app.add_typer(team_app, name="team")
leaderboard_app.add_typer(token_app, name="token")

DB_OPT = typer.Option(Path("leaderboard.sqlite"), "--db", help="The leaderboard database.")
SERVER_OPT = typer.Option("http://127.0.0.1:8000", "--server", help="The leaderboard's URL.")
TOKEN_OPT = typer.Option(..., "--token", envvar="REFBENCH_TOKEN",
                         help="Your team's API token (or set REFBENCH_TOKEN).")


def open_db(db: Path, must_exist: bool = True) -> Any:
    """The database with the quotas it was created with."""
    from refbench.leaderboard.db import LeaderboardDB, Quotas

    if must_exist and not db.is_file():
        raise RefbenchError("no leaderboard database here; create it with `refbench "
                            "leaderboard init`", path=db)
    board = LeaderboardDB.at(db)
    stored = board.setting("quotas")
    if stored:
        board.quotas = Quotas(**stored)
    return board


@leaderboard_app.command("init")
def init(db: Path = DB_OPT,
         references: Path = typer.Option(..., "--references",
                                         help="Server-side folder of hidden references; never served."),
         decimals: int = typer.Option(2, "--decimals", help="Digits shown for every score."),
         daily: int = typer.Option(5, "--daily", help="Accepted submissions per team, benchmark and UTC day."),
         total: int = typer.Option(100, "--total", help="Accepted submissions per team and benchmark."),
         failed_daily: int = typer.Option(20, "--failed-daily", help="Rejected files per team, benchmark and day."),
         max_mb: float = typer.Option(16.0, "--max-mb", help="Upload size limit in MiB.")) -> None:
    """Create the database (SQLite, WAL) and its data folder."""
    if db.exists():
        raise RefbenchError("database already exists", path=db)
    if min(daily, total, failed_daily) < 1 or max_mb <= 0 or not 0 <= decimals <= 12:
        raise RefbenchError("quotas and the size limit must be positive, decimals 0..12")
    board = open_db(db, must_exist=False)
    board.set_references_dir(references)
    board.set_setting("decimals", decimals)
    board.set_setting("quotas", {"daily": daily, "total": total, "failed_daily": failed_daily,
                                 "max_bytes": int(max_mb * 1024 * 1024)})
    typer.echo(f"created {db} (uploads in {board.data_dir}); next: `refbench leaderboard "
               f"benchmark add`")


@benchmark_app.command("add")
def benchmark_add(key: str = typer.Argument(..., help="Benchmark name or name@version, e.g. glue-sst2."),
                  references: str = typer.Option(..., "--references",
                                                 help="Hidden labels, relative to the references folder "
                                                      "(e.g. SST-2/test_labels.tsv)."),
                  seed: int = typer.Option(0, "--seed", help="Seed of the public/private split."),
                  public_fraction: float = typer.Option(0.5, "--public-fraction"),
                  option: list[str] = typer.Option(
                      [], "--option", "-O", help="A run-time option of the benchmark's metric "
                                                 "that every submission is scored with, "
                                                 "key=value (repeatable; `refbench benchmarks "
                                                 "show NAME` lists them)."),
                  db: Path = DB_OPT) -> None:
    """Put a benchmark on the board, scored against hidden references."""
    from refbench.leaderboard.db import resolve_spec
    from refbench.options import parse_option_args
    from refbench.registry import METRICS

    spec = resolve_spec(key)
    options = parse_option_args(METRICS.get(spec.metric.name).options, option,
                                what=f"the metric of {spec.name}")
    board = open_db(db)
    board.add_benchmark(key, references, seed=seed, public_fraction=public_fraction,
                        options=options)
    typer.echo(f"added {board.benchmark(key)['key']}")


@benchmark_app.command("close")
def benchmark_close(key: str = typer.Argument(...), db: Path = DB_OPT) -> None:
    """End a challenge: the ranking switches to the private part."""
    open_db(db).close_benchmark(key)
    typer.echo(f"closed {key}; the board now shows private scores")


@team_app.command("add")
def team_add(name: str = typer.Argument(...), db: Path = DB_OPT) -> None:
    """Create a team."""
    open_db(db).add_team(name)
    typer.echo(f"added team {name}; issue it a token with `refbench leaderboard token issue {name}`")


@token_app.command("issue")
def token_issue(team: str = typer.Argument(...), db: Path = DB_OPT) -> None:
    """Print a new API token for a team. Only its hash is stored: this is the one chance to copy it."""
    typer.echo(open_db(db).issue_token(team))


@leaderboard_app.command("serve")
def serve(db: Path = DB_OPT,
          host: str = typer.Option("127.0.0.1", "--host", help="Bind address (localhost by default)."),
          port: int = typer.Option(8000, "--port"),
          worker: bool = typer.Option(True, "--worker/--no-worker",
                                      help="Score in a background thread of the server."),
          time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds per scoring."),
          memory_mb: int = typer.Option(2048, "--memory-mb", help="Memory per scoring process.")) -> None:
    """Serve the pages and the JSON API (FastAPI + uvicorn)."""
    import uvicorn

    from refbench.leaderboard.app import ServerOptions, create_app

    app = create_app(open_db(db), ServerOptions(run_worker=worker, worker_time_limit=time_limit,
                                                worker_memory_mb=memory_mb))
    typer.echo(f"leaderboard at http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


@leaderboard_app.command("worker")
def worker_cmd(db: Path = DB_OPT,
               until_idle: bool = typer.Option(False, "--until-idle", help="Exit when the queue is empty."),
               time_limit: float = typer.Option(60.0, "--time-limit"),
               memory_mb: int = typer.Option(2048, "--memory-mb"),
               lease_s: Optional[float] = typer.Option(
                   None, "--lease-s", help="Seconds before a dead worker's job is re-queued "
                                           "(default: time limit + 30).")) -> None:
    """Score queued submissions (beside `serve --no-worker`, or once with --until-idle)."""
    from refbench.leaderboard.worker import Worker

    count = Worker(open_db(db), time_limit=time_limit, memory_mb=memory_mb,
                   lease_s=lease_s).run(until_idle=until_idle)
    typer.echo(f"scored {count} submission(s)")


# -- the submitter's side ------------------------------------------------------------------------
def _request(method: str, url: str, token: str | None = None, body: bytes | None = None,
             content_type: str = "application/octet-stream") -> dict[str, Any]:
    """One HTTP call to the server; its JSON answer, or a one-line RefbenchError."""
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        raise RefbenchError(f"server answered {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RefbenchError(f"cannot reach {url.split('/api')[0]}: {reason}") from None


def _api(server: str, path: str, **query: Any) -> str:
    params = {k: v for k, v in query.items() if v is not None}
    return server.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")


@leaderboard_app.command("submit")
def submit(benchmark: str = typer.Argument(..., help="Benchmark on the server, e.g. glue-sst2."),
           file: Path = typer.Argument(..., help="Prediction file in the benchmark's format "
                                                 "(a folder format: the folder, uploaded as a zip)."),
           server: str = SERVER_OPT, token: str = TOKEN_OPT,
           model: Optional[str] = typer.Option(None, "--model", help="Model name shown on the board."),
           params: Optional[int] = typer.Option(None, "--params", help="Parameter count shown on the board."),
           wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the score."),
           timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for the score.")) -> None:
    """Upload a prediction file; the server scores it against labels you never see."""
    if file.is_dir():
        from refbench.leaderboard.archive import zip_folder

        data, name = zip_folder(file), f"{file.resolve().name}.zip"
    elif file.is_file():
        data, name = file.read_bytes(), file.name
    else:
        raise RefbenchError("prediction file not found", path=file)
    answer = _request("POST", _api(server, "/api/submissions", benchmark=benchmark,
                                   filename=name, model=model, params=params), token, data)
    sub_id = answer["id"]
    typer.echo(f"submission {sub_id} queued")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    while True:
        info = _request("GET", _api(server, f"/api/submissions/{sub_id}"), token)
        if info["status"] == "failed":
            raise RefbenchError(f"submission {sub_id} rejected: {info['error']}")
        if info["status"] == "scored":
            scores = info["scores"]
            shown = ", ".join(f"{k}={v:.4f}" for k, v in scores["public"].items())
            typer.echo(f"submission {sub_id} scored (public part): {shown}")
            return
        if time.monotonic() > deadline:
            raise RefbenchError(f"submission {sub_id} still {info['status']} after {timeout:g} s; "
                                f"check later with `refbench leaderboard status {sub_id}`")
        time.sleep(1.0)


@leaderboard_app.command("status")
def status(submission: int = typer.Argument(...), server: str = SERVER_OPT,
           token: str = TOKEN_OPT) -> None:
    """A submission's status, error and public scores."""
    typer.echo(json.dumps(_request("GET", _api(server, f"/api/submissions/{submission}"), token),
                          indent=2))


@leaderboard_app.command("report")
def report(result: Path = typer.Argument(..., help="A result.json written by refbench."),
           server: str = SERVER_OPT, token: str = TOKEN_OPT) -> None:
    """Record a result.json as a self-reported (unverified) row, with its provenance."""
    from refbench.results import load_result

    load_result(result)  # a clear local error before any upload
    answer = _request("POST", _api(server, "/api/results"), token, result.read_bytes(),
                      "application/json")
    typer.echo(f"self-reported result {answer['id']} recorded")


def _fixed(value: float | None, places: int) -> str:
    """A score with the board's decimals ('-' for none)."""
    return "-" if value is None else f"{value:.{places}f}"


def _show_benchmarks(listing: list[dict[str, Any]], places: int) -> None:
    """The board's benchmarks, one line each (plain aligned columns, never wrapped, so
    they read well in a pipe): key, primary metric, best verified score, counts."""
    lines = [("benchmark", "primary", "best verified", "verified", "self-reported",
              "challenge")]
    for b in listing:
        arrow = {True: " (higher)", False: " (lower)"}.get(b.get("higher_is_better"), "")
        lines.append((b["key"], f"{b.get('primary') or '-'}{arrow}",
                      _fixed(b.get("best_verified"), places),
                      str(b.get("verified", b.get("scored", 0))), str(b["self_reported"]),
                      "closed" if b["closed"] else "open"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def _show_ranking(title: str, rows: list[dict[str, Any]], primary: str, places: int,
                  split: bool) -> None:
    """One ranking as a rich table (the self-reported one also shows each row's split)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("rank", "team", "model", *(["split"] if split else []), primary,
                   "submitted"):
        table.add_column(column, overflow="fold")
    for row in rows:
        value = _fixed(row["value"], places)
        agg = row.get("aggregate")
        if agg and primary in agg.get("std", {}):
            value += f" ± {_fixed(agg['std'][primary], places)} ({agg['n']} seeds)"
        where = [row.get("split") or "-"] if split else []
        table.add_row(str(row["rank"]), row["team"], row["model"] or "-", *where, value,
                      time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["submitted_at"])))
    Console().print(table)


@leaderboard_app.command("show")
def show(benchmark: Optional[str] = typer.Argument(
             None, help="A benchmark on the board; without it, list the board's benchmarks."),
         db: Optional[Path] = typer.Option(None, "--db", help="Read the database directly."),
         server: Optional[str] = typer.Option(None, "--server", help="Or ask a running server."),
         as_json: bool = typer.Option(False, "--json", help="Print the JSON API's answer.")) -> None:
    """A benchmark's rankings: verified scores, then self-reported results in a separate
    table; without a benchmark, the board's benchmarks with their best verified score."""
    if (db is None) == (server is None):
        raise RefbenchError("give exactly one of --db and --server")
    if benchmark is None:
        if server is not None:
            listing = _request("GET", _api(server, "/api/benchmarks"))["benchmarks"]
            places = 2
        else:
            from refbench.leaderboard.app import SUMMARY_KEYS, benchmark_summaries

            board = open_db(db)
            listing = [{k: b[k] for k in SUMMARY_KEYS} for b in benchmark_summaries(board)]
            places = int(board.setting("decimals", 2))
        if as_json:
            typer.echo(json.dumps({"benchmarks": listing}, indent=2))
        elif not listing:
            typer.echo("no benchmark on this leaderboard yet")
        else:
            _show_benchmarks(listing, places)
        return
    if server is not None:
        view = _request("GET", _api(server, f"/api/benchmarks/{urllib.parse.quote(benchmark)}"))
    else:
        from refbench.leaderboard.app import board_json, board_view

        view = board_json(board_view(open_db(db), benchmark))
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    primary, places = view["primary"], int(view.get("decimals", 2))
    direction = "higher" if view["higher_is_better"] else "lower"
    _show_ranking(f"{view['benchmark']}: verified ranking ({view['part']} part of the hidden "
                  f"labels, {primary}, {direction} is better)",
                  [r for r in view["rows"] if r["verified"]], primary, places, split=False)
    reported = view.get("self_reported")
    if reported is None:  # a server from before separate rankings mixed them in `rows`
        reported = [r for r in view["rows"] if not r["verified"]]
    if reported:
        _show_ranking("self-reported: not verified against the hidden labels; may be on "
                      "another split", reported, primary, places, split=True)


@leaderboard_app.command("export")
def export(db: Path = DB_OPT, out: Path = typer.Option(Path("site"), "--out",
                                                      help="Folder for the static site (replaced).")) -> None:
    """Write a static copy (HTML + CSV + JSON) to host anywhere."""
    from refbench.leaderboard.export import export_site

    counts = export_site(open_db(db), out)
    typer.echo(f"wrote {out}/index.html: {counts['benchmarks']} benchmark(s), "
               f"{counts['submissions']} verified and {counts['results']} self-reported row(s)")
