"""Preparing datasets whose images stay on disk (ImageNet, ImageFolder trees).

`datasets.Dataset.save_to_disk` embeds the bytes of every local file an `Image` column
names, which would copy a 150 GB release into the cache. `save_references` writes a
split whose `image.path` column keeps the reference instead: the folder is laid out by
`save_to_disk` itself (called on zero rows, so state.json and dataset_info.json are the
library's own) and its data file is then written by `ArrowWriter` without embedding, so
`datasets.load_from_disk` reads it like any other split.

`OnDiskImageBuilder.prepare_chunks` prepares every config this way. The manifest hashes
the label and list files (`source_files`) by content and the images by listing (path
relative to the root and byte size, in one digest under the key `images`), since reading
every image to hash it would take as long as a training epoch.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refbench.datasets.base import MANIFEST, ChunkedDatasetBuilder
from refbench.io import atomic_write_json, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import datasets as hf_datasets


def save_references(ds: "hf_datasets.Dataset", path: Path) -> None:
    """Save `ds` for `load_from_disk` without embedding the files its images name."""
    from datasets.arrow_writer import ArrowWriter

    from refbench.datasets.base import save_quietly

    save_quietly(ds.select([]), path)  # zero rows: state.json, dataset_info.json, no data
    state = json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
    for old in state["_data_files"]:
        (Path(path) / old["filename"]).unlink(missing_ok=True)
    name = "data-00000-of-00001.arrow"
    state["_data_files"] = [{"filename": name}]
    state["_split"] = None if ds.split is None else str(ds.split)
    atomic_write_json(Path(path) / "state.json", state)
    writer = ArrowWriter(features=ds.features, path=str(Path(path) / name))
    try:
        for table in ds.with_format("arrow").iter(10_000):
            writer.write_table(table)
        writer.finalize()
    finally:
        writer.close()


class OnDiskImageBuilder(ChunkedDatasetBuilder):
    """A builder whose splits name image files instead of holding their bytes."""

    @abstractmethod
    def image_files(self, root: Path, config: str) -> list[Path]:
        """Every image file the splits of `config` name (hashed by listing)."""

    def prepare_chunks(self, root: Path, tmp: Path, work: Path, progress: bool
                       ) -> dict[str, Any]:
        from refbench import __version__

        started = time.time()
        root = Path(root)
        splits: dict[str, dict[str, int]] = {}
        sources: dict[str, str] = {}
        listing = hashlib.sha256()
        images: set[Path] = set()
        for config in self.configs():
            data = {self.canonical_split(s): ds for s, ds in self.generate(root, config).items()}
            for split, ds in data.items():
                save_references(ds, tmp / config / split)
            splits[config] = {split: len(ds) for split, ds in data.items()}
            for path in self.source_files(root, config):
                sources[path.relative_to(root).as_posix()] = sha256_file(path)
            images.update(self.image_files(root, config))
            if progress:
                counts = ", ".join(f"{s}={n:,}" for s, n in splits[config].items())
                print(f"prepared {self.name}/{config}: {counts}", flush=True)
        for path in sorted(images):
            listing.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\n"
                           .encode())
        sources["images"] = listing.hexdigest()
        digest = hashlib.sha256(f"{self.name}@{self.version}".encode())
        for rel, sha in sorted(sources.items()):
            digest.update(f"{rel}\0{sha}\n".encode())
        manifest = {
            "name": self.name, "version": self.version, "refbench_version": __version__,
            "source_root": str(root.resolve()), "splits": splits, "sources": sources,
            "images": len(images), "fingerprint": digest.hexdigest(),
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.time() - started, 3),
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        return manifest
