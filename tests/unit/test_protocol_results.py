"""Seed protocols and the results table: aggregate maths, result.json round trips, the
table writers, `refbench results`, the leaderboard's mean ± std, and one real protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from refbench.config import build_run_config
from refbench.errors import RefbenchError
from refbench.leaderboard.db import LeaderboardDB
from refbench.leaderboard.site import Links, board_table
from refbench.protocol import aggregate_results, format_aggregate, train_protocol
from refbench.results import ModelInfo, Provenance, Result, load_result
from refbench.results_table import (collect, repeated_seeds, summarize, to_csv, to_latex,
                                    to_markdown)
from tests.helpers import run_cli


def make(acc: float, seed: int | None, recipe: str = "bert_tiny_glue", split: str = "validation",
         bench: str = "glue-sst2") -> Result:
    return Result(benchmark=bench, benchmark_version=1, split=split,
                  metrics={"accuracy": acc, "n_correct": acc * 10},
                  directions={"accuracy": "higher", "n_correct": "none"}, primary="accuracy",
                  model=ModelInfo("bert", 1000, recipe, f"hash{seed}"), counts={"references": 10},
                  provenance=Provenance("0.1.0", None, "f" * 64, "l" * 64, f"p{seed}", seed,
                                        "cpu", 2.0))


def test_aggregate_mean_sample_std_and_seed_order() -> None:
    agg = aggregate_results([make(81.0, 2), make(79.0, 0), make(80.0, 1)], runs=["a", "b", "c"])
    assert agg.metrics["accuracy"] == pytest.approx(80.0)
    assert agg.aggregate["std"]["accuracy"] == pytest.approx(1.0)  # ddof=1, not 0.816
    assert agg.aggregate["per_seed"]["accuracy"] == [81.0, 79.0, 80.0]
    assert agg.aggregate["seeds"] == [2, 0, 1] and agg.aggregate["n"] == 3
    assert agg.aggregate["runs"] == ["a", "b", "c"] and agg.provenance.seed is None
    assert agg.provenance.wall_time_s == 6.0 and agg.model.recipe == "bert_tiny_glue"
    assert format_aggregate(agg) == "80.00 ± 1.00 (3 seeds)"
    assert aggregate_results([make(70.0, 0)]).aggregate["std"]["accuracy"] == 0.0


@pytest.mark.parametrize("other, message", [
    (make(80.0, 1, recipe="bert_base_glue"), "recipe"), (make(80.0, 1, split="test"), "split"),
    (make(80.0, 1, bench="glue-cola"), "benchmark"), (make(80.0, 0), "repeat a seed"),
    (make(80.0, None), "record its seed")])
def test_aggregate_refuses_runs_that_disagree(other: Result, message: str) -> None:
    with pytest.raises(RefbenchError, match=message):
        aggregate_results([make(80.0, 0), other])


def test_result_round_trip_with_and_without_aggregate(tmp_path: Path) -> None:
    single = make(80.0, 0)
    single.write(tmp_path / "one.json")
    assert "aggregate" not in json.loads((tmp_path / "one.json").read_text())  # old shape
    assert load_result(tmp_path / "one.json") == single
    agg = aggregate_results([make(79.0, 0), make(81.0, 1)], runs=["r-s0", "r-s1"])
    agg.write(tmp_path / "agg.json")
    back = load_result(tmp_path / "agg.json")
    assert back == agg and back.schema_version == 1
    doc = json.loads((tmp_path / "agg.json").read_text())
    for mutate, key in ((lambda a: a.update(seeds=["x"]), "aggregate.seeds"),
                        (lambda a: a["std"].update(bogus=1.0), "aggregate.std.bogus"),
                        (lambda a: a["per_seed"].update(accuracy=[1.0]), "per_seed.accuracy")):
        bad = json.loads(json.dumps(doc))
        mutate(bad["aggregate"])
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(RefbenchError, match=key.replace(".", r"\.")):
            load_result(tmp_path / "bad.json")


def hand_frame() -> pd.DataFrame:
    rows = [("glue-sst2@1", "tiny", s, v) for s, v in ((0, 79.0), (1, 80.0), (2, 81.0))]
    rows += [("glue-sst2@1", "base", 0, 90.0), ("glue-cola@1", "tiny", 0, 30.0),
             ("glue-cola@1", "tiny", 1, 34.0)]
    return pd.DataFrame([{"benchmark": b, "recipe": r, "model": "bert", "seed": s,
                          "split": "validation", "primary": "matthews" if "cola" in b else
                          "accuracy", "run": f"{b}{r}{s}", ("matthews" if "cola" in b else
                                                             "accuracy"): v}
                         for b, r, s, v in rows])


def test_summarize_groups_by_benchmark_and_recipe() -> None:
    summary = summarize(hand_frame())
    got = {(r.benchmark, r.recipe, r.metric): (r.mean, r.std, r.n) for r in summary.itertuples()}
    assert got[("glue-sst2@1", "tiny", "accuracy")] == (80.0, 1.0, 3)
    assert got[("glue-cola@1", "tiny", "matthews")] == (32.0, pytest.approx(2 ** 1.5), 2)
    assert math.isnan(got[("glue-sst2@1", "base", "accuracy")][1])
    assert list(summarize(hand_frame(), ["accuracy"])["metric"].unique()) == ["accuracy"]
    with pytest.raises(RefbenchError, match="no run has metric 'f1'"):
        summarize(hand_frame(), ["f1"])
    assert repeated_seeds(hand_frame()) == []
    twice = pd.concat([hand_frame(), hand_frame().iloc[:1].assign(run="elsewhere")])
    assert repeated_seeds(twice) == ["glue-sst2@1 tiny: seed(s) 0 occur in several runs (4 runs "
                                     "pooled); name fewer folders if their settings differ"]


def test_writers_render_mean_std_n() -> None:
    summary = summarize(hand_frame())
    md = to_markdown(summary).splitlines()
    assert md[0] == "| benchmark | recipe | matthews | accuracy |"
    assert md[1] == "| --- | --- | ---: | ---: |"
    assert "| glue-sst2@1 | tiny | - | 80.00 ± 1.00 (3) |" in md
    assert "| glue-sst2@1 | base | - | 90.00 (1) |" in md
    tex = to_latex(summary)
    assert tex.startswith("\\begin{tabular}{llrr}\n\\toprule\n") and "\\bottomrule" in tex
    assert "glue-sst2@1 & tiny & - & 80.00 $\\pm$ 1.00 (3) \\\\" in tex
    csv = to_csv(summary).splitlines()
    assert csv[0] == "benchmark,recipe,metric,mean,std,n" and "glue-sst2@1,tiny,accuracy,80.0,1.0,3" in csv


def test_results_cli_over_a_folder_of_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    for seed, acc in ((0, 79.0), (1, 81.0)):
        make(acc, seed).write(runs / f"tiny-sst2-s{seed}" / "result.json")
    agg = aggregate_results([make(79.0, 0), make(81.0, 1)], runs=["tiny-sst2-s0", "tiny-sst2-s1"])
    agg.write(runs / "tiny-sst2-protocol" / "result.json")  # skipped in folders, deduplicated
    md, tex, csv = tmp_path / "t.md", tmp_path / "t.tex", tmp_path / "t.csv"
    assert run_cli(["results", str(runs), str(runs / "tiny-sst2-protocol"), "--markdown", str(md),
                    "--latex", str(tex), "--csv", str(csv)]) == 0
    assert "| glue-sst2@1 | bert_tiny_glue | 80.00 ± 1.41 (2) |" in md.read_text()
    assert "80.00 $\\pm$ 1.41 (2)" in tex.read_text() and csv.read_text().count("\n") == 2
    assert "80.00 ± 1.41 (2)" in capsys.readouterr().out
    assert len(collect([runs])) == 2
    assert run_cli(["results", str(runs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] == 2
    assert run_cli(["results", str(tmp_path / "nope")]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
    (runs / "broken").mkdir()
    (runs / "broken" / "result.json").write_text("{")
    assert run_cli(["results", str(runs)]) == 2
    assert "broken/result.json:1: invalid JSON" in capsys.readouterr().err


def test_leaderboard_shows_the_aggregate(tmp_path: Path) -> None:
    refs = tmp_path / "hidden" / "SST-2"
    refs.mkdir(parents=True)
    (refs / "dev.tsv").write_text("sentence\tlabel\nx\t1\n")
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    board.set_references_dir(tmp_path / "hidden")
    board.add_benchmark("glue-sst2", "SST-2/dev.tsv")
    team = board.add_team("alpha")
    aggregate_results([make(79.0, 0), make(81.0, 1)]).write(tmp_path / "agg.json")
    board.add_self_reported(team, tmp_path / "agg.json")
    board.add_self_reported(team, make(70.0, 0))
    top, single = board.leaderboard("glue-sst2")
    assert top.value == 80.0 and top.to_json()["aggregate"]["std"]["accuracy"] == 1.41
    assert single.to_json()["aggregate"] is None
    html = board_table([top, single], "accuracy", Links())
    assert "80.0 ± 1.41 (2 seeds)" in html and ">70.0<" in html


def test_train_protocol_end_to_end_on_synthetic_sst2(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    root, cache, out = tmp_path / "glue", tmp_path / "cache", tmp_path / "runs"
    assert run_cli(["datasets", "synthesize", "glue", "--out", str(root), "--n", "64"]) == 0
    assert run_cli(["datasets", "prepare", "glue", "--root", str(root), "--cache-dir", str(cache),
                    "-c", "sst2"]) == 0
    args = ["train", "bert", "-b", "glue-sst2", "-r", "bert_tiny_glue", "--max-steps", "5",
            "--limit", "32", "--cache-dir", str(cache), "--output-dir", str(out),
            "--set", "trainer.eval_every=0", "--set", "trainer.progress=false"]
    capsys.readouterr()
    assert run_cli([*args, "--seeds", "0,1"]) == 0
    printed = capsys.readouterr().out
    assert "  seed 1: accuracy=" in printed and " ± " in printed and "(2 seeds)" in printed
    names = ["bert_tiny_glue-glue-sst2-s0", "bert_tiny_glue-glue-sst2-s1"]
    assert all((out / name / "result.json").exists() for name in names)
    agg = load_result(out / "bert_tiny_glue-glue-sst2-protocol" / "result.json")
    assert agg.aggregate["n"] == 2 and agg.aggregate["seeds"] == [0, 1]
    assert agg.aggregate["runs"] == names
    singles = [load_result(out / name / "result.json") for name in names]
    assert [r.provenance.seed for r in singles] == [0, 1]
    assert agg.metrics["accuracy"] == pytest.approx(sum(r.metrics["accuracy"] for r in singles) / 2)
    assert run_cli([*args, "--protocol", "--seeds", "0,1"]) == 2  # already trained, no --resume
    assert "--resume" in capsys.readouterr().err
    config = build_run_config("bert", "glue-sst2", "bert_tiny_glue", [
        "trainer.max_steps=5", "trainer.epochs=null", "data.limit=32",
        f"data.cache_dir={cache}", f"output_dir={out}"])
    again = train_protocol(config, seeds=[0, 1], resume=True, progress=lambda line: None)
    assert again.skipped == [0, 1] and again.aggregate == agg
    assert [d.name for d in again.run_dirs] == names
    (out / names[1] / "result.json").unlink()  # interrupted after its last checkpoint
    resumed = train_protocol(config, seeds=[0, 1], resume=True, progress=lambda line: None)
    assert resumed.skipped == [0] and resumed.aggregate.metrics == agg.metrics


def test_settings_and_selection_round_trip(tmp_path) -> None:
    """result.json keeps the metric's arguments in force and how a run chose its
    checkpoint; files without them (older ones) still load."""
    import json

    from refbench.results import load_result

    doc = {"schema_version": 1, "benchmark": {"name": "b", "version": 1}, "split": "test",
           "metrics": {"acc": 50.0}, "directions": {"acc": "higher"}, "primary": "acc",
           "provenance": {"refbench_version": "0", "git_commit": None,
                          "dataset_fingerprint": None, "label_set_sha256": "x",
                          "predictions_sha256": "y", "seed": 0, "hardware": "cpu",
                          "wall_time_s": 1.0}}
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(doc))
    old = load_result(plain)
    assert old.settings == {} and old.selection is None
    assert "settings" not in old.to_json() and "selection" not in old.to_json()
    doc["settings"] = {"ssim_convention": "hrviton", "resolution": [1024, 768]}
    doc["selection"] = {"split": "validation", "key": "acc", "rule": "best acc on validation",
                        "step": 30, "checkpoint": "step-00000030"}
    full = tmp_path / "full.json"
    full.write_text(json.dumps(doc))
    again = load_result(full)
    assert again.settings == doc["settings"] and again.selection == doc["selection"]
    assert again.to_json()["selection"]["split"] == "validation"
    doc["selection"] = {"key": "acc"}
    full.write_text(json.dumps(doc))
    import pytest

    from refbench.errors import RefbenchError

    with pytest.raises(RefbenchError, match="selection"):
        load_result(full)
