"""`refbench demo` runs the main job end to end and beats the majority class."""

from __future__ import annotations

from pathlib import Path

from refbench.demo import run_demo
from refbench.leaderboard.db import LeaderboardDB


def test_demo_beats_majority_and_records_results(tmp_path: Path) -> None:
    table = run_demo(tmp_path / "demo", ["sst2", "cola"], n=400)
    assert [row["benchmark"] for row in table] == ["glue-sst2@1", "glue-cola@1"]
    for row in table:
        assert row["model"] > row["trivial"] + 10, row
        assert Path(row["test_submission"]).read_text().startswith("index\tprediction\n")
    db = tmp_path / "demo" / "leaderboard.sqlite"
    board = LeaderboardDB(db, db.with_name(db.name + ".data"))
    for row in table:
        ranked = board.leaderboard(row["benchmark"], decimals=6)
        # the run's own result.json (self-reported) and the same dev predictions scored by
        # the worker on the public part, plus the trivial submission below them
        kinds = {(r.team, r.verified) for r in ranked}
        assert kinds == {("refbench-demo", False), ("refbench-demo", True),
                         ("trivial-baselines", True)}
        assert ranked[-1].team == "trivial-baselines"
        own = next(r for r in ranked if not r.verified)
        assert own.value == round(row["model"], 6)
    assert {s["status"] for s in board.submissions()} == {"scored"}
