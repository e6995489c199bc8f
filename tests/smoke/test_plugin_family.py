"""A complete family from outside the repository, found through the `refbench.plugins`
entry point: its dataset, metric, format, benchmark, baseline, recipe and demo job show up
in every command and on the leaderboard, and the contract tests cover them.

The family is `tests/fixtures/toy_plugin/toy_refbench` with its `.dist-info` (the entry
point metadata an installed package has), put on the path of child processes only, so
this test process's registries never see it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "toy_plugin"
REPO = Path(__file__).resolve().parents[2]
REFBENCH = [sys.executable, "-m", "refbench"]


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    plugin = tmp_path / "site"
    shutil.copytree(FIXTURE, plugin)
    out = dict(os.environ)
    out.update(PYTHONPATH=str(plugin), PYTHONDONTWRITEBYTECODE="1",
               REFBENCH_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    return out


def run(args: list[str], env: dict[str, str], cwd: Path, code: int = 0) -> str:
    proc = subprocess.run([*REFBENCH, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == code, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_plugin_family_in_every_command(env: dict[str, str], tmp_path: Path) -> None:
    listed = {kind: json.loads(run(["list", kind, "--json"], env, tmp_path))
              for kind in ("datasets", "metrics", "formats", "benchmarks", "baselines", "demos",
                           "recipes")}
    names = {kind: {row["name"] for row in rows} for kind, rows in listed.items()}
    assert "toypoints" in names["datasets"] and "glue" in names["datasets"]
    assert "toy_accuracy" in names["metrics"] and "toy_csv" in names["formats"]
    assert "toy-points" in names["benchmarks"] and "toylogistic" in names["baselines"]
    assert "toy" in names["demos"] and "toylogistic_tiny_toy" in names["recipes"]

    run(["datasets", "synthesize", "toypoints", "--out", "data", "--n", "120"], env, tmp_path)
    run(["datasets", "check", "toypoints", "--root", "data"], env, tmp_path)
    run(["datasets", "prepare", "toypoints", "--root", "data"], env, tmp_path)
    trained = _last_json(run(["train", "toylogistic", "--benchmark", "toy-points", "--recipe",
                              "toylogistic_tiny_toy", "--json"], env, tmp_path))
    assert trained["result"]["metrics"]["accuracy"] > 80  # two well-separated blobs
    run_dir = tmp_path / trained["run_dir"]
    # the dataset's own split name is an alias of refbench's
    run(["predict", str(run_dir), "--split", "dev", "--output", "dev.csv"], env, tmp_path)
    scored = _last_json(run(["evaluate", "toy-points", "--predictions", "dev.csv",
                             "--references", "data/dev.csv", "--json"], env, tmp_path))
    assert scored["metrics"]["accuracy"] == trained["result"]["metrics"]["accuracy"]
    bad = run(["evaluate", "toy-points", "--predictions", "data"], env, tmp_path, code=2)
    assert bad.count("\n") == 1 and "folder" in bad

    run(["demo", "--task", "toy", "--workdir", "demo"], env, tmp_path)
    with sqlite3.connect(tmp_path / "demo" / "leaderboard.sqlite") as db:
        statuses = [r[0] for r in db.execute("SELECT status FROM submissions")]
    assert statuses and set(statuses) == {"scored"}
    shown = run(["leaderboard", "show", "toy-points", "--db", "demo/leaderboard.sqlite"], env,
                tmp_path)
    assert "toylogistic" in shown and "always left" in shown


def test_contract_tests_cover_the_plugin(env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "contract" / "test_kinds.py"), "-k", "toy"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for test_id in ("test_dataset_contract[toypoints]", "test_metric_contract[toy_accuracy]",
                    "test_format_contract[toy_csv]", "test_benchmark_contract[toy-points]",
                    "test_baseline_contract[toylogistic]", "test_demo_job_contract[toy]"):
        assert f"{test_id} PASSED" in proc.stdout, (test_id, proc.stdout[-1500:])


def _last_json(text: str) -> dict:
    """The JSON object a `--json` command prints after its progress lines."""
    start = text.index("\n{") + 1 if not text.startswith("{") else 0
    return json.loads(text[start:text.rindex("}") + 1])
