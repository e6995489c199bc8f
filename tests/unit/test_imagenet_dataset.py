"""ImageNet: every validation label source, OpenSelfSup lists, and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from refbench.datasets.imagenet import ImageNetBuilder
from refbench.datasets.imagenet.synth import DEVKIT_IDS, WNIDS
from refbench.errors import RefbenchError


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    return ImageNetBuilder().synthesize(tmp_path / "src", n=40, seed=0)


def _val(root: Path, cache: Path) -> list[tuple[str, int]]:
    builder = ImageNetBuilder()
    builder.prepare(root, cache)
    return [(r["id"], r["label"]) for r in builder.load("val", config="default", cache=cache)]


def test_every_label_source_gives_the_same_sorted_wnid_labels(release: Path,
                                                              tmp_path: Path) -> None:
    assert list(DEVKIT_IDS.values()) != [1, 2, 3, 4]  # the devkit order is not sorted
    kaggle = _val(release, tmp_path / "c1")
    assert len(kaggle) == 16 and {label for _, label in kaggle} == {0, 1, 2, 3}
    (release / "LOC_val_solution.csv").unlink()
    assert _val(release, tmp_path / "c2") == kaggle  # devkit ground truth + meta.mat
    shutil.rmtree(release / "ILSVRC2012_devkit_t12")
    assert _val(release, tmp_path / "c3") == kaggle  # Caffe val.txt + synsets.txt
    (release / "val.txt").unlink()
    shutil.rmtree(release / "meta")  # its val list names the flat val/ files
    for key, label in kaggle:  # val/<wnid>/ folders (after valprep.sh)
        wnid = sorted(WNIDS)[label]
        (release / "val" / wnid).mkdir(exist_ok=True)
        (release / "val" / f"{key}.JPEG").rename(release / "val" / wnid / f"{key}.JPEG")
    assert sorted(_val(release, tmp_path / "c4")) == sorted(kaggle)


def test_train_split_and_columns(release: Path, tmp_path: Path) -> None:
    builder = ImageNetBuilder()
    builder.prepare(release, tmp_path / "cache")
    train = builder.load("train", config="default", cache=tmp_path / "cache")
    assert train.features["label"].names == sorted(WNIDS)
    row = train[0]
    assert row["id"] == "n01440764_1000" and row["label"] == 0
    assert row["class_name"] == "tench, Tinca tinca"
    assert row["image"]["bytes"] is None and Path(row["image"]["path"]).is_file()


def test_openselfsup_lists(release: Path, tmp_path: Path) -> None:
    builder = ImageNetBuilder()
    builder.prepare(release, tmp_path / "cache")
    load = lambda s: builder.load(s, config="lists", cache=tmp_path / "cache")  # noqa: E731
    assert len(load("train")) == 24 and len(load("validation")) == 16
    assert len(load("bn_recalibration")) + len(load("search_val")) == 24
    assert not set(load("bn_recalibration")["id"]) & set(load("search_val")["id"])
    (release / "meta" / "train_labeled.txt").unlink()  # meta/train.txt: paths only
    builder.prepare(release, tmp_path / "cache2")
    unlabeled = builder.load("train", config="lists", cache=tmp_path / "cache2")
    assert unlabeled["label"] == load("train")["label"]  # taken from the wnid folders


def _fails(root: Path, cache: Path, match: str) -> str:
    with pytest.raises(RefbenchError, match=match) as info:
        ImageNetBuilder().prepare(root, cache)
    assert "\n" not in str(info.value)
    assert not (cache / "imagenet" / "1.0").exists()
    return str(info.value)


def test_bad_inputs_name_the_file_and_line(release: Path, tmp_path: Path) -> None:
    meta = release / "meta" / "my_val_labeled.txt"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join(lines + ["n01440764/n01440764_missing.JPEG 0"]) + "\n")
    text = _fails(release, tmp_path / "c", "missing image")
    assert text.startswith(f"{meta}:{len(lines) + 1}:")
    meta.write_text("\n".join(lines + [lines[0]]) + "\n")
    _fails(release, tmp_path / "c", f"listed twice .*lines 1 and {len(lines) + 1}")
    path, label = lines[0].split()
    meta.write_text(f"{path} {(int(label) + 1) % 4}\n")
    _fails(release, tmp_path / "c", r"my_val_labeled.txt:1: label \d but n\d+ is class")
    meta.write_text(f"{path} 1000\n")
    _fails(release, tmp_path / "c", r"my_val_labeled.txt:1: label 1000 is not in 0..3")
    meta.write_text("\n".join(lines) + "\n")
    solution = release / "LOC_val_solution.csv"
    rows = solution.read_text().splitlines()
    solution.write_text("\n".join(rows[:3] + ["ILSVRC2012_val_00000003,n09999999 1 2 3 4"]
                                  + rows[4:]) + "\n")
    _fails(release, tmp_path / "c", r"LOC_val_solution.csv:4: unknown wnid n09999999")
    solution.write_text("\n".join(rows) + "\n")
    jpeg = release / "val" / "ILSVRC2012_val_00000005.JPEG"
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    _fails(release, tmp_path / "c", r"LOC_val_solution.csv:6: truncated JPEG .*val_00000005")


def test_unknown_train_wnid_and_check_report(release: Path, tmp_path: Path) -> None:
    (release / "train" / "n09999999").mkdir()
    shutil.copy(next((release / "train" / "n01440764").iterdir()),
                release / "train" / "n09999999" / "n09999999_1.JPEG")
    _fails(release, tmp_path / "c", "unknown wnid n09999999 .*LOC_synset_mapping.txt")
    report = ImageNetBuilder().check(release)
    assert not report.ok and "unknown wnid" in report.problems[0].message


def test_devkit_ground_truth_needs_meta_mat(release: Path, tmp_path: Path) -> None:
    (release / "LOC_val_solution.csv").unlink()
    (release / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").unlink()
    _fails(release, tmp_path / "c", "needs data/meta.mat")
