"""The leaderboard web server: HTML pages and a JSON API over one `LeaderboardDB`.

Reading needs no account. Writing (uploading a prediction file, reporting a result.json)
needs a team's API token, sent as `Authorization: Bearer rbt_...` to the API or, for the
web form, kept in an HttpOnly SameSite=Strict cookie after logging in with it.

The server never reads the hidden references: scoring happens in the worker's limited
child process (`refbench.leaderboard.worker`), which the server runs in a background
thread unless told not to (then run `refbench leaderboard worker` beside it). Responses
to errors are one line; unexpected exceptions answer a bare "internal error".

Every page carries a Content-Security-Policy that allows nothing from elsewhere, which
also makes the promise "no external JavaScript" checkable by a browser.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.concurrency import run_in_threadpool

from refbench.errors import RefbenchError
from refbench.leaderboard import site
from refbench.leaderboard.db import (
    AuthError,
    LeaderboardDB,
    NotFound,
    QuotaExceeded,
    resolve_spec,
)
from refbench.registry import METRICS

COOKIE = "refbench_token"
#: the fields of `/api/benchmarks` (`verified` is the count of verified submissions, the
#: same as `scored`; `best_verified` the best of the part the board shows)
SUMMARY_KEYS = ("key", "name", "version", "closed", "scored", "self_reported", "verified",
                "primary", "higher_is_better", "part", "best_verified")
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
log = logging.getLogger("refbench.leaderboard")


class PayloadTooLarge(RefbenchError):
    """An upload over the size limit (rejected before it is stored)."""


@dataclass(frozen=True)
class ServerOptions:
    """`run_worker`: score in a background thread of this process. `worker_*`: the
    scoring limits. `orphan_grace_s`: uploads older than this with no submission row
    (a server killed mid-upload) are removed at start-up."""

    run_worker: bool = True
    worker_time_limit: float = 60.0
    worker_memory_mb: int = 2048
    worker_poll_s: float = 0.5
    orphan_grace_s: float = 3600.0


def _status_of(exc: RefbenchError) -> int:
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, QuotaExceeded):
        return 429
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, NotFound):
        return 404
    return 400


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without buffering them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"upload is {declared} bytes, the limit is {limit}", key="size")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"upload is over the limit of {limit} bytes", key="size")
        chunks.append(chunk)
    return b"".join(chunks)


def board_view(db: LeaderboardDB, key: str) -> dict[str, Any]:
    """What a benchmark's page, JSON and CSV show: the public part during the challenge,
    the private part once it is closed; `rows` is the verified ranking and
    `self_reported` the separate ranking of self-reported results."""
    bench = db.benchmark(key)
    part = "private" if bench["closed"] else "public"
    decimals = int(db.setting("decimals", 2))
    rankings = db.rankings(bench["key"], part=part, decimals=decimals)
    spec = resolve_spec(bench["key"])
    directions = METRICS.entry(spec.metric.name).obj.directions
    higher = directions.get(spec.primary, True) is not False
    return {"bench": dict(bench), "rows": rankings.verified,
            "self_reported": rankings.self_reported, "primary": spec.primary,
            "higher": higher, "part": part, "decimals": decimals}


def board_json(view: dict[str, Any]) -> dict[str, Any]:
    """The JSON of a benchmark: `rows` holds the verified ranking only, `self_reported`
    the self-reported one (each ranked from 1); `columns` are the metrics the page shows
    and `best_over_time` comes from verified rows only."""
    bench = view["bench"]
    return {"benchmark": bench["key"], "name": bench["name"], "version": bench["version"],
            "closed": bool(bench["closed"]), "part": view["part"], "primary": view["primary"],
            "higher_is_better": view["higher"], "decimals": view["decimals"],
            "metric_options": json.loads(bench.get("options") or "{}"),
            "columns": site.chosen_columns(view["rows"] + view["self_reported"],
                                           view["primary"]),
            "rows": [row.to_json() for row in view["rows"]],
            "self_reported": [row.to_json() for row in view["self_reported"]],
            "best_over_time": [{"time": t, "value": v} for t, v in
                               site.best_over_time(view["rows"], view["higher"])]}


def board_csv(view: dict[str, Any]) -> str:
    """The CSV of a benchmark: the verified ranking, then the self-reported one."""
    return site.board_csv(view["rows"], view["primary"], view["self_reported"])


def benchmark_summaries(db: LeaderboardDB) -> list[dict[str, Any]]:
    """Every benchmark with its counts, primary metric and direction, the part shown and
    its best verified score (None without one); a benchmark whose spec this refbench
    lacks keeps its counts with None for the rest, so the index still renders."""
    out = []
    for bench in db.benchmarks():
        summary = bench | {"closed": bool(bench["closed"]), "primary": None,
                           "higher_is_better": None, "best_verified": None,
                           "verified": bench["scored"],
                           "part": "private" if bench["closed"] else "public"}
        try:
            view = board_view(db, bench["key"])
        except RefbenchError:
            out.append(summary)
            continue
        summary.update(primary=view["primary"], higher_is_better=view["higher"],
                       best_verified=view["rows"][0].value if view["rows"] else None)
        out.append(summary)
    return out


def public_submission(sub: dict[str, Any]) -> dict[str, Any]:
    """The submission fields anyone may see (not the stored name, not the lease)."""
    keys = ("id", "benchmark", "team", "filename", "sha256", "size", "status", "error",
            "created_at", "finished_at", "model", "params")
    return {k: sub.get(k) for k in keys}


def _worker_loop(db: LeaderboardDB, options: ServerOptions, stop: threading.Event) -> None:
    from refbench.leaderboard.worker import Worker

    worker = Worker(db, time_limit=options.worker_time_limit, memory_mb=options.worker_memory_mb)
    while not stop.is_set():
        try:
            if worker.run_once() is None:
                stop.wait(options.worker_poll_s)
        except Exception:  # noqa: BLE001 - keep serving; the lease re-queues the job
            log.error("scoring worker: a submission could not be processed")
            stop.wait(options.worker_poll_s)


def create_app(db: LeaderboardDB, options: ServerOptions | None = None) -> FastAPI:
    """The ASGI application over `db`."""
    opts = options or ServerOptions()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        from refbench.leaderboard.maintenance import remove_orphan_uploads

        removed = remove_orphan_uploads(db, opts.orphan_grace_s)
        if removed:
            log.warning("removed %d orphan upload(s) left by an interrupted upload",
                        len(removed))
        stop = threading.Event()
        thread = None
        if opts.run_worker:
            thread = threading.Thread(target=_worker_loop, args=(db, opts, stop),
                                      name="refbench-worker", daemon=True)
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(opts.worker_time_limit + 10)

    app = FastAPI(title="refbench leaderboard", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/api/openapi.json")
    links = site.Links()

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(RefbenchError)
    async def refbench_error(request: Request, exc: RefbenchError) -> Response:
        status = _status_of(exc)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.message, "field": exc.key}, status_code=status)
        return HTMLResponse(site.page("error", f"<h1>Error</h1><p class=\"failed\">"
                                      f"{site.esc(exc.message)}</p>", links),
                            status_code=status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s (%s)", request.method, request.url.path,
                  type(exc).__name__)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "internal error"}, status_code=500)
        return PlainTextResponse("internal error", status_code=500)

    def bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return None

    def team_of(request: Request, cookie: bool) -> int:
        """The authenticated team (AuthError without a valid token)."""
        token = bearer(request) or (request.cookies.get(COOKIE) if cookie else None)
        return db.authenticate(token)

    def maybe_team(request: Request) -> tuple[int | None, str | None]:
        token = request.cookies.get(COOKIE)
        if not token:
            return None, None
        try:
            team_id = db.authenticate(token)
        except AuthError:
            return None, None
        return team_id, db.team_name(team_id)

    # -- JSON API ------------------------------------------------------------------------
    @app.get("/api/benchmarks")
    def api_benchmarks() -> dict[str, Any]:
        return {"benchmarks": [{k: b[k] for k in SUMMARY_KEYS}
                               for b in benchmark_summaries(db)]}

    @app.get("/api/benchmarks/{key}.csv")
    def api_board_csv(key: str) -> Response:
        view = board_view(db, key)
        return Response(board_csv(view), media_type="text/csv",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{view["bench"]["key"]}.csv"'})

    @app.get("/api/benchmarks/{key}")
    def api_board(key: str) -> dict[str, Any]:
        return board_json(board_view(db, key))

    @app.post("/api/submissions", status_code=202)
    async def api_submit(request: Request, benchmark: str, filename: str,
                         model: str | None = None, params: int | None = None) -> dict[str, Any]:
        team_id = await run_in_threadpool(team_of, request, False)
        data = await read_limited(request, db.quotas.max_bytes)
        sub_id = await run_in_threadpool(lambda: db.submit(team_id, benchmark, filename, data,
                                                           model=model, params=params))
        return {"id": sub_id, "status": "queued", "url": f"/api/submissions/{sub_id}"}

    @app.get("/api/submissions")
    def api_own_submissions(request: Request) -> dict[str, Any]:
        team_id = team_of(request, False)
        return {"team": db.team_name(team_id),
                "submissions": [public_submission(s) for s in db.submissions(team_id=team_id)]}

    @app.get("/api/submissions/{sub_id}")
    def api_submission(request: Request, sub_id: int) -> dict[str, Any]:
        team_id = team_of(request, False)
        sub = db.submission_view(sub_id)
        if sub["team_id"] != team_id:
            raise NotFound(f"no submission {sub_id}", key="submission")
        return public_submission(sub) | {"scores": db.scores(sub_id)}

    @app.post("/api/results", status_code=201)
    async def api_report(request: Request) -> dict[str, Any]:
        from refbench.results import parse_result

        team_id = await run_in_threadpool(team_of, request, False)
        body = await read_limited(request, 1024 * 1024)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RefbenchError(f"result.json is not valid JSON ({exc})", key="body") from None
        result = parse_result(doc, "result.json")
        entry = await run_in_threadpool(db.add_self_reported, team_id, result)
        return {"id": entry, "url": f"/api/results/{entry}"}

    @app.get("/api/results/{entry_id}")
    def api_result(entry_id: int) -> dict[str, Any]:
        return db.self_reported(entry_id)

    # -- pages -----------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> str:
        return site.index_page(benchmark_summaries(db), links, maybe_team(request)[1],
                               int(db.setting("decimals", 2)))

    @app.get("/b/{key}", response_class=HTMLResponse)
    def board(request: Request, key: str, sort: str | None = None,
              order: str = "desc") -> str:
        view = board_view(db, key)
        return site.board_page(view["bench"], view["rows"], view["primary"], view["higher"],
                               view["part"], links, self_reported=view["self_reported"],
                               team=maybe_team(request)[1], sort=sort,
                               descending=order != "asc", decimals=view["decimals"])

    @app.get("/submissions/{sub_id}", response_class=HTMLResponse)
    def submission(request: Request, sub_id: int) -> str:
        team_id, team = maybe_team(request)
        sub = db.submission_view(sub_id)
        owner = team_id == sub["team_id"]
        if sub["status"] != "scored" and not owner:
            raise NotFound(f"no submission {sub_id}", key="submission")
        return site.submission_page(sub, db.scores(sub_id), links, team=team, owner=owner,
                                    decimals=int(db.setting("decimals", 2)))

    @app.get("/results/{entry_id}", response_class=HTMLResponse)
    def result(request: Request, entry_id: int) -> str:
        return site.result_page(db.self_reported(entry_id), links, maybe_team(request)[1],
                                int(db.setting("decimals", 2)))

    @app.get("/login", response_class=HTMLResponse)
    def login_form() -> str:
        return site.login_page(links)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=2)
        token = str(form.get("token") or "").strip()
        try:
            await run_in_threadpool(db.authenticate, token)
        except AuthError as exc:
            return HTMLResponse(site.login_page(links, exc.message), status_code=401)
        response = RedirectResponse("/submit", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=30 * 86400)
        return response

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def submit_view(team_id: int, message: str | None = None,
                    error: str | None = None, status: int = 200) -> HTMLResponse:
        return HTMLResponse(site.submit_page(db.team_name(team_id), db.benchmarks(),
                                             db.submissions(team_id=team_id), links, message,
                                             error, db.quotas.max_bytes), status_code=status)

    @app.get("/submit", response_model=None)
    def submit_form(request: Request, submitted: int | None = None) -> Response:
        team_id, _ = maybe_team(request)
        if team_id is None:
            return RedirectResponse("/login", status_code=303)
        return submit_view(team_id, f"submission {submitted} received" if submitted else None)

    @app.post("/submit", response_model=None)
    async def submit_upload(request: Request) -> Response:
        team_id, _ = await run_in_threadpool(maybe_team, request)
        if team_id is None:
            return RedirectResponse("/login", status_code=303)
        limit = db.quotas.max_bytes
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit() or int(declared) > limit + 64 * 1024:
            return submit_view(team_id, error=f"upload over the limit of {limit} bytes",
                               status=413)
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return submit_view(team_id, error="choose a file to upload", status=400)
        data = await upload.read(limit + 1)
        params_text = str(form.get("params") or "").strip()
        try:
            params = int(params_text) if params_text else None
        except ValueError:
            return submit_view(team_id, error="params must be a positive integer", status=400)
        try:
            sub_id = await run_in_threadpool(
                lambda: db.submit(team_id, str(form.get("benchmark") or ""),
                                  upload.filename or "", data,
                                  model=str(form.get("model") or "").strip() or None,
                                  params=params))
        except RefbenchError as exc:
            return submit_view(team_id, error=exc.message, status=_status_of(exc))
        return RedirectResponse(f"/submit?submitted={sub_id}", status_code=303)

    return app
