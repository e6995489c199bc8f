"""Every registered dataset, metric, benchmark and baseline honours its contract.

These tests iterate the registries, so a new entry is covered without touching them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from refbench.benchmarks.formats import FORMATS, SubmissionFormat
from refbench.registry import BASELINES, BENCHMARKS, DATASETS, DEMOS, METRICS, SEARCHES


class _Prepared(dict):
    """Each dataset synthesized small and prepared once, on first use: (root, cache)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.factory = factory

    def __missing__(self, name: str) -> tuple[Path, Path]:
        base = self.factory.mktemp(f"contract-{name}")
        builder = DATASETS.get(name)()
        root = builder.synthesize(base / "src", n=40, seed=1)
        builder.prepare(root, base / "cache")
        self[name] = (root, base / "cache")
        return self[name]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return _Prepared(tmp_path_factory)


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name: str, prepared: dict[str, tuple[Path, Path]]) -> None:
    import datasets as hf_datasets

    from refbench.datasets.base import DatasetBuilder, load_prepared, read_manifest

    cls = DATASETS.get(name)
    assert issubclass(cls, DatasetBuilder)
    builder = cls()
    for attr in ("name", "version", "license", "citation"):
        assert getattr(builder, attr), attr
    assert builder.name == name and builder.layout()
    root, cache = prepared[name]
    assert builder.check(root).ok
    manifest = read_manifest(builder.cache_path(cache))
    assert manifest["fingerprint"] and manifest["sources"]
    for config in builder.configs():
        assert set(manifest["splits"][config]) == set(builder.splits(config))
        for split in builder.splits(config):
            ds = load_prepared(name, split=split, config=config, cache_dir=str(cache))
            assert isinstance(ds, hf_datasets.Dataset) and len(ds) > 0
            assert ds.features is not None and len(ds.features) > 0


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_contract(name: str) -> None:
    from refbench.evaluation.base import Metric

    entry = METRICS.entry(name)
    assert issubclass(entry.obj, Metric)
    assert "version" in entry.meta and "higher_is_better" in entry.meta
    assert entry.obj.keys, "metric keys must be documented"


@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_benchmark_contract(name: str, prepared: dict[str, tuple[Path, Path]],
                            tmp_path: Path) -> None:
    """Spec references resolve; the references written as predictions score and
    round-trip through the submission format."""
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.datasets.base import load_prepared

    spec = BENCHMARKS.get(name)
    assert spec.dataset.name in DATASETS
    builder = DATASETS.get(spec.dataset.name)()
    assert builder.version == spec.dataset.version
    entry = METRICS.entry(spec.metric.name)
    assert str(entry.meta["version"]) == spec.metric.version
    fmt = FORMATS.get(spec.submission.format)()
    if fmt.references_required:
        pytest.skip("scored against an official label folder only: covered by golden tests")
    _, cache = prepared[spec.dataset.name]
    assert spec.split in builder.splits(spec.dataset.config)
    assert spec.train_split in builder.splits(spec.dataset.config)
    rows = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                         cache_dir=str(cache))
    refs = fmt.references_from_dataset(rows, spec)
    path = tmp_path / spec.submission.filename
    fmt.write(path, fmt.perfect_predictions(refs), spec)
    first = fmt.read(path, spec)
    assert set(first) == set(refs)
    again = tmp_path / "again" / spec.submission.filename
    fmt.write(again, first, spec)  # what a format reads, it can write back
    assert set(fmt.read(again, spec)) == set(first)
    needs = entry.obj.weight_dependent_keys.get(spec.primary)
    if needs is not None and not spec.metric.kwargs().get(needs):
        # a primary key computed only from user-supplied weights: without them, a one-line
        # error naming the option, never a number (the family's tests score it with weights)
        from refbench.errors import RefbenchError

        with pytest.raises(RefbenchError, match=needs) as info:
            evaluate_file(spec, path, cache_dir=str(cache))
        assert "\n" not in str(info.value)
        return
    result = evaluate_file(spec, path, cache_dir=str(cache))
    assert spec.primary in result.metrics
    assert all(math.isfinite(v) for v in result.metrics.values())
    # the missing / extra policy's counts, with nothing missing or extra
    assert {k: result.counts[k] for k in ("missing", "extra")} == {"missing": 0, "extra": 0}
    assert result.counts["references"] == result.counts["predictions"] == len(refs)
    assert not any("prediction id(s)" in w or "have no prediction" in w
                   for w in result.warnings)


@pytest.mark.parametrize("name", FORMATS.names())
def test_format_declares_its_missing_and_extra_policy(name: str) -> None:
    """Every format says how missing and extra ids are treated (one policy, see
    `refbench.benchmarks.scoring.check_ids`), in words the warning line can quote."""
    fmt = FORMATS.get(name)
    assert fmt.missing in ("score", "refuse") and fmt.extra in ("ignore", "score")
    assert fmt.missing_scored_as.strip() and fmt.extra_scored_as.strip()
    if fmt.extra == "score":  # it must say what an extra id is scored against
        assert fmt.extra_reference is not SubmissionFormat.extra_reference


@pytest.mark.parametrize("name", BASELINES.names())
def test_baseline_contract(name: str) -> None:
    from refbench.baselines.base import Baseline
    from refbench.config import load_recipe
    from refbench.registry import RECIPES

    cls = BASELINES.get(name)
    assert issubclass(cls, Baseline)
    assert dataclasses.is_dataclass(cls.Config)
    recipes = RECIPES.list(f"{name}_*")
    assert recipes, f"baseline {name} has no recipe"
    for recipe in recipes:
        data = load_recipe(recipe)
        model, variant, bench = recipe.split("_", 2)
        assert model == name and data.get("baseline", name) == name
        if not variant.startswith("tiny"):
            siblings = {f"{model}_tiny_{bench}", f"{model}_tiny{variant}_{bench}"}
            assert siblings & set(recipes), f"{recipe} has no tiny sibling"


@pytest.mark.parametrize("name", SEARCHES.names())
def test_search_contract(name: str) -> None:
    from refbench.options import Option
    from refbench.search import Search

    cls = SEARCHES.get(name)
    assert issubclass(cls, Search) and cls.summary and (cls.__doc__ or "").strip()
    assert all(isinstance(o, Option) for o in cls.options)
    assert set(cls.required) <= {o.name for o in cls.options}


@pytest.mark.parametrize("name", DEMOS.names())
def test_demo_job_contract(name: str) -> None:
    """A demo job names a benchmark, a baseline and a recipe that exist and agree."""
    from refbench.config import load_recipe
    from refbench.demo import DemoJob

    job = DEMOS.get(name)()
    assert isinstance(job, DemoJob) and job.size > 0 and job.trivial_name
    spec = BENCHMARKS.get(job.benchmark)
    assert job.baseline in BASELINES
    assert load_recipe(job.recipe).get("baseline", job.baseline) == job.baseline
    assert spec.dataset.name in DATASETS


@pytest.mark.parametrize("name", FORMATS.names())
def test_format_contract(name: str) -> None:
    from refbench.options import Option

    cls = FORMATS.get(name)
    assert issubclass(cls, SubmissionFormat)
    assert all(isinstance(o, Option) for o in cls.read_options)
