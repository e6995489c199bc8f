"""Pi-NAS through the CLI on real images (`digits`, scikit-learn's bundled scans): train a
supernet, search it, retrain the searched code from the recipe the search wrote, predict
and evaluate; the ranking benchmark on the local pool and on a private Ray head; the demo
job. The bad-input paths run in the default tier, the trainings are slow-marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pinas-cli")
    root, cache = base / "digits", base / "cache"
    assert run_cli(["datasets", "synthesize", "digits", "--out", str(root)]) == 0
    assert run_cli(["datasets", "prepare", "digits", "--root", str(root),
                    "--cache-dir", str(cache)]) == 0
    return {"base": base, "root": root, "cache": cache, "runs": base / "runs"}


def _common(digits: dict[str, Path], steps: int) -> list[str]:
    return ["--max-steps", str(steps), "--output-dir", str(digits["runs"]),
            "--cache-dir", str(digits["cache"]), "--set", "trainer.progress=false",
            "--set", f"trainer.save_every={steps}"]


# -- default tier: refused before anything is trained or written --------------------------------
@pytest.mark.parametrize("args, message", [
    (["--archs", "2"], "must be >= 3"),
    (["--methods", "pinas,darts"], "unknown supernet method"),
    (["--truth-seeds", "0,x"], "comma-separated integers"),
    (["--set", "trainer.lr=1"], "search.*, supernet.* and standalone.*"),
    (["--supernet-recipe", "pinas_tiny_digits"], "not a pinas-supernet recipe"),
    (["--supernets", "no-such-run"], "not a run folder"),
    (["--archs", "300"], "fewer than 300"),
    (["--ks", "13"], "1 <= k <= archs"),
])
def test_ranking_bad_options_exit_2(args: list[str], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ranking"
    code = run_cli(["search", "pinas-ranking", "--benchmark", "digits", "--out", str(out), *args])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_supernet_recipe_refused_for_the_classifier(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["train", "pinas", "--benchmark", "digits", "--recipe",
                    "pinas-supernet_tiny_digits", "--output-dir", str(tmp_path)])
    assert code == 2 and "is for baseline 'pinas-supernet'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_searches_show_lists_the_ranking_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["searches", "show", "pinas-ranking", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    flags = {o["flag"] for o in shown["options"]}
    assert {"--archs", "--methods", "--supernets", "--supernet-steps", "--address"} <= flags


# -- slow: the runner path end to end ----------------------------------------------------------
@pytest.mark.slow
def test_train_search_retrain_predict_evaluate(digits: dict[str, Path]) -> None:
    from refbench.results import load_result

    assert run_cli(["train", "pinas-supernet", "--benchmark", "digits", "--recipe",
                    "pinas-supernet_tiny_digits", "--name", "supernet", *_common(digits, 12)]) == 0
    supernet = digits["runs"] / "supernet"
    result = load_result(supernet / "result.json")
    assert result.benchmark == "digits" and {"top1", "top5"} <= set(result.metrics)
    found = digits["base"] / "search"
    assert run_cli(["search", "pinas", "--benchmark", "digits", "--supernet", str(supernet),
                    "--out", str(found), "--samples", "5", "--initial", "3", "--cache-dir",
                    str(digits["cache"]), "--set", "search.fitness.bn_iters=2",
                    "--set", "search.fitness.probe_epochs=2", "--set", "search.batch_size=64"]) == 0
    summary = json.loads((found / "search.json").read_text())
    assert summary["evaluated"] == 5 and len(summary["chosen"]["arch"].split()) == 4
    recipe = found / "pinas_searched.yaml"
    assert "pinas_tiny_digits" in recipe.read_text()  # the shipped settings it carries
    assert run_cli(["train", "pinas", "--benchmark", "digits", "--recipe", str(recipe),
                    "--name", "searched", *_common(digits, 60)]) == 0
    retrained = load_result(digits["runs"] / "searched" / "result.json")
    assert retrained.model is not None and retrained.model.recipe == "pinas_searched"
    assert retrained.metrics["top1"] > 30.0  # chance is 10 %; 54-79 % after 60 steps
    test_file = digits["base"] / "test.csv"
    assert run_cli(["predict", str(digits["runs"] / "searched"), "--split", "test",
                    "--output", str(test_file), "--cache-dir", str(digits["cache"])]) == 0
    lines = test_file.read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == 360  # the 359 test rows
    assert all(len(line.split(",")[1].split()) == 5 for line in lines[1:])  # ranked top-5
    out = digits["base"] / "result.json"
    assert run_cli(["evaluate", "digits", "--predictions",
                    str(digits["runs"] / "searched" / "predictions" / "predictions.csv"),
                    "--cache-dir", str(digits["cache"]), "--output", str(out)]) == 0
    assert load_result(out).metrics["top1"] == pytest.approx(retrained.metrics["top1"])


def _ranking(digits: dict[str, Path], out: Path, *extra: str) -> dict:
    assert run_cli(["search", "pinas-ranking", "--benchmark", "digits", "--out", str(out),
                    "--cache-dir", str(digits["cache"]), "--archs", "3", "--methods",
                    "spos-supervised", "--supernet-seeds", "0", "--supernet-steps", "3",
                    "--standalone-steps", "4", "--ks", "1", "--set", "search.fitness.bn_iters=1",
                    "--set", "search.fitness.probe_epochs=1", *extra]) == 0
    return json.loads((out / "ranking.json").read_text())


@pytest.mark.slow
def test_ranking_on_ray_equals_the_local_pool(digits: dict[str, Path]) -> None:
    pytest.importorskip("ray")
    local = _ranking(digits, digits["base"] / "local", "--workers", "2")
    ray = _ranking(digits, digits["base"] / "ray", "--address", "local")
    assert ray["architectures"] == local["architectures"]
    for name in ("ground_truth.jsonl", "spos-supervised/seed0/scores.txt"):
        assert (digits["base"] / "ray" / name).read_text() == \
            (digits["base"] / "local" / name).read_text()
    assert ray["methods"] == local["methods"]
    assert ray["settings"]["address"] == "local" and local["settings"]["address"] is None


@pytest.mark.slow
def test_demo_job_beats_the_majority_class(tmp_path: Path) -> None:
    from refbench.demo import run_demo

    (row,) = run_demo(tmp_path / "demo", ["pinas"])
    assert row["benchmark"] == "digits@1" and row["trivial_name"] == "majority class"
    assert row["model"] > row["trivial"] + 10, row
    assert Path(row["test_submission"]).read_text().startswith("id,label\n")
