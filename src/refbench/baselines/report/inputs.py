"""What every report-generation baseline reads from a prepared split: the study's images as
a fixed stack, its reference report and its terms.

The three report datasets store images two ways: `images` (IU X-ray, CX-CHR: each view's
original PNG/JPG bytes) and `slices` (COVID-19 CT: a `(16, 2, 128, 128)` uint8 volume,
lung and mediastinal windows). `study_stack` turns either into `(K, 2, S, S)` float32 in
[0, 1]: up to K views in stored order (an X-ray's gray values in both channels), or K
slices spread evenly over the volume, each resized to S. Fewer views than K are padded
with zeros and masked out, so a study's features never depend on its batch.

`StudyFeatures` keeps the text side in memory and decodes a study's images when a batch
asks for them, keeping decoded stacks up to `CACHE_BYTES` (all of a small split).
"""

from __future__ import annotations

import io
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from refbench.baselines.lazy_rows import LazyRows
from refbench.errors import RefbenchError

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets

    from refbench.benchmarks.spec import BenchmarkSpec

TASK_TYPE = "report-generation"
IMAGE_COLUMNS = ("images", "slices")
#: decoded stacks kept in memory per split
CACHE_BYTES = 512 << 20


def check_task(spec: "BenchmarkSpec", baseline: str) -> None:
    """Report baselines answer report-generation benchmarks only."""
    if spec.task.type != TASK_TYPE:
        raise RefbenchError(f"benchmark {spec.name} is a {spec.task.type!r} task; {baseline} "
                            f"writes reports ({TASK_TYPE} benchmarks)", key="benchmark")


def require_columns(rows: "hf_datasets.Dataset", *names: str) -> None:
    missing = [n for n in names if n not in rows.column_names]
    if missing:
        raise RefbenchError(f"the split has no column {missing[0]!r} (columns: "
                            f"{', '.join(rows.column_names)})")


def image_column(rows: "hf_datasets.Dataset") -> str:
    """`slices` for a CT volume, else `images` (views)."""
    for name in ("slices", "images"):
        if name in rows.column_names:
            return name
    raise RefbenchError(f"the split has no image column ({' or '.join(IMAGE_COLUMNS)}; "
                        f"columns: {', '.join(rows.column_names)})")


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """2-D uint8 -> size x size float32 in [0, 1] (Pillow bilinear, antialiased)."""
    from PIL import Image

    if image.shape != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image.astype(np.float32) / 255.0


def _decode_view(entry: Mapping[str, Any], study: str) -> np.ndarray:
    from PIL import Image

    data = entry.get("bytes") if isinstance(entry, Mapping) else None
    if not data:
        raise RefbenchError(f"study {study}: an image entry holds no bytes "
                            f"({entry.get('path') if isinstance(entry, Mapping) else entry!r})")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("L"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"study {study}: unreadable image {entry.get('path')!r}: "
                            f"{exc}") from None


def study_stack(value: Any, column: str, study: str, num_images: int,
                size: int) -> tuple[np.ndarray, np.ndarray]:
    """One study's `(K, 2, S, S)` float32 stack and its `(K,)` mask (module docstring)."""
    out = np.zeros((num_images, 2, size, size), np.float32)
    mask = np.zeros(num_images, np.int64)
    if column == "slices":
        volume = np.asarray(value)
        if volume.ndim != 4 or volume.shape[1] != 2 or len(volume) == 0:
            raise RefbenchError(f"study {study}: slices of shape {volume.shape}, expected "
                                f"(slices, 2, H, W)", key="slices")
        picks = np.rint(np.linspace(0, len(volume) - 1, num_images)).astype(np.int64)
        for i, k in enumerate(picks):
            for c in range(2):
                out[i, c] = _resize(np.ascontiguousarray(volume[k, c], dtype=np.uint8), size)
        mask[:] = 1
        return out, mask
    views = list(value or [])
    if not views:
        raise RefbenchError(f"study {study} has no images (prepare the dataset with its "
                            f"images under the root: the model reads them)", key="images")
    for i, entry in enumerate(views[:num_images]):
        gray = _resize(_decode_view(entry, study), size)
        out[i, 0] = out[i, 1] = gray
        mask[i] = 1
    return out, mask


def term_vocabulary(rows: "hf_datasets.Dataset", min_count: int) -> list[str]:
    """The terms seen at least `min_count` times in the training split, most frequent
    first (ties by spelling): the multi-label head's classes."""
    if "terms" not in rows.column_names:
        return []
    counts: Counter[str] = Counter(t for terms in rows["terms"] for t in (terms or []))
    return [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if c >= min_count]


def term_targets(terms: Sequence[str] | None, index: Mapping[str, int]) -> list[int]:
    """The term-head classes of one study's terms (terms outside the vocabulary dropped)."""
    return sorted({index[t] for t in (terms or []) if t in index})


class StudyFeatures(LazyRows):
    """Per-study feature dicts: `index`, `id`, the given text fields (`extra`, held in
    memory) and `images` / `image_mask` (decoded on access). A `Sequence`, so the
    trainer can index it and the predictor slice it."""

    def __init__(self, rows: "hf_datasets.Dataset", num_images: int, image_size: int,
                 extra: Mapping[str, Sequence[Any]] | None = None) -> None:
        super().__init__(CACHE_BYTES)
        require_columns(rows, "study_id")
        self.column = image_column(rows)
        self.ids = [str(s) for s in rows["study_id"]]
        if len(set(self.ids)) != len(self.ids):
            dup = next(s for s, c in Counter(self.ids).items() if c > 1)
            raise RefbenchError(f"the split holds study {dup!r} twice", key="study_id")
        self.extra = {k: list(v) for k, v in (extra or {}).items()}
        for key, values in self.extra.items():
            if len(values) != len(self.ids):
                raise RefbenchError(f"{len(values)} values of {key} for {len(self.ids)} studies")
        fmt = "numpy" if self.column == "slices" else None
        self.visual = rows.select_columns([self.column]).with_format(fmt)
        self.num_images, self.image_size = num_images, image_size

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, index: int) -> dict[str, Any]:
        stack = self.cached(index, lambda: study_stack(
            self.visual[index][self.column], self.column, self.ids[index], self.num_images,
            self.image_size), lambda s: s[0].nbytes)
        return {"index": index, "id": self.ids[index], "images": stack[0],
                "image_mask": stack[1], **{k: v[index] for k, v in self.extra.items()}}


def collate_images(features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """`images (B, K, 2, S, S)` and `image_mask (B, K)` of a list of study features."""
    return {"images": torch.from_numpy(np.stack([f["images"] for f in features])),
            "image_mask": torch.from_numpy(np.stack([f["image_mask"] for f in features]))}
