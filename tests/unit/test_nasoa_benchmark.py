"""NASOA's tasks (graded synthetic, the image layouts, refusals) and the
fine-tune-under-budget benchmark's outputs (result.json per generator, summary, plot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from refbench.baselines.nas.nasoa.benchmark import BENCHMARK, BenchmarkConfig, run_benchmark
from refbench.baselines.nas.nasoa.tasks import GRADES, TEST_PER_CLASS, load_task, synthetic_task
from refbench.errors import RefbenchError
from refbench.results import load_result

from .test_nasoa_generators import tiny_zoo

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_zoo(tmp_path_factory.mktemp("nasoa") / "zoo")


def _imagefolder(root: Path, classes: int, per_class: int, splits: tuple[str, ...]) -> Path:
    from PIL import Image

    for split in splits:
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for k in range(per_class):
                Image.new("RGB", (10, 12), (40 * c, 5 * k, 100)).save(folder / f"{k}.png")
    return root


def test_graded_synthetic_tasks_are_deterministic_and_graded() -> None:
    assert GRADES["easy"][0] < GRADES["medium"][0] < GRADES["hard"][0]
    easy, again = synthetic_task("easy", 3, 16), synthetic_task("easy", 3, 16)
    assert torch.equal(easy.train_x, again.train_x) and torch.equal(easy.test_y, again.test_y)
    assert not torch.equal(easy.train_x, synthetic_task("easy", 4, 16).train_x)
    assert easy.train_x.shape == (4 * GRADES["easy"][1], 3, 16, 16)
    assert easy.train_x.dtype == torch.uint8 and len(easy.test_y) == 4 * TEST_PER_CLASS
    f = easy.features()
    assert set(f) == {"log_train", "log_classes", "per_class", "probe"} and 0 <= f["probe"] <= 1
    hard = synthetic_task("hard", 3, 16)
    assert hard.num_classes == 16 and hard.features()["probe"] < f["probe"]


def test_tasks_from_the_image_layouts(tmp_path: Path) -> None:
    root = _imagefolder(tmp_path / "folder", 3, 4, ("train", "test"))
    task = load_task(f"imagefolder:{root}", 8)
    assert task.classes == ["class0", "class1", "class2"] and task.test_from == "test"
    assert task.train_x.shape == (12, 3, 8, 8) and len(task.test_y) == 12
    flat = _imagefolder(tmp_path / "flat", 2, 5, ("train",))
    held = load_task(f"imagefolder:{flat}", 8)
    assert held.test_from == "train[4::5]" and len(held.test_y) == 2 and len(held.train_y) == 8
    digits = load_task("digits", 8)
    assert digits.num_classes == 10 and len(digits.train_y) == 1079 and len(digits.test_y) == 359


@pytest.mark.parametrize("spec, message", [
    ("mnist:x", "unknown task layout 'mnist'"),
    ("synthetic:impossible", "unknown synthetic grade 'impossible'"),
    ("synthetic:easy:x", "seed 'x' is not an integer"),
    ("imagefolder", "needs a folder: imagefolder:ROOT"),
])
def test_bad_task_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(RefbenchError, match=message) as info:
        load_task(spec)
    assert "\n" not in str(info.value)


def test_missing_file_and_single_class_tasks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="task folder not found"):
        load_task(f"imagefolder:{tmp_path / 'nowhere'}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RefbenchError, match="must be a folder"):
        load_task(f"imagefolder:{tmp_path / 'file'}")
    one = _imagefolder(tmp_path / "one", 1, 3, ("train", "test"))
    with pytest.raises(RefbenchError, match="has 1 class"):
        load_task(f"imagefolder:{one}")
    broken = _imagefolder(tmp_path / "broken", 2, 2, ("train",))
    (broken / "train" / "class0" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # truncated
    with pytest.raises(RefbenchError) as info:
        load_task(f"imagefolder:{broken}")
    assert "0.png" in str(info.value) and "\n" not in str(info.value)


def _config(**kw: object) -> BenchmarkConfig:
    base = dict(tasks=["synthetic:easy:1"], budgets=["4steps", "12steps"],
                generators=["online", "random", "largest-default"], seeds=[0, 1], trials=2,
                warmup_tasks=["synthetic:easy:100"], warmup=2)
    base.update(kw)
    return BenchmarkConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("change, message", [
    (dict(budgets=["0steps"]), "positive finite"),
    (dict(budgets=["-2s"]), "positive finite"),
    (dict(budgets=["3steps", "3"]), "listed twice"),
    (dict(generators=["online", "grid"]), "unknown schedule generator 'grid'"),
    (dict(seeds=[]), "at least one seed"),
    (dict(warmup=1), "warmup >= 2"),
    (dict(warmup_tasks=["synthetic:easy:1"]), "must not be benchmark tasks"),
    (dict(tasks=["synthetic:nope"]), "unknown synthetic grade"),
    (dict(tasks=["synthetic:easy:1", "synthetic:easy:1"]), "listed twice"),
])
def test_bad_benchmark_settings_write_nothing(change: dict, message: str, zoo_dir: Path,
                                              tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match=message):
        run_benchmark(zoo_dir, tmp_path / "out", _config(**change), progress=lambda s: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # about 5 s alone, over 10 s on a busy 2-core machine
def test_the_benchmark_writes_results_per_generator(zoo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    config = _config(generators=["online", "largest-default"])  # optuna: generator tests, smoke
    summary = run_benchmark(zoo_dir, out, config, recipe="test", progress=lambda s: None)
    assert set(summary["generators"]) == {"online", "largest-default"}
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 2 * 2 * 1 * 2  # seeds x generators x tasks x budgets
    assert all(r["steps"] == r["planned_steps"] == int(r["budget"][:-5]) for r in runs)
    for name in summary["generators"]:
        result = load_result(out / name / "result.json")
        assert result.benchmark == BENCHMARK and result.primary == "accuracy"
        assert set(result.metrics) >= {"accuracy", "accuracy@4steps", "accuracy@12steps",
                                       "choose_seconds"}
        assert result.directions["choose_seconds"] == "lower"
        assert result.aggregate is not None and result.aggregate["seeds"] == [0, 1]
        mine = [r["accuracy"] for r in runs if r["generator"] == name]
        assert result.metrics["accuracy"] == pytest.approx(sum(mine) / len(mine), abs=1e-3)
        doc = json.loads((out / name / "result.json").read_text())
        assert doc["provenance"]["machine"]["torch_threads"] == 1
        assert len(doc["provenance"]["choices"]) == 4
    assert "warmup_seconds" in summary["generators"]["online"]["mean"]
    assert {r["trials"] for r in runs} == {0}  # neither trains a candidate to choose
    assert load_result(out / "result.json").model.name == "online"  # type: ignore[union-attr]
    svg = (out / "accuracy_vs_budget.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "12steps" in svg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # the scratch folder is gone


def test_real_cifar10_images_as_a_task(shared_data: Path, tmp_path: Path) -> None:
    """The 50 real CIFAR-10 test images (5 per class), split 4 train / 1 test per class."""
    source = shared_data / "cifar10" / "imagefolder_jpg" / "test"
    if not source.is_dir():
        pytest.skip(f"no real CIFAR-10 ImageFolder sample at {source}")
    root = tmp_path / "cifar"
    for folder in sorted(source.iterdir()):
        for image in sorted(folder.iterdir()):
            split = "test" if image.stem.endswith("4") else "train"
            (root / split / folder.name).mkdir(parents=True, exist_ok=True)
            (root / split / folder.name / image.name).symlink_to(image)
    task = load_task(f"imagefolder:{root}", 32)
    assert task.classes[:3] == ["airplane", "automobile", "bird"] and task.num_classes == 10
    assert len(task.train_y) == 40 and len(task.test_y) == 10
    from PIL import Image

    with Image.open(source / "airplane" / "0000.jpg") as first:
        expected = torch.from_numpy(__import__("numpy").asarray(first.convert("RGB")))
    assert torch.equal(task.train_x[0].permute(1, 2, 0), expected)  # 32 px: no resampling
