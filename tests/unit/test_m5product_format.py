"""M5Product submission formats: strict readers (one line naming file and line or id),
round trips, the checks against the gallery, modality sums, and both reference sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.formats.m5product.embeddings import read_embeddings
from refbench.benchmarks.formats.m5product.labels import _cluster, _label, read_json_map
from refbench.benchmarks.formats.m5product.ranked import MAX_IDS, read_ranked_file
from refbench.benchmarks.scoring import evaluate_file
from refbench.errors import RefbenchError
from refbench.evaluation.m5product.retrieval import GalleryLabels, M5Query
from refbench.registry import get_spec
from tests.helpers import run_cli


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(("text", "line", "match"), [
    ("q1,a,b\n\nq2,a\n", 2, "empty line"),
    ("q1,a,b\nq2\n", 2, "ranks no id"),
    ("q1,a,,b\n", 1, "empty ranked id 2"),
    ("q1,a,b,\n", 1, "empty ranked id 3"),
    ("q1,a, b\n", 1, "whitespace"),
    ("q1,a\nq1,b\n", 2, "ranked again .first on line 1"),
    ("q1,a,b,a\n", 1, "ranks id 'a' twice"),
    (",a\n", 1, "empty query id"),
    ("q1," + ",".join(f"g{i}" for i in range(MAX_IDS + 1)) + "\n", 1, "at most 100"),
])
def test_ranked_reader_refuses_with_file_and_line(tmp_path: Path, text: str, line: int,
                                                  match: str) -> None:
    path = write(tmp_path / "r.txt", text)
    with pytest.raises(RefbenchError, match=match) as err:
        read_ranked_file(path)
    assert err.value.path == str(path) and err.value.line == line


def test_ranked_reader_bytes(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="byte-order mark"):
        read_ranked_file(write(tmp_path / "a.txt", b"\xef\xbb\xbfq,a\n"))
    with pytest.raises(RefbenchError, match="not valid UTF-8") as err:
        read_ranked_file(write(tmp_path / "b.txt", b"q,a\nq2,\xff\n"))
    assert err.value.line == 2
    with pytest.raises(RefbenchError, match="found a folder"):
        read_ranked_file(tmp_path)
    with pytest.raises(RefbenchError, match="empty prediction file"):
        read_ranked_file(write(tmp_path / "c.txt", ""))
    ok = read_ranked_file(write(tmp_path / "d.txt", "q1,a,b\r\nq2,c\r\n"))
    assert ok["q1"].ids == ("a", "b") and ok["q2"].line == 2
    assert len(read_ranked_file(write(tmp_path / "e.txt", "q," + ",".join(
        f"g{i}" for i in range(MAX_IDS)))) ["q"]) == MAX_IDS


def refs(query_ids: dict[str, str], gallery: dict[str, str]) -> dict[str, M5Query]:
    g = GalleryLabels(list(gallery), list(gallery.values()))
    return {q: M5Query(q, label, g) for q, label in query_ids.items()}


def test_ranked_lines_are_checked_against_the_gallery(tmp_path: Path) -> None:
    gallery = {f"g{i}": "ab"[i % 2] for i in range(12)}
    references = refs({"q": "a", "g0": "a"}, gallery)
    spec = get_spec("m5product-coarse-retrieval")
    ten = ",".join(f"g{i}" for i in range(1, 11))
    cases = [(f"q,{ten}\ng0,x1,{ten[3:]}\n", 2, "'x1', which is not an item of the gallery"),
             (f"q,{ten}\ng0,g0,{ten[3:]}\n", 2, "ranks its own id"),
             # exactly the official lengths: 10 for q, 9 for g0 (a gallery item)
             (f"q,{','.join(ten.split(',')[:9])}\ng0,{ten[3:]}\n", 1, "ranks 9 id.s.; the "
              "official ranking gives 10")]
    for text, line, match in cases:
        fmt = FORMATS.get("m5product_ranked")()
        fmt._references_read(dict(references))  # the leaderboard reads the references first
        with pytest.raises(RefbenchError, match=match) as err:
            fmt.read(write(tmp_path / "r.txt", text), spec)
        assert err.value.line == line
    fmt = FORMATS.get("m5product_ranked")()
    preds = fmt.read(write(tmp_path / "ok.txt", f"q,{ten}\ng0,{ten[3:]}\nextra,g1\n"), spec)
    fmt._references_read(dict(references))  # evaluate reads the predictions first
    assert set(preds) == {"q", "g0", "extra"}
    perfect = fmt.perfect_predictions(references)
    assert len(perfect["q"]) == 10 and len(perfect["g0"]) == 9 and "g0" not in perfect["g0"]
    assert perfect["q"][:6] == ("g0", "g2", "g4", "g6", "g8", "g10")


def save_features(folder: Path, ids: list[str], **features: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "id.npy", np.asarray(ids))
    for name, array in features.items():
        np.save(folder / f"{name}_feature_np.npy", array)


def test_embeddings_sum_modalities_like_the_extraction(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t, p, a = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    gt, gp, ga = (rng.normal(size=(5, 4)).astype(np.float32) for _ in range(3))
    save_features(tmp_path / "s" / "query", ["q0", "q1", "q2"], t=t, p=p, a=a)
    save_features(tmp_path / "s" / "gallery", [f"g{i}" for i in range(5)], t=gt, p=gp, a=ga)
    qids, q, g = read_embeddings(tmp_path / "s")
    assert qids == ["q0", "q1", "q2"] and np.array_equal(q, t + p + a)  # same float32 order
    assert np.array_equal(g.embeddings, gt + gp + ga)
    assert np.array_equal(read_embeddings(tmp_path / "s", "pt")[1], t + p)
    with pytest.raises(RefbenchError, match="no i_feature_np.npy"):
        read_embeddings(tmp_path / "s", "ti")
    with pytest.raises(RefbenchError, match="letters of 'tpiva'"):
        read_embeddings(tmp_path / "s", "tt")
    save_features(tmp_path / "s" / "query", ["q0", "q1", "q2"], tp=t)  # a combination file
    save_features(tmp_path / "s" / "gallery", [f"g{i}" for i in range(5)], tp=gt)
    assert np.array_equal(read_embeddings(tmp_path / "s", "tp")[1], t)  # read, not summed


@pytest.mark.parametrize(("damage", "match"), [
    ("nan", "NaN or infinite value .float32. in the features of id 'q1' .row 1"),
    ("truncate", "truncated"),
    ("pickle", "pickle"),
    ("duplicate", "id 'q0' at rows 0 and 1"),
    ("rows", "2 feature rows for 3 ids"),
    ("width", "query embeddings have 4 dimensions, gallery embeddings 3"),
    ("kinds", "query/ holds features"),
])
def test_embeddings_refuse_bad_files(tmp_path: Path, damage: str, match: str) -> None:
    root = tmp_path / "s"
    q = np.ones((3, 4), dtype=np.float32)
    qids = ["q0", "q1", "q2"]
    g = np.ones((2, 3 if damage == "width" else 4), dtype=np.float32)
    if damage == "nan":
        q[1, 2] = np.nan
    save_features(root / "query", qids, t=q[:2] if damage == "rows" else q)
    save_features(root / "gallery", ["g0", "g1"], **({"p": g} if damage == "kinds" else {"t": g}))
    if damage == "truncate":
        data = (root / "query" / "t_feature_np.npy").read_bytes()
        (root / "query" / "t_feature_np.npy").write_bytes(data[:-5])
    if damage == "pickle":
        np.save(root / "query" / "id.npy", np.array(qids, dtype=object), allow_pickle=True)
    if damage == "duplicate":
        np.save(root / "query" / "id.npy", np.array(["q0", "q0", "q2"]))
    with pytest.raises(RefbenchError, match=match):
        read_embeddings(root)


def test_json_maps(tmp_path: Path) -> None:
    ok = read_json_map(write(tmp_path / "a.json", '{"1": "连衣裙", "2": "a,b"}'), _label, "f")
    assert ok == {"1": "连衣裙", "2": "a,b"}
    cases = [('{"1": "a",\n "1": "b"}', _label, 2, "given twice"),
             ('{"1": 0,\n "2": NaN}', _cluster, 2, "NaN is not a valid value"),
             ('{"1": 0,\n "2": -1}', _cluster, 2, "non-negative integer"),
             ('{"1": 0,\n "2": true}', _cluster, 2, "non-negative integer"),
             ('{"1": 0,\n "2": 1.5}', _cluster, 2, "non-negative integer"),
             ('{"1": "a",\n "2": ""}', _label, 2, "non-empty string"),
             ('["a"]', _label, 1, "expected a JSON object"),
             ('{"1": "a",\n', _label, 2, "invalid JSON")]
    for text, check, line, match in cases:
        with pytest.raises(RefbenchError, match=match) as err:
            read_json_map(write(tmp_path / "b.json", text), check, "f")
        assert err.value.line == line, text


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from refbench.datasets.m5product.builder import M5ProductBuilder

    base = tmp_path_factory.mktemp("m5fmt")
    builder = M5ProductBuilder()
    root = builder.synthesize(base / "src", n=40, seed=2)
    builder.prepare(root, base / "cache")
    return root, base / "cache"


@pytest.mark.parametrize("name", ["m5product-fine-retrieval", "m5product-coarse-retrieval-embeddings",
                                  "m5product-classification", "m5product-clustering"])
def test_both_reference_sources_agree(release: tuple[Path, Path], tmp_path: Path,
                                      name: str) -> None:
    root, cache = release
    spec = get_spec(name)
    fmt = FORMATS.get(spec.submission.format)()
    official = fmt.read_references(root, spec)
    out = tmp_path / spec.submission.filename
    fmt.write(out, fmt.perfect_predictions(official), spec)
    by_root = evaluate_file(spec, out, references=root)
    by_cache = evaluate_file(spec, out, cache_dir=str(cache))
    assert by_root.metrics == by_cache.metrics
    if spec.task.type == "retrieval":  # perfect lists: a hit at rank 1 unless no positive
        scored = by_root.counts["queries/scored"]
        expected = 100 * (scored - by_root.counts["queries/no_positive"]) / scored
        assert by_root.metrics["mAP@1"] == pytest.approx(expected)
    else:
        assert by_root.metrics[spec.primary] == 100.0
    assert by_root.provenance.label_set_sha256 == by_cache.provenance.label_set_sha256


def test_cli_refuses_a_missing_query_and_bad_input_with_exit_2(
        release: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = release
    spec = get_spec("m5product-coarse-retrieval")
    fmt = FORMATS.get("m5product_ranked")()
    perfect = fmt.perfect_predictions(fmt.read_references(root, spec))
    dropped = next(iter(perfect))
    path = tmp_path / "ranked.txt"
    fmt.write(path, {q: v for q, v in perfect.items() if q != dropped}, spec)
    out = tmp_path / "result.json"
    args = ["evaluate", "m5product-coarse-retrieval", "--predictions", str(path),
            "--references", str(root), "--output", str(out)]
    assert run_cli(args) == 2
    assert "have no prediction" in capsys.readouterr().err and not out.exists()
    labels = tmp_path / "predictions.json"
    labels.write_text(json.dumps({"1": float("nan")}))
    assert run_cli(["evaluate", "m5product-classification", "--predictions", str(labels),
                    "--references", str(root)]) == 2
    assert f"{labels}:1" in capsys.readouterr().err
