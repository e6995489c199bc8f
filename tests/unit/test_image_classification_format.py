"""The image_classification submission format: CSV / JSON / ILSVRC2012 devkit files read
strictly (one-line errors naming file and line), references from prepared splits and
official label files (Caffe val.txt, devkit ground truth, Kaggle, CIFAR batches), the
missing / extra policy, golden values on the real ILSVRC2012 val.txt, and the shared
restricted unpickler."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from refbench.benchmarks.formats.image_classification import (
    MAX_DEVKIT_LABELS,
    ImageClassificationFormat,
    read_csv,
    read_json,
)
from refbench.benchmarks.scoring import evaluate_file
from refbench.errors import RefbenchError
from refbench.evaluation.image_classification import NO_GUESS, ClassNames, ClassRef
from refbench.registry import get_spec

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.fixture()
def caffe(tmp_path: Path) -> Path:
    """A Caffe-style val.txt of 8 images over 6 sorted wnids, synsets.txt beside it."""
    _write(tmp_path / "synsets.txt", "".join(f"{w}\n" for w in WNIDS))
    labels = [0, 1, 2, 3, 4, 5, 0, 1]
    return _write(tmp_path / "val.txt", "".join(
        f"ILSVRC2012_val_{i:08d}.JPEG {label}\n" for i, label in enumerate(labels, start=1)))


def _evaluate(bench: str, preds: Path, refs: Path, **kw: object):  # noqa: ANN202
    return evaluate_file(get_spec(bench), preds, references=refs, **kw)


# -- CSV --------------------------------------------------------------------------------
def test_csv_with_names_and_indices_and_ranked_labels(caffe: Path, tmp_path: Path) -> None:
    preds = _write(tmp_path / "p.csv", "\ufeffid,label\r\n"
                   "ILSVRC2012_val_00000001,n01440764\r\n"      # right (name)
                   "ILSVRC2012_val_00000002,1\r\n"              # right (index)
                   "ILSVRC2012_val_00000003,0 2 1 3 4\r\n"      # top-5 only
                   "ILSVRC2012_val_00000004,0\r\n"              # wrong
                   "ILSVRC2012_val_00000005,n01494475 0\r\n"    # right
                   "ILSVRC2012_val_00000006,5\r\n"              # right
                   "ILSVRC2012_val_00000007,0\r\n"              # right
                   "ILSVRC2012_val_00000008,n01443537\r\n")     # right
    result = _evaluate("imagenet-val", preds, caffe)
    assert result.metrics["top1"] == pytest.approx(75.0)
    assert "top5" not in result.metrics  # single labels on most lines
    assert result.counts["top1/correct"] == 6 and result.counts["references"] == 8
    # per class: 0: 2/2, 1: 2/2, 2: 0/1, 3: 0/1, 4: 1/1, 5: 1/1 -> 4/6
    assert result.metrics["mean_class_accuracy"] == pytest.approx(400 / 6)


def test_top5_from_five_ranked_labels(caffe: Path, tmp_path: Path) -> None:
    rows = [f"ILSVRC2012_val_{i:08d},{' '.join(str((t + k) % 6) for k in (1, 2, 3, 4, 0))}"
            for i, t in enumerate([0, 1, 2, 3, 4, 5, 0, 1], start=1)]
    preds = _write(tmp_path / "p.csv", "id,labels\n" + "\n".join(rows) + "\n")
    result = _evaluate("imagenet-val", preds, caffe)
    assert result.metrics["top1"] == 0.0 and result.metrics["top5"] == 100.0


@pytest.mark.parametrize(("text", "line", "message"), [
    ("image,label\na,1\n", 1, "expected the header 'id,label'"),
    ("id,label\na,1\n\nb,2\n", 3, "blank line"),
    ("id,label\na,1,2\n", 2, "one comma"),
    ("id,label\na,\n", 2, "id a: no label"),
    ("id,label\n,3\n", 2, "empty id"),
    ("id,label\na,1\nb,2\na,3\n", 4, "id a repeats line 2"),
    ("id,label\na,1 2 1\n", 2, "'1' is ranked twice"),
])
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, line: int,
                                       message: str) -> None:
    path = _write(tmp_path / "p.csv", text)
    with pytest.raises(RefbenchError, match=message) as info:
        read_csv(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and "\n" not in str(info.value)


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="not found"):
        read_csv(tmp_path / "absent.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(RefbenchError, match="found a folder"):
        read_csv(tmp_path / "folder.csv")
    with pytest.raises(RefbenchError, match=r":2: not valid UTF-8"):
        read_csv(_write(tmp_path / "bin.csv", b"id,label\na,\xff\n"))
    with pytest.raises(RefbenchError, match="empty prediction file"):
        read_csv(_write(tmp_path / "empty.csv", ""))
    with pytest.raises(RefbenchError, match="no prediction after the header"):
        read_csv(_write(tmp_path / "header.csv", "id,label\n"))


def test_unknown_class_and_out_of_range_name_the_line(caffe: Path, tmp_path: Path) -> None:
    preds = _write(tmp_path / "p.csv", "id,label\nILSVRC2012_val_00000001,0\n"
                   "ILSVRC2012_val_00000002,n09999999\n")
    with pytest.raises(RefbenchError, match=r"p.csv:3: id ILSVRC2012_val_00000002: label "
                                            r"'n09999999' is not a class name"):
        _evaluate("imagenet-val", preds, caffe)
    _write(preds, "id,label\nILSVRC2012_val_00000001,6\n")
    with pytest.raises(RefbenchError, match=r"p.csv:2: .*class index 6 is out of range 0..5"):
        _evaluate("imagenet-val", preds, caffe)


# -- JSON -------------------------------------------------------------------------------
def test_json_labels_ranked_and_scores(caffe: Path, tmp_path: Path) -> None:
    scores = [0.0] * 6
    scores[2] = 1.0
    data = {"ILSVRC2012_val_00000001": 0, "ILSVRC2012_val_00000002": "n01443537",
            "ILSVRC2012_val_00000003": {"scores": scores},
            "ILSVRC2012_val_00000004": [0, 3]}
    preds = _write(tmp_path / "p.json", json.dumps(data))
    result = _evaluate("imagenet-val", preds, caffe)
    assert result.counts["top1/correct"] == 3 and result.counts["missing"] == 4
    assert result.metrics["top1"] == pytest.approx(3 / 8 * 100)
    assert any("4 id(s) of the references have no prediction" in w and "scored as wrong" in w
               for w in result.warnings)


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": {"scores": [0.1, NaN]}}', "NaN is not a score"),
    ('{"a": 1, "a": 2}', "id a appears twice"),
    ('{"a": true}', "class index .integer. or name"),
    ('{"a": -2}', "class index -2 is negative"),
    ('{"a": []}', "empty list of labels"),
    ('{"a": [1, 1]}', "ranked twice"),
    ('{"a": {"score": [1]}}', "expected ..scores"),
    ('[1, 2]', "expected a non-empty object"),
])
def test_json_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "p.json", text)
    with pytest.raises(RefbenchError, match=message) as info:
        read_json(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match=r"p.json:3: invalid JSON"):
        read_json(_write(tmp_path / "p.json", '{\n"a": 1,\n"b" 2}\n'))


# -- round trip, policy, prepared splits -------------------------------------------------
def test_write_read_round_trip(tmp_path: Path) -> None:
    fmt, spec = ImageClassificationFormat(), get_spec("cifar10")
    classes = ClassNames(["cat", "dog", "a", "b", "c", "d"])
    preds = {"x/00000": 3, "x/00001": "dog", "x/00002": [5, 4, 3, 2, 1],
             "x/00003": ClassRef(2, classes)}
    for name in ("p.csv", "p.json"):
        fmt.write(tmp_path / name, preds, spec)
        back = fmt.read(tmp_path / name, spec)
        assert {k: tuple(map(str, g.labels)) for k, g in back.items()} == {
            "x/00000": ("3",), "x/00001": ("dog",), "x/00002": ("5", "4", "3", "2", "1"),
            "x/00003": ("2",)}
    with pytest.raises(RefbenchError, match="cannot be written"):
        fmt.write(tmp_path / "bad.csv", {"a,b": 1}, spec)
    assert not (tmp_path / "bad.csv").exists()


def test_prepared_digits_split_and_strict_scoring(tmp_path: Path) -> None:
    from refbench.datasets.base import get_builder, load_prepared

    builder = get_builder("digits")
    root = builder.synthesize(tmp_path / "src")
    builder.prepare(root, tmp_path / "cache")
    spec = get_spec("digits")
    rows = load_prepared("digits", split="validation", cache_dir=str(tmp_path / "cache"))
    labels = dict(zip(rows["id"], rows["label"]))
    assert len(labels) == 359
    wrong = sorted(labels)[:10]
    preds = _write(tmp_path / "p.csv", "id,label\n" + "".join(
        f"{k},{(v + 1) % 10 if k in wrong else v}\n" for k, v in labels.items()) + "extra,3\n")
    result = evaluate_file(spec, preds, cache_dir=str(tmp_path / "cache"))
    assert result.metrics["top1"] == pytest.approx(349 / 359 * 100)
    assert result.counts["extra"] == 1
    with pytest.raises(RefbenchError, match="strict scoring"):
        evaluate_file(spec, preds, cache_dir=str(tmp_path / "cache"), strict=True)


def test_cifar_release_folder_as_references(tmp_path: Path) -> None:
    from refbench.datasets.base import get_builder, load_prepared

    builder = get_builder("cifar10")
    root = builder.synthesize(tmp_path / "src", n=40, seed=3)
    builder.prepare(root, tmp_path / "cache")
    rows = load_prepared("cifar10", split="test", cache_dir=str(tmp_path / "cache"))
    names = rows.features["label"].names
    preds = _write(tmp_path / "p.csv", "id,label\n" + "".join(
        f"{k},{names[v]}\n" for k, v in zip(rows["id"], rows["label"])))
    result = _evaluate("cifar10", preds, root)
    assert result.metrics["top1"] == 100.0 and result.counts["references"] == len(rows)


# -- the ILSVRC2012 devkit --------------------------------------------------------------
@pytest.fixture()
def devkit(tmp_path: Path) -> Path:
    """meta.mat (IDs 3, 1, 4, 2 for the four sorted wnids) and the ground truth."""
    from refbench.datasets.imagenet.synth import write_devkit

    val = ["n01440764", "n01443537", "n01484850", "n01491361", "n01440764"]
    write_devkit(tmp_path, val)
    return tmp_path / "ILSVRC2012_devkit_t12" / "data"


def test_devkit_submission(devkit: Path, tmp_path: Path) -> None:
    # IDs 1, 2, 3, 4 are the sorted classes 1, 3, 0, 2; the truth is classes 0 1 2 3 0
    preds = _write(tmp_path / "devkit.txt", "3 1\n4 1 2\n4\n1 2\n1 4 2 3\n")
    gt = devkit / "ILSVRC2012_validation_ground_truth.txt"
    options = {"devkit_meta": devkit / "meta.mat"}
    fmt = ImageClassificationFormat()
    got = fmt.read(preds, get_spec("imagenet-val"), options)
    assert got["ILSVRC2012_val_00000002"].labels == (2, 1, 3, NO_GUESS, NO_GUESS)
    result = _evaluate("imagenet-val", preds, gt, read_options=options)
    # top-1: images 1 and 3 right; within the guesses: all five (image 5's ID 3 is 4th)
    assert result.metrics["top1"] == pytest.approx(40.0)
    assert "top5" not in result.metrics  # four classes only
    # one line short: the devkit asserts one line per image
    _write(preds, "3\n1\n4\n2\n")
    with pytest.raises(RefbenchError, match="1 id.* no prediction.*eval_flat.m"):
        _evaluate("imagenet-val", preds, gt, read_options=options)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("3 1 4 2 3 1\n", 1, f"6 labels; the devkit allows at most {MAX_DEVKIT_LABELS}"),
    ("3\n9\n", 2, "'9' is not an ILSVRC2012_ID of meta.mat .1..4."),
    ("3\n\n1\n", 2, "blank line"),
    ("3 3\n", 1, "'3' is ranked twice"),
])
def test_devkit_errors(devkit: Path, tmp_path: Path, text: str, line: int,
                       message: str) -> None:
    path = _write(tmp_path / "devkit.txt", text)
    with pytest.raises(RefbenchError, match=message) as info:
        ImageClassificationFormat().read(path, get_spec("imagenet-val"),
                                         {"devkit_meta": devkit / "meta.mat"})
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_devkit_limit_is_five_and_meta_is_required(devkit: Path, tmp_path: Path) -> None:
    assert MAX_DEVKIT_LABELS == 5
    path = _write(tmp_path / "devkit.txt", "3 1 4 2\n")
    with pytest.raises(RefbenchError, match="--devkit-meta"):
        ImageClassificationFormat().read(path, get_spec("imagenet-val"))
    with pytest.raises(RefbenchError, match="validation split"):
        spec = dataclasses.replace(get_spec("imagenet-val"), split="train")
        ImageClassificationFormat().read(path, spec, {"devkit_meta": devkit / "meta.mat"})


def test_other_official_imagenet_label_files(tmp_path: Path) -> None:
    _write(tmp_path / "LOC_synset_mapping.txt", "".join(f"{w} words\n" for w in WNIDS))
    loc = _write(tmp_path / "LOC_val_solution.csv", "ImageId,PredictionString\n"
                 "ILSVRC2012_val_00000002,n01443537 1 2 3 4\n"
                 "ILSVRC2012_val_00000001,n01491361 1 2 3 4 n01491361 5 6 7 8\n")
    preds = _write(tmp_path / "p.csv", "id,label\nILSVRC2012_val_00000001,3\n"
                   "ILSVRC2012_val_00000002,0\n")
    assert _evaluate("imagenet-val", preds, loc).metrics["top1"] == 50.0
    assert _evaluate("imagenet-val", preds, tmp_path).metrics["top1"] == 50.0  # the root
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 3\n")
    with pytest.raises(RefbenchError, match="needs synsets.txt beside it"):
        _evaluate("imagenet-val", preds, tmp_path / "val.txt")
    # a folder is read as the CIFAR release itself, which this one is not
    with pytest.raises(RefbenchError, match="no cifar-10-batches-py/batches.meta"):
        _evaluate("cifar10", preds, tmp_path)


# -- golden: the real ILSVRC2012 validation labels ---------------------------------------
@pytest.fixture(scope="module")
def real_val(shared_data: Path) -> Path:
    path = shared_data / "imagenet" / "ilsvrc12_caffe" / "val.txt"
    if not (path.is_file() and (path.parent / "synsets.txt").is_file()):
        pytest.skip(f"Caffe's ILSVRC2012 val.txt / synsets.txt not found in {path.parent}")
    return path


def _real_labels(path: Path) -> list[tuple[str, int]]:
    """(image id, label) read here with plain str.split, not with refbench's reader."""
    return [(name.rsplit(".", 1)[0], int(label))
            for name, label in (line.split() for line in path.read_text().splitlines())]


def test_real_val_labels_score_100(real_val: Path, tmp_path: Path) -> None:
    labels = _real_labels(real_val)
    assert len(labels) == 50_000
    preds = _write(tmp_path / "p.csv", "id,label\n" + "".join(f"{k},{v}\n" for k, v in labels))
    result = _evaluate("imagenet-val", preds, real_val)
    assert result.metrics == {"top1": 100.0, "mean_class_accuracy": 100.0}
    assert result.counts["classes/with_images"] == 1000 and result.counts["references"] == 50_000


def test_real_val_ranked_labels_score_the_hand_computed_values(real_val: Path,
                                                              tmp_path: Path) -> None:
    labels = _real_labels(real_val)
    rows = []
    for i, (key, y) in enumerate(labels):
        wrong = [(y + k) % 1000 for k in range(1, 6)]
        ranked = {0: [y, *wrong[:4]], 1: [wrong[0], y, *wrong[1:4]], 2: wrong,
                  3: [*wrong[:4], y]}[i % 4]
        rows.append(f"{key},{' '.join(map(str, ranked))}\n")
    preds = _write(tmp_path / "p.csv", "id,labels\n" + "".join(rows))
    result = _evaluate("imagenet-val", preds, real_val)
    # a quarter of the lines has the label first, three quarters within the first five
    assert result.metrics["top1"] == 25.0 and result.metrics["top5"] == 75.0


def test_real_val_shifted_labels_score_the_hand_computed_values(real_val: Path,
                                                                tmp_path: Path) -> None:
    labels = _real_labels(real_val)
    # every label shifted by one class: nothing is right
    shifted = _write(tmp_path / "s.csv", "id,label\n" + "".join(
        f"{k},{(v + 1) % 1000}\n" for k, v in labels))
    assert _evaluate("imagenet-val", shifted, real_val).metrics["top1"] == 0.0
    # the labels of the next line: right where two neighbours share a class
    same = sum(a[1] == b[1] for a, b in zip(labels, labels[1:]))
    nxt = _write(tmp_path / "n.csv", "id,label\n" + "".join(
        f"{k},{labels[(i + 1) % len(labels)][1]}\n" for i, (k, _) in enumerate(labels)))
    same += labels[-1][1] == labels[0][1]
    assert _evaluate("imagenet-val", nxt, real_val).metrics["top1"] == pytest.approx(
        100 * same / 50_000)


# -- the shared restricted unpickler -----------------------------------------------------
def test_safe_pickle_is_shared_and_refuses_code() -> None:
    import numpy as np

    from refbench import safe_pickle
    from refbench.datasets.cifar import batches
    from refbench.datasets.product1m import features

    assert features.SafeUnpickler is safe_pickle.SafeUnpickler is batches.SafeUnpickler
    assert features.RefusedPickle is safe_pickle.RefusedPickle is batches.RefusedPickle
    with pytest.raises(safe_pickle.RefusedPickle, match="global posix.system"):
        safe_pickle.safe_loads(b"cposix\nsystem\n(S'true'\ntR.")
    data = pickle.dumps({"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1]},
                        protocol=2)
    out = safe_pickle.safe_loads(data, encoding="latin1")
    assert out["labels"] == [1] and out["data"].tolist() == [[0, 1, 2], [3, 4, 5]]
