"""A small synthetic ILSVRC2012 release with learnable classes, in every official layout.

`synthesize_imagenet` writes four real wnids (the first four of the sorted 1,000) with
JPEG pictures from `refbench.datasets.images.paint` (class-dependent colour, shape and
texture; sizes vary as ImageNet's do), and every label source the builder reads, all
consistent: Kaggle's LOC_synset_mapping.txt + LOC_val_solution.csv, the devkit's
meta.mat (with the devkit's own ILSVRC2012_ID order, which is not the sorted-wnid order,
and one non-leaf synset) + validation ground truth, Caffe's synsets.txt +
synset_words.txt + val.txt, and the OpenSelfSup lists in meta/. Tests remove files to
exercise each source in turn.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from refbench.datasets.images.paint import paint
from refbench.datasets.imagenet.readers import GROUND_TRUTH, VAL_NAME
from refbench.io import atomic_write_bytes, atomic_write_text

WNIDS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
         "n01484850": "great white shark, white shark, man-eater, man-eating shark, "
                      "Carcharodon carcharias",
         "n01491361": "tiger shark, Galeocerdo cuvieri"}
#: ILSVRC2012_ID of each synthetic wnid in meta.mat (not the sorted order, as in the devkit)
DEVKIT_IDS = {"n01440764": 3, "n01443537": 1, "n01484850": 4, "n01491361": 2}


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def picture(label: int, rng: np.random.Generator) -> bytes:
    """A JPEG of class `label`, 40-64 px wide and high (not square, like ImageNet's)."""
    from PIL import Image

    side = 64
    image = Image.fromarray(paint(label, len(WNIDS), side, rng))
    size = (int(rng.integers(40, 65)), int(rng.integers(40, 65)))
    return jpeg(np.asarray(image.resize(size, Image.BILINEAR)))


def write_devkit(root: Path, val: list[str]) -> None:
    """meta.mat and the ground truth of the devkit for validation wnids `val`."""
    import scipy.io

    wnids = list(WNIDS) + ["n00001740"]
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"),
             ("num_children", "O"), ("wordnet_height", "O"), ("num_train_images", "O")]
    records = np.zeros((len(wnids),), dtype=dtype)
    for i, w in enumerate(wnids):
        leaf = w in WNIDS
        records[i] = (DEVKIT_IDS.get(w, len(WNIDS) + 1), w, WNIDS.get(w, "entity"), "",
                      0 if leaf else len(WNIDS), 0 if leaf else 19, 10 if leaf else 0)
    folder = Path(root) / "ILSVRC2012_devkit_t12" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": records})
    atomic_write_bytes(folder / "meta.mat", buffer.getvalue())
    atomic_write_text(folder / GROUND_TRUTH, "".join(f"{DEVKIT_IDS[w]}\n" for w in val))


def synthesize_imagenet(out: Path, n: int = 200, seed: int = 0) -> Path:
    """Write the release into `out` (about `n` images, 60% train); returns `out`."""
    rng = np.random.default_rng(seed)
    root = Path(out)
    wnids = sorted(WNIDS)
    per_class = max(3, int(n * 0.6) // len(wnids))
    train_lines = []
    for label, w in enumerate(wnids):
        for i in range(per_class):
            name = f"{w}_{1000 + i}.JPEG"
            atomic_write_bytes(root / "train" / w / name, picture(label, rng))
            train_lines.append(f"{w}/{name} {label}\n")
    val = [wnids[i % len(wnids)] for i in range(max(len(wnids), n - per_class * len(wnids)))]
    rng.shuffle(val)
    for i, w in enumerate(val, start=1):
        atomic_write_bytes(root / "val" / VAL_NAME.format(i), picture(wnids.index(w), rng))
    atomic_write_text(root / "LOC_synset_mapping.txt",
                      "".join(f"{w} {WNIDS[w]}\n" for w in wnids))
    atomic_write_text(root / "LOC_val_solution.csv", "ImageId,PredictionString\n" + "".join(
        f"{VAL_NAME.format(i)[:-5]},{w} 1 2 30 31 \n" for i, w in enumerate(val, start=1)))
    write_devkit(root, val)
    atomic_write_text(root / "synsets.txt", "".join(f"{w}\n" for w in wnids))
    atomic_write_text(root / "synset_words.txt", "".join(f"{w} {WNIDS[w]}\n" for w in wnids))
    atomic_write_text(root / "val.txt", "".join(f"{VAL_NAME.format(i)} {wnids.index(w)}\n"
                                                for i, w in enumerate(val, start=1)))
    order = rng.permutation(len(train_lines))
    held = max(1, len(order) // 5)
    meta = root / "meta"
    atomic_write_text(meta / "train_labeled.txt", "".join(train_lines))
    atomic_write_text(meta / "train.txt", "".join(line.split()[0] + "\n" for line in train_lines))
    atomic_write_text(meta / "val_labeled.txt", "".join(
        f"{VAL_NAME.format(i)} {wnids.index(w)}\n" for i, w in enumerate(val, start=1)))
    atomic_write_text(meta / "train_labeled_50000_random_shuffle.txt",
                      "".join(train_lines[i] for i in order[held:]))
    atomic_write_text(meta / "my_val_labeled.txt", "".join(train_lines[i] for i in order[:held]))
    return root
