"""Every registered dataset, metric, benchmark and baseline honours its contract.

These tests iterate the registries, so a new entry is covered without touching them.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.registry import BASELINES, BENCHMARKS, DATASETS, METRICS


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each dataset synthesized small and prepared once (root, cache)."""
    out = {}
    for name in DATASETS.names():
        base = tmp_path_factory.mktemp(f"contract-{name}")
        builder = DATASETS.get(name)()
        root = builder.synthesize(base / "src", n=40, seed=1)
        builder.prepare(root, base / "cache")
        out[name] = (root, base / "cache")
    return out


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
    if spec.submission.format == "glue_dir":
        pytest.skip("whole-benchmark format: covered by its golden tests")
    _, cache = prepared[spec.dataset.name]
    assert spec.split in builder.splits(spec.dataset.config)
    assert spec.train_split in builder.splits(spec.dataset.config)
    rows = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                         cache_dir=str(cache))
    refs = fmt.references_from_dataset(rows, spec)
    path = tmp_path / spec.submission.filename
    if spec.submission.format == "squad_json":  # a reference is a list of gold texts
        perfect = {qid: golds[0] if golds else "" for qid, golds in refs.items()}
        fmt.write(path, perfect, spec)
        assert {k: v["text"] for k, v in fmt.read(path, spec).items()} == perfect
    else:
        fmt.write(path, refs, spec)
        assert fmt.read(path, spec) == pytest.approx(refs)
    result = evaluate_file(spec, path, cache_dir=str(cache))
    assert spec.primary in result.metrics
    assert all(math.isfinite(v) for v in result.metrics.values())


@pytest.mark.parametrize("name", BASELINES.names())
def test_baseline_contract(name: str) -> None:
    from refbench.baselines.base import Baseline
    from refbench.config import RECIPES_DIR, load_recipe

    cls = BASELINES.get(name)
    assert issubclass(cls, Baseline)
    assert dataclasses.is_dataclass(cls.Config)
    recipes = [p.stem for p in RECIPES_DIR.glob(f"{name}_*.yaml")]
    assert recipes, f"baseline {name} has no recipe"
    for recipe in recipes:
        data = load_recipe(recipe)
        model, variant, bench = recipe.split("_", 2)
        assert model == name and data.get("baseline", name) == name
        if not variant.startswith("tiny"):
            siblings = {f"{model}_tiny_{bench}", f"{model}_tiny{variant}_{bench}"}
            assert siblings & set(recipes), f"{recipe} has no tiny sibling"
