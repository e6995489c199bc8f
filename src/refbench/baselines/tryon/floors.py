"""The trivial floors a try-on model must beat, as prediction dicts in the `tryon_results`
format (the demo's rival; tests and reports compare models against them).

- `paste_floor`: "paste the pre-aligned garment on the person": the release's pre-aligned
  garment (M3D-VTON's offline alignment of the garment's box onto the box of the parse's
  upper clothes and arms) copied where its mask is set, the person's upper clothes that it
  does not cover painted white, every other pixel the person's own. In the paired setting
  it already holds the right garment roughly in place, so it is a strong floor for SSIM:
  a model must learn where the garment really lies (sleeves over arms, the neckline) to
  beat it.
- `flat_depth_floor`: the person as a flat card (what pasting a 2-D image into 3-D gives):
  world z = +1e-3 in front and -1e-3 behind, not exactly 0, because 0 is the background
  value of a depth map and the Chamfer term would find no predicted point. Its RMSE is
  about the depth scale of the split itself.

Both read the prepared split (`load_prepared`) and need the columns they name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

UPPER_CLOTHES = 5
#: the flat card's world z (front; the back is its negative)
FLAT_Z = 1e-3


def _decode(row: dict[str, Any], column: str, mode: str) -> np.ndarray:
    from refbench.baselines.tryon.labels import row_image

    return row_image(row, column, mode,
                     " for the paste floor (prepare the release with its derive option)")


def _labels(row: dict[str, Any]) -> np.ndarray:
    from refbench.baselines.tryon.labels import label_map

    if row.get("parse") is None:
        raise RefbenchError(f"pair {row.get('pair_id')}: no 'parse' for the paste floor",
                            key="parse")
    return label_map(row, "parse")


def paste_image(person: np.ndarray, parse: np.ndarray, cloth: np.ndarray,
                cloth_mask: np.ndarray) -> np.ndarray:
    """One pair's floor image (module docstring), uint8 H x W x 3."""
    blank = np.where((parse == UPPER_CLOTHES)[..., None], 255, person)
    return np.where(cloth_mask[..., None], cloth, blank).astype(np.uint8)


def paste_floor(rows: "hf_datasets.Dataset") -> dict[str, np.ndarray]:
    """`{pair_id: floor image}` for every row of a prepared try-on split."""
    out = {}
    columns = ["pair_id", "person", "parse", "aligned_cloth", "aligned_cloth_mask"]
    for row in rows.select_columns(columns):
        out[row["pair_id"]] = paste_image(
            _decode(row, "person", "RGB"), _labels(row),
            _decode(row, "aligned_cloth", "RGB"), _decode(row, "aligned_cloth_mask", "L") >= 128)
    return out


def flat_depth_floor(rows: "hf_datasets.Dataset") -> dict[str, Any]:
    """`{pair_id: DepthPair(FLAT_Z, -FLAT_Z)}` at each row's size."""
    from refbench.evaluation.tryon.metrics import DepthPair

    out: dict[str, Any] = {}
    for row in rows.select_columns(["pair_id", "height", "width"]):
        card = np.full((row["height"], row["width"]), FLAT_Z, np.float32)
        out[row["pair_id"]] = DepthPair(card, -card, name=row["pair_id"])
    return out


def floor_for(spec: Any, cache_dir: str | None) -> dict[str, Any]:
    """The floor matching a try-on spec's metric, over its scored split (prepared cache)."""
    from refbench.datasets.base import load_prepared

    rows = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                         cache_dir=cache_dir)
    return flat_depth_floor(rows) if spec.metric.name == "tryon_depth" else paste_floor(rows)
