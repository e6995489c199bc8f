"""Images and parse label maps from a prepared try-on row, as the official loaders read them.

A parse PNG stores label ids: VITON-HD's are P mode (a palette), MPV3D's and VITON's L
mode. The ids are the stored pixel values in both (`np.array(Image.open(p))`, as the
official loaders do); `convert("L")` would turn a palette's colours into grey levels,
which are not labels (VITON-HD's upper clothes, label 5, would read as 178)."""

from __future__ import annotations

import io
from typing import Any, Callable, Mapping

import numpy as np

from refbench.errors import RefbenchError


def _decoded(row: Mapping[str, Any], column: str, missing: str,
             read: Callable[[Any, Any], np.ndarray]) -> np.ndarray:
    """`read(image, pair)` on the PIL image in `row[column]`; an absent column or bytes
    that do not decode are one-line errors naming the pair and column."""
    from PIL import Image

    pair = row.get("pair_id")
    value = row.get(column)
    if value is None:
        raise RefbenchError(f"pair {pair}: no {column!r}{missing}", key=column)
    try:
        with Image.open(io.BytesIO(value["bytes"])) as handle:
            return read(handle, pair)
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"pair {pair}: cannot decode {column!r}: "
                            f"{' '.join(str(exc).split())}", key=column) from None


def row_image(row: Mapping[str, Any], column: str, mode: str, missing: str = "") -> np.ndarray:
    """`row[column]` decoded and converted to PIL `mode` (as the official loaders'
    `Image.open(p).convert(mode)`), or a one-line error naming the pair and column; an
    absent column says `pair P: no 'column'` followed by `missing` (what would provide it)."""
    return _decoded(row, column, missing, lambda image, _pair: np.asarray(image.convert(mode)))


def label_map(row: Mapping[str, Any], column: str = "parse") -> np.ndarray:
    """The H x W uint8 label ids of `row[column]` (an L- or P-mode image), or a one-line
    error naming the pair and column."""

    def ids(image: Any, pair: Any) -> np.ndarray:
        if image.mode not in ("L", "P"):
            raise RefbenchError(f"pair {pair}: {column!r} is a {image.mode}-mode image, a "
                                f"label map is L or P mode", key=column)
        return np.asarray(image, dtype=np.uint8)

    return _decoded(row, column, " label map", ids)
