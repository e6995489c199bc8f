"""Product1M builder on synthetic releases: round trip, region join, bad inputs (one line
naming file and line), restricted unpickling, streaming JSON, resumable preparation."""

from __future__ import annotations

import base64
import builtins
import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import refbench.datasets.product1m.builder as builder_module
from refbench.datasets.base import MISSING_FILE, load_prepared, read_manifest
from refbench.datasets.product1m import Product1MBuilder, readers
from refbench.datasets.product1m.features import (
    FeatureLMDB,
    RefusedPickle,
    build_feature_index,
    safe_loads,
)
from refbench.datasets.product1m.readers import iter_item_file, iter_train_info
from refbench.datasets.product1m.synth import record_bytes, write_feature_lmdb
from refbench.errors import MissingDependencyError, RefbenchError

DEV, TEST = readers.QUERY_FILES["validation"], readers.QUERY_FILES["test"]
GALLERY = readers.GALLERY_FILE


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Product1MBuilder().synthesize(tmp_path_factory.mktemp("p1m") / "src", n=40, seed=3)


@pytest.fixture()
def root(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy each test may break."""
    return Path(shutil.copytree(synth_root, tmp_path / "src"))


def _records(path: Path) -> dict[str, list]:
    """{image_id: datapoint} of a feature LMDB we wrote ourselves (plain pickle: trusted)."""
    import lmdb

    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        out = {}
        for key, value in txn.cursor():
            if key != b"__keys__":
                point = pickle.loads(value)
                out[point[5]] = point
    env.close()
    return out


def test_synthesize_check_prepare_load_round_trip(synth_root: Path, tmp_path: Path) -> None:
    builder = Product1MBuilder()
    report = builder.check(synth_root)
    assert report.ok, report.problems
    manifest = builder.prepare(synth_root, tmp_path / "cache")
    assert manifest["splits"]["default"] == {"train": 40, "validation": 4, "test": 4,
                                             "gallery": 40}
    assert set(manifest["sources"]) >= {GALLERY, DEV, TEST, "train_id_info.json",
                                        "lmdb_features/train.lmdb"}
    cache = str(tmp_path / "cache")
    gallery = load_prepared("product1m", split="gallery", cache_dir=cache)
    assert gallery.features == builder_module.features()
    records = _records(synth_root / "lmdb_features" / "gallery.lmdb")
    items = list(iter_item_file(synth_root / GALLERY))
    assert list(gallery["id"]) == [item.id for item in items]
    assert list(gallery["labels"]) == [list(item.labels) for item in items]
    rows = gallery.with_format("numpy")
    missing = sum(item.id not in records for item in items)
    assert missing >= 1 and int((~np.asarray(rows["has_regions"])).sum()) == missing
    assert manifest["with_regions"]["default"]["gallery"] == 40 - missing
    for i, item in enumerate(items):
        row = rows[i]
        point = records.get(item.id)
        if point is None:
            assert not row["has_regions"] and row["regions"].shape[0] == 0
            assert list(row["image_size"]) == [0, 0]
            continue
        assert row["has_regions"] and row["regions"].dtype == np.float32
        np.testing.assert_array_equal(row["regions"], point[0])
        np.testing.assert_array_equal(row["boxes"], point[1])
        assert list(row["image_size"]) == [point[4], point[3]]  # (w, h); records store h, w
    train = load_prepared("product1m", split="train", cache_dir=cache)
    assert all(labels == [] for labels in train["labels"]) and train[0]["image_url"] == ""
    info = json.loads((synth_root / "train_id_info.json").read_text(encoding="utf-8"))
    assert list(train["title"]) == [v["title"] for v in info.values()]


def test_dev_alias_and_missing_modality_mask(synth_root: Path, tmp_path: Path) -> None:
    Product1MBuilder().prepare(synth_root, tmp_path / "cache")
    cache = str(tmp_path / "cache")
    dev = load_prepared("product1m", split="dev", cache_dir=cache)
    validation = load_prepared("product1m", split="validation", cache_dir=cache)
    assert list(dev["id"]) == list(validation["id"]) == [i.id for i in iter_item_file(synth_root / DEV)]
    train = load_prepared("product1m", split="train", cache_dir=cache).with_format("numpy")
    counts = np.array([len(r) for r in train["regions"]])
    np.testing.assert_array_equal(np.asarray(train["has_regions"]), counts > 0)
    assert set(counts) == {0, 36}


def test_synthetic_signal_is_in_titles_and_regions(synth_root: Path, tmp_path: Path) -> None:
    """Gallery items of one class look alike in regions, and every title names its brand."""
    Product1MBuilder().prepare(synth_root, tmp_path / "cache")
    rows = load_prepared("product1m", split="gallery",
                         cache_dir=str(tmp_path / "cache")).with_format("numpy")
    keep = [i for i in range(len(rows)) if rows[i]["has_regions"]]
    emb = np.stack([rows[i]["regions"].max(0) for i in keep])
    emb = emb - emb.mean(0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cls = np.array([rows[i]["labels"][0] for i in keep])
    sim = emb @ emb.T
    same = (cls[:, None] == cls[None, :]) & ~np.eye(len(keep), dtype=bool)
    assert sim[same].mean() > sim[~same & ~np.eye(len(keep), dtype=bool)].mean() + 0.1
    for item in iter_item_file(Path(synth_root) / GALLERY):
        assert item.title.split()[0] == item.labels[0].split()[0]


def _replace_line(path: Path, number: int, edit: Callable[[bytes], bytes]) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = edit(lines[number - 1])
    path.write_bytes(b"\n".join(lines))


def _nan_record(root: Path) -> None:
    feats = np.ones((36, 2048), np.float32)
    feats[5, 7] = np.nan
    write_feature_lmdb(root / "extra.lmdb",
                       [record_bytes(feats, np.ones((36, 4), np.float32), 8, 9, "nan-item", "t")])


def _truncated_record(root: Path) -> None:
    value = record_bytes(np.ones((36, 2048), np.float32), np.ones((36, 4), np.float32), 8, 9,
                         "cut-item", "t")
    write_feature_lmdb(root / "extra.lmdb", [value[: len(value) // 2]])


def _folder_for_file(root: Path) -> None:
    (root / DEV).unlink()
    (root / DEV).mkdir()


#: case -> (breaker, text every message about it contains: file[:line], what)
BAD_INPUTS: dict[str, tuple] = {
    "field count": (lambda r: _replace_line(r / GALLERY, 3, lambda b: b.replace(b"#####", b"#", 1)),
                    f"{GALLERY}:3", "expected 5 fields"),
    "non-utf8": (lambda r: _replace_line(r / DEV, 2, lambda b: b[:20] + b"\xff\xfe" + b[20:]),
                 f"{DEV}:2", "UTF-8"),
    "duplicate id": (lambda r: _replace_line(
        r / TEST, 3, lambda b: (r / TEST).read_bytes().split(b"#####")[0] + b[b.index(b"#####"):]),
        f"{TEST}:3", "duplicate item id"),
    "empty labels": (lambda r: _replace_line(r / GALLERY, 4,
                                             lambda b: b[:b.rindex(b"#####") + 5] + b"\r"),
                     f"{GALLERY}:4", "no instance labels"),
    "empty label": (lambda r: _replace_line(r / DEV, 1, lambda b: b.rstrip(b"\r") + b"#;#\r"),
                    f"{DEV}:1", "empty instance label"),
    "dev and test share an id": (lambda r: _replace_line(
        r / TEST, 2, lambda b: (r / DEV).read_bytes().split(b"#####")[0] + b[b.index(b"#####"):]),
        f"{TEST}:2", "also a query"),
    "bad json": (lambda r: (r / "train_id_info.json").write_text(
        '{\n  "1": {"title": "a"},\n  "2": {"title": "b"\n}', encoding="utf-8"),
        "train_id_info.json:4", "invalid JSON"),
    "duplicate json id": (lambda r: (r / "train_id_info.json").write_text(
        '{\n  "1": {"title": "a"},\n  "1": {"title": "b"}\n}', encoding="utf-8"),
        "train_id_info.json:3", "duplicate item id 1"),
    "json without title": (lambda r: (r / "train_id_info.json").write_text(
        '{"1": {"name": "a"}}', encoding="utf-8"), "train_id_info.json:1", "title"),
    "nan features": (_nan_record, "extra.lmdb", "record 00000000", "NaN"),
    "truncated record": (_truncated_record, "extra.lmdb", "record 00000000", "truncated"),
    "folder for a file": (_folder_for_file, DEV, "a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_give_one_line_naming_file_and_line(case: str, root: Path,
                                                       tmp_path: Path) -> None:
    breaker, *needles = BAD_INPUTS[case]
    breaker(root)
    builder = Product1MBuilder()
    report = builder.check(root)
    assert not report.ok
    shown = [p.format() for p in report.problems]
    assert any(all(n in text for n in needles) for text in shown), shown
    with pytest.raises(RefbenchError) as info:
        builder.prepare(root, tmp_path / "cache")
    text = str(info.value)
    assert "\n" not in text and all(n in text for n in needles), text
    assert not (tmp_path / "cache" / "product1m" / "1.0").exists()
    assert not list((tmp_path / "cache" / "product1m").glob(".*"))  # no partial work left


class _Exploit:
    """A pickle that would run code when loaded by `pickle.loads`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_restricted_unpickler_refuses_code(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps([_Exploit(marker), np.zeros((1, 4), np.float32), "1", 2, 3, "x"])
    with pytest.raises(RefusedPickle, match="builtins.exec"):
        safe_loads(payload)
    write_feature_lmdb(root / "lmdb_features" / "evil.lmdb", [payload])
    report = Product1MBuilder().check(root)
    assert any("refused to unpickle" in p.message and "builtins.exec" in p.message
               for p in report.problems)
    with pytest.raises(RefbenchError, match="refused to unpickle"):
        Product1MBuilder().prepare(root, tmp_path / "cache")
    assert not marker.exists()
    # what numpy's own pickling writes loads (protocols 2-5, strided arrays, scalars) ...
    values = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((3, 4))[:, ::2],
              np.float32(2.5), np.int64(3), b"abc", "x"]
    for protocol in (2, 3, 4, 5):
        out = safe_loads(pickle.dumps(values, protocol=protocol))
        for want, got in zip(values, out):
            np.testing.assert_array_equal(got, want)
    # ... but no direct array allocation and no codec other than latin-1
    with pytest.raises(TypeError):
        safe_loads(b"\x80\x02cnumpy\nndarray\nK\x0a\x85R.")
    with pytest.raises(RefusedPickle, match="zlib"):
        safe_loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.")


def test_missing_gallery_is_a_problem_with_a_hint_and_stops_prepare(root: Path,
                                                                    tmp_path: Path) -> None:
    (root / GALLERY).unlink()
    report = Product1MBuilder().check(root)
    assert [p.kind for p in report.problems] == [MISSING_FILE]
    assert any(GALLERY in h and "prepare" in h for h in report.hints)
    with pytest.raises(RefbenchError, match=GALLERY):
        Product1MBuilder().prepare(root, tmp_path / "cache")


def test_text_only_release_without_features_or_train(root: Path, tmp_path: Path) -> None:
    shutil.rmtree(root / "lmdb_features")
    (root / "train_id_info.json").unlink()
    (root / "images").mkdir()
    (root / "images" / f"{next(iter_item_file(root / DEV)).id}.jpg").write_bytes(b"not decoded")
    report = Product1MBuilder().check(root)
    assert report.ok and any("no region-feature LMDB" in h for h in report.hints)
    assert any(h.startswith("images/ holds 1 of 48 item images") for h in report.hints)
    assert any("empty train split" in h for h in report.hints)
    manifest = Product1MBuilder().prepare(root, tmp_path / "cache")
    assert manifest["splits"]["default"]["train"] == 0
    gallery = load_prepared("product1m", split="gallery", cache_dir=str(tmp_path / "cache"))
    assert not any(gallery["has_regions"]) and gallery[0]["image_size"] == [0, 0]


def test_vilbert_dict_records_in_a_folder_lmdb_keyed_by_id(root: Path, tmp_path: Path) -> None:
    import lmdb

    shutil.rmtree(root / "lmdb_features")
    item = next(iter_item_file(root / DEV))
    feats = np.full((3, 2048), 0.5, np.float32)
    record = {"image_id": item.id, "image_w": 640, "image_h": 480, "num_boxes": 3,
              "boxes": base64.b64encode(np.ones((3, 4), np.float32).tobytes()),
              "features": base64.b64encode(feats.tobytes()).decode()}
    folder = root / "features.lmdb"
    folder.mkdir()
    env = lmdb.open(str(folder), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(item.id.encode(), pickle.dumps(record, protocol=2))
        txn.put(b"keys", pickle.dumps([item.id.encode()]))
    env.close()
    assert Product1MBuilder().check(root).ok
    Product1MBuilder().prepare(root, tmp_path / "cache")
    dev = load_prepared("product1m", split="dev", cache_dir=str(tmp_path / "cache"))
    row = dev.with_format("numpy")[0]
    assert row["has_regions"] and list(row["image_size"]) == [640, 480]
    np.testing.assert_array_equal(row["regions"], feats)
    assert not any(list(dev["has_regions"])[1:])


def test_json_is_streamed_across_block_boundaries(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    info = {str(10**11 + i): {"title": f"标题 {i} \"q\" 面霜", "extra": [i, 1.5]} for i in range(50)}
    path = tmp_path / "train_id_info.json"
    path.write_text("\ufeff" + json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    monkeypatch.setattr(readers, "_BLOCK", 7)
    items = list(iter_train_info(path))
    assert [(i.id, i.title) for i in items] == [(k, v["title"]) for k, v in info.items()]
    assert items[1].line == 9  # each entry spans 7 lines with indent=2
    path.write_bytes(b'{"1": {"title": "a"},\n "2": {"title": "\xff"}}')
    with pytest.raises(RefbenchError, match=r"train_id_info.json:2: not valid UTF-8"):
        list(iter_train_info(path))


def test_prepare_resumes_after_interruption(synth_root: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    builder = Product1MBuilder()
    builder.chunk_size = 8
    real, calls = builder_module.item_row, {"n": 0}

    def flaky(item, record):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real(item, record)

    monkeypatch.setattr(builder_module, "item_row", flaky)
    with pytest.raises(KeyboardInterrupt):
        builder.prepare(synth_root, tmp_path / "cache")
    assert builder.work_dir(synth_root, tmp_path / "cache").is_dir()
    monkeypatch.setattr(builder_module, "item_row", real)
    manifest = builder.prepare(synth_root, tmp_path / "cache")
    assert manifest["items_reused"] == 16 and manifest["items_converted"] == 88 - 16
    assert read_manifest(builder.cache_path(tmp_path / "cache"))["splits"] == manifest["splits"]
    assert not builder.work_dir(synth_root, tmp_path / "cache").exists()


def test_feature_files_need_the_retrieval_extra(synth_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lmdb" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"\[retrieval\]"):
        FeatureLMDB(synth_root / "lmdb_features" / "dev.lmdb")
    with pytest.raises(MissingDependencyError):
        build_feature_index([synth_root / "lmdb_features" / "dev.lmdb"])


def test_generate_in_memory_matches_the_chunked_prepare(synth_root: Path, tmp_path: Path) -> None:
    builder = Product1MBuilder()
    builder.chunk_size = 16
    builder.prepare(synth_root, tmp_path / "cache")
    data = builder.generate(synth_root, "default")
    assert list(data) == builder.splits("default")
    for split, ds in data.items():
        prepared = load_prepared("product1m", split=split, cache_dir=str(tmp_path / "cache"))
        assert ds.features == prepared.features and list(ds["id"]) == list(prepared["id"])
        a, b = ds.with_format("numpy"), prepared.with_format("numpy")
        for i in (0, len(ds) - 1):
            np.testing.assert_array_equal(a[i]["regions"], b[i]["regions"])


def test_item_lines_are_read_as_the_official_script_reads_them(tmp_path: Path) -> None:
    """BOM dropped, CRLF and surrounding blanks stripped per line, blank lines skipped,
    inner spaces and duplicate labels kept, an empty label field allowed only for training."""
    path = tmp_path / "items.txt"
    path.write_bytes("\ufeff1#####t one#####u#####m#####欧缇丽  护手乳霜#;#A#;#A \r\n\r\n"
                     "  2#####t#####u#####m#####B\r\n".encode())
    items = list(iter_item_file(path))
    assert [(i.id, i.labels, i.line) for i in items] == [
        ("1", ("欧缇丽  护手乳霜", "A", "A"), 1), ("2", ("B",), 3)]
    path.write_bytes(b"3#####t#####u#####m#####\r\n")
    assert next(iter_item_file(path, require_labels=False)).labels == ()
    with pytest.raises(RefbenchError, match=r"items.txt:1: item 3 has no instance labels"):
        list(iter_item_file(path))
