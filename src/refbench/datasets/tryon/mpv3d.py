"""MPV3D (M3D-VTON, ICCV 2021) in the authors' layout, as `data/aligned_MPV3dDataset.py`
and `util/data_preprocessing.py` read and write it (512 x 320 images):

```
ROOT/{train,test}_pairs.txt        "<ID>@<n>=person_whole_front.png <ID>@<m>=cloth_front.jpg"
ROOT/image/<P>.png                 person, P = <ID>@<n>=person_whole_front
ROOT/image-parse/<P>_label.png     LIP labels (L-mode PNG)
ROOT/pose/<P>_keypoints.json       OpenPose BODY_25 (people[0].pose_keypoints_2d)
ROOT/depth/<P>_depth.npy           front viewport depth; back: <ID>@<n>=person_whole_back_depth.npy
ROOT/palm-mask/<ID>@<n>=person_palm_mask.png        (preprocessing)
ROOT/image-sobel/<P>_sobel{x,y}.png                 (preprocessing)
ROOT/cloth/<C>.jpg, ROOT/cloth-mask/<C>_mask.jpg    in-shop garment, C = <ID>@<m>=cloth_front
ROOT/aligned/{train,test}_pairs/cloth/<C>.jpg, .../cloth-mask/<C>_mask.jpg   (preprocessing)
ROOT/camera.txt                    the depth cameras (checked, see readers.read_camera)
```

Only the pairs list, `image/` and `cloth/` are required. The person's own garment (the
paired setting) is the garment of the same product `<ID>` in `cloth/` (the first by name
when there are several). Results are named by the person (`tryon/<P>.png`, DRM's
`final-depth/<P>_depth.npy` and `<ID>@<n>=person_whole_back_depth.npy`), so `pair_id` is `P`.

With the prepare option `derive` (default on) rows get what the preprocessing script would
have written when the release lacks it: the pre-aligned garment of *this* pair (the
paired setting's pairs are not in the script's lists), palm masks, Sobel images; the
`derived` column names them. `preprocess_release` writes them into the layout instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from refbench.datasets.base import CheckReport, Problem
from refbench.datasets.tryon import preprocess, readers
from refbench.datasets.tryon.builder import RowFiles, TryOnBuilder, Layout, split_pairs
from refbench.errors import RefbenchError
from refbench.options import Option
from refbench.registry import DATASETS

PERSON_SUFFIX, CLOTH_SUFFIX = "=person_whole_front.png", "=cloth_front.jpg"


def person_stem(person: str) -> str:
    return person[:-4] if person.endswith(".png") else Path(person).stem


def product_id(name: str) -> str:
    """The product `<ID>` of an MPV name `<ID>@<n>=...`."""
    return name.split("@", 1)[0]


def back_name(person: str) -> str:
    """The back depth of a person, as the loader names it (`front.png` -> `back_depth.npy`)."""
    return person.replace("front.png", "back_depth.npy")


class MPV3DLayout(Layout):
    pose_points = readers.BODY_25
    has_depth = True

    def __init__(self) -> None:
        self._products: dict[Path, dict[str, str]] = {}

    def pairs_file(self, root: Path, split: str) -> Path | None:
        path = Path(root) / f"{split}_pairs.txt"
        return path if path.exists() else None

    def files(self, root: Path, split: str, person: str, cloth: str) -> RowFiles:
        root = Path(root)
        aligned = root / "aligned" / f"{split}_pairs"
        mask = cloth.replace(".jpg", "_mask.jpg")
        return RowFiles(person=root / "image" / person, cloth=root / "cloth" / cloth, optional={
            "cloth_mask": root / "cloth-mask" / mask,
            "parse": root / "image-parse" / person.replace(".png", "_label.png"),
            "pose": root / "pose" / person.replace(".png", "_keypoints.json"),
            "palm_mask": root / "palm-mask" / person.replace("whole_front.png", "palm_mask.png"),
            "sobel_x": root / "image-sobel" / person.replace(".png", "_sobelx.png"),
            "sobel_y": root / "image-sobel" / person.replace(".png", "_sobely.png"),
            "aligned_cloth": aligned / "cloth" / cloth,
            "aligned_cloth_mask": aligned / "cloth-mask" / mask,
            "depth_front": root / "depth" / person.replace(".png", "_depth.npy"),
            "depth_back": root / "depth" / back_name(person),
        })

    def own_cloth(self, root: Path, split: str, person: str) -> str | None:
        folder = Path(root) / "cloth"
        if folder not in self._products:
            names = sorted(p.name for p in folder.glob("*.jpg")) if folder.is_dir() else []
            products: dict[str, str] = {}
            for name in names:
                products.setdefault(product_id(name), name)
            self._products[folder] = products
        return self._products[folder].get(product_id(person))

    def pair_id(self, person: str, cloth: str) -> str:
        return person_stem(person)

    def extra_sources(self, root: Path) -> list[Path]:
        camera = Path(root) / "camera.txt"
        return [camera] if camera.is_file() else []

    def check_extra(self, root: Path, report: CheckReport) -> None:
        camera = Path(root) / "camera.txt"
        if not camera.exists():
            report.hint("no camera.txt: the depth maps are read with MPV3D's cameras (front "
                        "z=+2, back z=-2, orthographic znear 1, zfar 3)")
            return
        try:
            readers.check_camera(readers.read_camera(camera), camera)
            report.found.append("camera.txt")
        except RefbenchError as exc:
            report.problems.append(Problem.from_error(exc, camera))

    def derive(self, files: RowFiles, row: dict[str, Any], decoded: dict[str, Any],
               options: Mapping[str, Any]) -> list[str]:
        from PIL import Image

        done: list[str] = []
        parse, pose = decoded.get("parse"), decoded.get("pose")
        if row["palm_mask"] is None and parse is not None and pose is not None:
            mask = preprocess.palm_mask(parse, pose)
            row["palm_mask"] = {"bytes": preprocess.png_bytes(mask * np.uint8(255)),
                                "path": None}
            done.append("palm_mask")
        if row["sobel_x"] is None or row["sobel_y"] is None:
            images = preprocess.sobel_images(decoded["person"])
            for axis in ("x", "y"):
                row[f"sobel_{axis}"] = {"bytes": preprocess.png_bytes(images[axis], rgba=True),
                                        "path": None}
                done.append(f"sobel_{axis}")
        mask_path = files.optional.get("cloth_mask")
        if row["aligned_cloth"] is None and parse is not None and mask_path is not None \
                and mask_path.is_file():
            with Image.open(files.cloth) as cloth, Image.open(mask_path) as cloth_mask:
                aligned, aligned_mask = preprocess.prealign_cloth(
                    cloth, cloth_mask, parse, name=str(files.cloth))
            binary = np.asarray(aligned_mask) >= readers.MASK_THRESHOLD
            row["aligned_cloth"] = {"bytes": preprocess.jpeg_bytes(aligned), "path": None}
            row["aligned_cloth_mask"] = {"bytes": preprocess.png_bytes(binary * np.uint8(255)),
                                         "path": None}
            done += ["aligned_cloth", "aligned_cloth_mask"]
        return done


def derived_files(root: Path, steps: tuple[str, ...], overwrite: bool
                  ) -> list[tuple[str, Path, bytes]]:
    """The files the preprocessing script would write for `steps` (step, path, bytes),
    all computed before any is written."""
    from PIL import Image

    root = Path(root)
    layout = MPV3DLayout()
    out: list[tuple[str, Path, bytes]] = []
    persons: dict[str, Path] = {}
    for split in ("train", "test"):
        pairs, path, _ = split_pairs(layout, root, "unpaired", split)
        for pair, _paired in pairs:
            files = layout.files(root, split, pair.person, pair.cloth)
            persons.setdefault(pair.person, path)
            if "align" in steps:
                targets = (files.optional["aligned_cloth"], files.optional["aligned_cloth_mask"])
                if overwrite or not all(t.exists() for t in targets):
                    parse = readers.read_parse(files.optional["parse"])
                    with Image.open(readers._file(files.cloth, "cloth image")) as c, \
                            Image.open(readers._file(files.optional["cloth_mask"],
                                                     "cloth mask")) as m:
                        aligned, mask = preprocess.prealign_cloth(c, m, parse,
                                                                  name=str(files.cloth))
                    out.append(("align", targets[0], preprocess.jpeg_bytes(aligned)))
                    out.append(("align", targets[1], preprocess.jpeg_bytes(mask)))
    for person in persons:
        files = layout.files(root, "test", person, "")
        if "palm" in steps and (overwrite or not files.optional["palm_mask"].exists()):
            parse = readers.read_parse(files.optional["parse"])
            pose = readers.read_pose(files.optional["pose"], readers.BODY_25)
            mask = preprocess.palm_mask(parse, pose) * np.uint8(255)
            out.append(("palm", files.optional["palm_mask"], preprocess.png_bytes(mask)))
        if "sobel" in steps:
            targets = (files.optional["sobel_x"], files.optional["sobel_y"])
            if overwrite or not all(t.exists() for t in targets):
                images = preprocess.sobel_images(readers.read_rgb(files.person, "person image"))
                for axis, target in zip("xy", targets):
                    out.append(("sobel", target, preprocess.png_bytes(images[axis], rgba=True)))
    return out


_CITATION = """@InProceedings{Zhao_2021_ICCV,
  author    = {Zhao, Fuwei and Xie, Zhenyu and Kampffmeyer, Michael and Dong, Haoye and Han, Songfang and Zheng, Tianxiang and Zhang, Tao and Liang, Xiaodan},
  title     = {M3D-VTON: A Monocular-to-3D Virtual Try-On Network},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021},
  pages     = {13239-13249}
}"""


@DATASETS.register("mpv3d")
class MPV3DBuilder(TryOnBuilder):
    """MPV3D (configs `paired` / `unpaired`; splits `train`, `test`)."""

    name = "mpv3d"
    version = "1.0"
    license = "research use only (MPV3D is derived from MPV / MG-VTON; no licence file)"
    citation = _CITATION
    homepage = "https://github.com/fyviezhao/M3D-VTON"
    gated = True
    release: ClassVar[Layout] = MPV3DLayout()
    prepare_options: ClassVar[tuple[Option, ...]] = (Option(
        "derive", "bool", "compute what M3D-VTON's offline preprocessing would have written "
        "(pre-aligned garment, palm mask, Sobel images) for rows whose release lacks it",
        True),)

    def layout(self) -> str:  # type: ignore[override]
        return (__doc__ or "").split("```")[1].strip("\n")

    def synthesize(self, out: Path, n: int = 200, seed: int = 0) -> Path:
        from refbench.datasets.tryon.synth import synthesize_mpv3d

        return synthesize_mpv3d(Path(out), n=n, seed=seed)
