"""Choice files: the benchmark writes one per generator and task (plus a recipe per budget),
`refbench train nasoa` applies one (zoo member, pretrained weights, lr, batch size, steps)
and records which file drove the run; bad choice files are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from refbench.baselines.nas.nasoa.baseline import MODEL_FILE, NasoaBaseline, check_trainer
from refbench.baselines.nas.nasoa.benchmark import BenchmarkConfig, run_benchmark
from refbench.baselines.nas.nasoa.choices import (CHOICE_FORMAT, check_zoo, read_choice,
                                                  task_slug, yaml_float)
from refbench.baselines.nas.nasoa.zoo import load_zoo
from refbench.errors import RefbenchError
from refbench.io import sha256_file
from refbench.registry import get_spec
from tests.helpers import run_cli
from tests.unit.test_nasoa_generators import tiny_zoo

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny zoo and a benchmark run (largest-default, 2 seeds, 2 budgets, 2 tasks)."""
    base = tmp_path_factory.mktemp("nasoa-choices")
    zoo = tiny_zoo(base / "zoo")
    cfg = BenchmarkConfig(tasks=["synthetic:easy:1", "synthetic:medium:1"],
                          budgets=["2steps", "3steps"],
                          generators=["largest-default"], seeds=[0, 1], warmup_tasks=[])
    run_benchmark(zoo, base / "bench", cfg, recipe="test", progress=lambda s: None)
    return {"base": base, "zoo": zoo, "choices": base / "bench" / "largest-default" / "choices"}


def _doc(bench: dict[str, Path]) -> dict:
    return json.loads((bench["choices"] / "synthetic_easy_1.json").read_text())


def _write(tmp_path: Path, doc: object, text: str | None = None) -> Path:
    path = tmp_path / "choice.json"
    path.write_text(text if text is not None else json.dumps(doc))
    return path


def test_the_benchmark_writes_a_choice_file_per_task_and_a_recipe_per_budget(
        bench: dict[str, Path]) -> None:
    names = sorted(p.name for p in bench["choices"].iterdir())
    assert names == ["synthetic_easy_1.json", "synthetic_easy_1@2steps.yaml",
                     "synthetic_easy_1@3steps.yaml", "synthetic_medium_1.json",
                     "synthetic_medium_1@2steps.yaml", "synthetic_medium_1@3steps.yaml"]
    doc = _doc(bench)
    zoo = load_zoo(bench["zoo"])
    assert doc["format"] == CHOICE_FORMAT and doc["task"] == "synthetic:easy:1"
    assert doc["generator"] == "largest-default" and doc["benchmark"] == "nasoa-finetune-budget@1"
    assert doc["zoo_index_sha256"] == sha256_file(bench["zoo"] / "zoo.json")
    assert [(c["seed"], c["budget"]) for c in doc["choices"]] == [
        (0, "2steps"), (0, "3steps"), (1, "2steps"), (1, "3steps")]
    first = doc["choices"][0]
    assert first["model"] == zoo.largest.name and first["code"] == zoo.largest.code
    assert (first["lr"], first["batch_size"], first["steps"]) == (0.003, 32, 2)
    runs = [json.loads(line) for line in
            (bench["choices"].parent.parent / "runs.jsonl").read_text().splitlines()]
    easy = next(r["accuracy"] for r in runs if r["task"] == "synthetic:easy:1")
    assert first["accuracy"] == round(easy, 4)
    recipe = yaml.safe_load((bench["choices"] / "synthetic_easy_1@3steps.yaml").read_text())
    choice_file = bench["choices"] / "synthetic_easy_1.json"
    assert recipe["model"] == {"schedule": str(choice_file.resolve()),
                               "schedule_budget": "3steps", "schedule_seed": 0,
                               "schedule_sha256": sha256_file(choice_file)}
    assert recipe["trainer"]["max_steps"] == 3 and recipe["trainer"]["lr"] == 0.003
    assert recipe["trainer"]["batch_size"] == 32 and recipe["base"] == "nasoa_tiny_digits"


def test_reading_picks_the_entry_by_budget_and_seed(bench: dict[str, Path]) -> None:
    path = bench["choices"] / "synthetic_easy_1.json"
    choice = read_choice(path, "3steps")
    assert (choice.entry.seed, choice.entry.steps, choice.task) == (0, 3, "synthetic:easy:1")
    assert read_choice(path, "2steps", 1).entry.seed == 1
    assert choice.sha256 == sha256_file(path) and choice.zoo == bench["zoo"].resolve()
    check_zoo(choice, load_zoo(bench["zoo"]))
    assert task_slug("imagefolder:/data/flowers 102") == "imagefolder_data_flowers_102"
    assert yaml_float(1e-5) == "1.0e-05" and yaml.safe_load(yaml_float(1e-5)) == 1e-5


@pytest.mark.parametrize("change, message, where", [
    (lambda d: d.update(format="x"), "not a refbench-nasoa-choice file", "[format]"),
    (lambda d: d.update(version=2), "unsupported choice file version 2", "[version]"),
    (lambda d: d.pop("zoo"), "missing or empty 'zoo'", "[zoo]"),
    (lambda d: d.update(choices=[]), "holds no choice", "[choices]"),
    (lambda d: d["choices"][1].pop("lr"), "no 'lr'", "[choices[1].lr]"),
    (lambda d: d["choices"][0].update(lr=float("nan")), "not a finite number",
     "[choices[0].lr]"),
    (lambda d: d["choices"][0].update(lr=-0.1), "out of range", "[choices[0].lr]"),
    (lambda d: d["choices"][0].update(steps=0), "must be >= 1", "[choices[0].steps]"),
    (lambda d: d["choices"][0].update(batch_size="32"), "expected int", "[choices[0].batch_size]"),
    (lambda d: d["choices"].append(dict(d["choices"][0])), "seed 0 under 2steps is listed twice",
     "[choices[4]]"),
])
def test_malformed_choice_files_are_one_line_errors(bench: dict[str, Path], tmp_path: Path,
                                                    change, message: str, where: str) -> None:  # type: ignore[no-untyped-def]
    doc = _doc(bench)
    change(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(RefbenchError) as info:
        read_choice(path, "2steps")
    text = str(info.value)
    assert message in text and where in text and str(path) in text and "\n" not in text


def test_missing_folder_invalid_json_and_selection_errors(bench: dict[str, Path],
                                                         tmp_path: Path) -> None:
    easy = bench["choices"] / "synthetic_easy_1.json"
    cases = [
        (lambda: read_choice(tmp_path / "nope.json"), "choice file not found"),
        (lambda: read_choice(tmp_path), "not a folder"),
        (lambda: read_choice(_write(tmp_path, None, '{"format":\n  oops}')), ":2: invalid JSON"),
        (lambda: read_choice(easy), "pick one with model.schedule_budget"),
        (lambda: read_choice(easy, "9steps"), "no choice under budget '9steps'"),
        (lambda: read_choice(easy, "2steps", 7), "no choice of seed 7"),
        (lambda: read_choice(easy, "2steps", sha256="0" * 64),
         "the choice file changed"),
    ]
    for call, message in cases:
        with pytest.raises(RefbenchError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)


def test_a_member_absent_from_the_zoo_or_another_zoo_is_refused(bench: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    doc = _doc(bench)
    doc["choices"][0]["model"] = "m9"
    path = _write(tmp_path, doc)
    spec = get_spec("digits")
    with pytest.raises(RefbenchError,
                       match=r"\[model\]: the choice names zoo member .m9., absent from zoo"):
        NasoaBaseline.validate_config({"schedule": str(path), "schedule_budget": "2steps"}, spec)
    doc = _doc(bench)
    doc["zoo_index_sha256"] = "f" * 64
    path = _write(tmp_path, doc)
    with pytest.raises(RefbenchError, match="not the zoo this choice was made from"):
        NasoaBaseline.validate_config({"schedule": str(path), "schedule_budget": "2steps"}, spec)
    for cfg, message in (({"schedule": str(path), "member": "m0"}, "drop model.member"),
                         ({"schedule_seed": 1}, "need a choice file")):
        with pytest.raises(RefbenchError, match=message):
            NasoaBaseline.validate_config(cfg, spec)


def test_a_trainer_other_than_the_choice_is_refused_with_the_fix(bench: dict[str, Path]) -> None:
    choice = read_choice(bench["choices"] / "synthetic_easy_1.json", "3steps")
    check_trainer(choice, 32, 3)
    with pytest.raises(RefbenchError) as info:
        check_trainer(choice, 64, 150)
    text = str(info.value)
    assert "--set trainer.batch_size=32 --set trainer.max_steps=3" in text and "\n" not in text
    assert "synthetic_easy_1@3steps.yaml" in text


def test_the_baseline_loads_the_chosen_member_and_optimizer(bench: dict[str, Path],
                                                           tmp_path: Path) -> None:
    import datasets as hf
    import torch

    from refbench.config import TrainerConfig

    rows = hf.Dataset.from_dict({"id": ["a", "b"], "label": [0, 1]}, features=hf.Features(
        {"id": hf.Value("string"), "label": hf.ClassLabel(names=["x", "y"])}))
    path = bench["choices"] / "synthetic_easy_1.json"
    cfg = {"schedule": str(path), "schedule_budget": "3steps", "schedule_seed": 1}
    model = NasoaBaseline.create(cfg, get_spec("digits"), rows, tmp_path)
    zoo = load_zoo(bench["zoo"])
    pretrained = zoo.load_model(zoo.largest.name).state_dict()
    mine = model.net.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in pretrained.items() if not k.startswith("fc."))
    assert model.net.fc.out_features == 2 and model.member == zoo.largest.name
    saved = json.loads((tmp_path / MODEL_FILE).read_text())
    assert saved["choice"]["sha256"] == sha256_file(path) and saved["choice"]["seed"] == 1
    assert saved["zoo"] == str(zoo.folder.resolve())
    opt = model.configure_optimizer(TrainerConfig(lr=0.5, weight_decay=0.0, batch_size=32,
                                                  max_steps=3))
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.003, 0.9, 1e-4)
    with pytest.raises(RefbenchError, match="trainer.max_steps=3"):
        model.configure_optimizer(TrainerConfig(lr=0.5, batch_size=32, max_steps=150))


@pytest.mark.slow  # synthesizes and prepares digits and trains twice: about 15 s loaded
def test_train_applies_a_choice_end_to_end(bench: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`refbench train nasoa --recipe <choice recipe>`: the chosen member's pretrained
    weights, the chosen lr / batch / steps, the choice file's sha256 in the run's record;
    `--set model.schedule=PATH` alone on the default recipe sets the trainer from it."""
    import torch

    from refbench.engine import find_checkpoint

    base = bench["base"]
    root, cache, runs = base / "digits", base / "cache", base / "runs"
    assert run_cli(["datasets", "synthesize", "digits", "--out", str(root)]) == 0
    assert run_cli(["datasets", "prepare", "digits", "--root", str(root),
                    "--cache-dir", str(cache)]) == 0
    common = ["--output-dir", str(runs), "--cache-dir", str(cache),
              "--set", "trainer.progress=false", "--set", "trainer.eval_every=0"]
    recipe = bench["choices"] / "synthetic_easy_1@3steps.yaml"
    assert run_cli(["train", "nasoa", "--benchmark", "digits", "--recipe", str(recipe),
                    "--name", "chosen", *common]) == 0
    run = runs / "chosen"
    saved = json.loads((run / MODEL_FILE).read_text())
    zoo = load_zoo(bench["zoo"])
    choice_file = bench["choices"] / "synthetic_easy_1.json"
    assert saved["member"] == zoo.largest.name and saved["code"] == zoo.largest.code
    assert saved["choice"]["sha256"] == sha256_file(choice_file)
    assert saved["choice"]["file"] == str(choice_file.resolve()) and saved["choice"]["steps"] == 3
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["schedule_sha256"] == sha256_file(choice_file)
    assert config["trainer"]["max_steps"] == 3 and config["trainer"]["batch_size"] == 32
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(m.get("step", 0) for m in metrics) == 3
    result = json.loads((run / "result.json").read_text())
    assert result["model"]["recipe"] == "synthetic_easy_1@3steps"
    # the backbone moved away from the pretrained weights only by three small SGD steps
    from safetensors.torch import load_file

    state = load_file(str(find_checkpoint(run, "last") / "model.safetensors"))
    pretrained = zoo.load_model(zoo.largest.name).state_dict()
    stem = next(k for k in pretrained if k.endswith("weight") and not k.startswith("fc."))
    trained = state[f"net.{stem}"]
    assert trained.shape == pretrained[stem].shape
    assert (trained - pretrained[stem]).abs().max() < 0.05 * pretrained[stem].abs().max() + 1e-3
    assert not torch.equal(trained, pretrained[stem])
    capsys.readouterr()
    # naming the schedule on the default recipe is enough: it sets batch size and steps
    code = run_cli(["train", "nasoa", "--benchmark", "digits", "--recipe", "nasoa_tiny_digits",
                    "--name", "applied", "--set", f"model.schedule={choice_file}",
                    "--set", "model.schedule_budget=3steps", *common])
    err = capsys.readouterr().err
    assert code == 0 and "trainer.max_steps=3 (was" in err and "from the schedule" in err
    config = yaml.safe_load((runs / "applied" / "config.yaml").read_text())
    assert config["trainer"]["max_steps"] == 3 and config["trainer"]["batch_size"] == 32
    assert config["trainer"]["epochs"] is None
    metrics = [json.loads(line)
               for line in (runs / "applied" / "metrics.jsonl").read_text().splitlines()]
    assert max(m.get("step", 0) for m in metrics) == 3
