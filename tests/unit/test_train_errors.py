"""Training errors that name their cause in one line, before anything is written: a recipe
for another baseline or another kind of benchmark, and a dataset missing from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from refbench import runner
from refbench.config import (build_run_config, check_recipe_task, load_recipe, recipe_baseline,
                             recipes_for)
from refbench.errors import RefbenchError
from refbench.registry import BENCHMARKS, RECIPES, get_spec
from refbench.runner import config_hash

PACKAGE = Path(runner.__file__).resolve().parent


def _one_line(exc: pytest.ExceptionInfo[RefbenchError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_every_shipped_recipe_names_its_baseline_and_task_types() -> None:
    known = {get_spec(name).task.type for name in BENCHMARKS.names()}
    shipped = [n for n in RECIPES.names() if PACKAGE in RECIPES.path(n).resolve().parents]
    assert len(shipped) >= 28
    for name in shipped:
        data = load_recipe(name)
        assert data["baseline"] == name.split("_", 1)[0], name
        assert data["tasks"] and set(data["tasks"]) <= known, name


def test_a_recipe_for_another_baseline_is_refused_naming_the_right_ones() -> None:
    with pytest.raises(RefbenchError) as info:
        build_run_config("second", "glue-sst2", "bert_tiny_glue")
    assert _one_line(info) == ("recipe bert_tiny_glue is for baseline 'bert', not 'second' "
                               "(recipes for second: second_base_kitti, second_base_waymo, "
                               "second_tiny_kitti, second_tiny_waymo)")
    with pytest.raises(RefbenchError, match=r"is for baseline 'efficientbert', not 'bert' "
                                            r"\(recipes for bert: bert_base_glue, "):
        build_run_config("bert", "glue-sst2", "efficientbert_tiny_glue")


def test_user_recipes_fall_back_to_the_name_prefix_or_are_not_checked(tmp_path: Path) -> None:
    plain = tmp_path / "my_experiment.yaml"
    plain.write_text("trainer: {lr: 0.001}\n")
    assert build_run_config("second", "kitti-car-3d", str(plain)).trainer.lr == 0.001
    prefixed = tmp_path / "bert_mine_glue.yaml"
    prefixed.write_text("trainer: {lr: 0.001}\n")
    assert recipe_baseline("bert_mine_glue", {}) == "bert"
    with pytest.raises(RefbenchError, match="recipe bert_mine_glue is for baseline 'bert', "
                                            "not 'votr'"):
        build_run_config("votr", "kitti-car-3d", str(prefixed))
    derived = tmp_path / "tuned.yaml"  # inherits `baseline:` and `tasks:` from its base
    derived.write_text("base: bert_base_squad\ntrainer: {lr: 0.001}\n")
    with pytest.raises(RefbenchError, match="recipe tuned is for baseline 'bert', not 'second'"):
        build_run_config("second", "squad-v1.1", str(derived))
    assert build_run_config("bert", "squad-v1.1", str(derived)).tasks == ["extractive-qa"]


def test_a_recipe_for_another_task_type_is_refused_naming_both() -> None:
    config = build_run_config("bert", "glue-sst2", "bert_tiny_squad")
    assert config.tasks == ["extractive-qa"]
    with pytest.raises(RefbenchError) as info:
        check_recipe_task(config, "classification")
    assert _one_line(info) == ("recipe bert_tiny_squad is for extractive-qa benchmarks; "
                               "glue-sst2 is a classification benchmark (recipes for it: "
                               "bert_base_glue, bert_tiny_glue, bert_tinybert4_glue)")
    glue = build_run_config("efficientbert", "squad-v1.1", "efficientbert_tiny_glue")
    with pytest.raises(RefbenchError, match=r"is for classification or regression benchmarks; "
                                            r"squad-v1.1 is an extractive-qa benchmark \(recipes "
                                            r"for it: efficientbert_base_squad, "
                                            r"efficientbert_tiny_squad\)"):
        check_recipe_task(glue, "extractive-qa")
    check_recipe_task(build_run_config("bert", "glue-stsb", "bert_tiny_glue"), "regression")
    check_recipe_task(build_run_config("bert", "glue-sst2", None), "classification")  # no recipe
    assert recipes_for("second", "3d-detection") == ["second_base_kitti", "second_base_waymo",
                                                     "second_tiny_kitti", "second_tiny_waymo"]


def test_the_runner_refuses_another_task_type_before_writing(tmp_path: Path) -> None:
    config = build_run_config("bert", "glue-sst2", "bert_tiny_squad",
                              [f"output_dir={tmp_path / 'runs'}"])
    with pytest.raises(RefbenchError, match="is a classification benchmark"):
        runner.train(config)
    assert not (tmp_path / "runs").exists()


def test_task_types_do_not_change_the_model_hash() -> None:
    config = build_run_config("bert", "glue-sst2", "bert_tiny_glue")
    before = config_hash(config)
    config.tasks = []
    assert config_hash(config) == before


def test_a_missing_cache_names_the_folder_and_how_to_fill_it(tmp_path: Path) -> None:
    cache = tmp_path / "empty-cache"
    config = build_run_config("bert", "glue-sst2", "bert_tiny_glue",
                              [f"data.cache_dir={cache}", f"output_dir={tmp_path / 'runs'}"])
    with pytest.raises(RefbenchError) as info:
        runner.train(config)
    text = _one_line(info)
    assert f"dataset glue is not prepared in the cache {cache}" in text
    assert "run `refbench datasets prepare glue --root DIR`" in text
    assert "--cache-dir or REFBENCH_CACHE" in text
    assert not (tmp_path / "runs").exists()


def test_a_missing_config_says_which_to_prepare(tmp_path: Path) -> None:
    from refbench.datasets.base import get_builder

    root, cache = tmp_path / "glue", tmp_path / "cache"
    builder = get_builder("glue")
    builder.synthesize(root, n=16, seed=0)
    builder.prepare(root, cache, configs=["sst2"])
    config = build_run_config("bert", "glue-cola", "bert_tiny_glue",
                              [f"data.cache_dir={cache}", f"output_dir={tmp_path / 'runs'}"])
    with pytest.raises(RefbenchError) as info:
        runner.train(config)
    assert _one_line(info) == (
        f"config 'cola' of dataset glue is not prepared in the cache {cache} (prepared: sst2); "
        "run `refbench datasets prepare glue --root DIR -c cola` with the same --cache-dir or "
        "REFBENCH_CACHE (they choose the cache folder)")
    assert not (tmp_path / "runs").exists()
