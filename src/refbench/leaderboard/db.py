"""The hosted leaderboard's store: one SQLite database (WAL) plus a server data folder.

Tables: benchmarks (name@version, the hidden references' place inside the server's
references folder, the public/private split seed), teams, API tokens (only a salted
scrypt hash is kept), submissions (file sha256, size, server-chosen stored name, status
queued/scoring/scored/failed, one-line error, timestamps, attempts and the scoring
lease), scores (public and private metrics) and self-reported results (result.json
documents, flagged as such). `schema_version` records the layout.

Every state change is one `BEGIN IMMEDIATE` transaction, so quotas are counted in the
same transaction as the insert and a submission's score row and its status change
commit together (or not at all): a killed process never leaves a half-applied change.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refbench.errors import RefbenchError
from refbench.io import atomic_write_bytes
from refbench.results import Result, load_result

SCHEMA_VERSION = 1
STATUSES = ("queued", "scoring", "scored", "failed")
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TOKEN = re.compile(r"rbt_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})")
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS benchmarks (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,
  key TEXT NOT NULL UNIQUE, references_path TEXT NOT NULL, seed INTEGER NOT NULL,
  public_fraction REAL NOT NULL, closed INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
  options TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS teams (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id), salt BLOB NOT NULL,
  hash BLOB NOT NULL, created_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS submissions (
  id INTEGER PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id),
  benchmark_id INTEGER NOT NULL REFERENCES benchmarks(id), filename TEXT NOT NULL,
  stored_path TEXT, sha256 TEXT, size INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('queued', 'scoring', 'scored', 'failed')),
  error TEXT, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
  attempts INTEGER NOT NULL DEFAULT 0, lease_id TEXT, lease_expires REAL, worker TEXT,
  model TEXT, params INTEGER);
CREATE INDEX IF NOT EXISTS submissions_queue ON submissions (status, id);
CREATE INDEX IF NOT EXISTS submissions_team ON submissions (team_id, benchmark_id, created_at);
CREATE TABLE IF NOT EXISTS scores (
  submission_id INTEGER PRIMARY KEY REFERENCES submissions(id),
  public_json TEXT NOT NULL, private_json TEXT NOT NULL, directions_json TEXT NOT NULL,
  primary_key TEXT NOT NULL, counts_json TEXT NOT NULL, scored_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS self_reported (
  id INTEGER PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id),
  benchmark_id INTEGER NOT NULL REFERENCES benchmarks(id), result_json TEXT NOT NULL,
  self_reported INTEGER NOT NULL DEFAULT 1 CHECK (self_reported = 1),
  submitted_at REAL NOT NULL);
"""


class QuotaExceeded(RefbenchError):
    """A team reached one of its submission limits."""


class NotFound(RefbenchError):
    """An unknown benchmark, submission or result (the server answers 404)."""


class AuthError(RefbenchError):
    """A missing, malformed, unknown or revoked API token."""


@dataclass(frozen=True)
class Quotas:
    """Per team and benchmark: accepted submissions per UTC day and in total; rejected
    (failed) ones per UTC day, a separate and larger cap; the upload size limit."""

    daily: int = 5
    total: int = 100
    failed_daily: int = 20
    max_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Claim:
    """A submission a worker holds for scoring until `lease_expires`."""

    submission_id: int
    lease_id: str
    benchmark: str
    stored_path: Path
    filename: str
    references: Path
    seed: int
    public_fraction: float
    attempts: int
    #: the board's fixed metric options (e.g. a decision threshold), `{}` for none
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BoardRow:
    """One row of a ranking: a verified submission (scored here against the hidden
    labels) or a self-reported result.json; `rank` is its place within its own ranking."""

    rank: int
    team: str
    verified: bool
    primary: str
    value: float
    metrics: dict[str, float]
    submitted_at: float
    submission_id: int | None = None
    sha256: str | None = None
    model: str | None = None
    params: int | None = None
    self_reported_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: a seed protocol's {seeds, n, std, per_seed, runs}: `value` is then the mean
    aggregate: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "team": self.team, "verified": self.verified,
                "primary": self.primary, "value": self.value, "metrics": self.metrics,
                "submitted_at": self.submitted_at, "submission_id": self.submission_id,
                "sha256": self.sha256, "model": self.model, "params": self.params,
                "self_reported_id": self.self_reported_id, "aggregate": self.aggregate,
                "split": self.extra.get("split")}


@dataclass
class Rankings:
    """A benchmark's two separate rankings, each ranked from 1 by the primary metric (ties:
    the earlier submission first). Self-reported rows were not scored against the hidden
    labels and may be on another split, so they never share a ranking with verified rows."""

    verified: list[BoardRow]
    self_reported: list[BoardRow]
    #: whether a higher primary value ranks first
    higher: bool = True


def validate_filename(name: str) -> str:
    """The submitted file's name if it is a plain name (letters, digits, `._-`, no path,
    no leading dot, at most 128 characters); a RefbenchError otherwise."""
    if not isinstance(name, str) or not _FILENAME.fullmatch(name) or ".." in name:
        raise RefbenchError(f"invalid file name {str(name)[:40]!r}: use letters, digits, "
                            f"'.', '_' and '-' only, no folders", key="filename")
    return name


def validate_model(model: str | None, params: int | None) -> tuple[str | None, int | None]:
    """The optional model label of an upload: a short printable name and a parameter count."""
    if model is not None:
        if not isinstance(model, str) or not 0 < len(model) <= 80 or not model.isprintable():
            raise RefbenchError("model name must be 1 to 80 printable characters", key="model")
    if params is not None:
        if isinstance(params, bool) or not isinstance(params, int) or not 0 < params < 10 ** 13:
            raise RefbenchError("params must be a positive integer", key="params")
    return model, params


def _model_label(model: dict[str, Any] | None) -> str | None:
    """`name (recipe)` of a result.json's model block, the way the board shows it."""
    if not model:
        return None
    recipe = model.get("recipe")
    return f"{model['name']} ({recipe})" if recipe and recipe != model["name"] else model["name"]


def _rounded_aggregate(agg: dict[str, Any] | None, places: int) -> dict[str, Any] | None:
    """A stored aggregate block with its numbers rounded like every shown number."""
    if not agg:
        return None
    return {**agg, "std": {k: round(v, places) for k, v in agg["std"].items()},
            "per_seed": {k: [round(x, places) for x in v] for k, v in agg["per_seed"].items()}}


def resolve_spec(key: str) -> Any:
    """The benchmark spec of `name` or `name@version` (the version must be this one's)."""
    from refbench.registry import get_spec

    name, _, version = key.partition("@")
    spec = get_spec(name)
    if version and version != str(spec.version):
        raise RefbenchError(f"this refbench has {spec.key}, not {key}", key="benchmark")
    return spec


def hash_token(secret: str, salt: bytes) -> bytes:
    """scrypt of a token's secret part with its per-token salt."""
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


class LeaderboardDB:
    """The store. One instance may be used from several threads (one connection each);
    several processes may open the same database at once."""

    @classmethod
    def at(cls, path: str | os.PathLike[str], quotas: Quotas | None = None) -> "LeaderboardDB":
        """The database at `path` with its data folder beside it (`<name>.data`), the
        layout `refbench leaderboard init` creates."""
        path = Path(path)
        return cls(path, path.with_name(path.name + ".data"), quotas)

    def __init__(self, path: str | os.PathLike[str], data_dir: str | os.PathLike[str],
                 quotas: Quotas | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.data_dir = Path(data_dir)
        self.quotas = quotas or Quotas()
        self.clock = clock
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "submissions").mkdir(parents=True, exist_ok=True)
        self._conn().executescript(_SCHEMA)  # idempotent DDL, each statement atomic
        columns = {r[1] for r in self._conn().execute("PRAGMA table_info(benchmarks)")}
        if "options" not in columns:  # a board made before benchmarks had metric options
            self._conn().execute("ALTER TABLE benchmarks ADD COLUMN options TEXT NOT NULL "
                                 "DEFAULT '{}'")
        with self._tx() as con:
            row = con.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                con.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise RefbenchError(f"database schema version {row[0]}, this refbench reads "
                                    f"{SCHEMA_VERSION}", path=self.path)

    # -- connections and transactions ------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, isolation_level=None, timeout=60)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout = 60000")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("PRAGMA foreign_keys = ON")
            self._local.con = con
        return con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        con = self._conn()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def integrity_check(self) -> str:
        """`PRAGMA integrity_check`'s answer ('ok' for a sound database)."""
        return str(self._conn().execute("PRAGMA integrity_check").fetchone()[0])

    # -- settings, benchmarks, teams, tokens -------------------------------------------
    def set_setting(self, key: str, value: Any) -> None:
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))

    def setting(self, key: str, default: Any = None) -> Any:
        row = self._conn().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_references_dir(self, folder: str | os.PathLike[str]) -> None:
        """The server-side folder holding every benchmark's hidden references."""
        path = Path(folder).resolve()
        if not path.is_dir():
            raise RefbenchError("references folder not found", path=folder)
        self.set_setting("references_dir", str(path))

    def references_dir(self) -> Path:
        value = self.setting("references_dir")
        if value is None:
            raise RefbenchError("no references folder configured", path=self.path)
        return Path(value)

    def add_benchmark(self, key: str, references: str, *, seed: int = 0,
                      public_fraction: float = 0.5, options: dict[str, Any] | None = None) -> int:
        """Register `name` or `name@version` whose hidden references are at `references`,
        a path relative to the references folder (it must stay inside it). `options` are
        run-time options of the benchmark's metric that every submission is scored with."""
        from refbench.benchmarks.scoring import check_metric_options

        spec = resolve_spec(key)
        options = check_metric_options(spec, options or {}, key="option")
        root = self.references_dir()
        target = (root / references).resolve()
        if Path(references).is_absolute() or not target.is_relative_to(root) \
                or not target.exists():
            raise RefbenchError("references must be an existing path inside the references "
                                "folder", key="references")
        if not 0.0 < public_fraction < 1.0:
            raise RefbenchError("public fraction must be in (0, 1)", key="public_fraction")
        with self._tx() as con:
            if con.execute("SELECT 1 FROM benchmarks WHERE key = ?",
                           (f"{spec.name}@{spec.version}",)).fetchone():
                raise RefbenchError(f"benchmark {spec.key} is already on this leaderboard",
                                    key="benchmark")
            cur = con.execute(
                "INSERT INTO benchmarks (name, version, key, references_path, seed, "
                "public_fraction, created_at, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (spec.name, spec.version, f"{spec.name}@{spec.version}", str(references),
                 int(seed), float(public_fraction), self.clock(), json.dumps(options)))
            return int(cur.lastrowid)

    def benchmark(self, key: str) -> sqlite3.Row:
        row = self._conn().execute("SELECT * FROM benchmarks WHERE key = ? OR (name = ? AND "
                                   "version = (SELECT MAX(version) FROM benchmarks WHERE name "
                                   "= ?))", (key, key, key)).fetchone()
        if row is None:
            raise NotFound(self._unknown_benchmark(key), key="benchmark")
        return row

    def _unknown_benchmark(self, key: str) -> str:
        """The one-line error for an unknown benchmark: the closest name on this board
        (difflib) as a suggestion, or the names it has when none is close."""
        rows = self._conn().execute("SELECT name, key FROM benchmarks ORDER BY key").fetchall()
        by_name = {r["key"]: r["key"] for r in rows} | {r["name"]: r["key"] for r in rows}
        message = f"unknown benchmark {key!r} on this leaderboard"
        close = difflib.get_close_matches(str(key), list(by_name), n=1, cutoff=0.5)
        if close:
            return f"{message}; did you mean {by_name[close[0]]}?"
        if rows:
            return f"{message}; it has {', '.join(r['key'] for r in rows)}"
        return f"{message}; it has no benchmark yet"

    def close_benchmark(self, key: str) -> None:
        """End the challenge: private scores become visible."""
        with self._tx() as con:
            con.execute("UPDATE benchmarks SET closed = 1 WHERE id = ?", (self.benchmark(key)["id"],))

    def add_team(self, name: str) -> int:
        if not isinstance(name, str) or not _FILENAME.fullmatch(name):
            raise RefbenchError(f"invalid team name {str(name)[:40]!r}: use letters, digits, "
                                f"'.', '_' and '-'", key="team")
        with self._tx() as con:
            if con.execute("SELECT 1 FROM teams WHERE name = ?", (name,)).fetchone():
                raise RefbenchError(f"team {name!r} already exists", key="team")
            return int(con.execute("INSERT INTO teams (name, created_at) VALUES (?, ?)",
                                   (name, self.clock())).lastrowid)

    def team_id(self, name: str) -> int:
        row = self._conn().execute("SELECT id FROM teams WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise RefbenchError(f"unknown team {name!r}", key="team")
        return int(row[0])

    def issue_token(self, team: str) -> str:
        """A new API token for `team`; only its salted hash is stored, so this return
        value is the one chance to see it."""
        team_id = self.team_id(team)
        token_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), os.urandom(16)
        with self._tx() as con:
            con.execute("INSERT INTO tokens (id, team_id, salt, hash, created_at) VALUES "
                        "(?, ?, ?, ?, ?)", (token_id, team_id, salt, hash_token(secret, salt),
                                            self.clock()))
        return f"rbt_{token_id}_{secret}"

    def revoke_token(self, token: str) -> None:
        team = self.authenticate(token)
        with self._tx() as con:
            con.execute("UPDATE tokens SET revoked = 1 WHERE id = ? AND team_id = ?",
                        (token.split("_")[1], team))

    def authenticate(self, token: str | None) -> int:
        """The team id of a valid token; AuthError otherwise. The hash is always computed
        and compared with `hmac.compare_digest`, whether or not the token id exists."""
        match = _TOKEN.fullmatch(token or "")
        row = None
        if match:
            row = self._conn().execute("SELECT team_id, salt, hash, revoked FROM tokens WHERE "
                                       "id = ?", (match.group(1),)).fetchone()
        salt = row["salt"] if row else b"\0" * 16
        expected = row["hash"] if row else b"\1" * 32
        actual = hash_token(match.group(2) if match else "-", salt)
        if not hmac.compare_digest(actual, expected) or row is None or row["revoked"]:
            raise AuthError("invalid or revoked API token")
        return int(row["team_id"])

    # -- submissions --------------------------------------------------------------------
    def _count(self, con: sqlite3.Connection, team_id: int, bench_id: int, failed: bool,
               since: float | None) -> int:
        sql = ("SELECT COUNT(*) FROM submissions WHERE team_id = ? AND benchmark_id = ? AND "
               + ("status = 'failed'" if failed else "status != 'failed'"))
        args: list[Any] = [team_id, bench_id]
        if since is not None:
            sql += " AND created_at >= ?"
            args.append(since)
        return int(con.execute(sql, args).fetchone()[0])

    def submit(self, team_id: int, benchmark: str, filename: str, data: bytes, *,
               model: str | None = None, params: int | None = None) -> int:
        """Queue an uploaded prediction file; returns the submission id.

        The name and size are checked first; a rejected upload is recorded as a failed
        submission (counting against the failed cap) and raised. The file is stored under
        a server-chosen name; quotas are checked and the row inserted in one transaction.
        """
        bench = self.benchmark(benchmark)
        now = self.clock()
        day = now - now % 86400
        problem = None
        validate_model(model, params)
        try:
            validate_filename(filename)
            if len(data) > self.quotas.max_bytes:
                raise RefbenchError(f"file is {len(data)} bytes, the limit is "
                                    f"{self.quotas.max_bytes}", key="size")
            if not data:
                raise RefbenchError("empty file", key="size")
        except RefbenchError as exc:
            problem = exc
        stored = None
        digest = hashlib.sha256(data).hexdigest()
        if problem is None:
            stored = Path("submissions") / f"{secrets.token_hex(16)}.upload"
            atomic_write_bytes(self.data_dir / stored, data)
        try:
            with self._tx() as con:
                if self._count(con, team_id, bench["id"], True, day) >= self.quotas.failed_daily:
                    raise QuotaExceeded(f"daily limit of {self.quotas.failed_daily} rejected "
                                        f"submissions reached", key="quota")
                if problem is None:
                    if self._count(con, team_id, bench["id"], False, day) >= self.quotas.daily:
                        raise QuotaExceeded(f"daily limit of {self.quotas.daily} submissions "
                                            f"reached", key="quota")
                    if self._count(con, team_id, bench["id"], False, None) >= self.quotas.total:
                        raise QuotaExceeded(f"total limit of {self.quotas.total} submissions "
                                            f"reached", key="quota")
                cur = con.execute(
                    "INSERT INTO submissions (team_id, benchmark_id, filename, stored_path, "
                    "sha256, size, status, error, created_at, finished_at, model, params) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (team_id, bench["id"], filename if problem is None else "rejected",
                     None if stored is None else str(stored), digest, len(data),
                     "queued" if problem is None else "failed",
                     None if problem is None else problem.message, now,
                     None if problem is None else now, model, params))
                sub_id = int(cur.lastrowid)
        except BaseException:
            if stored is not None:
                with contextlib.suppress(FileNotFoundError):
                    (self.data_dir / stored).unlink()
            raise
        if problem is not None:
            raise problem
        return sub_id

    def submission(self, sub_id: int) -> dict[str, Any]:
        row = self._conn().execute("SELECT * FROM submissions WHERE id = ?", (sub_id,)).fetchone()
        if row is None:
            raise NotFound(f"no submission {sub_id}", key="submission")
        return dict(row)

    def submissions(self, status: str | None = None, team_id: int | None = None,
                    benchmark: str | None = None) -> list[dict[str, Any]]:
        """Submission rows (oldest first) with their benchmark key and team name, filtered
        by status, team and benchmark."""
        sql = ("SELECT s.*, b.key AS benchmark, t.name AS team FROM submissions s JOIN "
               "benchmarks b ON b.id = s.benchmark_id JOIN teams t ON t.id = s.team_id")
        where: list[str] = []
        args: list[Any] = []
        for clause, value in (("s.status = ?", status), ("s.team_id = ?", team_id),
                              ("s.benchmark_id = ?", None if benchmark is None
                               else self.benchmark(benchmark)["id"])):
            if value is not None:
                where.append(clause)
                args.append(value)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [dict(r) for r in self._conn().execute(sql + " ORDER BY s.id", args)]

    def submission_view(self, sub_id: int) -> dict[str, Any]:
        """A submission row with its benchmark key and team name."""
        row = self._conn().execute(
            "SELECT s.*, b.key AS benchmark, t.name AS team FROM submissions s JOIN benchmarks "
            "b ON b.id = s.benchmark_id JOIN teams t ON t.id = s.team_id WHERE s.id = ?",
            (sub_id,)).fetchone()
        if row is None:
            raise NotFound(f"no submission {sub_id}", key="submission")
        return dict(row)

    def scores(self, sub_id: int, reveal: bool = False) -> dict[str, Any] | None:
        """A scored submission's public metrics (and private ones once its benchmark is
        closed, or with `reveal`); None before it is scored."""
        row = self._conn().execute("SELECT sc.*, b.closed FROM scores sc JOIN submissions s ON "
                                   "s.id = sc.submission_id JOIN benchmarks b ON b.id = "
                                   "s.benchmark_id WHERE sc.submission_id = ?",
                                   (sub_id,)).fetchone()
        if row is None:
            return None
        out = {"public": json.loads(row["public_json"]), "primary": row["primary_key"],
               "directions": json.loads(row["directions_json"]),
               "counts": json.loads(row["counts_json"]), "scored_at": row["scored_at"]}
        if row["closed"] or reveal:
            out["private"] = json.loads(row["private_json"])
        return out

    def benchmarks(self) -> list[dict[str, Any]]:
        """Every benchmark on the board with its submission counts (the references' place
        is not included: callers show these rows publicly)."""
        rows = self._conn().execute(
            "SELECT b.id, b.name, b.version, b.key, b.closed, b.created_at, "
            "(SELECT COUNT(*) FROM submissions s WHERE s.benchmark_id = b.id AND s.status = "
            "'scored') AS scored, (SELECT COUNT(*) FROM self_reported r WHERE r.benchmark_id "
            "= b.id) AS self_reported FROM benchmarks b ORDER BY b.key")
        return [dict(r) for r in rows]

    def teams(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn().execute("SELECT * FROM teams ORDER BY name")]

    def team_name(self, team_id: int) -> str:
        row = self._conn().execute("SELECT name FROM teams WHERE id = ?", (team_id,)).fetchone()
        if row is None:
            raise RefbenchError(f"no team {team_id}", key="team")
        return str(row[0])

    # -- the worker's side -------------------------------------------------------------
    def claim(self, worker: str, lease_s: float, max_attempts: int = 3) -> Claim | None:
        """Take the oldest queued submission (or one whose lease expired: its worker died)
        and lease it to `worker`; None when the queue is empty. A submission whose lease
        expired `max_attempts` times is failed instead of retried forever."""
        now = self.clock()
        gave_up = f"scoring did not finish in {max_attempts} attempts"
        with self._tx() as con:
            con.execute("UPDATE submissions SET status = 'failed', finished_at = ?, lease_id = "
                        "NULL, error = ? WHERE status = 'scoring' AND lease_expires < ? AND "
                        "attempts >= ?", (now, gave_up, now, max_attempts))
            lease = secrets.token_hex(8)
            row = con.execute(
                "UPDATE submissions SET status = 'scoring', attempts = attempts + 1, "
                "lease_id = ?, lease_expires = ?, started_at = ?, worker = ? WHERE id = ("
                "SELECT id FROM submissions WHERE status = 'queued' OR (status = 'scoring' "
                "AND lease_expires < ?) ORDER BY id LIMIT 1) RETURNING id, benchmark_id, "
                "stored_path, filename, attempts",
                (lease, now + lease_s, now, worker, now)).fetchone()
            if row is None:
                return None
            bench = con.execute("SELECT * FROM benchmarks WHERE id = ?",
                                (row["benchmark_id"],)).fetchone()
        return Claim(int(row["id"]), lease, bench["key"], self.data_dir / row["stored_path"],
                     row["filename"], self.references_dir() / bench["references_path"],
                     int(bench["seed"]), float(bench["public_fraction"]), int(row["attempts"]),
                     json.loads(bench["options"] or "{}"))

    def complete(self, claim: Claim, public: dict[str, float], private: dict[str, float],
                 directions: dict[str, str], primary: str, counts: dict[str, int]) -> bool:
        """Record the score and mark the submission scored, in one transaction guarded by
        the lease; False (nothing written) when the lease was lost to another worker."""
        with self._tx() as con:
            cur = con.execute("UPDATE submissions SET status = 'scored', finished_at = ?, "
                              "lease_id = NULL, lease_expires = NULL WHERE id = ? AND status = "
                              "'scoring' AND lease_id = ?",
                              (self.clock(), claim.submission_id, claim.lease_id))
            if cur.rowcount != 1:
                return False
            con.execute("INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (claim.submission_id, json.dumps(public), json.dumps(private),
                         json.dumps(directions), primary, json.dumps(counts), self.clock()))
        return True

    def fail(self, claim: Claim, error: str) -> bool:
        """Mark a claimed submission rejected with a one-line error (guarded by the lease)."""
        line = " ".join(error.split())[:300]
        with self._tx() as con:
            cur = con.execute("UPDATE submissions SET status = 'failed', error = ?, finished_at "
                              "= ?, lease_id = NULL, lease_expires = NULL WHERE id = ? AND "
                              "status = 'scoring' AND lease_id = ?",
                              (line, self.clock(), claim.submission_id, claim.lease_id))
            return cur.rowcount == 1

    # -- self-reported results and the tables ----------------------------------------
    def add_self_reported(self, team_id: int,
                          result: "str | os.PathLike[str] | Result") -> int:
        """Store a result.json (a path validated by `load_result`, or a parsed `Result`) as
        a self-reported entry; a protocol aggregate keeps its `aggregate` block, so the
        board shows its mean ± std over seeds."""
        if not isinstance(result, Result):
            result = load_result(result)
        bench = self.benchmark(f"{result.benchmark}@{result.benchmark_version}")
        with self._tx() as con:
            return int(con.execute("INSERT INTO self_reported (team_id, benchmark_id, "
                                   "result_json, submitted_at) VALUES (?, ?, ?, ?)",
                                   (team_id, bench["id"], json.dumps(result.to_json()),
                                    self.clock())).lastrowid)

    def self_reported(self, entry_id: int) -> dict[str, Any]:
        """One self-reported entry: its result.json document, team and benchmark."""
        row = self._conn().execute("SELECT r.*, t.name AS team, b.key AS benchmark FROM "
                                   "self_reported r JOIN teams t ON t.id = r.team_id JOIN "
                                   "benchmarks b ON b.id = r.benchmark_id WHERE r.id = ?",
                                   (entry_id,)).fetchone()
        if row is None:
            raise NotFound(f"no self-reported result {entry_id}", key="result")
        return {"id": row["id"], "team": row["team"], "benchmark": row["benchmark"],
                "submitted_at": row["submitted_at"], "result": json.loads(row["result_json"])}

    def rankings(self, benchmark: str, part: str = "public", decimals: int | None = None,
                 reveal: bool = False) -> Rankings:
        """The verified ranking (scores of `part`: 'public', or 'private' once the benchmark
        is closed or with `reveal`) and, separately, the self-reported one; every shown
        number rounded to `decimals` (setting 'decimals', else 2)."""
        if part not in ("public", "private"):
            raise RefbenchError(f"part must be public or private, not {part!r}", key="part")
        bench = self.benchmark(benchmark)
        if part == "private" and not (bench["closed"] or reveal):
            raise RefbenchError("private scores are shown once the challenge is closed",
                                key="part")
        places = int(self.setting("decimals", 2) if decimals is None else decimals)
        con = self._conn()
        verified: list[BoardRow] = []
        reported: list[BoardRow] = []
        directions: dict[str, str] = {}
        for r in con.execute("SELECT s.id, s.sha256, s.created_at, s.model, s.params, t.name, "
                             "sc.* FROM "
                             "submissions s JOIN scores sc ON sc.submission_id = s.id JOIN "
                             "teams t ON t.id = s.team_id WHERE s.benchmark_id = ? AND "
                             "s.status = 'scored'", (bench["id"],)):
            metrics = json.loads(r[f"{part}_json"])
            directions = json.loads(r["directions_json"])
            verified.append(BoardRow(0, r["name"], True, r["primary_key"],
                                     round(metrics[r["primary_key"]], places),
                                     {k: round(v, places) for k, v in metrics.items()},
                                     r["created_at"], r["id"], r["sha256"], r["model"],
                                     r["params"]))
        for r in con.execute("SELECT sr.*, t.name FROM self_reported sr JOIN teams t ON t.id = "
                             "sr.team_id WHERE sr.benchmark_id = ?", (bench["id"],)):
            doc = json.loads(r["result_json"])
            directions = directions or doc["directions"]
            reported.append(BoardRow(
                0, r["name"], False, doc["primary"], round(doc["metrics"][doc["primary"]], places),
                {k: round(v, places) for k, v in doc["metrics"].items()}, r["submitted_at"],
                model=_model_label(doc.get("model")),
                params=(doc.get("model") or {}).get("params"), self_reported_id=r["id"],
                extra={"self_reported": True, "split": doc["split"],
                       "provenance": doc["provenance"]},
                aggregate=_rounded_aggregate(doc.get("aggregate"), places)))
        first = (verified or reported or [None])[0]
        higher = first is None or directions.get(first.primary, "higher") != "lower"
        return Rankings(_ranked(verified, higher), _ranked(reported, higher), higher)

    def leaderboard(self, benchmark: str, part: str = "public", decimals: int | None = None,
                    reveal: bool = False, *, verified: bool | None = None) -> list[BoardRow]:
        """Rows of `rankings()`: with `verified=True` the verified ranking, with False the
        self-reported one; with None (scripts that read everything) both in one list
        ordered by the primary value, a verified row before a self-reported one on a tie.
        Each row's `rank` is always its place within its own ranking."""
        both = self.rankings(benchmark, part, decimals, reveal)
        if verified is not None:
            return both.verified if verified else both.self_reported
        return sorted(both.verified + both.self_reported,
                      key=lambda row: (_rank_key(row, both.higher)[0], not row.verified,
                                       *_rank_key(row, both.higher)[1:]))


def _rank_key(row: BoardRow, higher: bool) -> tuple[float, float, int]:
    """The order within a ranking: the primary value, then the earlier submission, then
    the lower id (stable across runs)."""
    return (-row.value if higher else row.value, row.submitted_at,
            row.submission_id or row.self_reported_id or 0)


def _ranked(rows: list[BoardRow], higher: bool) -> list[BoardRow]:
    """`rows` sorted by `_rank_key` and numbered from 1."""
    rows.sort(key=lambda row: _rank_key(row, higher))
    for i, row in enumerate(rows, start=1):
        row.rank = i
    return rows
