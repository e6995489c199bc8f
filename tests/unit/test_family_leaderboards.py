"""The report-generation, image-classification and try-on benchmarks on the leaderboard:
the hidden references are the dataset's release folder (read through the builder's own
parser where the format has no label file of its own), a folder submission (try-on
images) is uploaded as a zip and stays extracted until its images are scored, an
incomplete file is refused in one line, and no reference text reaches the public site."""

from __future__ import annotations

from pathlib import Path

import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.datasets.base import get_builder
from refbench.leaderboard.archive import zip_folder
from refbench.leaderboard.db import LeaderboardDB
from refbench.leaderboard.export import export_site
from refbench.leaderboard.worker import Worker
from refbench.registry import get_spec

#: the worker's time limit here: the point is the hidden references, not speed
SCORING_LIMIT_S = 600.0
CASES = ["iu-xray-r2gen", "cx-chr-reports", "digits", "viton-tryon"]


def _upload(fmt, path: Path) -> tuple[str, bytes]:
    return (f"{path.name}.zip", zip_folder(path)) if fmt.is_folder else (path.name,
                                                                        path.read_bytes())


@pytest.mark.parametrize("name", CASES)
def test_a_family_benchmark_scores_on_the_board(tmp_path: Path, name: str) -> None:
    spec = get_spec(name)
    hidden = tmp_path / "hidden"
    root = get_builder(spec.dataset.name).synthesize(hidden / spec.dataset.name, n=30, seed=2)
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    board.set_references_dir(hidden)
    board.add_benchmark(name, spec.dataset.name, seed=5)
    team = board.add_team("alpha")
    fmt = FORMATS.get(spec.submission.format)()
    refs = fmt.read_references(root, spec)
    best = tmp_path / "best" / spec.submission.filename
    best.parent.mkdir()
    fmt.write(best, fmt.perfect_predictions(refs), spec)
    sub = board.submit(team, name, *_upload(fmt, best))
    assert Worker(board, context="fork", time_limit=SCORING_LIMIT_S).run(until_idle=True) == 1
    row = board.submission(sub)
    assert row["status"] == "scored", row["error"]
    scores = board.scores(sub, reveal=True)
    best_value = {"BLEU-4": 1.0, "top1": 100.0, "SSIM": 1.0}[spec.primary]
    for part in ("public", "private"):
        assert scores[part][spec.primary] == pytest.approx(best_value, abs=1e-6)
    # a file lacking one id is refused in one line naming the upload only
    preds = fmt.perfect_predictions(refs)
    preds.pop(next(iter(preds)))
    short = tmp_path / "short" / spec.submission.filename
    short.parent.mkdir()
    fmt.write(short, preds, spec)
    bad = board.submit(team, name, *_upload(fmt, short))
    Worker(board, context="fork", time_limit=SCORING_LIMIT_S).run(until_idle=True)
    failed = board.submission(bad)
    assert failed["status"] == "failed" and "\n" not in failed["error"]
    assert str(hidden) not in failed["error"]
    # the public site shows no reference report
    site = tmp_path / "site"
    export_site(board, site)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in site.rglob("*")
             if p.is_file()]
    for ref in list(refs.values())[:5]:
        report = getattr(ref, "report", None)
        if isinstance(report, str) and len(report) > 20:
            assert not any(report in text for text in texts)
