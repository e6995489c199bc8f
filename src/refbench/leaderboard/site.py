"""HTML pages of the hosted leaderboard, shared by the live server and the static export.

Pages are plain HTML with an inline stylesheet, inline SVG plots and a few lines of inline
vanilla JavaScript for client-side sorting: nothing is loaded from anywhere else, and every
page is complete without JavaScript (the live server also sorts through `?sort=` links).
Every value that comes from a submitter (team, model and file names, metrics) goes
through `html.escape`.

A benchmark page ranks verified rows (scored here against the hidden labels) and
self-reported ones in two separate tables, never interleaved; it shows the primary metric
and a few related ones (`chosen_columns`), every number of a column with the same
decimals, and links each row to its page with every metric.

`Links` decides where links point: the live server uses `/b/<key>`, the static export
relative `b/<key>.html` files, so one renderer serves both.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from refbench.leaderboard.db import BoardRow

#: how many metrics besides the primary a benchmark page shows (the rest: one click away)
OTHER_COLUMNS = 4
#: a chart whose points span less than this many seconds is padded by `CHART_PAD_S`
CHART_MIN_SPAN_S = 3600.0
CHART_PAD_S = 86400.0
_KEY_PARTS = re.compile(r"[^0-9A-Za-z]+")
_BREAK_AFTER = re.compile(r"([/_.:-])")

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:.7em 1.2em}header a{color:#fff;margin-right:1.2em}
main{padding:1em 1.2em;max-width:1200px}a{color:#1f5fa8}
table{border-collapse:collapse;background:#fff;margin:.6em 0}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}
td.text{overflow-wrap:anywhere;min-width:5em}
td.date{white-space:nowrap}
.scroll{max-width:100%;overflow-x:auto}
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
    """A number as stored (already rounded to the board's decimals)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:g}" if isinstance(value, float) and abs(value) >= 1e6 else str(value)


def fmt_fixed(value: float | None, places: int | None) -> str:
    """`value` with exactly `places` decimals (None: as stored), so that every number of a
    column lines up; '-' for a missing or non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if places is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return fmt_num(value)
    return f"{value:.{places}f}"


def places_of(value: Any) -> int:
    """How many decimals a stored (rounded) number shows in its shortest form: 2 for
    11.43, 1 for 11.5 and 0.0, 0 for an integer or a non-number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    try:
        exponent = Decimal(repr(value)).as_tuple().exponent
    except InvalidOperation:
        return 0
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


def column_places(values: Iterable[Any]) -> int:
    """The decimals one column shows when the board gives none: the most any of its
    numbers has (numbers are stored rounded to the board's decimals, so this never shows
    more than the board keeps)."""
    return max((places_of(v) for v in values), default=0)


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


def index_page(benchmarks: list[dict[str, Any]], links: Links, team: str | None = None,
               decimals: int | None = None) -> str:
    """The list of benchmarks: each one's primary metric, best verified score (of the part
    the board shows) and counts. `benchmarks` are `app.benchmark_summaries` rows; a row
    without a summary (an unknown spec) shows '-'."""
    def best(b: dict[str, Any]) -> str:
        value = b.get("best_verified")
        return "-" if value is None else esc(fmt_fixed(value, decimals))

    def primary(b: dict[str, Any]) -> str:
        if not b.get("primary"):
            return "-"
        arrow = "" if b.get("higher_is_better") is None else (
            " ↑" if b["higher_is_better"] else " ↓")
        return f"{esc(b['primary'])}{arrow}"

    rows = "".join(
        f'<tr><td><a href="{esc(links.board(b["key"]))}">{esc(b["key"])}</a></td>'
        f"<td>{primary(b)}</td><td class=\"num primary\">{best(b)}</td>"
        f'<td class="num">{b["scored"]}</td><td class="num">{b["self_reported"]}</td>'
        f'<td>{"closed" if b["closed"] else "open"}</td></tr>' for b in benchmarks)
    body = ("<h1>Benchmarks</h1>" + (
        '<div class="scroll"><table class="index"><thead><tr><th>benchmark</th>'
        '<th>primary metric</th><th class="num">best verified</th>'
        '<th class="num">verified</th><th class="num">self-reported</th><th>challenge</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
        '<p class="muted">Best verified: the best score the server computed against the '
        "hidden labels (the public part while a challenge is open, the private part once "
        "it is closed); self-reported results are ranked separately.</p>" if benchmarks else
        '<p class="muted">No benchmark on this leaderboard yet.</p>'))
    return page("refbench leaderboard", body, links, team=team)


def metric_columns(rows: list[BoardRow], primary: str) -> list[str]:
    """The primary metric first, then every other metric any row reports, sorted."""
    names = {k for row in rows for k in row.metrics}
    return [primary] + sorted(names - {primary})


def _key_parts(key: str) -> list[str]:
    return [part for part in _KEY_PARTS.split(key.lower()) if part] or [key.lower()]


def _likeness(key: str, primary: str) -> tuple[int, int]:
    """How much a metric key looks like the primary one: the parts (split at any
    non-alphanumeric character) equal at the same place counted from the start or from
    the end, whichever is more; then the length of the common leading run of parts."""
    a, b = _key_parts(key), _key_parts(primary)
    from_start = sum(x == y for x, y in zip(a, b))
    from_end = sum(x == y for x, y in zip(reversed(a), reversed(b)))
    lead = 0
    for x, y in zip(a, b):
        if x != y:
            break
        lead += 1
    return max(from_start, from_end), lead


def chosen_columns(rows: Iterable[BoardRow], primary: str,
                   limit: int = OTHER_COLUMNS) -> list[str]:
    """The metric columns a benchmark page shows: the primary first, then at most `limit`
    others, those most like the primary (`_likeness`: for path-like keys, the same
    quantity at another level of one part), ties in the metric's own order (the order
    of the first row that reports them). Deterministic and independent of the spec; every
    metric stays one click away on the row's page and in the CSV and JSON."""
    order: dict[str, int] = {}
    for row in rows:
        for key in row.metrics:
            order.setdefault(key, len(order))
    others = sorted((k for k in order if k != primary),
                    key=lambda k: (*(-x for x in _likeness(k, primary)), order[k]))
    return [primary] + others[:max(0, limit)]


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
    """(time, best primary value so far) each time the best verified score improved.
    Self-reported rows never count: they were not scored against the hidden labels."""
    out: list[tuple[float, float]] = []
    for row in sorted((r for r in rows if r.verified),
                      key=lambda r: (r.submitted_at, r.submission_id or 0)):
        best = out[-1][1] if out else None
        if best is None or (row.value > best if higher else row.value < best):
            out.append((row.submitted_at, row.value))
    return out


def time_range(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The chart's time axis: from the first to the last point; a span under
    `CHART_MIN_SPAN_S` (one point, or every point in the same hour) is padded by
    `CHART_PAD_S` on each side, so the axis reads as dates instead of one instant."""
    t0, t1 = points[0][0], points[-1][0]
    if t1 - t0 < CHART_MIN_SPAN_S:
        return t0 - CHART_PAD_S, t1 + CHART_PAD_S
    margin = (t1 - t0) * 0.03
    return t0 - margin, t1 + margin


def value_range(values: list[float]) -> tuple[float, float]:
    """The chart's value axis: the values' range, or a band around a single value."""
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def history_svg(points: list[tuple[float, float]], label: str, width: int = 640,
                height: int = 220) -> str:
    """An inline SVG step plot of the best verified score over time."""
    if not points:
        return '<p class="muted">No verified scores yet.</p>'
    pad_l, pad_r, pad_t, pad_b = 56, 16, 14, 34
    t0, t1 = time_range(points)
    lo, hi = value_range([v for _, v in points])
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
            f'style="max-width:100%;height:auto" '
            f'font-size="11" xmlns="http://www.w3.org/2000/svg">{axes}'
            f'<path d="{" ".join(path)}" fill="none" stroke="#1f5fa8" stroke-width="2"/>'
            f"{dots}</svg>")


def fmt_metric(row: BoardRow, key: str, spread: bool = True, places: int | None = None,
               std_places: int | None = None) -> str:
    """A row's value of `key` with `places` decimals (None: as stored); with `spread`, a
    seed protocol's as `mean ± std (n seeds)`, the std with `std_places` decimals."""
    agg = row.aggregate
    value = fmt_fixed(row.metrics[key], places)
    if spread and agg and key in agg.get("std", {}):
        return f"{value} ± {fmt_fixed(agg['std'][key], std_places)} ({agg['n']} seeds)"
    return value


def _label(name: str) -> str:
    """A column heading that may wrap after the separators of a long metric key."""
    return _BREAK_AFTER.sub(r"\1<wbr>", esc(name))


def board_table(rows: list[BoardRow], primary: str, links: Links, sort: str | None = None,
                descending: bool = True, *, columns: list[str] | None = None,
                decimals: int | None = None) -> str:
    """One ranking as a table: rank, team, model and size, the metric `columns` (default:
    `chosen_columns`, the primary highlighted), for self-reported rows the split they
    report, date and a link to the row's page, which lists every metric. Every number of
    a column has the same decimals: `decimals`, or without it the most the column holds."""
    columns = columns or chosen_columns(rows, primary)
    split = any(not row.verified for row in rows)
    places = {c: decimals if decimals is not None else
              column_places(r.metrics[c] for r in rows if c in r.metrics) for c in columns}
    std_places = {c: decimals if decimals is not None else column_places(
        (r.aggregate or {}).get("std", {}).get(c) for r in rows) for c in columns}
    def head(name: str, label: str, css: str = "") -> str:
        order = "asc" if sort == name and descending else "desc"
        href = "#" if links.static else f"?sort={esc(name)}&amp;order={order}"
        return (f'<th class="{css}" data-col="{esc(name)}"><a href="{href}">{_label(label)}'
                f"</a></th>")
    header = ("<th>rank</th>" + head("team", "team") + head("model", "model")
              + head("params", "params", "num") + ("<th>split</th>" if split else "")
              + "".join(head(c, c, "num primary" if c == primary else "num") for c in columns)
              + head("date", "date (UTC)") + "<th>details</th>")
    body = []
    for row in sort_rows(rows, sort, descending):
        if row.submission_id is not None:
            prov = (f'<a href="{esc(links.submission(row.submission_id))}" title="all '
                    f'{len(row.metrics)} metrics, file hash and dates">submission</a>')
        elif row.self_reported_id is not None:
            prov = (f'<a href="{esc(links.result(row.self_reported_id))}" title="all '
                    f'{len(row.metrics)} metrics and provenance">run</a>')
        else:
            prov = "-"
        cells = "".join(
            f'<td class="{"num primary" if c == primary else "num"}" '
            f'data-v="{esc(row.metrics[c]) if c in row.metrics else ""}">'
            + (esc(fmt_metric(row, c, c == primary, places[c], std_places[c]))
               if c in row.metrics else "-") + "</td>"
            for c in columns)
        where = f'<td>{esc(row.extra.get("split") or "-")}</td>' if split else ""
        body.append(f'<tr class="{"verified" if row.verified else "self-reported"}">'
                    f'<td class="num">{row.rank}</td><td class="text">{esc(row.team)}</td>'
                    f'<td class="text">{esc(row.model or "-")}</td>'
                    f'<td class="num" data-v="{row.params or 0}">{esc(fmt_params(row.params))}</td>'
                    f"{where}{cells}"
                    f'<td class="date" data-v="{row.submitted_at}">'
                    f"{esc(fmt_time(row.submitted_at))}</td><td>{prov}</td></tr>")
    kind = "verified" if not split else "self-reported"
    return (f'<div class="scroll"><table class="board {kind}"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def board_page(bench: dict[str, Any], rows: list[BoardRow], primary: str, higher: bool,
               part: str, links: Links, *, self_reported: list[BoardRow] | None = None,
               team: str | None = None, sort: str | None = None, descending: bool = True,
               decimals: int | None = None) -> str:
    """A benchmark's page: the verified ranking (`rows`), then the self-reported one in a
    table of its own, never interleaved, then the best verified score over time. Both
    tables show the same few metric columns (`chosen_columns`)."""
    key = bench["key"]
    reported = list(self_reported or [])
    shown = ("private part of the hidden test set (final ranking)" if part == "private" else
             "public part of the hidden test set" + ("" if bench["closed"] else
                                                      "; the private part decides when the challenge closes"))
    everything = rows + reported
    columns = chosen_columns(everything, primary)
    total = len({k for row in everything for k in row.metrics})
    note = (f" The tables show {len(columns)} of its {total} metrics; a row's "
            f"<i>submission</i> or <i>run</i> page lists every one (so do the JSON and CSV)."
            if total > len(columns) else "")
    intro = (f"<h1>{esc(key)}</h1><p>Primary metric <b>{esc(primary)}</b> "
             f"({'higher' if higher else 'lower'} is better).{note}</p>")
    if not everything:
        return page(f"{key} · refbench leaderboard",
                    intro + '<p class="muted">No results yet.</p>'
                    f'<p><a href="{esc(links.api_board(key))}">JSON</a> · '
                    f'<a href="{esc(links.csv(key))}">CSV</a></p>', links, team=team)
    table = (board_table(rows, primary, links, sort, descending, columns=columns,
                         decimals=decimals) if rows else
             '<p class="muted">No verified results yet.</p>')
    own = (board_table(reported, primary, links, sort, descending, columns=columns,
                       decimals=decimals) if reported else
           '<p class="muted">No self-reported results.</p>')
    body = (f'{intro}<h2 id="verified"><span class="badge verified">verified</span> '
            f"Ranking of verified scores</h2><p>Scored by this server against the hidden "
            f"labels: {esc(shown)}.</p>{table}"
            f'<h2 id="self-reported"><span class="badge self">self-reported</span> '
            f"Self-reported results</h2><p class=\"muted\">self-reported: not verified "
            f"against the hidden labels; may be on another split. Each comes from the "
            f"submitter's own result.json and is ranked on its own, never with the "
            f"verified scores.</p>{own}"
            f"<h2>Best verified {esc(primary)} over time</h2>"
            f"{history_svg(best_over_time(rows, higher), primary)}"
            f'<p><a href="{esc(links.api_board(key))}">JSON</a> · '
            f'<a href="{esc(links.csv(key))}">CSV</a></p>')
    return page(f"{key} · refbench leaderboard", body, links, team=team, script=True)


def metrics_table(parts: dict[str, dict[str, float]], decimals: int | None = None,
                  primary: str | None = None,
                  spread: dict[str, float] | None = None) -> str:
    """Every metric of a submission or a result, one row each, one column per part
    ('public', 'private' or 'value'), each column with the same decimals; `spread` adds a
    ± std column (a seed protocol's)."""
    names: dict[str, None] = {}
    for values in parts.values():
        names.update(dict.fromkeys(values))
    places = {p: decimals if decimals is not None else column_places(v.values())
              for p, v in parts.items()}
    std_places = decimals if decimals is not None else column_places((spread or {}).values())
    mark = ' class="primary"'
    head = "".join(f'<th class="num">{esc(p)}</th>' for p in parts) + (
        '<th class="num">± std</th>' if spread else "")
    body = "".join(
        f"<tr><th{mark if k == primary else ''}>{_label(k)}</th>" + "".join(
            f'<td class="num">{esc(fmt_fixed(v[k], places[p])) if k in v else "-"}</td>'
            for p, v in parts.items())
        + (f'<td class="num">{esc(fmt_fixed(spread[k], std_places)) if k in spread else "-"}'
           f"</td>" if spread else "") + "</tr>"
        for k in names)
    return (f'<div class="scroll"><table class="metrics"><thead><tr><th>metric</th>{head}'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


def submission_page(sub: dict[str, Any], scores: dict[str, Any] | None, links: Links, *,
                    team: str | None = None, owner: bool = False,
                    decimals: int | None = None) -> str:
    """A submission's public facts (team, file hash and size) and every metric of the
    parts it may show; the owner also sees its status and the one-line error of a
    rejected file."""
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
    metrics = ""
    if scores:
        items.append(("scored", esc(fmt_time(scores["scored_at"]))))
        parts = {p: {k: round(v, decimals) if decimals is not None else v
                     for k, v in scores[p].items()}
                 for p in ("public", "private") if p in scores}
        metrics = (f'<h2><span class="badge verified">verified</span> All metrics</h2>'
                   f"{metrics_table(parts, decimals, scores.get('primary'))}")
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    return page(f"submission {sub['id']}", f"<h1>Submission {sub['id']}</h1><table>{rows}"
                f"</table>{metrics}", links, team=team)


def result_page(entry: dict[str, Any], links: Links, team: str | None = None,
                decimals: int | None = None) -> str:
    """A self-reported result's provenance, every metric it reports and its whole
    result.json."""
    doc = entry["result"]
    prov = doc.get("provenance", {})
    items = [("benchmark", f'<a href="{esc(links.board(entry["benchmark"]))}">'
                           f'{esc(entry["benchmark"])}</a>'), ("team", esc(entry["team"])),
             ("model", esc((doc.get("model") or {}).get("name") or "-")),
             ("split", esc(doc.get("split"))),
             ("reported", esc(fmt_time(entry["submitted_at"])))]
    items += [(esc(k), f"<code>{esc(v)}</code>") for k, v in prov.items()]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    def shown(values: dict[str, float]) -> dict[str, float]:
        return {k: round(v, decimals) if decimals is not None else v for k, v in values.items()}
    std = (doc.get("aggregate") or {}).get("std")
    metrics = metrics_table({"value": shown(doc.get("metrics") or {})}, decimals,
                            doc.get("primary"), shown(std) if std else None)
    return page(f"self-reported result {entry['id']}",
                f'<h1>Self-reported result {entry["id"]}</h1><p><span class="badge self">'
                f"self-reported</span> not scored by this server: not verified against the "
                f"hidden labels; may be on another split.</p><table>{rows}</table>"
                f"<h2>All metrics</h2>{metrics}"
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


def board_csv(rows: list[BoardRow], primary: str,
              self_reported: list[BoardRow] | None = None) -> str:
    """The rankings as CSV (RFC 4180 quoting), every metric column: the verified ranking
    first, then the self-reported one (`verified` 0, its own ranks and the split it
    reports), never interleaved."""
    reported = list(self_reported or [])
    columns = metric_columns(rows + reported, primary)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "team", "model", "params", "verified", *columns, "submitted_at",
                     "submission_id", "self_reported_id", "split"])
    for row in rows + reported:
        writer.writerow([row.rank, _cell(row.team), _cell(row.model or ""), row.params or "",
                         int(row.verified), *[row.metrics.get(c, "") for c in columns],
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.submitted_at)),
                         row.submission_id or "", row.self_reported_id or "",
                         _cell(str(row.extra.get("split") or ""))])
    return buffer.getvalue()
