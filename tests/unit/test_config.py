"""Recipes, `base:`, overrides and their type checking."""

from __future__ import annotations

from pathlib import Path

import pytest

from refbench.config import (RunConfig, TrainerConfig, apply_overrides, build_run_config, dump_yaml,
                             from_dict, load_recipe, parse_override)
from refbench.errors import RefbenchError


def test_parse_override_types() -> None:
    assert parse_override("trainer.lr=1e-4") == (["trainer", "lr"], 1e-4)
    assert parse_override("trainer.max_steps=7") == (["trainer", "max_steps"], 7)
    assert parse_override("trainer.amp=false") == (["trainer", "amp"], False)
    assert parse_override("init_from=null") == (["init_from"], None)


@pytest.mark.parametrize("bad", ["trainer.lr", "=3", "trainer..lr=3", "a.=1"])
def test_malformed_override_names_the_item(bad: str) -> None:
    with pytest.raises(RefbenchError, match="malformed override"):
        parse_override(bad)


def test_type_checked_overrides_name_the_key() -> None:
    with pytest.raises(RefbenchError) as err:
        build_run_config("bert", "glue-sst2", "bert_tiny_glue", ["trainer.lr=fast"])
    assert "[trainer.lr]" in str(err.value) and "expected float" in str(err.value)
    with pytest.raises(RefbenchError, match=r"\[trainer.lrr\].*did you mean 'lr'"):
        build_run_config("bert", "glue-sst2", "bert_tiny_glue", ["trainer.lrr=1"])
    with pytest.raises(RefbenchError, match=r"\[trainer.schedule\]"):
        build_run_config("bert", "glue-sst2", None, ["trainer.schedule=exponential"])


def test_int_is_accepted_for_float_but_not_bool_for_int() -> None:
    cfg = from_dict(TrainerConfig, {"lr": 1, "max_steps": 3})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    with pytest.raises(RefbenchError, match=r"\[max_steps\]"):
        from_dict(TrainerConfig, {"max_steps": True})


def test_recipe_base_is_merged_one_level(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("trainer: {lr: 0.1, max_steps: 5}\nmodel: {x: 1}\n")
    (tmp_path / "b.yaml").write_text("base: a\ntrainer: {lr: 0.2}\n")
    data = load_recipe(str(tmp_path / "b.yaml"))
    assert data["trainer"] == {"lr": 0.2, "max_steps": 5} and data["model"] == {"x": 1}
    (tmp_path / "c.yaml").write_text("base: b\n")
    with pytest.raises(RefbenchError, match="one level only"):
        load_recipe(str(tmp_path / "c.yaml"))


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("trainer:\n  lr: [1,\n")
    with pytest.raises(RefbenchError, match="bad.yaml"):
        load_recipe(str(path))


def test_unknown_recipe_suggests() -> None:
    with pytest.raises(RefbenchError, match="did you mean 'bert_tiny_glue'"):
        load_recipe("bert_tiny_glu")


def test_resolved_config_round_trips() -> None:
    import yaml

    cfg = build_run_config("bert", "glue-sst2", "bert_tiny_glue", ["trainer.seed=3"])
    again = from_dict(RunConfig, yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg and again.trainer.seed == 3 and again.recipe == "bert_tiny_glue"
    assert again.tasks == ["classification", "regression"]  # the recipe's task types, kept


def test_apply_overrides_creates_sections() -> None:
    assert apply_overrides({}, ["model.hidden_size=8"]) == {"model": {"hidden_size": 8}}
