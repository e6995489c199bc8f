"""NASOA end to end through the CLI: `refbench search nasoa-zoo` builds a (shrunken) tiny
zoo, `refbench search nasoa-finetune` runs a task sequence with every generator, and the
results load as result.json; bad input is one line with exit code 2 and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refbench.results import load_result
from tests.helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ZOO_SETTINGS = ["zoo.block_candidates=3", "zoo.macro_candidates=2", "zoo.proxy_steps=4",
                "zoo.pretrain_steps=10", "zoo.zoo_size=2", "zoo.base_channel=[8]",
                "zoo.final_channel=[16]", "zoo.code_length=[3,5]", "zoo.downsample=[1]",
                "zoo.default_macro=1-2", "zoo.image_size=16"]


def test_zoo_then_finetune_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zoo = tmp_path / "zoo"
    args = ["search", "nasoa-zoo", "--benchmark", "synthetic:easy:5", "--out", str(zoo)]
    for item in ZOO_SETTINGS:
        args += ["--set", item]
    assert run_cli(args) == 0
    index = json.loads((zoo / "zoo.json").read_text())
    assert index["members"] and index["machine"]["torch_threads"] == 1
    out = tmp_path / "bench"
    code = run_cli(["search", "nasoa-finetune", "--benchmark", "synthetic:easy:1,synthetic:hard:1",
                    "--zoo", str(zoo), "--out", str(out), "--seeds", "0,1",
                    "--budgets", "6steps,20steps",
                    "--generators", "online,random,hyperband,bohb,largest-default",
                    "--set", "finetune.trials=3", "--set", "finetune.warmup=4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "online" in printed and "bohb" in printed and "accuracy_vs_budget.svg" in printed
    for name in ("online", "random", "hyperband", "bohb", "largest-default"):
        result = load_result(out / name / "result.json")
        assert result.aggregate is not None and result.aggregate["n"] == 2
        assert 0.0 <= result.metrics["accuracy"] <= 100.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["synthetic:easy:1", "synthetic:hard:1"]
    from refbench.baselines.nas.nasoa.choices import read_choice

    for name in ("online", "bohb"):  # each generator's choices, ready for `refbench train`
        choices = out / name / "choices"
        assert sorted(p.name for p in choices.glob("*.json")) == ["synthetic_easy_1.json",
                                                                   "synthetic_hard_1.json"]
        assert read_choice(choices / "synthetic_hard_1.json", "20steps", 1).entry.steps == 20
        assert (choices / "synthetic_hard_1@6steps.yaml").is_file()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "zoo"
    code = run_cli(["search", "nasoa-zoo", "--benchmark", "synthetic:easy", "--out", str(out),
                    "--set", "zoo.default_macro=1--2"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'-' at position" in err
    code = run_cli(["search", "nasoa-finetune", "--benchmark", "nasoa-finetune-budget",
                    "--zoo", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")])
    assert code == 2 and not (tmp_path / "b").exists()
    assert "zoo folder not found" in capsys.readouterr().err
