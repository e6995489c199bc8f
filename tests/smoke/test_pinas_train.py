"""Pi-NAS on real images (scikit-learn's bundled digits, no download): the supernet trains
through the engine with each method, the search scores it, the chosen code retrains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refbench.baselines.nas.pinas.baseline import PinasClassifier, PinasSupernet
from refbench.config import TrainerConfig, from_dict, load_recipe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    from refbench.datasets.images.digits import DigitsBuilder, bundled_file

    builder = DigitsBuilder()
    return builder.generate(bundled_file().parent, builder.configs()[0])


def _fit(model: torch.nn.Module, recipe: str, rows, run: Path, steps: int) -> None:  # type: ignore[no-untyped-def]
    from refbench.engine import Trainer

    cfg = from_dict(TrainerConfig, load_recipe(recipe)["trainer"])
    cfg.max_steps, cfg.save_every, cfg.progress, cfg.batch_size = steps, 0, False, 32
    Trainer(model, cfg, run, model.encode(rows), model.collate).fit()


def _accuracy(model, rows) -> float:  # type: ignore[no-untyped-def]
    from refbench.runner import predict_rows

    preds = predict_rows(model, rows, 256)
    assert set(preds) == set(rows["id"])
    assert all(len(p) == 5 == len(set(p)) and set(p) <= set(range(10)) for p in preds.values())
    return sum(int(preds[r["id"]][0]) == r["label"] for r in rows) / len(rows)


@pytest.mark.parametrize("method", ["pinas", "spos-moco", "spos-supervised"])
def test_supernet_trains_and_is_searched(method: str, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from refbench.baselines.nas.pinas.fitness import FitnessConfig, fitness, train_shared_probe
    from refbench.baselines.nas.pinas.lanas import LanasConfig, LanasSearch
    from refbench.baselines.nas.pinas.search import PinasSearchConfig, _Data

    torch.manual_seed(0)
    recipe = load_recipe("pinas-supernet_tiny_digits")
    model_cfg = dict(recipe["model"], method=method)
    model_cfg["moco"] = dict(model_cfg["moco"], queue_len=256)
    model = PinasSupernet.create(model_cfg, None, digits["train"], tmp_path)  # type: ignore[arg-type]
    _fit(model, "pinas-supernet_tiny_digits", digits["train"], tmp_path / "run", 15)
    accuracy = _accuracy(model, digits["validation"])  # every row predicted, a valid label
    if method == "spos-supervised":
        assert accuracy > 0.14  # chance is 0.1; 0.18 after these 15 seeded steps
    cfg = PinasSearchConfig(batch_size=32, fitness=FitnessConfig(bn_iters=2, probe_epochs=2,
                                                                 probe_lr=1.0))
    data = _Data(digits["train"].select(range(400)), 32, None, cfg)
    net = model.learner.supernet
    head = train_shared_probe(net, data.batches(data.train, True), 10, cfg.fitness)
    calib, held = data.batches(data.calib, True, cycle=True), data.batches(data.heldout, False)
    search = LanasSearch(net.space, LanasConfig(initial_sample=4, selects=2, max_samples=6), 0)
    scored = search.run(lambda code: fitness(net, code, calib, held, cfg.fitness, head))
    assert len(scored) == 6 and all(0 <= s.fitness <= 100 for s in scored)


def test_chosen_architecture_retrains(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    recipe = load_recipe("pinas_tiny_digits")
    model = PinasClassifier.create(recipe["model"], None, digits["train"], tmp_path)  # type: ignore[arg-type]
    assert model.net.arch == (3, 0, 1, 3)
    _fit(model, "pinas_tiny_digits", digits["train"], tmp_path / "run", 60)
    assert _accuracy(model, digits["validation"]) > 0.5
