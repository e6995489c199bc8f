"""Pi-NAS's side of the runner and of the ranking benchmark, without training: recipe names
and shapes, the searched recipe's shipped settings, ranked predictions, the ranking
client's sampling, codes, jobs and option parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refbench.baselines.nas.pinas import ranking as pr
from refbench.baselines.nas.pinas.model import SupernetConfig
from refbench.baselines.nas.pinas.ranking import PinasRankingClient, TINY_SCORING
from refbench.baselines.nas.pinas.search import retrain_recipe
from refbench.config import load_recipe
from refbench.datasets.nasbench.spaces import ArchitectureError
from refbench.errors import RefbenchError

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = SupernetConfig(layers=[1, 1, 1, 1], stem_width=8, base_planes=16, min_attn_channels=32)


def test_recipes_follow_the_naming_convention() -> None:
    from refbench.registry import RECIPES, get_spec

    names = set(RECIPES.list("pinas*"))
    assert {"pinas-supernet_base_imagenet-val", "pinas-supernet_tiny_imagenet-val",
            "pinas-supernet_tiny_digits", "pinas_cls_imagenet-val", "pinas_tinycls_imagenet-val",
            "pinas_tiny_digits"} <= names
    for name in names:
        model, _variant, benchmark = name.split("_", 2)
        data = load_recipe(name)
        assert data["baseline"] == model and get_spec(benchmark).task.type in data["tasks"]
    # the paper's scale: SGD lr 0.03, cosine, 100 epochs, 192 images per step
    base = load_recipe("pinas-supernet_base_imagenet-val")
    assert (base["trainer"]["lr"], base["trainer"]["schedule"], base["trainer"]["epochs"],
            base["trainer"]["batch_size"]) == (0.03, "cosine", 100, 192)
    # the tiny siblings share the tiny space, on digits and on a synthesized ImageNet
    for name in ("pinas-supernet_tiny_digits", "pinas-supernet_tiny_imagenet-val",
                 "pinas_tiny_digits", "pinas_tinycls_imagenet-val"):
        assert load_recipe(name)["model"]["net"]["layers"] == [1, 1, 1, 1]


def test_searched_code_retrains_with_the_shipped_settings_of_its_shape() -> None:
    assert retrain_recipe(TINY, "digits") == "pinas_tiny_digits"
    assert retrain_recipe(TINY, "imagenet-val") == "pinas_tinycls_imagenet-val"
    assert retrain_recipe(SupernetConfig(), "imagenet-val") == "pinas_cls_imagenet-val"
    assert retrain_recipe(SupernetConfig(layers=[2, 1, 1, 1]), "digits") is None


def test_predictions_are_the_five_best_classes() -> None:
    from refbench.baselines.nas.pinas.baseline import ClassifierConfig, PinasClassifier

    model = PinasClassifier(ClassifierConfig(arch="0 1 2 3", net=TINY), num_classes=10).eval()
    images = torch.randn(3, 3, 32, 32)
    preds = model.predict({"images": images, "ids": ["a", "b", "c"]})
    logits = model.logits(images)
    for pred, row in zip(preds, logits):
        assert len(pred.value) == 5 and pred.value[0] == int(row.argmax())
        assert [row[c] for c in pred.value] == sorted(row[pred.value], reverse=True)


def test_client_samples_distinct_canonical_codes() -> None:
    client = PinasRankingClient()
    first = client.sample(20, seed=4)
    assert first == client.sample(20, seed=4) != client.sample(20, seed=5)
    assert len(set(first)) == 20 and all(len(c.split()) == 4 for c in first)
    assert len(client.sample(256, seed=0)) == 256  # the whole tiny space
    with pytest.raises(RefbenchError, match="fewer than 257"):
        client.sample(257, seed=0)


@pytest.mark.parametrize("code, message", [("0 1 2", "3 choices"), ("0 1 2 4", "out of range"),
                                           ("a b c d", "not an integer")])
def test_client_space_refuses_bad_codes(code: str, message: str, tmp_path: Path) -> None:
    from refbench.benchmarks.formats.nas_ranking import read_scores

    space = PinasRankingClient().space()
    assert space.canonical("3,0,1,3") == "3 0 1 3"
    with pytest.raises(ArchitectureError, match=message):
        space.canonical(code)
    path = tmp_path / "scores.txt"
    path.write_text(f"3 0 1 3\t1.5\n{code}\t2.0\n")
    with pytest.raises(RefbenchError, match=rf"scores.txt:2\b.*{message}"):
        read_scores(path, space)


def test_client_jobs_name_importable_targets(tmp_path: Path) -> None:
    from refbench.baselines.nas.ranking import Supernet
    from refbench.engine.jobs import check_jobs

    client = PinasRankingClient(supernet_steps=7, standalone_steps=9, cache_dir="C")
    jobs = [client.standalone_job("3 0 1 3", 1, tmp_path),
            client.supernet_job("spos-moco", 2, tmp_path),
            client.score_job(Supernet("pinas", 0, "runs/x"), ["3 0 1 3"], tmp_path)]
    check_jobs(jobs)
    assert jobs[0].kwargs["steps"] == 9 and jobs[0].kwargs["recipe"] == "pinas_tiny_digits"
    assert jobs[1].kwargs["steps"] == 7 and jobs[1].kwargs["method"] == "spos-moco"
    assert jobs[2].kwargs["overrides"] == list(TINY_SCORING)
    assert client.provenance()["truth_split"] == "validation"


def test_tiny_scoring_settings() -> None:
    assert TINY_SCORING == ("search.fitness.bn_iters=8", "search.fitness.probe_epochs=10",
                            "search.batch_size=64")
    assert pr._budget(5) == ["trainer.max_steps=5", "trainer.epochs=null",
                             "trainer.save_every=5"]
    assert pr._budget(None) == []


def test_override_sections() -> None:
    parts = pr._split_overrides(["search.fitness.bn_iters=2", "supernet.trainer.lr=0.1",
                                 "standalone.model.inherit=runs/x"])
    assert parts == {"search": ["search.fitness.bn_iters=2"], "supernet": ["trainer.lr=0.1"],
                     "standalone": ["model.inherit=runs/x"]}
    for bad in ("trainer.lr=1", "supernet", "search"):
        with pytest.raises(RefbenchError, match="overrides"):
            pr._split_overrides([bad])


def test_demo_job_references_and_majority_floor(tmp_path: Path) -> None:
    from refbench.baselines.nas.demo_jobs import PINAS_STEPS, majority_class, pinas, validation_labels
    from refbench.benchmarks.formats.image_classification import read_submission
    from refbench.datasets.base import get_builder
    from refbench.registry import get_spec

    job = pinas()
    assert (job.benchmark, job.recipe, PINAS_STEPS) == ("digits", "pinas-supernet_tiny_digits", 40)
    spec = get_spec("digits")
    builder = get_builder("digits")
    root, cache = builder.synthesize(tmp_path / "digits"), tmp_path / "cache"
    builder.prepare(root, cache, configs=["default"])
    _kind, labels = read_submission(validation_labels(root), spec)
    assert len(labels) == 359 and sorted(labels)[:2] == ["00003", "00008"]  # rows i % 5 == 3
    floor = majority_class(spec, str(cache))
    assert set(floor) == set(labels) and len(set(floor.values())) == 1
    with pytest.raises(RefbenchError, match="digits.csv.gz"):
        validation_labels(tmp_path / "empty")
