"""Product1M scoring on the REAL dev and test query files (../shared/data/product1m), with a
synthetic gallery built here (the released gallery file is not in the sample data).

The gallery and the ranked lists are built by arithmetic from the real labels, so the case
is fixed: every distinct label but every 40th gets (i % 5) + 1 gallery items, ranked lists
mix positives, other items and a few ids that are not gallery items. The official
`evaluate_suit.py` (HEAD d4befb6) was run on exactly these files (the real query files as
GT, this gallery, the dev lines below) and printed `OFFICIAL_DEV`; refbench must equal it
and a straight loop of the official semantics. The query files are copied into a
temporary folder, never into the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from refbench.benchmarks.formats.product1m import GALLERY_FILE, QUERY_FILES, read_label_file
from refbench.benchmarks.scoring import evaluate_file
from refbench.evaluation.product1m import official_results
from tests.unit.test_product1m_metric import loop_reference

#: metric_results.json of the official script on the case below (dev lines only)
OFFICIAL_DEV = {
    "top10": {"mAP": 0.7960296301668992, "Prec": 0.5373854654718841, "mAR": 0.5976036080974371},
    "top50": {"mAP": 0.7944980057514519, "Prec": 0.520477139445764, "mAR": 0.5575974768258685},
    "top100": {"mAP": 0.7944980057514519, "Prec": 0.520477139445764, "mAR": 0.561216693685826},
}


@pytest.fixture(scope="module")
def real_files(shared_data: Path) -> dict[str, Path]:
    folder = shared_data / "product1m"
    files = {split: folder / name for split, name in QUERY_FILES.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        pytest.skip(f"real Product1M query files not found: {', '.join(missing)}")
    return files


def synthetic_gallery(labels: list[str], drop_every: int = 40) -> dict[str, str]:
    """`{gallery id: first label}` from the sorted distinct query labels."""
    gallery = {}
    for i, label in enumerate(labels):
        if i % drop_every == drop_every - 1:
            continue  # no gallery item has this label first: its queries score 0
        for j in range(i % 5 + 1):
            gallery[f"9{i:04d}{j:02d}"] = label
    return gallery


def ranked_lists(queries: dict[str, tuple[str, ...]], gallery: dict[str, str]) -> list[str]:
    """One `retrieval_id_list.txt` line per query: its positives label by label, items of
    other labels between them, an unknown id every 7th query, lengths 5..100."""
    by_label: dict[str, list[str]] = {}
    for item, label in gallery.items():
        by_label.setdefault(label, []).append(item)
    items = list(gallery)
    lines = []
    for n, (query, labels) in enumerate(queries.items()):
        ranked: list[str] = []
        for label in dict.fromkeys(labels):
            ranked += by_label.get(label, [])[: n % 3 + 1]
            ranked.append(items[(n * 31 + len(ranked)) % len(items)])
        ranked += [items[(n * 17 + j) % len(items)] for j in range(n % 96)]
        if n % 7 == 3:
            ranked.insert(n % 12, f"x{n}")
        unique = list(dict.fromkeys(ranked))[: 5 + n % 96]
        lines.append(",".join([query, *unique]))
    return lines


def build(real_files: dict[str, Path], folder: Path,
          drop_every: int = 40) -> tuple[dict, dict, list[str]]:
    """The GT folder (real query files + synthetic gallery); (dev, dev+test, dev lines)."""
    dev = read_label_file(real_files["validation"])
    test = read_label_file(real_files["test"])
    labels = sorted({x for q in (dev, test) for labels in q.values() for x in labels})
    gallery = synthetic_gallery(labels, drop_every)
    folder.mkdir(parents=True, exist_ok=True)
    for path in real_files.values():
        shutil.copyfile(path, folder / path.name)
    (folder / GALLERY_FILE).write_text(
        "".join(f"{k}#####t#####u#####m#####{v}#;#其他\r\n" for k, v in gallery.items()),
        encoding="utf-8", newline="")
    return dev, {**test, **dev}, ranked_lists(dev, gallery)


def gallery_of(folder: Path) -> dict[str, str]:
    lines = (folder / GALLERY_FILE).read_text(encoding="utf-8").splitlines()
    return {x.split("#####")[0]: x.split("#####")[4].split("#;#")[0] for x in lines}


def test_real_query_files_read_as_the_script_reads_them(real_files: dict[str, Path]) -> None:
    dev = read_label_file(real_files["validation"])
    test = read_label_file(real_files["test"])
    assert (len(dev), len(test)) == (2673, 6547) and not set(dev) & set(test)
    dev_labels = {x for labels in dev.values() for x in labels}
    test_labels = {x for labels in test.values() for x in labels}
    assert (len(dev_labels), len(test_labels), len(dev_labels | test_labels)) == (295, 392, 392)
    assert sum(len(set(v)) < len(v) for v in dev.values()) == 376  # repeated labels kept
    assert max(len(v) for v in test.values()) == 12  # more labels than k = 10: mAR@10 0
    assert dev["623174602918"] == ("AHC 黄金面霜", "AHC 黄金蜗牛原液精华液",
                                   "AHC 黄金水", "AHC 黄金眼霜", "AHC 黄金眼霜")


def test_dev_scores_equal_the_official_script_and_a_loop(real_files: dict[str, Path],
                                                          tmp_path: Path) -> None:
    _, merged, lines = build(real_files, tmp_path / "gt")
    submission = tmp_path / "retrieval_id_list.txt"
    submission.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    result = evaluate_file("product1m-dev", submission, tmp_path / "gt")
    assert official_results(result.metrics) == OFFICIAL_DEV
    parsed = [(x.split(",")[0], x.split(",")[1:]) for x in lines]
    expected = loop_reference(parsed, {k: list(v) for k, v in merged.items()},
                              gallery_of(tmp_path / "gt"))
    assert {k: result.metrics[k] for k in expected} == expected
    counts = result.counts
    assert counts["queries/scored"] == 2673 and counts["extra"] == 0
    assert counts["queries/label_absent"] > 0 and counts["ranked/not_in_gallery"] > 0
    assert counts["queries/mAR_zeroed@100"] > counts["queries/mAR_zeroed@10"] > 0


def test_a_file_ranking_dev_and_test_is_the_scripts_average_only_when_asked(
        real_files: dict[str, Path], tmp_path: Path) -> None:
    _, merged, _ = build(real_files, tmp_path / "gt")
    gallery = gallery_of(tmp_path / "gt")
    lines = ranked_lists(merged, gallery)
    submission = tmp_path / "retrieval_id_list.txt"
    submission.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    default = evaluate_file("product1m-test", submission, tmp_path / "gt")
    assert default.counts["queries/scored"] == 6547 and default.counts["extra"] == 2673
    official = evaluate_file("product1m-test", submission, tmp_path / "gt",
                             read_options={"official_averaging": True})
    assert official.counts["queries/scored"] == 9220
    parsed = [(x.split(",")[0], x.split(",")[1:]) for x in lines]
    expected = loop_reference(parsed, {k: list(v) for k, v in merged.items()}, gallery)
    assert {k: official.metrics[k] for k in expected} == expected
    assert official.metrics["mAP@10"] != default.metrics["mAP@10"]


def test_perfect_rankings_of_the_real_test_queries(real_files: dict[str, Path],
                                                   tmp_path: Path) -> None:
    """Each query's positives, label by label, against a gallery holding every label: 1 on
    every key, but mAR@10 of the twelve-label test query (587490309761), whose quota
    int(10 / 12) is 0, so the script's mAR@10 is below 1 by exactly that query's share."""
    from refbench.benchmarks.formats.product1m import Product1MRankedFormat
    from refbench.registry import get_spec

    build(real_files, tmp_path / "gt", drop_every=10**6)
    spec = get_spec("product1m-test")
    fmt = Product1MRankedFormat()
    refs = fmt.read_references(tmp_path / "gt", spec)
    assert len(refs["587490309761"].labels or ()) == 12
    path = tmp_path / "retrieval_id_list.txt"
    fmt.write(path, fmt.perfect_predictions(refs), spec)
    result = evaluate_file(spec, path, tmp_path / "gt")
    assert result.counts["queries/label_absent"] == 0
    assert result.counts["queries/scored"] == 6547
    assert result.metrics["mAR@10"] == pytest.approx(1 - 1 / 6547, abs=1e-12)
    assert {v for k, v in result.metrics.items() if k != "mAR@10"} == {1.0}
