"""The Product1M submission format: `retrieval_id_list.txt` round trip, every bad line as
one error naming file and line, the official files and prepared splits as references,
and the missing / extra policy with and without official averaging."""

from __future__ import annotations

import json
from pathlib import Path

import datasets as hf_datasets
import pytest

from refbench.benchmarks.formats.product1m import (
    GALLERY_FILE,
    QUERY_FILES,
    Product1MRankedFormat,
    read_label_file,
    read_ranked_file,
    write_ranked_file,
)
from refbench.benchmarks.scoring import evaluate_file, label_set_sha256
from refbench.errors import RefbenchError
from refbench.evaluation.product1m import evaluate_rankings, official_results
from refbench.evaluation.retrieval import Ranking
from refbench.registry import FORMATS, get_spec
from tests.helpers import run_cli
from tests.unit.test_product1m_metric import GALLERY, HAND_LABELS, HAND_LINES, OFFICIAL

DEV = ["q1", "q2", "q3", "q4"]


def item_line(item: str, labels: list[str]) -> str:
    return f"{item}#####标题 {item}#####https://img/{item}.jpg#####http://oss/{item}.jpg#####" + \
        "#;#".join(labels)


def write_official(folder: Path, gallery: dict[str, str] = GALLERY) -> Path:
    """The hand case in the official layout: dev q1..q4, test q6 and q7 (CRLF lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {GALLERY_FILE: {k: [v, "extra label"] for k, v in gallery.items()},
             QUERY_FILES["validation"]: {q: HAND_LABELS[q] for q in DEV},
             QUERY_FILES["test"]: {q: HAND_LABELS[q] for q in ("q6", "q7")}}
    for name, items in files.items():
        text = "".join(item_line(k, v) + "\r\n" for k, v in items.items())
        (folder / name).write_text(text, encoding="utf-8", newline="")
    return folder


def write_lines(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(x + end for x in lines).encode("utf-8"))
    return path


def hand_file(path: Path, queries: list[str] | None = None) -> Path:
    wanted = [(q, ids) for q, ids in HAND_LINES if queries is None or q in queries]
    return write_lines(path, [f"{q},{ids}" if ids else q for q, ids in wanted])


# -- the prediction file -------------------------------------------------------------------
def test_round_trip_keeps_ids_order_and_lines(tmp_path: Path) -> None:
    predictions = {"q1": ("g4", "g1"), "q2": Ranking(("g6",), 7), "q7": ()}
    path = tmp_path / "retrieval_id_list.txt"
    write_ranked_file(path, predictions)
    assert path.read_text() == "q1,g4,g1\nq2,g6\nq7\n"
    read = read_ranked_file(path)
    assert read == {"q1": Ranking(("g4", "g1"), 1), "q2": Ranking(("g6",), 2),
                    "q7": Ranking((), 3)}
    again = tmp_path / "again.txt"
    write_ranked_file(again, read)
    assert read_ranked_file(again) == read


def test_crlf_and_trailing_whitespace_are_read_as_the_script_strips_them(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.txt", ["q1,g1,g2  ", "q2,g3"], end="\r\n")
    assert read_ranked_file(path) == {"q1": Ranking(("g1", "g2"), 1), "q2": Ranking(("g3",), 2)}


@pytest.mark.parametrize(("lines", "line", "message"), [
    (["q1,g1", "", "q2,g2"], 2, "empty line"),
    (["q1,g1,,g2"], 1, "empty ranked id 2"),
    (["q1,g1,"], 1, "empty ranked id 2"),
    ([",g1"], 1, "empty query id"),
    (["q1, g1"], 1, "ranked id 1 ' g1' holds whitespace"),
    (["q1 ,g1"], 1, "query id 'q1 ' holds whitespace"),
    (["q1,g1", "q2,g2", "q1,g3"], 3, "ranked again (first on line 1)"),
    (["q1,g1,g2,g1"], 1, "ranks id 'g1' twice"),
    (["q1," + ",".join(f"g{i}" for i in range(101))], 1, "ranks 101 ids; at most 100"),
])
def test_bad_lines_are_one_error_naming_file_and_line(tmp_path: Path, lines: list[str],
                                                      line: int, message: str) -> None:
    path = write_lines(tmp_path / "retrieval_id_list.txt", lines)
    with pytest.raises(RefbenchError) as info:
        read_ranked_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line}: ") and message in text and "\n" not in text


def test_bad_files_are_one_error(tmp_path: Path) -> None:
    cases = {"bom.txt": b"\xef\xbb\xbfq1,g1\n", "latin.txt": b"q1,g1\nq2,\xe9\n", "empty.txt": b""}
    expected = {"bom.txt": ":1: starts with a UTF-8 byte-order mark",
                "latin.txt": ":2: not valid UTF-8", "empty.txt": ": empty prediction file"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RefbenchError, match=expected[name]):
            read_ranked_file(tmp_path / name)
    with pytest.raises(RefbenchError, match="found a folder"):
        read_ranked_file(tmp_path)


@pytest.mark.parametrize(("predictions", "message"), [
    ({"q1": ("g,1",)}, "holds a comma"),
    ({"q1": ("g 1",)}, "holds whitespace"),
    ({"q1": ("g1", "g1")}, "ranked twice"),
    ({"q1": tuple(f"g{i}" for i in range(101))}, "at most 100"),
    ({"q1": "g1"}, "sequence of string gallery ids"),
    ({"q1": (1, 2)}, "sequence of string gallery ids"),
])
def test_write_refuses_what_the_reader_would(tmp_path: Path, predictions: dict,
                                             message: str) -> None:
    path = tmp_path / "retrieval_id_list.txt"
    with pytest.raises(RefbenchError, match=message):
        write_ranked_file(path, predictions)
    assert not path.exists()


# -- references ---------------------------------------------------------------------------
def test_references_from_the_official_folder_or_a_query_file(tmp_path: Path) -> None:
    root = write_official(tmp_path / "gt")
    fmt = Product1MRankedFormat()
    refs = fmt.read_references(root, get_spec("product1m-dev"))
    assert list(refs) == DEV and refs["q2"].labels == ("A", "A", "B")
    gallery = refs["q1"].gallery
    assert all(ref.gallery is gallery for ref in refs.values()) and len(gallery) == 16
    test = fmt.read_references(root / QUERY_FILES["test"], get_spec("product1m-dev"))
    assert list(test) == ["q6", "q7"]  # an explicit file is scored as given
    assert list(Product1MRankedFormat().read_references(root, get_spec("product1m-test"))) == \
        ["q6", "q7"]
    (root / GALLERY_FILE).unlink()
    with pytest.raises(RefbenchError, match=f"no {GALLERY_FILE} beside the query file"):
        fmt.read_references(root, get_spec("product1m-dev"))
    with pytest.raises(RefbenchError, match=f"no {QUERY_FILES['validation']} in this folder"):
        fmt.read_references(tmp_path, get_spec("product1m-dev"))


@pytest.mark.parametrize(("line", "message"), [
    ("g1#####t#####u#####m", "expected 5 fields"),
    ("g1#####t#####u#####m#####A#####B", "expected 5 fields"),
    ("#####t#####u#####m#####A", "empty item id"),
    ("g1#####t#####u#####m#####A#;##;#B", "empty instance label"),
    ("g1#####t#####u#####m#####", "empty instance label"),
])
def test_bad_label_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / GALLERY_FILE, [item_line("g0", ["A"]), line])
    with pytest.raises(RefbenchError, match=rf":2: .*{message}"):
        read_label_file(path)


def test_label_file_skips_bom_and_blank_lines_and_refuses_repeats(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_bytes(("\ufeff" + item_line("q1", ["A", "A"]) + "\r\n\r\n").encode("utf-8"))
    assert read_label_file(path) == {"q1": ("A", "A")}
    write_lines(path, [item_line("q1", ["A"]), item_line("q1", ["B"])])
    with pytest.raises(RefbenchError, match=r":2: item id 'q1' repeats line 1"):
        read_label_file(path)


def hand_datasets() -> dict[str, hf_datasets.Dataset]:
    """Prepared-split stand-ins with the dataset contract's id and labels columns."""
    string = hf_datasets.Value("string")

    def rows(items: dict[str, list[str]]) -> hf_datasets.Dataset:
        return hf_datasets.Dataset.from_dict(
            {"id": list(items), "labels": list(items.values()),
             "title": ["t"] * len(items), "has_regions": [False] * len(items)},
            features=hf_datasets.Features({"id": string, "labels": hf_datasets.Sequence(string),
                                           "title": string,
                                           "has_regions": hf_datasets.Value("bool")}))
    return {"gallery": rows({k: [v, "extra label"] for k, v in GALLERY.items()}),
            "validation": rows({q: HAND_LABELS[q] for q in DEV}),
            "test": rows({q: HAND_LABELS[q] for q in ("q6", "q7")})}


def test_references_from_prepared_splits_equal_the_official_files(tmp_path: Path) -> None:
    splits = hand_datasets()
    spec = get_spec("product1m-dev")
    fmt = Product1MRankedFormat()
    fmt.bind_splits(splits.__getitem__)
    from_rows = fmt.references_from_dataset(splits["validation"], spec)
    from_files = Product1MRankedFormat().read_references(write_official(tmp_path / "gt"), spec)
    assert label_set_sha256(from_rows) == label_set_sha256(from_files)
    other = dict(GALLERY, g6="B")
    changed = Product1MRankedFormat().read_references(write_official(tmp_path / "g2", other), spec)
    assert label_set_sha256(changed) != label_set_sha256(from_files)  # the gallery counts
    with pytest.raises(RefbenchError, match="lacks column"):
        fmt.references_from_dataset(splits["validation"].remove_columns("labels"), spec)


def test_perfect_predictions_score_the_best(tmp_path: Path) -> None:
    spec = get_spec("product1m-dev")
    fmt = Product1MRankedFormat()
    refs = fmt.read_references(write_official(tmp_path / "gt"), spec)
    refs = {q: r for q, r in refs.items() if q != "q3"}  # q3's label Z is absent: always 0
    perfect = fmt.perfect_predictions(refs)
    assert perfect["q2"][:3] == ("g1", "g2", "g4")  # A, A, B in turn
    path = tmp_path / "retrieval_id_list.txt"
    fmt.write(path, perfect, spec)
    assert set(fmt.read(path, spec)) == set(refs)
    values = evaluate_rankings([perfect[q] for q in refs], [refs[q].labels for q in refs],
                               refs["q1"].gallery)
    assert set(values.values()) == {1.0}


# -- the policy, end to end ---------------------------------------------------------------
def test_default_policy_refuses_missing_and_ignores_extra(tmp_path: Path) -> None:
    root = write_official(tmp_path / "gt")
    incomplete = hand_file(tmp_path / "a" / "retrieval_id_list.txt", ["q1", "q2", "q3"])
    with pytest.raises(RefbenchError, match=r"1 id\(s\) of the references have no prediction "
                                            r"\(first: q4\); a benchmark file ranks every "
                                            r"query.*--official-averaging"):
        evaluate_file("product1m-dev", incomplete, root)
    every = hand_file(tmp_path / "b" / "retrieval_id_list.txt")
    result = evaluate_file("product1m-dev", every, root)
    assert result.counts["extra"] == 3 and result.counts["queries/scored"] == 4
    assert any("3 prediction id(s) not in the references" in w and "ignored" in w
               for w in result.warnings)
    dev_only = hand_file(tmp_path / "c" / "retrieval_id_list.txt", DEV)
    assert evaluate_file("product1m-dev", dev_only, root).metrics == result.metrics
    with pytest.raises(RefbenchError, match="strict scoring"):
        evaluate_file("product1m-dev", every, root, strict=True)


def test_official_averaging_reproduces_the_script(tmp_path: Path) -> None:
    root = write_official(tmp_path / "gt")
    every = hand_file(tmp_path / "retrieval_id_list.txt")
    result = evaluate_file("product1m-dev", every, root, read_options={"official_averaging": True})
    assert official_results(result.metrics) == OFFICIAL
    assert result.counts["queries/scored"] == 7 and result.counts["queries/unknown"] == 1
    some = hand_file(tmp_path / "some" / "retrieval_id_list.txt", ["q1", "q6"])
    partial = evaluate_file("product1m-test", some, root,
                            read_options={"official_averaging": True})
    assert partial.counts["queries/not_submitted"] == 1  # q7 of the test split: left out
    assert partial.metrics["mAP@10"] == (0.5 + 1.0) / 2  # the script's average of 2 lines
    assert any("left out of the average" in w for w in partial.warnings)


def test_evaluate_cli_takes_the_option_as_a_flag(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = write_official(tmp_path / "gt")
    every = hand_file(tmp_path / "retrieval_id_list.txt")
    code = run_cli(["evaluate", "product1m-dev", "--predictions", str(every), "--references",
                    str(root), "--official-averaging", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["mAR@10"] == OFFICIAL["top10"]["mAR"]


def test_format_is_registered_with_its_policy() -> None:
    fmt = FORMATS.get("product1m_ranked")
    assert fmt is Product1MRankedFormat and fmt.missing == "refuse" and fmt.extra == "ignore"
    assert [o.name for o in fmt.read_options] == ["official_averaging"]
    instance = fmt()
    with pytest.raises(RefbenchError, match="unknown read option"):
        instance.read(Path("x"), get_spec("product1m-dev"), {"k": 1})
    with pytest.raises(RefbenchError, match="must be read before"):
        instance.extra_reference("q9")


def test_decimal_ids_are_read_with_keys_and_checked_alike(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.txt", ["5001,6001,6002", "5002", "5003,6003"])
    read = read_ranked_file(path)
    assert read["5001"].keys.tolist() == [6001, 6002] and read["5002"].ids == ()
    assert read == {"5001": Ranking(("6001", "6002"), 1), "5002": Ranking((), 2),
                    "5003": Ranking(("6003",), 3)}
    write_lines(path, ["5001,6001,6002", "5002,6001,6003,6001"])
    with pytest.raises(RefbenchError, match=r"r.txt:2: query '5002' ranks id '6001' twice"):
        read_ranked_file(path)
    write_lines(path, ["5001,06001,6001"])  # not canonical: the string path, still distinct
    assert read_ranked_file(path)["5001"].keys is None


def test_prepared_splits_and_official_files_score_alike(tmp_path: Path) -> None:
    """The builder's prepared copy (gallery through `bind_splits`) and its official files
    give the same references and the same numbers, official averaging included."""
    from refbench.registry import DATASETS

    if "product1m" not in DATASETS:
        pytest.skip("the product1m dataset builder is not registered")
    builder = DATASETS.get("product1m")()
    root = builder.synthesize(tmp_path / "src", n=40, seed=1)
    builder.prepare(root, tmp_path / "cache")
    cache = str(tmp_path / "cache")
    spec = get_spec("product1m-dev")
    fmt = Product1MRankedFormat()
    refs = fmt.read_references(root, spec)
    ranked = {q: ids[::-1] for q, ids in fmt.perfect_predictions(refs).items()}
    test_refs = Product1MRankedFormat().read_references(root, get_spec("product1m-test"))
    ranked.update({q: ids for q, ids in
                   Product1MRankedFormat().perfect_predictions(test_refs).items()})
    ranked["unknown"] = ("x",)
    path = tmp_path / "retrieval_id_list.txt"
    write_ranked_file(path, ranked)
    for options in ({}, {"official_averaging": True}):
        prepared = evaluate_file(spec, path, cache_dir=cache, read_options=options)
        official = evaluate_file(spec, path, root, read_options=options)
        assert prepared.metrics == official.metrics
        assert prepared.provenance.label_set_sha256 == official.provenance.label_set_sha256
        assert prepared.provenance.dataset_fingerprint is not None
    assert official.counts["queries/scored"] == len(ranked)  # every line, as the script


def test_an_id_in_both_query_files_takes_its_dev_labels_under_official_averaging(
        tmp_path: Path) -> None:
    root = write_official(tmp_path / "gt")
    with open(root / QUERY_FILES["test"], "a", encoding="utf-8") as handle:
        handle.write(item_line("q1", ["B"]) + "\r\n")  # q1 is a dev query labelled A
    path = write_lines(tmp_path / "retrieval_id_list.txt", ["q1,g1", "q6,g1", "q7,g6"])
    own = evaluate_file("product1m-test", path, root)
    merged = evaluate_file("product1m-test", path, root, read_options={"official_averaging": True})
    assert own.metrics["Prec@10"] == (0.0 + 1.0 + 1.0) / 3  # q1 against its test label B
    assert merged.metrics["Prec@10"] == (1.0 + 1.0 + 1.0) / 3  # against dev's A, as the script
