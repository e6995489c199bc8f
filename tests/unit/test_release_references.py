"""`--references` may be a dataset's release folder for formats whose label source is the
release itself: the references of the spec's split are read through the builder's own
parser (reports from an IU X-ray or Chinese report release, labels from the digits
file), and they equal the prepared split's."""

from __future__ import annotations

from pathlib import Path

import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.datasets.base import get_builder
from refbench.errors import RefbenchError
from refbench.registry import get_spec


@pytest.mark.parametrize("benchmark", ["iu-xray-r2gen", "digits", "cx-chr-reports"])
def test_a_release_folder_gives_the_prepared_splits_references(tmp_path: Path,
                                                                benchmark: str) -> None:
    spec = get_spec(benchmark)
    builder = get_builder(spec.dataset.name)
    root = builder.synthesize(tmp_path / "release", n=30, seed=3)
    fmt = FORMATS.get(spec.submission.format)()
    from_release = fmt.read_references(root, spec)
    config = spec.dataset.config or builder.configs()[0]
    split = builder.generate(root, config)[builder.canonical_split(spec.split)]
    assert from_release.keys() == fmt.references_from_dataset(split, spec).keys()
    assert len(from_release) > 0


def test_a_folder_that_is_no_release_is_one_line(tmp_path: Path) -> None:
    spec = get_spec("iu-xray-r2gen")
    with pytest.raises(RefbenchError) as info:
        FORMATS.get(spec.submission.format)().read_references(tmp_path, spec)
    assert "\n" not in str(info.value)
