"""HTML pages of the hosted leaderboard, shared by the live server and the static export.

Pages are plain HTML with an inline stylesheet, inline SVG plots and a few lines of inline
vanilla JavaScript for client-side sorting: nothing is loaded from anywhere else, and every
page is complete without JavaScript (the live server also sorts through `?sort=` links).
Every value that comes from a submitter (team, model and file names, metrics) goes
through `html.escape`.

`Links` decides where links point: the live server uses `/b/<key>`, the static export
relative `b/<key>.html` files, so one renderer serves both.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Iterable

from refbench.leaderboard.db import BoardRow

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:.7em 1.2em}header a{color:#fff;margin-right:1.2em}
main{padding:1em 1.2em;max-width:1200px}a{color:#1f5fa8}
table{border-collapse:collapse;background:#fff;margin:.6em 0}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
th.primary,td.primary{background:#fff5cc;font-weight:600}
th a{color:inherit;text-decoration:none}
.badge{display:inline-block;border-radius:.8em;padding:0 .6em;font-size:12px}
.badge.verified{background:#d6f5d6;color:#11621a}.badge.self{background:#eee;color:#555}
.failed{color:#a40e26}.muted{color:#667}form.box{background:#fff;border:1px solid #d0d7de;
padding:1em;display:inline-block}label{display:block;margin:.4em 0}
"""

SORT_JS = """
document.querySelectorAll('table.board').forEach(function(t){
 t.querySelectorAll('th[data-col]').forEach(function(th){
  th.querySelector('a').addEventListener('click',function(e){
   e.preventDefault();var i=Array.prototype.indexOf.call(th.parentNode.children,th);
   var asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
   var rows=Array.prototype.slice.call(t.tBodies[0].rows);
   rows.sort(function(a,b){var x=a.cells[i].dataset.v||a.cells[i].textContent,
    y=b.cells[i].dataset.v||b.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y);
    var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
   rows.forEach(function(r){t.tBodies[0].appendChild(r);});});});});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def fmt_params(params: int | None) -> str:
    if not params:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if params >= size:
            return f"{params / size:.1f}{unit}"
    return str(params)


def fmt_num(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:g}" if isinstance(value, float) and abs(value) >= 1e6 else str(value)


@dataclass(frozen=True)
class Links:
    """URL scheme: `static=True` for the exported site (relative `.html` files)."""

    static: bool = False
    prefix: str = ""

    def index(self) -> str:
        return f"{self.prefix}index.html" if self.static else "/"

    def board(self, key: str) -> str:
        return f"{self.prefix}b/{key}.html" if self.static else f"/b/{key}"

    def submission(self, sub_id: int) -> str:
        return f"{self.prefix}s/{sub_id}.html" if self.static else f"/submissions/{sub_id}"

    def result(self, entry_id: int) -> str:
        return f"{self.prefix}r/{entry_id}.html" if self.static else f"/results/{entry_id}"

    def api_board(self, key: str) -> str:
        return f"{self.prefix}{key}.json" if self.static else f"/api/benchmarks/{key}"

    def csv(self, key: str) -> str:
        return f"{self.prefix}{key}.csv" if self.static else f"/api/benchmarks/{key}.csv"


def page(title: str, body: str, links: Links, *, team: str | None = None,
         script: bool = False) -> str:
    """A whole HTML document with the site's header."""
    nav = f'<a href="{esc(links.index())}">refbench leaderboard</a>'
    if not links.static:
        nav += '<a href="/submit">submit</a>' + (
            f'<span>team {esc(team)}</span> <form method="post" action="/logout" '
            f'style="display:inline"><button>log out</button></form>' if team else
            '<a href="/login">log in</a>')
    js = f"<script>{SORT_JS}</script>" if script else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width"><link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style>'
            f"</head><body><header>{nav}</header><main>{body}</main>{js}</body></html>")


def index_page(benchmarks: list[dict[str, Any]], links: Links, team: str | None = None) -> str:
    rows = "".join(
        f'<tr><td><a href="{esc(links.board(b["key"]))}">{esc(b["key"])}</a></td>'
        f'<td class="num">{b["scored"]}</td><td class="num">{b["self_reported"]}</td>'
        f'<td>{"closed" if b["closed"] else "open"}</td></tr>' for b in benchmarks)
    body = ("<h1>Benchmarks</h1>" + (
        '<table class="index"><thead><tr><th>benchmark</th><th class="num">verified</th>'
        '<th class="num">self-reported</th><th>challenge</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>" if benchmarks else
        '<p class="muted">No benchmark on this leaderboard yet.</p>'))
    return page("refbench leaderboard", body, links, team=team)


def metric_columns(rows: list[BoardRow], primary: str) -> list[str]:
    """The primary metric first, then every other metric any row reports, sorted."""
    names = {k for row in rows for k in row.metrics}
    return [primary] + sorted(names - {primary})


def sort_rows(rows: list[BoardRow], column: str | None, descending: bool) -> list[BoardRow]:
    """Rows ordered by a column (a metric, 'team', 'model', 'params' or 'date'); rows
    without that metric go last. Unknown columns keep the ranking."""
    if not column:
        return rows
    def key(row: BoardRow) -> Any:
        if column == "team":
            return row.team
        if column == "model":
            return row.model or ""
        if column == "params":
            return row.params or 0
        if column == "date":
            return row.submitted_at
        return row.metrics.get(column, -math.inf if descending else math.inf)
    if column not in ("team", "model", "params", "date") and \
            not any(column in r.metrics for r in rows):
        return rows
    return sorted(rows, key=key, reverse=descending)


def best_over_time(rows: Iterable[BoardRow], higher: bool) -> list[tuple[float, float]]:
    """(time, best primary value so far) each time the best improved."""
    out: list[tuple[float, float]] = []
    for row in sorted(rows, key=lambda r: r.submitted_at):
        best = out[-1][1] if out else None
        if best is None or (row.value > best if higher else row.value < best):
            out.append((row.submitted_at, row.value))
    return out


def history_svg(points: list[tuple[float, float]], label: str, width: int = 640,
                height: int = 220) -> str:
    """An inline SVG step plot of the best score over time."""
    if not points:
        return '<p class="muted">No scores yet.</p>'
    pad_l, pad_r, pad_t, pad_b = 56, 16, 14, 34
    t0, t1 = points[0][0], max(points[-1][0], points[0][0] + 1.0)
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    def x(t: float) -> float:
        return pad_l + (t - t0) / (t1 - t0) * (width - pad_l - pad_r)
    def y(v: float) -> float:
        return pad_t + (hi - v) / (hi - lo) * (height - pad_t - pad_b)
    path: list[str] = []
    for i, (t, v) in enumerate(points):
        if i:
            path.append(f"L{x(t):.1f},{y(points[i - 1][1]):.1f}")
        path.append(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}")
    path.append(f"L{x(t1):.1f},{y(points[-1][1]):.1f}")
    dots = "".join(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3"><title>{esc(fmt_time(t))}: '
                   f'{esc(v)}</title></circle>' for t, v in points)
    axes = (f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" '
            f'y2="{height - pad_b}" stroke="#888"/><line x1="{pad_l}" y1="{pad_t}" '
            f'x2="{pad_l}" y2="{height - pad_b}" stroke="#888"/>'
            f'<text x="{pad_l - 6}" y="{y(hi) + 4:.1f}" text-anchor="end">{esc(f"{hi:.4g}")}</text>'
            f'<text x="{pad_l - 6}" y="{y(lo) + 4:.1f}" text-anchor="end">{esc(f"{lo:.4g}")}</text>'
            f'<text x="{pad_l}" y="{height - 12}">{esc(fmt_time(t0))}</text>'
            f'<text x="{width - pad_r}" y="{height - 12}" text-anchor="end">'
            f'{esc(fmt_time(t1))}</text>')
    return (f'<svg class="history" role="img" aria-label="best {esc(label)} over time" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-size="11" xmlns="http://www.w3.org/2000/svg">{axes}'
            f'<path d="{" ".join(path)}" fill="none" stroke="#1f5fa8" stroke-width="2"/>'
            f"{dots}</svg>")


def fmt_metric(row: BoardRow, key: str, spread: bool = True) -> str:
    """A row's value of `key`; with `spread`, a seed protocol's as `mean ± std (n seeds)`."""
    agg = row.aggregate
    if spread and agg and key in agg.get("std", {}):
        return f"{fmt_num(row.metrics[key])} ± {fmt_num(agg['std'][key])} ({agg['n']} seeds)"
    return fmt_num(row.metrics[key])


def board_table(rows: list[BoardRow], primary: str, links: Links, sort: str | None = None,
                descending: bool = True) -> str:
    """The ranked table: every metric column, primary highlighted, verified/self-reported
    badges, model size and date, and a provenance link per row."""
    columns = metric_columns(rows, primary)
    def head(name: str, label: str, css: str = "") -> str:
        order = "asc" if sort == name and descending else "desc"
        href = "#" if links.static else f"?sort={esc(name)}&amp;order={order}"
        return (f'<th class="{css}" data-col="{esc(name)}"><a href="{href}">{esc(label)}</a>'
                f"</th>")
    header = ("<th>rank</th>" + head("team", "team") + head("model", "model")
              + head("params", "params", "num") + "<th>type</th>"
              + "".join(head(c, c, "num primary" if c == primary else "num") for c in columns)
              + head("date", "date") + "<th>provenance</th>")
    body = []
    for row in sort_rows(rows, sort, descending):
        badge = ('<span class="badge verified">verified</span>' if row.verified else
                 '<span class="badge self">self-reported</span>')
        if row.submission_id is not None:
            prov = f'<a href="{esc(links.submission(row.submission_id))}">submission</a>'
        elif row.self_reported_id is not None:
            prov = f'<a href="{esc(links.result(row.self_reported_id))}">run</a>'
        else:
            prov = "-"
        cells = "".join(
            f'<td class="{"num primary" if c == primary else "num"}" '
            f'data-v="{esc(row.metrics[c]) if c in row.metrics else ""}">'
            f'{esc(fmt_metric(row, c, c == primary)) if c in row.metrics else "-"}</td>'
            for c in columns)
        body.append(f'<tr class="{"verified" if row.verified else "self-reported"}">'
                    f'<td class="num">{row.rank}</td><td>{esc(row.team)}</td>'
                    f'<td>{esc(row.model or "-")}</td>'
                    f'<td class="num" data-v="{row.params or 0}">{esc(fmt_params(row.params))}</td>'
                    f"<td>{badge}</td>{cells}"
                    f'<td data-v="{row.submitted_at}">{esc(fmt_time(row.submitted_at))}</td>'
                    f"<td>{prov}</td></tr>")
    return (f'<table class="board"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def board_page(bench: dict[str, Any], rows: list[BoardRow], primary: str, higher: bool,
               part: str, links: Links, *, team: str | None = None, sort: str | None = None,
               descending: bool = True) -> str:
    key = bench["key"]
    shown = ("private part (final ranking)" if part == "private" else
             "public part of the test set" + ("" if bench["closed"] else
                                               "; the private part decides when the challenge closes"))
    table = (board_table(rows, primary, links, sort, descending) if rows else
             '<p class="muted">No results yet.</p>')
    body = (f"<h1>{esc(key)}</h1><p>Primary metric <b>{esc(primary)}</b> "
            f"({'higher' if higher else 'lower'} is better). Verified scores: {esc(shown)}. "
            f'Self-reported results come from the submitter\'s own result.json and are not '
            f'scored by this server.</p>{table}<h2>Best {esc(primary)} over time</h2>'
            f"{history_svg(best_over_time(rows, higher), primary)}"
            f'<p><a href="{esc(links.api_board(key))}">JSON</a> · '
            f'<a href="{esc(links.csv(key))}">CSV</a></p>')
    return page(f"{key} · refbench leaderboard", body, links, team=team, script=True)


def submission_page(sub: dict[str, Any], scores: dict[str, Any] | None, links: Links, *,
                    team: str | None = None, owner: bool = False) -> str:
    """A submission's public facts (team, file hash and size, scores); the owner also sees
    its status and the one-line error of a rejected file."""
    items = [("benchmark", f'<a href="{esc(links.board(sub["benchmark"]))}">'
                           f'{esc(sub["benchmark"])}</a>'),
             ("team", esc(sub["team"])), ("model", esc(sub.get("model") or "-")),
             ("params", esc(fmt_params(sub.get("params")))),
             ("file sha256", f'<code>{esc(sub["sha256"])}</code>'),
             ("size", f'{sub["size"]} bytes'), ("submitted", esc(fmt_time(sub["created_at"]))),
             ("status", f'<span class="{"failed" if sub["status"] == "failed" else ""}">'
                        f'{esc(sub["status"])}</span>')]
    if owner:
        items.insert(2, ("file name", esc(sub["filename"])))
        if sub.get("error"):
            items.append(("error", f'<span class="failed">{esc(sub["error"])}</span>'))
    if scores:
        items.append(("scored", esc(fmt_time(scores["scored_at"]))))
        for part in ("public", "private"):
            if part in scores:
                items.append((f"{part} scores", esc(", ".join(
                    f"{k}={fmt_num(v)}" for k, v in scores[part].items()))))
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    return page(f"submission {sub['id']}", f"<h1>Submission {sub['id']}</h1><table>{rows}"
                "</table>", links, team=team)


def result_page(entry: dict[str, Any], links: Links, team: str | None = None) -> str:
    """A self-reported result's provenance: its whole result.json."""
    doc = entry["result"]
    prov = doc.get("provenance", {})
    items = [("benchmark", f'<a href="{esc(links.board(entry["benchmark"]))}">'
                           f'{esc(entry["benchmark"])}</a>'), ("team", esc(entry["team"])),
             ("model", esc((doc.get("model") or {}).get("name") or "-")),
             ("split", esc(doc.get("split"))),
             ("reported", esc(fmt_time(entry["submitted_at"])))]
    items += [(esc(k), f"<code>{esc(v)}</code>") for k, v in prov.items()]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    return page(f"self-reported result {entry['id']}",
                f'<h1>Self-reported result {entry["id"]}</h1><p><span class="badge self">'
                f"self-reported</span> not scored by this server.</p><table>{rows}</table>"
                f"<h2>result.json</h2><pre>{esc(json.dumps(doc, indent=2))}</pre>",
                links, team=team)


def login_page(links: Links, error: str | None = None) -> str:
    err = f'<p class="failed">{esc(error)}</p>' if error else ""
    return page("log in", f"<h1>Log in</h1>{err}<form class=\"box\" method=\"post\" "
                f"action=\"/login\"><label>API token <input name=\"token\" type=\"password\" "
                f"size=\"60\" autocomplete=\"off\" required></label><button>log in</button>"
                f"</form>", links)


def submit_page(team: str, benchmarks: list[dict[str, Any]], own: list[dict[str, Any]],
                links: Links, message: str | None = None, error: str | None = None,
                max_bytes: int = 0) -> str:
    """The logged-in team's page: an upload form and its submissions with their status."""
    options = "".join(f'<option value="{esc(b["key"])}">{esc(b["key"])}</option>'
                      for b in benchmarks if not b["closed"])
    note = (f'<p class="message">{esc(message)}</p>' if message else "") + (
        f'<p class="failed">{esc(error)}</p>' if error else "")
    form = (f'<form class="box" method="post" action="/submit" enctype="multipart/form-data">'
            f'<label>benchmark <select name="benchmark">{options}</select></label>'
            f'<label>prediction file (a folder format: a .zip of the folder) '
            f'<input type="file" name="file" required></label>'
            f'<label>model name (optional) <input name="model" maxlength="80"></label>'
            f'<label>parameters (optional) <input name="params" inputmode="numeric"></label>'
            f"<button>submit</button> <span class=\"muted\">at most {max_bytes} bytes</span>"
            f"</form>")
    rows = "".join(
        f'<tr><td><a href="{esc(links.submission(s["id"]))}">{s["id"]}</a></td>'
        f'<td>{esc(s["benchmark"])}</td><td>{esc(s["filename"])}</td>'
        f'<td class="status {esc(s["status"])}">{esc(s["status"])}</td>'
        f'<td class="failed">{esc(s.get("error") or "")}</td>'
        f'<td>{esc(fmt_time(s["created_at"]))}</td></tr>' for s in reversed(own))
    table = ('<table class="own"><thead><tr><th>id</th><th>benchmark</th><th>file</th>'
             '<th>status</th><th>error</th><th>submitted</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>" if own else
             '<p class="muted">No submissions yet.</p>')
    return page("submit", f"<h1>Submit as {esc(team)}</h1>{note}{form}"
                f"<h2>Your submissions</h2>{table}", links, team=team)


def _cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in submitter-chosen text (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def board_csv(rows: list[BoardRow], primary: str) -> str:
    """The table as CSV (RFC 4180 quoting), every metric column."""
    import csv
    import io

    columns = metric_columns(rows, primary)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "team", "model", "params", "verified", *columns, "submitted_at",
                     "submission_id", "self_reported_id"])
    for row in rows:
        writer.writerow([row.rank, _cell(row.team), _cell(row.model or ""), row.params or "",
                         int(row.verified), *[row.metrics.get(c, "") for c in columns],
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.submitted_at)),
                         row.submission_id or "", row.self_reported_id or ""])
    return buffer.getvalue()
