"""VITON (256 x 192) as CP-VTON / PF-AFN read it, and VITON-HD (1024 x 768) as VITON-HD and
HR-VITON read it.

VITON (`viton`), the PF-AFN / CP-VTON layout (folder names `{split}_*`; the root may also
be PF-AFN's test folder, which keeps them in `dataset/` beside its `demo.txt`):

```
ROOT/{train,test}_pairs.txt           "000001_0.jpg 001744_1.jpg" (test: or PF-AFN's demo.txt)
ROOT/{split}_img/<X>_0.jpg            person
ROOT/{split}_clothes/<Y>_1.jpg        in-shop garment (PF-AFN's training loader: {split}_color/)
ROOT/{split}_edge/<Y>_1.jpg           garment mask (thresholded at 128 like PF-AFN's > 0.5)
ROOT/{split}_label/<X>_0.png          LIP parse (optional)
ROOT/{split}_pose/<X>_0_keypoints.json   OpenPose 1.0 COCO-18 (optional)
```

A person's own garment is `<X>_1.jpg`; results are named by the person (CP-VTON's
`try-on/<X>_0.jpg`), so `pair_id` is `<X>_0`. PF-AFN's `{split}_densepose/*.npy` is not
read.

VITON-HD (`viton_hd`), the released layout HR-VITON reads (VITON-HD's own loader uses the
older names in brackets, also accepted):

```
ROOT/{train,test}_pairs.txt           "00006_00.jpg 06396_00.jpg"
ROOT/{split}/image/<P>.jpg            person
ROOT/{split}/cloth/<C>.jpg, ROOT/{split}/cloth-mask/<C>.jpg   garment and its mask
ROOT/{split}/image-parse-v3/<P>.png   LIP parse (P-mode)                 [image-parse]
ROOT/{split}/image-parse-agnostic-v3.2/<P>.png   cloth-agnostic parse
ROOT/{split}/openpose_json/<P>_keypoints.json    OpenPose BODY_25 (75 values)  [openpose-json]
ROOT/{split}/openpose_img/<P>_rendered.png       rendered skeleton             [openpose-img]
ROOT/{split}/image-densepose/<P>.jpg             DensePose image
ROOT/{split}/agnostic-v3.2/<P>.jpg               cloth-agnostic person image
```

A person's own garment has the person's name (HR-VITON's paired setting: cloth = person);
results are named as HR-VITON's `test_generator.py` names them, `<P stem>_<C stem>.png`,
which is `pair_id`.

What VITON-HD needs and what is optional: only the pairs list, `image/` and `cloth/` are
required (the IDM-VTON demo persons have nothing else). Every other modality is optional
and None where absent. With the prepare option `derive=true` (off by default, since it
needs parse and pose for every row), a row lacking them gets the two cloth-agnostic inputs
the official loaders compute (`agnostic.py`): `parse_agnostic` from `parse` + `pose`
(HR-VITON's `get_parse_agnostic.py`, exact) and `agnostic` from `person` + `parse` + `pose`
in the convention of the option `agnostic` (`hrviton`, default, or `viton_hd`); both are
stored as PNG and named in the `derived` column. Nothing is derived without a parse: it
comes from a human-parsing network (CIHP-PGN), the pose from OpenPose, the DensePose image
from detectron2 and the garment mask from a background-removal network, none of which
refbench runs, so a derivation whose parse or pose is absent is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from refbench.datasets.tryon import agnostic, readers
from refbench.datasets.tryon.builder import Layout, RowFiles, TryOnBuilder
from refbench.errors import RefbenchError
from refbench.options import Option
from refbench.registry import DATASETS


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _first(*paths: Path) -> Path:
    """The first existing path, else the first (named in errors and counted as absent)."""
    return next((p for p in paths if p.exists()), paths[0])


class VitonLayout(Layout):
    pose_points = readers.COCO_18

    def base(self, root: Path) -> Path:
        root = Path(root)
        nested = root / "dataset"
        if not any(root.glob("*_img")) and any(nested.glob("*_img")):
            return nested
        return root

    def pairs_file(self, root: Path, split: str) -> Path | None:
        root = Path(root)
        candidates = [root / f"{split}_pairs.txt"] + ([root / "demo.txt"] if split == "test"
                                                      else [])
        return next((p for p in candidates if p.exists()), None)

    def files(self, root: Path, split: str, person: str, cloth: str) -> RowFiles:
        base = self.base(root)
        clothes = _first(base / f"{split}_clothes", base / f"{split}_color")
        return RowFiles(person=base / f"{split}_img" / person, cloth=clothes / cloth, optional={
            "cloth_mask": base / f"{split}_edge" / cloth,
            "parse": base / f"{split}_label" / f"{_stem(person)}.png",
            "pose": base / f"{split}_pose" / f"{_stem(person)}_keypoints.json",
        })

    def own_cloth(self, root: Path, split: str, person: str) -> str | None:
        stem = _stem(person)
        if not stem.endswith("_0"):
            return None
        name = f"{stem[:-2]}_1.jpg"
        return name if self.files(root, split, person, name).cloth.is_file() else None

    def pair_id(self, person: str, cloth: str) -> str:
        return _stem(person)


class VitonHDLayout(Layout):
    pose_points = readers.BODY_25

    def pairs_file(self, root: Path, split: str) -> Path | None:
        path = Path(root) / f"{split}_pairs.txt"
        return path if path.exists() else None

    def files(self, root: Path, split: str, person: str, cloth: str) -> RowFiles:
        base = Path(root) / split
        stem = _stem(person)
        return RowFiles(person=base / "image" / person, cloth=base / "cloth" / cloth, optional={
            "cloth_mask": base / "cloth-mask" / cloth,
            "parse": _first(base / "image-parse-v3" / f"{stem}.png",
                            base / "image-parse" / f"{stem}.png"),
            "parse_agnostic": base / "image-parse-agnostic-v3.2" / f"{stem}.png",
            "pose": _first(base / "openpose_json" / f"{stem}_keypoints.json",
                           base / "openpose-json" / f"{stem}_keypoints.json"),
            "pose_image": _first(base / "openpose_img" / f"{stem}_rendered.png",
                                 base / "openpose-img" / f"{stem}_rendered.png"),
            "densepose": base / "image-densepose" / person,
            "agnostic": base / "agnostic-v3.2" / person,
        })

    def derive(self, files: RowFiles, row: dict[str, Any], decoded: dict[str, Any],
               options: Mapping[str, Any]) -> list[str]:
        from refbench.datasets.tryon.preprocess import png_bytes

        done: list[str] = []
        lacking = [name for name in ("parse_agnostic", "agnostic") if row[name] is None]
        if not lacking:
            return done
        parse, pose = decoded.get("parse"), decoded.get("pose")
        what = " and ".join("agnostic parse" if n == "parse_agnostic" else
                            "agnostic person image" for n in lacking)
        path = files.optional["parse"] if parse is None else files.optional["pose"]
        agnostic.require(what, parse, pose, path)
        if row["parse_agnostic"] is None:
            labels = agnostic.parse_agnostic(parse, pose, files.optional["parse"])
            row["parse_agnostic"] = {"bytes": png_bytes(labels), "path": None}
            done.append("parse_agnostic")
        if row["agnostic"] is None:
            import io

            from PIL import Image

            image = agnostic.image_agnostic(decoded["person"], parse, pose,
                                            str(options.get("agnostic", "hrviton")),
                                            files.optional["pose"])
            buffer = io.BytesIO()
            Image.fromarray(np.asarray(image, np.uint8), "RGB").save(buffer, format="PNG")
            row["agnostic"] = {"bytes": buffer.getvalue(), "path": None}
            done.append("agnostic")
        return done

    def own_cloth(self, root: Path, split: str, person: str) -> str | None:
        return person if (Path(root) / split / "cloth" / person).is_file() else None

    def pair_id(self, person: str, cloth: str) -> str:
        return f"{_stem(person)}_{_stem(cloth)}"


_VITON_CITATION = """@inproceedings{han2018viton,
  title     = {VITON: An Image-based Virtual Try-on Network},
  author    = {Han, Xintong and Wu, Zuxuan and Wu, Zhe and Yu, Ruichi and Davis, Larry S},
  booktitle = {CVPR},
  year      = {2018}
}"""
_VITONHD_CITATION = """@inproceedings{choi2021viton,
  title     = {VITON-HD: High-Resolution Virtual Try-On via Misalignment-Aware Normalization},
  author    = {Choi, Seunghwan and Park, Sunghyun and Lee, Minsoo and Choo, Jaegul},
  booktitle = {CVPR},
  year      = {2021}
}"""


@DATASETS.register("viton")
class VitonBuilder(TryOnBuilder):
    """VITON at 256 x 192 (configs `paired` / `unpaired`; splits `train`, `test`)."""

    name = "viton"
    version = "1.0"
    license = "research use only (the VITON images were withdrawn by their authors)"
    citation = _VITON_CITATION
    homepage = "https://github.com/geyuying/PF-AFN"
    gated = True
    release: ClassVar[Layout] = VitonLayout()

    def layout(self) -> str:  # type: ignore[override]
        return (__doc__ or "").split("```")[1].strip("\n")

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.tryon.synth import synthesize_viton

        return synthesize_viton(Path(out), n=n, seed=seed)


@DATASETS.register("viton_hd")
class VitonHDBuilder(TryOnBuilder):
    """VITON-HD at 1024 x 768 (configs `paired` / `unpaired`; splits `train`, `test`)."""

    name = "viton_hd"
    version = "1.0"
    license = "CC BY-NC 4.0 (NeStyle Inc.)"
    citation = _VITONHD_CITATION
    homepage = "https://github.com/shadow2496/VITON-HD"
    gated = True
    release: ClassVar[Layout] = VitonHDLayout()
    prepare_options: ClassVar[tuple[Option, ...]] = (
        Option("derive", "bool", "compute the cloth-agnostic parse and person image the "
               "official loaders derive, for rows whose release lacks them (needs parse and "
               "pose)", False),
        Option("agnostic", "str", "convention of the derived agnostic person image: hrviton "
               "(HR-VITON cp_dataset get_agnostic) or viton_hd (VITON-HD get_img_agnostic)",
               "hrviton"),
    )

    def set_options(self, options: dict[str, Any] | None) -> None:
        super().set_options(options)
        if self.options["agnostic"] not in agnostic.CONVENTIONS:
            raise RefbenchError(f"unknown agnostic convention {self.options['agnostic']!r} "
                                f"(known: {', '.join(agnostic.CONVENTIONS)})", key="agnostic")

    def layout(self) -> str:  # type: ignore[override]
        return (__doc__ or "").split("```")[3].strip("\n")

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.tryon.synth import synthesize_viton_hd

        return synthesize_viton_hd(Path(out), n=n, seed=seed)
