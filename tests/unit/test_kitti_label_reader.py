"""The bulk label_2 reader: it returns what the strict per-file parser returns, and any
line it cannot vouch for still fails with the per-file parser's one-line error naming the
file and the line; the label text (`str()`, what the label-set hash reads) is unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refbench.benchmarks.formats.kitti import (KittiObjects, bulk_parse, parse_label_file,
                                              read_label_dir, read_label_files)
from refbench.errors import RefbenchError
from refbench.evaluation.kitti import KittiAP, kitti_eval

GT = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"
DT = GT + " 0.93"
PED = "Pedestrian 0.00 1 0.21 423.17 173.67 433.17 224.03 1.60 0.38 0.30 -5.97 1.62 27.97 0.00"
DONTCARE = "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10"


def write_folder(folder: Path, texts: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(texts):
        path = folder / f"{i:06d}.txt"
        path.write_bytes(text)
        paths.append(path)
    return paths


def per_file(paths: list[Path], with_score: bool) -> list[KittiObjects]:
    return [parse_label_file(p, with_score) for p in paths]


def same_frames(a: list[KittiObjects], b: list[KittiObjects]) -> bool:
    return a == b and all(x.name == y.name and (x.score is None) == (y.score is None)
                          and str(x) == str(y) for x, y in zip(a, b))


def test_bulk_read_equals_per_file_read(tmp_path: Path) -> None:
    texts = [f"{DT}\n{PED} 0.5\n".encode(), b"", f"{DT}".encode(),   # no final newline
             f"{DONTCARE} 1.0\n{DT}\n".encode()] * 5
    paths = write_folder(tmp_path, texts)
    assert bulk_parse([p.read_bytes() for p in paths], True) is not None  # the fast path
    assert same_frames(read_label_files(paths, True), per_file(paths, True))
    assert read_label_dir(tmp_path, with_score=True)["000001"].count == 0


@pytest.mark.parametrize("text", [
    f"{DT}\r\n{PED} 0.5\r\n",                     # Windows line ends
    f"{DT}\r{PED} 0.5",                             # old Mac line ends
    f"\n{DT}\n\n  \n{PED} 0.5\n\n",                # blank and whitespace-only lines
    f"  {DT.replace(' ', chr(9), 3)}  \n{PED.replace(' ', '   ')} 0.5\n",  # tabs, runs
    f"{DT.replace('46.70', '+4.67e1')}\n{PED.replace('0.00', '.0', 1)} .5\n",  # spellings
])
def test_irregular_but_valid_text_reads_as_per_file(tmp_path: Path, text: str) -> None:
    paths = write_folder(tmp_path, [text.encode(), f"{DT}\n".encode()])
    assert same_frames(read_label_files(paths, True), per_file(paths, True))


@pytest.mark.parametrize("line,message", [
    (GT, "expected 16 columns"),
    (DT + " 0.1", "expected 16 columns"),
    (DT.replace("46.70", "far"), "not a number"),
    (DT.replace("46.70", "nan"), "not finite"),
    (DT.replace("46.70", "1e999"), "not finite"),
    (DT.replace("1.65", "-1.65"), "negative size"),
    (DT.replace(" 0 -1.58", " 0.5 -1.58"), "occluded"),
])
def test_a_bad_line_among_many_files_names_its_file_and_line(tmp_path: Path, line: str,
                                                             message: str) -> None:
    good = f"{DT}\n{PED} 0.5\n".encode()
    paths = write_folder(tmp_path, [good] * 30 + [f"{DT}\n{PED} 0.5\n{line}\n".encode()]
                         + [good] * 30)
    with pytest.raises(RefbenchError, match=message) as err:
        read_label_dir(tmp_path, with_score=True)
    assert str(err.value).startswith(f"{paths[30]}:3: ")
    assert "\n" not in str(err.value)


def test_the_first_bad_file_in_name_order_is_reported(tmp_path: Path) -> None:
    paths = write_folder(tmp_path, [f"{DT}\n".encode()] * 5)
    paths[3].write_text(f"{DT}\n{DT.replace('46.70', 'far')}\n")
    paths[1].write_text(f"{GT}\n")
    with pytest.raises(RefbenchError) as err:
        read_label_dir(tmp_path, with_score=True)
    assert str(err.value).startswith(f"{paths[1]}:1: expected 16 columns")


def test_non_ascii_and_non_utf8_text_go_through_the_per_file_parser(tmp_path: Path) -> None:
    paths = write_folder(tmp_path, [f"{DT.replace('Car', 'Fußgänger')}\n".encode(),
                                    f"{DT}\n".encode()])
    assert read_label_files(paths, True)[0].name == ("Fußgänger",)
    paths[1].write_bytes(b"Car\xff " + DT.split(" ", 1)[1].encode() + b"\n")
    with pytest.raises(RefbenchError, match="not UTF-8") as err:
        read_label_files(paths, True)
    assert str(err.value).startswith(str(paths[1]))


def test_references_without_score_and_dontcare_sizes(tmp_path: Path) -> None:
    paths = write_folder(tmp_path, [f"{GT}\n{DONTCARE}\n".encode(), f"{PED}\n".encode()])
    frames = read_label_files(paths, False)
    assert same_frames(frames, per_file(paths, False))
    assert frames[0].score is None and frames[0].name == ("Car", "DontCare")


def test_label_text_writes_each_number_by_repr() -> None:
    values = [0.0, -0.0, 5e-324, 1e16, 0.1 + 0.2, 1 / 3, 123456789.125, 1e-5, -2.5, 7.0]
    n = 3
    rng = np.random.default_rng(0)
    frame = {"name": ["Car", "x'y", "a]b"], "truncated": rng.choice(values, n),
             "occluded": [0.0, -1.0, 3.0], "alpha": rng.choice(values, n),
             "bbox": rng.choice(values, (n, 4)), "dimensions": np.abs(rng.choice(values, (n, 3))),
             "location": rng.choice(values, (n, 3)), "rotation_y": rng.choice(values, n),
             "score": rng.choice(values, n)}
    objects = KittiObjects.from_mapping(frame, True)
    expected = []
    for i in range(n):
        numbers = [frame["alpha"][i], *frame["bbox"][i], *np.abs(frame["dimensions"][i]),
                   *frame["location"][i], frame["rotation_y"][i], frame["score"][i]]
        expected.append(" ".join([frame["name"][i], repr(float(frame["truncated"][i])),
                                  str(int(frame["occluded"][i]))]
                                 + [repr(float(v)) for v in numbers]))
    assert objects.lines() == expected
    assert str(objects) == "".join(line + "\n" for line in expected)
    no_score = KittiObjects.from_mapping({k: v for k, v in frame.items() if k != "score"},
                                         False)
    assert no_score.lines(default_score=1.0) == [
        " ".join(line.split(" ")[:-1] + ["1.0"]) for line in expected]


def test_bulk_checked_frames_still_name_the_bad_frame() -> None:
    """Frames given as mappings are checked in bulk; a bad one is named by its index."""
    good = {"name": ["Car"], "truncated": [0.0], "occluded": [0], "alpha": [0.1],
            "bbox": [[100.0, 150.0, 180.0, 210.0]], "dimensions": [[1.5, 1.6, 3.9]],
            "location": [[0.0, 1.6, 20.0]], "rotation_y": [0.1]}
    preds = [dict(good, score=[0.9]) for _ in range(10)]
    preds[7] = dict(preds[7], bbox=[[100.0, 150.0, 180.0]])
    with pytest.raises(RefbenchError, match=r"prediction frame 7: field 'bbox' has shape"):
        kitti_eval([good] * 10, preds, ["Car"])
    refs = [good] * 10
    refs[3] = dict(good, location=[[0.0, float("nan"), 20.0]])
    metric = KittiAP(classes=["Car"])
    with pytest.raises(RefbenchError, match=r"reference frame 3: field 'location' holds NaN"):
        metric.update(preds, refs)  # the lower frame index is named first, as frame by frame
    metric.update([dict(good, score=[0.9])] * 50, [good] * 50)
    assert metric.compute()["Car/3d/easy/R40"] == 100.0
