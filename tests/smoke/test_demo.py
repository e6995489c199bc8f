"""`refbench demo` runs the main job end to end and beats the majority class."""

from __future__ import annotations

from pathlib import Path

from refbench.demo import run_demo
from refbench.leaderboard.store import rows


def test_demo_beats_majority_and_records_results(tmp_path: Path) -> None:
    table = run_demo(tmp_path / "demo", ["sst2", "cola"], n=400)
    assert [row["benchmark"] for row in table] == ["glue-sst2@1", "glue-cola@1"]
    for row in table:
        assert row["model"] > row["trivial"] + 10, row
        assert Path(row["test_submission"]).read_text().startswith("index\tprediction\n")
    board = rows(tmp_path / "demo" / "leaderboard.json")
    assert sorted(r.benchmark for r in board) == ["glue-cola@1", "glue-sst2@1"]
