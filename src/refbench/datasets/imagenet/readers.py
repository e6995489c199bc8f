"""The ImageNet (ILSVRC2012) label and list files, read strictly.

Class lists (which wnids exist; labels always index them in sorted-wnid order, the
order of the train/ folders that torchvision, Caffe's synsets.txt and the Kaggle
LOC_synset_mapping.txt use; the devkit's own ILSVRC2012_ID order is mapped onto it):

- `LOC_synset_mapping.txt` (Kaggle) and Caffe's `synset_words.txt`: "wnid words" lines;
- Caffe's `synsets.txt`: one wnid per line, line i = Caffe label i;
- the devkit's `data/meta.mat` (scipy reads it): `synsets` records whose leaves
  (num_children 0) carry ILSVRC2012_ID 1..1000, WNID and words.

Validation labels: `LOC_val_solution.csv` ("ImageId,PredictionString", the first token
of the prediction string is the wnid), the devkit's
`ILSVRC2012_validation_ground_truth.txt` (line i = ILSVRC2012_ID of
ILSVRC2012_val_{i:08d}.JPEG), Caffe's `val.txt` ("ILSVRC2012_val_XXXXXXXX.JPEG label",
label = line of synsets.txt), or val/<wnid>/ folders.

OpenSelfSup list files: "path label" or "path" per line (split on whitespace, as
`ImageList` splits); every malformed line is a `RefbenchError` naming file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from refbench.errors import RefbenchError

WNID = re.compile(r"^n\d{8}$")
VAL_NAME = "ILSVRC2012_val_{:08d}.JPEG"
DEVKIT_FOLDERS = ("ILSVRC2012_devkit_t12/data", "devkit/data", "data", ".")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"


def lines(path: Path) -> list[tuple[int, str]]:
    """(1-based number, stripped text) of the non-blank lines of a UTF-8 text file."""
    if path.is_dir():
        raise RefbenchError("a folder, where a text file belongs", path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RefbenchError(f"unreadable ({exc.strerror or exc})", path=path) from None
    out = []
    for number, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise RefbenchError("not valid UTF-8", path=path, line=number) from None
        if text:
            out.append((number, text))
    return out


def _wnid(text: str, path: Path, line: int) -> str:
    if not WNID.match(text):
        raise RefbenchError(f"{text!r:.40} is not a WordNet id (n + 8 digits)", path=path,
                            line=line)
    return text


def read_synset_words(path: Path) -> dict[str, str]:
    """{wnid: words} from "wnid words" lines (LOC_synset_mapping.txt, synset_words.txt),
    in file order; a repeated wnid is an error."""
    out: dict[str, str] = {}
    for number, text in lines(path):
        wnid, _, words = text.partition(" ")
        if _wnid(wnid, path, number) in out:
            raise RefbenchError(f"wnid {wnid} repeats", path=path, line=number)
        out[wnid] = words.strip()
    return out


def read_synsets(path: Path) -> list[str]:
    """Caffe's synsets.txt: the wnid of label i on line i."""
    out: list[str] = []
    for number, text in lines(path):
        if _wnid(text, path, number) in out:
            raise RefbenchError(f"wnid {text} repeats", path=path, line=number)
        out.append(text)
    return out


@dataclass(frozen=True)
class DevkitMeta:
    """The 1,000 leaf synsets of meta.mat: ILSVRC2012_ID -> wnid, wnid -> words."""

    wnid_of_id: dict[int, str]
    words: dict[str, str]


def read_meta_mat(path: Path) -> DevkitMeta:
    """The devkit's meta.mat (a MATLAB file; scipy.io reads it)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True)
        records = mat["synsets"]
        ids = [int(v) for v in records["ILSVRC2012_ID"]]
        wnids = [str(v) for v in records["WNID"]]
        words = [str(v) for v in records["words"]]
        children = [int(v) for v in records["num_children"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise RefbenchError(f"not the devkit's meta.mat (synsets with ILSVRC2012_ID, WNID, "
                            f"words, num_children): {exc}", path=path) from None
    wnid_of_id: dict[int, str] = {}
    out_words: dict[str, str] = {}
    for key, wnid, word, kids in zip(ids, wnids, words, children):
        if kids != 0:
            continue
        if key in wnid_of_id or not WNID.match(wnid):
            raise RefbenchError(f"leaf synset {key} ({wnid!r}) repeats or has a bad wnid",
                                path=path, key="synsets")
        wnid_of_id[key] = wnid
        out_words[wnid] = word
    if not wnid_of_id:
        raise RefbenchError("no leaf synsets (num_children 0)", path=path, key="synsets")
    return DevkitMeta(wnid_of_id, out_words)


def read_loc_val_solution(path: Path) -> list[tuple[int, str, str]]:
    """(line, image id, wnid) of LOC_val_solution.csv, in file order."""
    rows = lines(path)
    if not rows or rows[0][1].replace(" ", "") != "ImageId,PredictionString":
        raise RefbenchError("expected the header 'ImageId,PredictionString'", path=path, line=1)
    out = []
    for number, text in rows[1:]:
        image, sep, prediction = text.partition(",")
        tokens = prediction.split()
        if not sep or not image or not tokens:
            raise RefbenchError("expected 'ImageId,wnid x1 y1 x2 y2 ...'", path=path,
                                line=number)
        out.append((number, image.strip(), _wnid(tokens[0], path, number)))
    return out


def read_ground_truth(path: Path, meta: DevkitMeta) -> list[tuple[int, str, str]]:
    """(line, image id, wnid) of the devkit's ground truth (line i: image i's ID)."""
    out = []
    for number, text in lines(path):
        try:
            key = int(text)
        except ValueError:
            raise RefbenchError(f"{text!r:.40} is not an ILSVRC2012_ID", path=path,
                                line=number) from None
        if key not in meta.wnid_of_id:
            raise RefbenchError(f"ILSVRC2012_ID {key} is not a leaf synset of meta.mat "
                                f"(1..{len(meta.wnid_of_id)})", path=path, line=number)
        out.append((number, VAL_NAME.format(number)[:-5], meta.wnid_of_id[key]))
    return out


def read_caffe_val(path: Path, synsets: list[str]) -> list[tuple[int, str, str]]:
    """(line, image id, wnid) of Caffe's val.txt; its labels index `synsets`."""
    out = []
    for number, text in lines(path):
        fields = text.split()
        if len(fields) != 2:
            raise RefbenchError(f"expected 'image label', found {len(fields)} field(s)",
                                path=path, line=number)
        try:
            label = int(fields[1])
        except ValueError:
            raise RefbenchError(f"label {fields[1]!r:.20} is not an integer", path=path,
                                line=number) from None
        if not 0 <= label < len(synsets):
            raise RefbenchError(f"label {label} is not in 0..{len(synsets) - 1} (synsets.txt)",
                                path=path, line=number)
        out.append((number, fields[0].rsplit(".", 1)[0], synsets[label]))
    return out


@dataclass(frozen=True)
class ListEntry:
    """One line of an OpenSelfSup list: the image path as written and its label (-1:
    the line has none)."""

    line: int
    path: str
    label: int


def read_image_list(path: Path, num_classes: int) -> list[ListEntry]:
    """An OpenSelfSup/Caffe list ("path label" or "path" per line; all lines alike)."""
    out: list[ListEntry] = []
    seen: dict[str, int] = {}
    width = None
    for number, text in lines(path):
        fields = text.split()
        if len(fields) not in (1, 2) or (width is not None and len(fields) != width):
            raise RefbenchError(f"expected 'path label' or 'path' like the first line, found "
                                f"{len(fields)} fields", path=path, line=number)
        width = len(fields)
        label = -1
        if len(fields) == 2:
            try:
                label = int(fields[1])
            except ValueError:
                raise RefbenchError(f"label {fields[1]!r:.20} is not an integer", path=path,
                                    line=number) from None
            if not 0 <= label < num_classes:
                raise RefbenchError(f"label {label} is not in 0..{num_classes - 1}", path=path,
                                    line=number)
        first = seen.setdefault(fields[0], number)
        if first != number:
            raise RefbenchError(f"{fields[0]} is listed twice (lines {first} and {number})",
                                path=path, line=number)
        out.append(ListEntry(number, fields[0], label))
    return out
