"""The retrieval benchmarks on the leaderboard: Product1M test and the M5Product benchmarks
scored against hidden query and gallery labels by the worker (the scorer of `refbench
evaluate`), a zipped embeddings folder included, with the labels never reaching the
submitter's error messages or the public export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.scoring import evaluate_file
from refbench.leaderboard.archive import zip_folder
from refbench.leaderboard.db import LeaderboardDB
from refbench.leaderboard.export import export_site
from refbench.leaderboard.split import partition
from refbench.leaderboard.worker import Worker
from refbench.registry import get_spec

MARKER = "ZQX_HIDDEN_LABEL_4471"


def _hide_product1m(root: Path) -> None:
    """Prefix every instance label of the synthesized Product1M files with MARKER."""
    for path in root.glob("product1m_*_ossurl_v2.txt"):
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            head, _, labels = line.rpartition("#####")
            lines.append(head + "#####" + "#;#".join(MARKER + x for x in labels.split("#;#")))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _hide_m5product(root: Path) -> None:
    for name in ("subset_v2_id_label.json", "product1m_product5m_test_id_label.json"):
        path = root / name
        info = json.loads(path.read_text(encoding="utf-8"))
        for entry in info.values():
            entry["label"] = MARKER + entry["label"]
        path.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from refbench.datasets.m5product.builder import M5ProductBuilder
    from refbench.datasets.product1m.builder import Product1MBuilder

    folder = tmp_path_factory.mktemp("hidden")
    _hide_product1m(Product1MBuilder().synthesize(folder / "product1m", n=60, seed=4))
    _hide_m5product(M5ProductBuilder().synthesize(folder / "m5product", n=120, seed=4))
    return folder


def _board(tmp_path: Path, hidden: Path) -> LeaderboardDB:
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    board.set_references_dir(hidden)
    return board


def _predictions(name: str, root: Path, out: Path, spoil: int = 0) -> bytes:
    """The best file of the benchmark, with the first `spoil` queries' answers reversed
    or shifted so the score is not trivially perfect; the upload's bytes."""
    spec = get_spec(name)
    fmt = FORMATS.get(spec.submission.format)()
    preds = fmt.perfect_predictions(fmt.read_references(root, spec))
    for key in list(preds)[:spoil]:
        value = preds[key]
        preds[key] = tuple(reversed(value)) if isinstance(value, tuple) else value
    fmt.write(out, preds, spec)
    return zip_folder(out) if fmt.is_folder else out.read_bytes()


#: the worker's time limit here: the point is the hidden labels, not speed, and a shared
#: CI machine can take longer than the default 60 s to import faiss and score
SCORING_LIMIT_S = 600.0

CASES = [("product1m-test", "product1m"), ("m5product-coarse-retrieval", "m5product"),
         ("m5product-fine-retrieval", "m5product"),
         ("m5product-coarse-retrieval-embeddings", "m5product"),
         ("m5product-classification", "m5product"), ("m5product-clustering", "m5product")]


@pytest.mark.parametrize(("name", "folder"), CASES)
def test_hidden_labels_score_and_stay_hidden(tmp_path: Path, hidden: Path, name: str,
                                            folder: str) -> None:
    spec = get_spec(name)
    board = _board(tmp_path, hidden)
    board.add_benchmark(name, folder, seed=5)
    team = board.add_team("alpha")
    upload = tmp_path / spec.submission.filename
    data = _predictions(name, hidden / folder, upload, spoil=3)
    sub = board.submit(team, name, spec.submission.filename, data)
    assert Worker(board, context="fork", time_limit=SCORING_LIMIT_S).run(until_idle=True) == 1
    row = board.submission(sub)
    assert row["status"] == "scored", row["error"]
    scores = board.scores(sub, reveal=True)
    # the two parts together are `refbench evaluate` on the whole file, where the official
    # keys are means over the queries (items)
    whole = evaluate_file(spec, upload, references=hidden / folder, strict=True).metrics
    refs = FORMATS.get(spec.submission.format)().read_references(hidden / folder, spec)
    public, private = partition(list(refs), seed=5)
    if spec.primary != "NMI":  # NMI is not a mean over items
        combined = (scores["public"][spec.primary] * len(public)
                    + scores["private"][spec.primary] * len(private)) / len(refs)
        assert combined == pytest.approx(whole[spec.primary], abs=1e-9)
    assert 0 < scores["public"][spec.primary] <= 100
    # a file lacking a query is rejected in one line that names the upload only
    fmt = FORMATS.get(spec.submission.format)()
    preds = fmt.perfect_predictions(refs)
    preds.pop(next(iter(preds)))
    short = tmp_path / "short" / spec.submission.filename
    short.parent.mkdir()
    fmt.write(short, preds, spec)
    bad = board.submit(team, name, spec.submission.filename,
                       zip_folder(short) if fmt.is_folder else short.read_bytes())
    Worker(board, context="fork", time_limit=SCORING_LIMIT_S).run(until_idle=True)
    error = board.submission(bad)["error"]
    assert board.submission(bad)["status"] == "failed" and "no prediction" in error
    assert MARKER not in error and str(hidden) not in error and "\n" not in error
    # the public site never shows a hidden label
    site = tmp_path / "site"
    export_site(board, site)
    for path in site.rglob("*"):
        if path.is_file():
            assert MARKER not in path.read_text(encoding="utf-8", errors="replace"), path
