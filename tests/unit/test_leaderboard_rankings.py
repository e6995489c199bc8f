"""Separate verified and self-reported rankings, their ties, the best-over-time chart, the
index's best scores, a benchmark page with many metric columns (a KITTI-like board: a few
chosen columns, the same decimals down each column, every metric one click away) and
`refbench leaderboard show` without a benchmark or with a misspelt one."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from refbench.errors import RefbenchError  # noqa: E402
from refbench.leaderboard import site  # noqa: E402
from refbench.leaderboard.app import ServerOptions, create_app  # noqa: E402
from refbench.leaderboard.db import BoardRow, LeaderboardDB, NotFound  # noqa: E402
from refbench.leaderboard.export import export_site  # noqa: E402
from refbench.registry import METRICS  # noqa: E402
from refbench.results import ModelInfo, Provenance, Result  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

T0 = 1_700_000_000.0
DAY = 86400.0
MANY = "kitti-car-3d"  # a spec whose metric reports dozens of keys
MANY_PRIMARY = "Car/3d/moderate/R40"


class Clock:
    """A settable clock, so submission times (and the tie-breaks on them) are exact."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_board(tmp_path: Path, clock: Clock) -> LeaderboardDB:
    """A board with glue-sst2 and the many-metric benchmark; scores are written straight
    into the store (claim + complete), so no metric has to run."""
    hidden = tmp_path / "hidden"
    (hidden / "SST-2").mkdir(parents=True)
    (hidden / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nx\t1\ny\t0\n")
    (hidden / "many").mkdir()
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data", clock=clock)
    board.set_references_dir(hidden)
    board.set_setting("decimals", 2)
    board.add_benchmark("glue-sst2", "SST-2/dev.tsv")
    board.add_benchmark(MANY, "many")
    for team in ("alpha", "beta", "gamma"):
        board.add_team(team)
    return board


def verified(board: LeaderboardDB, team: str, key: str, metrics: dict[str, float],
             primary: str, model: str = "m") -> int:
    """A scored submission with these metrics on both parts."""
    sub = board.submit(board.team_id(team), key, "preds.txt", b"x", model=model)
    claim = board.claim("w", lease_s=60)
    assert claim is not None and claim.submission_id == sub
    assert board.complete(claim, metrics, metrics, {k: "higher" for k in metrics}, primary,
                          {"references": 2})
    return sub


def reported(board: LeaderboardDB, team: str, key: str, metrics: dict[str, float],
             primary: str, split: str = "validation") -> int:
    """A self-reported result.json with these metrics."""
    name, _, version = key.partition("@")
    result = Result(benchmark=name, benchmark_version=int(version or 1), split=split,
                    metrics=metrics, directions={k: "higher" for k in metrics},
                    primary=primary, model=ModelInfo("own-run", params=1_000_000),
                    provenance=Provenance("0.1.0", None, None, "l" * 64, "p" * 64, 0, "cpu",
                                          1.0))
    return board.add_self_reported(board.team_id(team), result)


def many_metrics(primary_value: float, shift: float = 0.0) -> dict[str, float]:
    """Every key of the many-metric benchmark's metric, in the metric's own order."""
    keys = list(METRICS.get("kitti_ap")(classes=["Car"]).keys)
    values = {k: round(10.0 + i * 1.37 + shift, 4) for i, k in enumerate(keys)}
    return values | {MANY_PRIMARY: primary_value}


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def board(tmp_path: Path, clock: Clock) -> LeaderboardDB:
    return make_board(tmp_path, clock)


@pytest.fixture()
def client(board: LeaderboardDB):
    with TestClient(create_app(board, ServerOptions(run_worker=False))) as test_client:
        yield test_client


def test_verified_and_self_reported_are_ranked_separately(board: LeaderboardDB, clock: Clock,
                                                          client: TestClient) -> None:
    """The demo's case: a self-reported 34.36 (another split) must not rank above the
    verified 26.86 of the same model, and must not reach the chart."""
    reported(board, "alpha", "glue-sst2", {"accuracy": 34.36}, "accuracy")
    clock.now += 60
    low = verified(board, "beta", "glue-sst2", {"accuracy": 20.0}, "accuracy")
    clock.now += 60
    high = verified(board, "alpha", "glue-sst2", {"accuracy": 26.86}, "accuracy")
    clock.now += 60
    reported(board, "gamma", "glue-sst2", {"accuracy": 90.0}, "accuracy", split="train")

    both = board.rankings("glue-sst2")
    assert [(r.rank, r.submission_id) for r in both.verified] == [(1, high), (2, low)]
    assert [(r.rank, r.team, r.value) for r in both.self_reported] == [
        (1, "gamma", 90.0), (2, "alpha", 34.36)]
    assert all(r.verified for r in both.verified) and not any(r.verified for r in both.self_reported)
    assert board.leaderboard("glue-sst2", verified=True) == both.verified
    assert board.leaderboard("glue-sst2", verified=False) == both.self_reported

    view = client.get("/api/benchmarks/glue-sst2").json()
    assert [r["submission_id"] for r in view["rows"]] == [high, low]
    assert [(r["rank"], r["value"], r["split"]) for r in view["self_reported"]] == [
        (1, 90.0, "train"), (2, 34.36, "validation")]
    assert [p["value"] for p in view["best_over_time"]] == [20.0, 26.86]

    page = client.get("/b/glue-sst2").text
    main = page.index('class="board verified"')
    own = page.index('class="board self-reported"')
    assert main < page.index("Self-reported results") < own
    verified_table = page[main:page.index("</table>", main)]
    assert "26.86" in verified_table and "34.36" not in verified_table
    assert "90.00" not in verified_table and "self-reported" not in verified_table
    assert "not verified against the hidden labels; may be on another split" in page
    assert ">34.36<" in page[own:]
    svg = page[page.index("<svg"):page.index("</svg>")]
    plotted = [t.rsplit(": ", 1)[1] for t in re.findall(r"<title>([^<]*)</title>", svg)]
    assert plotted == ["20.0", "26.86"]  # the self-reported 34.36 and 90 are not plotted

    lines = list(csv.DictReader(io.StringIO(client.get("/api/benchmarks/glue-sst2.csv").text)))
    assert [(r["verified"], r["rank"], r["accuracy"]) for r in lines] == [
        ("1", "1", "26.86"), ("1", "2", "20.0"), ("0", "1", "90.0"), ("0", "2", "34.36")]
    assert [r["split"] for r in lines] == ["", "", "train", "validation"]


def test_ties_go_to_the_earlier_submission(board: LeaderboardDB, clock: Clock) -> None:
    first = verified(board, "alpha", "glue-sst2", {"accuracy": 80.004}, "accuracy")
    clock.now += 5
    second = verified(board, "beta", "glue-sst2", {"accuracy": 79.996}, "accuracy")
    clock.now -= 100  # an older self-reported row with the same rounded value
    reported(board, "gamma", "glue-sst2", {"accuracy": 80.0}, "accuracy")
    rows = board.rankings("glue-sst2").verified
    assert [r.submission_id for r in rows] == [first, second]  # both round to 80.0
    assert [r.rank for r in rows] == [1, 2]
    combined = board.leaderboard("glue-sst2")  # scripts reading everything
    assert [(r.verified, r.rank) for r in combined] == [(True, 1), (True, 2), (False, 1)]
    # the other way round in time: the later submission ranks second again
    clock.now += 1000
    third = verified(board, "gamma", "glue-sst2", {"accuracy": 80.0}, "accuracy")
    assert [r.submission_id for r in board.rankings("glue-sst2").verified] == [first, second,
                                                                               third]


def row(value: float, when: float, sub: int, verified: bool = True) -> BoardRow:
    return BoardRow(0, "t", verified, "accuracy", value, {"accuracy": value}, when,
                    submission_id=sub if verified else None,
                    self_reported_id=None if verified else sub)


def test_chart_uses_verified_rows_and_a_sensible_time_axis() -> None:
    rows = [row(50.0, T0, 1), row(99.0, T0 - 10, 2, verified=False), row(60.0, T0, 3)]
    points = site.best_over_time(rows, higher=True)
    assert points == [(T0, 50.0), (T0, 60.0)]  # the self-reported 99 never counts
    assert site.time_range(points) == (T0 - DAY, T0 + DAY)  # every point at one instant
    assert site.time_range([(T0, 1.0)]) == (T0 - DAY, T0 + DAY)  # a single point
    t0, t1 = site.time_range([(T0, 1.0), (T0 + 10 * DAY, 2.0)])
    assert t0 < T0 and T0 + 10 * DAY < t1 < T0 + 11 * DAY  # a real span: a small margin
    assert site.value_range([5.0]) == (4.75, 5.25) and site.value_range([0.0]) == (-1.0, 1.0)
    svg = site.history_svg([(T0, 50.0)], "accuracy")
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert site.fmt_time(T0 - DAY) in labels and site.fmt_time(T0 + DAY) in labels
    assert 'cx="340.0"' in svg  # the one point sits in the middle of the axis
    assert "nan" not in svg.lower() and "inf" not in svg.lower()


def test_index_shows_primary_best_verified_and_counts(board: LeaderboardDB, clock: Clock,
                                                      client: TestClient) -> None:
    verified(board, "alpha", "glue-sst2", {"accuracy": 71.5}, "accuracy")
    verified(board, "beta", "glue-sst2", {"accuracy": 82.25}, "accuracy")
    reported(board, "gamma", "glue-sst2", {"accuracy": 99.0}, "accuracy")
    listing = {b["key"]: b for b in client.get("/api/benchmarks").json()["benchmarks"]}
    sst2 = listing["glue-sst2@1"]
    assert (sst2["primary"], sst2["best_verified"], sst2["verified"], sst2["self_reported"],
            sst2["higher_is_better"], sst2["part"]) == ("accuracy", 82.25, 2, 1, True, "public")
    assert (listing[f"{MANY}@1"]["primary"], listing[f"{MANY}@1"]["best_verified"]) == (
        MANY_PRIMARY, None)
    index = client.get("/").text
    sst2_row = index[index.index("glue-sst2@1</a>"):]
    sst2_row = sst2_row[:sst2_row.index("</tr>")]
    assert "accuracy" in sst2_row and ">82.25<" in sst2_row and ">2<" in sst2_row
    assert "99.0" not in sst2_row
    assert MANY_PRIMARY in index


def test_many_metric_page_shows_a_few_columns_with_fixed_decimals(
        tmp_path: Path, board: LeaderboardDB, clock: Clock, client: TestClient) -> None:
    key = f"{MANY}@1"
    subs = [verified(board, "alpha", MANY, many_metrics(11.43), MANY_PRIMARY,
                     model="second_tiny (second_tiny_kitti-car-3d)")]
    clock.now += 60
    subs.append(verified(board, "beta", MANY, many_metrics(11.5, shift=0.5), MANY_PRIMARY))
    clock.now += 60
    subs.append(verified(board, "gamma", MANY, many_metrics(0.0, shift=-10.0), MANY_PRIMARY))
    entry = reported(board, "alpha", MANY, many_metrics(34.36), MANY_PRIMARY)
    total = len(many_metrics(0.0))
    assert total > 20

    columns = client.get(f"/api/benchmarks/{key}").json()["columns"]
    assert columns == site.chosen_columns(board.rankings(key).verified, MANY_PRIMARY)
    assert columns[0] == MANY_PRIMARY and len(columns) == 1 + site.OTHER_COLUMNS
    # the keys most like the primary: its other difficulties and its other interpolation
    assert set(columns[1:4]) == {"Car/3d/moderate/R11", "Car/3d/easy/R40", "Car/3d/hard/R40"}

    page = client.get(f"/b/{key}").text
    main = page[page.index('class="board verified"'):]
    main = main[:main.index("</table>")]
    assert main.count("<th") <= 12  # rank, team, model, params, 5 metrics, date, details
    assert f"{len(columns)} of its {total} metrics" in page
    primary_cells = re.findall(r'<td class="num primary"[^>]*>([^<]*)</td>', main)
    assert primary_cells == ["11.50", "11.43", "0.00"]
    for column in columns:  # every number of a shown column has the board's 2 decimals
        index = columns.index(column) + 1  # after the params cell
        cells = [re.findall(r'<td class="num[^"]*" data-v="[^"]*">([^<]*)</td>', tr)[index]
                 for tr in main.split("<tr")[2:]]
        assert all(re.fullmatch(r"-?\d+\.\d\d", c) for c in cells), (column, cells)
    # every metric one click away: the row links to a page with all of them
    for sub in subs:
        assert f'href="/submissions/{sub}"' in main
    detail = client.get(f"/submissions/{subs[0]}").text
    assert all(k.replace("/", "/<wbr>") in detail for k in many_metrics(0.0))
    assert ">11.43<" in detail
    result = client.get(f"/results/{entry}").text
    assert ">34.36<" in result and "may be on another split" in result

    # the static export has the same two tables and the same JSON
    out = tmp_path / "site"
    export_site(board, out)
    exported = (out / "b" / f"{key}.html").read_text()
    assert exported.index('class="board verified"') < exported.index('class="board self-reported"')
    assert json.loads((out / f"{key}.json").read_text()) == client.get(
        f"/api/benchmarks/{key}").json()
    listing = json.loads((out / "benchmarks.json").read_text())["benchmarks"]
    assert {b["key"]: b["best_verified"] for b in listing} == {"glue-sst2@1": None, key: 11.5}
    assert "11.50" in (out / "index.html").read_text()


def test_chosen_columns_are_generic_and_deterministic() -> None:
    def rows_with(keys: list[str]) -> list[BoardRow]:
        return [BoardRow(1, "t", True, keys[0], 1.0, {k: 1.0 for k in keys}, T0)]

    assert site.chosen_columns(rows_with(["accuracy"]), "accuracy") == ["accuracy"]
    squad_like = ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "NoAns_f1", "best_f1"]
    chosen = site.chosen_columns(rows_with(squad_like), "f1")
    assert chosen == ["f1", "HasAns_f1", "NoAns_f1", "best_f1", "exact"]
    again = site.chosen_columns(rows_with(list(reversed(squad_like))), "f1")
    assert again[0] == "f1" and set(again[1:4]) == {"HasAns_f1", "NoAns_f1", "best_f1"}
    assert site.chosen_columns(rows_with(squad_like), "f1", limit=0) == ["f1"]


def test_column_decimals_are_the_same_down_a_column() -> None:
    rows = [row(11.43, T0, 1), row(11.5, T0, 2), row(0.0, T0, 3)]
    html = site.board_table(rows, "accuracy", site.Links())  # no decimals: the column's most
    cells = r'<td class="num primary"[^>]*>([^<]*)<'
    assert re.findall(cells, html) == ["11.43", "11.50", "0.00"]
    html = site.board_table(rows, "accuracy", site.Links(), decimals=3)
    assert re.findall(cells, html) == ["11.430", "11.500", "0.000"]
    assert site.places_of(1e-05) == 5 and site.places_of(100.0) == 1 and site.places_of(3) == 0


def test_unknown_benchmark_suggests_the_closest_name(board: LeaderboardDB,
                                                     client: TestClient) -> None:
    with pytest.raises(NotFound) as caught:
        board.benchmark("glue-sts2")
    assert "did you mean glue-sst2@1?" in caught.value.message
    assert "\n" not in caught.value.message
    with pytest.raises(NotFound, match="it has glue-sst2@1, kitti-car-3d@1"):
        board.benchmark("zzzz")
    answer = client.get("/api/benchmarks/kitti-car3d")
    assert answer.status_code == 404 and "did you mean kitti-car-3d@1?" in answer.json()["error"]
    with pytest.raises(RefbenchError):
        board.rankings("nope")


def test_show_lists_benchmarks_and_suggests_names(board: LeaderboardDB, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    verified(board, "alpha", "glue-sst2", {"accuracy": 82.25}, "accuracy")
    reported(board, "beta", "glue-sst2", {"accuracy": 99.0}, "accuracy")
    db = str(tmp_path / "lb.sqlite")
    capsys.readouterr()
    assert run_cli(["leaderboard", "show", "--db", db, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["benchmarks"]
    assert [(b["key"], b["primary"], b["best_verified"], b["verified"]) for b in listing] == [
        ("glue-sst2@1", "accuracy", 82.25, 1), (f"{MANY}@1", MANY_PRIMARY, None, 0)]
    assert run_cli(["leaderboard", "show", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "glue-sst2@1" in out and "82.25" in out and MANY_PRIMARY in out
    assert run_cli(["leaderboard", "show", "glue-sst2", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.index("82.25") < out.index("self-reported") < out.index("99.00")
    assert run_cli(["leaderboard", "show", "glue-sst", "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean glue-sst2@1?" in err
