"""M5Product: readers (info JSON, pv, label list, id lists), feature files, the builder's
layout, aliases, mask semantics, check, bad input and resumable prepare.

No real M5Product sample exists in the shared data (the release is on Google Drive /
Baidu only, see PROVENANCE.md), so everything here runs on synthesized releases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from refbench.datasets.m5product import media
from refbench.datasets.m5product.builder import SPLITS, M5ProductBuilder, features
from refbench.datasets.m5product.readers import (
    LIST_FILES,
    parse_pv,
    read_id_list,
    read_info,
    read_label_list,
)
from refbench.errors import RefbenchError

pytest.importorskip("lmdb")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return M5ProductBuilder().synthesize(tmp_path_factory.mktemp("m5") / "rel", n=48, seed=3)


@pytest.fixture(scope="module")
def prepared(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("m5cache")
    M5ProductBuilder().prepare(release, cache)
    return cache


def copy_release(release: Path, tmp_path: Path) -> Path:
    root = tmp_path / "rel"
    shutil.copytree(release, root)
    return root


# -- official limits ---------------------------------------------------------------------
def test_official_limits_are_pinned() -> None:
    assert media.VIDEO_FRAMES == 12 and media.VIDEO_DIM == 1024
    assert media.AUDIO_SHAPE == (80, 751)
    feats = features()
    assert feats["regions"].shape == (None, 2048) and feats["audio"].shape == (None, 751)
    assert feats["image_size"].length == 2


# -- pv ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pv, pairs", [
    ("", []), ("-", []), (" ", []), ("   \t", []),  # one character is the placeholder
    ("品牌#:#李宁", [("品牌", "李宁")]),
    ("a#:#b#;#c#:#d", [("a", "b"), ("c", "d")]),
    ("a #:# b c", [("a ", " b c")]),  # kept as written
    ("a#:##;#c#:#d", [("a", ""), ("c", "d")]),
    ("ab", None),  # two characters without a separator: the official code crashes
    ("a#:#b#;#", None), ("a#:#b#:#c", None), ("#;#a#:#b", None)])
def test_parse_pv(pv: str, pairs: list | None) -> None:
    if pairs is None:
        with pytest.raises(ValueError, match="pv pair"):
            parse_pv(pv)
    else:
        assert parse_pv(pv) == pairs


# -- info JSON ---------------------------------------------------------------------------
def test_read_info(tmp_path: Path) -> None:
    path = tmp_path / "subset_v2_id_label.json"
    path.write_text(json.dumps({"1": {"title": "红 鞋", "pv": "颜色#:#红", "label": "鞋"},
                                "2": {"title": "x", "pv": "-", "label": 7},
                                "3": {"title": "", "pv": ""}}, ensure_ascii=False, indent=2),
                    encoding="utf-8")
    info = read_info(path)
    assert list(info) == ["1", "2", "3"]
    assert info["1"].pv == "颜色#:#红" and info["1"].label == "鞋" and info["1"].line == 2
    assert info["2"].label == "7" and info["3"].label == ""


@pytest.mark.parametrize("text, match", [
    (b'{"1": {"title": "a", "pv": "-"},\n "1": {"title": "b", "pv": "-"}}', r":2 \[item 1\]: duplicate"),
    (b'{"1": {"title": "a", "pv": "ab"}}', r"\[item 1\]: malformed pv"),
    (b'{"1": {"pv": "-"}}', r"\[item 1\]: field 'title'"),
    (b'{"1": {"title": "a"}}', "field 'pv'"),
    (b'{"1": ["a"]}', "expected an object"),
    (b'{"1": {"title": "\xff\xfe", "pv": "-"}}', r":1: not valid UTF-8"),
    (b'{"1": {"title": "a", "pv": "-"}', "expected ',' or '}'"),
    (b'{"a,b": {"title": "a", "pv": "-"}}', "holds one of"),
    (b'[1, 2]', "expected '{'")])
def test_read_info_bad_input(tmp_path: Path, text: bytes, match: str) -> None:
    path = tmp_path / "info.json"
    path.write_bytes(text)
    with pytest.raises(RefbenchError, match=match) as exc:
        read_info(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_read_info_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="missing file"):
        read_info(tmp_path / "nope.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(RefbenchError, match="a folder"):
        read_info(tmp_path / "dir.json")


# -- label list and id lists -------------------------------------------------------------
def test_read_label_list(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text('["鞋", "包", 3]', encoding="utf-8")
    assert read_label_list(path) == ["鞋", "包", "3"]
    path.write_text('["鞋", "包", "鞋"]', encoding="utf-8")
    with pytest.raises(RefbenchError, match=r"\[index 2\]: duplicate label"):
        read_label_list(path)


def test_read_id_list_json_and_text(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('[\n  "11",\n  "12"\n]', encoding="utf-8")
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbf11\r\n12\r\n\r\n")
    assert read_id_list(tmp_path / "a.json") == ["11", "12"]
    assert read_id_list(tmp_path / "a.txt") == ["11", "12"]


@pytest.mark.parametrize("name, text, match", [
    ("d.txt", "11\n12\n11\n", r"d.txt:3: duplicate item id 11 \(first on line 1\)"),
    ("d.json", '[\n "11",\n "11"\n]', r"d.json:3: duplicate item id 11"),
    ("e.txt", "11\n\n12\n", r"e.txt:2: empty line"),
    ("u.txt", "11\n99\n", r"u.txt:2: item id 99 is not in the info JSON"),
    ("c.txt", "11,12\n", r"c.txt:1: item id '11,12'"),
    ("n.json", '["11", 12]', r"n.json:1: expected an item id string")])
def test_read_id_list_bad_input(tmp_path: Path, name: str, text: str, match: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(RefbenchError, match=match):
        read_id_list(tmp_path / name, known={"11", "12"})


# -- feature files -----------------------------------------------------------------------
def test_video_keeps_the_first_12_frames(tmp_path: Path) -> None:
    frames = np.arange(20 * 1024, dtype=np.float64).reshape(20, 1024)
    np.save(tmp_path / "v.npy", frames)
    video = media.read_video(tmp_path / "v.npy")
    assert video.shape == (12, 1024) and video.dtype == np.float32
    assert np.array_equal(video, frames[:12].astype(np.float32))
    np.save(tmp_path / "s.npy", frames[:5])
    assert media.read_video(tmp_path / "s.npy").shape == (5, 1024)


@pytest.mark.parametrize("kind, array, match", [
    ("audio", np.zeros((80, 750), np.float32), "must be 80 x 751, found 80 x 750"),
    ("audio", np.zeros((81, 751), np.float32), "found 81 x 751"),
    ("video", np.zeros((12, 1000), np.float32), "T x 1024"),
    ("video", np.zeros(1024, np.float32), "T x 1024"),
    ("audio", np.full((80, 751), np.nan, np.float32), "NaN"),
    ("video", np.array([["a"] * 1024]), "must be numbers")])
def test_bad_feature_files(tmp_path: Path, kind: str, array: np.ndarray, match: str) -> None:
    path = tmp_path / "x.npy"
    np.save(path, array)
    reader = media.read_audio if kind == "audio" else media.read_video
    with pytest.raises(RefbenchError, match=match) as exc:
        reader(path)
    assert str(path) in str(exc.value)


def test_truncated_and_pickled_npy(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, np.ones((80, 751), np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RefbenchError, match="truncated"):
        media.read_audio(path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RefbenchError, match="Python objects"):
        media.read_audio(path)
    path.write_bytes(b"not numpy at all")
    with pytest.raises(RefbenchError, match="not a .npy file"):
        media.read_video(path)


# -- builder -----------------------------------------------------------------------------
def test_layout_splits_and_aliases(release: Path, prepared: Path) -> None:
    import refbench

    names = {p.name for p in release.iterdir()}
    for split in SPLITS[1:]:
        assert names & set(LIST_FILES[split]), split
    assert {"subset_v2_id_label.json", "subset_v2_label_list.json", "lmdb_features",
            "video_feature", "audio_feature"} <= names
    b = M5ProductBuilder()
    assert b.splits("default") == list(SPLITS)
    for alias, split in (("query_c", "coarse_query"), ("gallery_fg", "fine_gallery"),
                         ("subset_train", "cls_train"), ("subset_test", "cls_test")):
        assert b.canonical_split(alias) == split
        a = refbench.load_dataset("m5product", alias, cache_dir=str(prepared))
        c = refbench.load_dataset("m5product", split, cache_dir=str(prepared))
        assert a["id"] == c["id"] and len(a) > 0
    train = refbench.load_dataset("m5product", "train", cache_dir=str(prepared))
    assert train.features == features()
    assert train["id"] == list(read_info(release / "subset_v2_id_label.json"))


def test_rows_and_mask_semantics(release: Path, prepared: Path) -> None:
    import refbench

    info = read_info(release / "subset_v2_id_label.json")
    fine = read_info(release / "product1m_product5m_test_id_label.json")
    seen = {"video": 0, "audio": 0, "image": 0}
    for split in SPLITS:
        ds = refbench.load_dataset("m5product", split, cache_dir=str(prepared))
        ids = read_id_list(next(release / n for n in LIST_FILES[split]
                                if (release / n).exists())) if split != "train" else list(info)
        assert ds["id"] == ids
        for row in ds.with_format("numpy"):
            item = row["id"]
            truth = (fine if split.startswith("fine_") else info)[item]
            assert (row["title"], row["pv"], row["label"]) == (truth.title, truth.pv, truth.label)
            assert [tuple(p) for p in zip(row["pv_keys"], row["pv_values"])] == parse_pv(truth.pv)
            assert row["has_table"] == bool(parse_pv(truth.pv))
            for kind, folder in (("video", "video_feature"), ("audio", "audio_feature")):
                on_disk = (release / folder / f"{item}.npy").exists()
                assert row[f"has_{kind}"] == on_disk == (len(row[kind]) > 0)
                if not on_disk:  # missing: 0 rows, never zeros
                    seen[kind] += 1
                    assert row[kind].shape == (0, 1024 if kind == "video" else 751)
            if row["has_audio"]:
                assert row["audio"].shape == (80, 751)
                assert np.array_equal(row["audio"], np.load(release / "audio_feature" /
                                                            f"{item}.npy"))
            assert row["has_image"] == (len(row["regions"]) == len(row["boxes"]) > 0)
            if not row["has_image"]:
                seen["image"] += 1
                assert list(row["image_size"]) == [0, 0]
    assert all(seen.values()), seen


def test_check_reports_modalities_and_problems(release: Path, tmp_path: Path) -> None:
    from refbench.datasets.base import CheckReport
    from refbench.datasets.m5product.check import check_release

    report = CheckReport(root=str(release))
    counts = check_release(release, report)
    assert report.ok, report.problems
    video_files = {p.stem for p in (release / "video_feature").glob("*.npy")}
    train_ids = list(read_info(release / "subset_v2_id_label.json"))
    assert counts["train"]["missing_video"] == sum(i not in video_files for i in train_ids) > 0
    assert counts["train"]["missing_image"] > 0 and counts["train"]["missing_audio"] > 0
    root = copy_release(release, tmp_path)
    ids = json.loads((root / "query_c_ids.json").read_text(encoding="utf-8"))
    (root / "query_c_ids.json").write_text(json.dumps(ids + ["424242", ids[0]], indent=2))
    (root / "subset_v2_label_list.json").write_text('["连衣裙"]', encoding="utf-8")
    audio = next((root / "audio_feature").glob("*.npy"))
    np.save(audio, np.zeros((80, 750), np.float32))
    (root / "gallery_fg_ids.json").unlink()
    report = M5ProductBuilder().check(root)
    kinds = {g.kind: g.count for g in report.summary()}
    assert kinds["unknown item id"] == 1 and kinds["duplicate item id"] == 1
    assert kinds["label not in the label list"] >= 1 and kinds["missing file"] == 1
    assert kinds["unreadable feature file"] >= 1
    assert any("424242" in p.message and p.line == len(ids) + 2 for p in report.problems)


@pytest.mark.parametrize("damage, match", [
    ("unknown", r"query_c_ids.json:\d+: item id 424242 is not in the info JSON"),
    ("duplicate", r"subset_test_ids.json:\d+: duplicate item id"),
    ("audio", r"audio_feature/\d+.npy: audio features must be 80 x 751, found 80 x 750"),
    ("truncated", r"video_feature/\d+.npy: truncated"),
    ("info", r"subset_v2_id_label.json:\d+ \[item \d+\]: malformed pv")])
def test_prepare_refuses_bad_input_and_writes_nothing(release: Path, tmp_path: Path,
                                                      damage: str, match: str) -> None:
    root = copy_release(release, tmp_path)
    if damage in ("unknown", "duplicate"):
        name = "query_c_ids.json" if damage == "unknown" else "subset_test_ids.json"
        ids = json.loads((root / name).read_text(encoding="utf-8"))
        (root / name).write_text(json.dumps(ids + (["424242"] if damage == "unknown"
                                                   else [ids[0]]), indent=2))
    elif damage == "audio":
        np.save(next((root / "audio_feature").glob("*.npy")), np.zeros((80, 750), np.float32))
    elif damage == "truncated":
        path = next((root / "video_feature").glob("*.npy"))
        path.write_bytes(path.read_bytes()[:-64])
    else:
        info = json.loads((root / "subset_v2_id_label.json").read_text(encoding="utf-8"))
        info[next(iter(info))]["pv"] = "品牌李宁"
        (root / "subset_v2_id_label.json").write_text(json.dumps(info, ensure_ascii=False,
                                                                 indent=2), encoding="utf-8")
    cache = tmp_path / "cache"
    with pytest.raises(RefbenchError, match=match) as exc:
        M5ProductBuilder().prepare(root, cache)
    assert "\n" not in str(exc.value)
    # no partial work, no tmp folder, not even the empty dataset folder is left behind
    assert not (cache / "m5product").exists()


def test_prepare_resumes_after_interrupt(release: Path, prepared: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets as hf

    from refbench.datasets.m5product import builder as module

    cache = tmp_path / "cache"
    b = M5ProductBuilder()
    b.chunk_size = 8
    calls = {"n": 0}
    real_row = module.Release.row

    def interrupted(self, *args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 30:
            raise KeyboardInterrupt
        return real_row(self, *args)

    monkeypatch.setattr(module.Release, "row", interrupted)
    with pytest.raises(KeyboardInterrupt):
        b.prepare(release, cache)
    assert not (cache / "m5product" / "1.0").exists()
    assert b.work_dir(release, cache).is_dir()
    monkeypatch.setattr(module.Release, "row", real_row)
    manifest = b.prepare(release, cache)
    assert manifest["items_reused"] == 24 and manifest["items_converted"] > 0
    assert not b.work_dir(release, cache).exists()
    for split in SPLITS:
        got = hf.load_from_disk(str(cache / "m5product/1.0/default" / split))
        want = hf.load_from_disk(str(prepared / "m5product/1.0/default" / split))
        assert got.data.table.equals(want.data.table), split
