"""Golden values of M5Product retrieval: one case scored by SCALE's official
`evaluate_unit_v2.py` (run outside the repository; `perf/m5product_crosscheck.py` repeats
such comparisons on random cases), hand-checked below, through the metric and through
`refbench evaluate` on a synthesized release. No real M5Product sample is public (see the
shared data's PROVENANCE), so there is no real-data test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refbench.benchmarks.scoring import evaluate_file
from refbench.evaluation.m5product.retrieval import (
    GalleryLabels,
    M5Query,
    evaluate_rankings,
)
from tests.helpers import run_cli

GALLERY = {**{f"a{i}": "连衣裙" for i in range(1, 3)}, **{f"b{i}": "双肩包" for i in range(1, 4)},
           **{f"c{i}": "洗衣机" for i in range(1, 3)}, **{f"d{i}": "牛仔裤" for i in range(1, 12)}}
QUERIES = {"q1": "连衣裙", "q2": "双肩包", "d1": "牛仔裤", "q3": "手机", "c1": "洗衣机"}
LINES = [
    "q1,b1,a1,c1,a2,d1,d2,d3,d4,d5,d6",  # |pos| = 2 + itself: k' = 3 at k = 5, 10
    "q2,b1,b2,b3,a1,a2,c1,c2,d1,d2,d3",  # |pos| = 4: Prec@5 = 3/4
    "d1,d2,b1,d3,d4,a1,d5,d6,d7,d8",     # a gallery query: 9 ids, k' = 9 at k = 10
    "q3,a1,a2,b1,b2,b3,c1,c2,d1,d2,d3",  # label in no gallery item: |pos| = 1, scores 0
    "c1,a1,b1,c2,d1,d2,d3,d4,d5,d6",     # |pos| = 2 (c1, c2): c2 at rank 3 is beyond k'
]
#: `metric_results.json` of evaluate_unit_v2.py --t on this case (GT: gallery + queries)
OFFICIAL = {"top1": {"mAP": 40.0, "Prec": 40.0},
            "top5": {"mAP": 46.11111111111111, "Prec": 33.666666666666664},
            "top10": {"mAP": 45.215419501133795, "Prec": 37.22222222222222}}
#: hand-computed: relevant = the query's gallery positives other than itself
STANDARD = {"Recall@1": 40.0, "Recall@5": 80.0, "Recall@10": 80.0,
            "mAP@R": 100 * (0.25 + 1 + (1 + 2 / 3 + 3 / 4 + 4 / 6 + 5 / 7 + 6 / 8 + 7 / 9) / 10) / 5}


def test_the_official_values_and_the_hand_computed_standard_keys() -> None:
    gallery = GalleryLabels(list(GALLERY), list(GALLERY.values()))
    parsed = [line.split(",") for line in LINES]
    values = evaluate_rankings([p[1:] for p in parsed],
                               [M5Query(p[0], QUERIES[p[0]], gallery) for p in parsed], gallery)
    for top, keys in OFFICIAL.items():
        for name, value in keys.items():
            assert values[f"{name}@{top[3:]}"] == value, (top, name)  # bit for bit
    assert values["Prec@1"] == values["mAP@1"]  # k' = 1: both are the hit rate at rank 1
    for key, value in STANDARD.items():
        assert values[key] == pytest.approx(value, abs=1e-12), key
    # by hand: d1's mAP@10 over its 7 hits within k' = 9, mean over the five lines
    d1 = (1 + 2 / 3 + 3 / 4 + 4 / 6 + 5 / 7 + 6 / 8 + 7 / 9) / 7
    assert values["mAP@10"] == pytest.approx(100 * (0.5 + 1 + d1) / 5, abs=1e-12)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthesized release whose coarse lists and labels are replaced by the case."""
    from refbench.datasets.m5product.builder import M5ProductBuilder

    root = M5ProductBuilder().synthesize(tmp_path_factory.mktemp("m5") / "src", n=40, seed=3)
    info_path = root / "subset_v2_id_label.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    template = next(iter(info.values()))
    for item, label in {**GALLERY, **QUERIES}.items():
        info[item] = {**template, "label": label}
    info_path.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    (root / "query_c_ids.json").write_text(json.dumps([p.split(",")[0] for p in LINES]))
    (root / "gallery_c_ids.json").write_text(json.dumps(list(GALLERY)))
    return root


def test_refbench_evaluate_against_the_release_folder(release: Path, tmp_path: Path) -> None:
    path = tmp_path / "t_feature_retrieval_id_list.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    result = evaluate_file("m5product-coarse-retrieval", path, references=release)
    assert result.metrics["mAP@1"] == 40.0 and result.primary == "mAP@1"
    assert result.metrics["mAP@10"] == OFFICIAL["top10"]["mAP"]
    assert result.metrics["Prec@5"] == OFFICIAL["top5"]["Prec"]
    assert result.counts["queries/scored"] == 5 and result.counts["gallery/items"] == 18
    assert result.counts["queries/no_positive"] == 1  # q3
    assert result.counts["queries/short@10"] == 1  # d1's 9 ids against 10 positives
    assert any("only 5 queries" in w for w in result.warnings)
    out = tmp_path / "result.json"
    assert run_cli(["evaluate", "m5product-coarse-retrieval", "--predictions", str(path),
                    "--references", str(release), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["mAP@5"] == OFFICIAL["top5"]["mAP"]


def test_a_short_list_is_refused_through_the_cli(release: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lines = list(LINES)
    lines[0] = ",".join(lines[0].split(",")[:10])  # q1 ranks 9 ids: the official gives 10
    path = tmp_path / "ranked.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "result.json"
    assert run_cli(["evaluate", "m5product-coarse-retrieval", "--predictions", str(path),
                    "--references", str(release), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(f"{path}:1" in line and "ranks 9 id(s)" in line for line in err)
    assert not out.exists()
