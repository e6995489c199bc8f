"""The CLI end to end on synthetic GLUE: train -> predict -> evaluate -> leaderboard,
and the one-line, exit-2 errors of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli



def cli_subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "refbench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def glue_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("glue-smoke")
    root, cache = base / "glue", base / "cache"
    assert run_cli(["datasets", "synthesize", "glue", "--out", str(root), "--n", "240"]) == 0
    assert run_cli(["datasets", "check", "glue", "--root", str(root)]) == 0
    assert run_cli(["datasets", "prepare", "glue", "--root", str(root), "--cache-dir", str(cache),
                    "-c", "sst2", "-c", "stsb"]) == 0
    return {"base": base, "root": root, "cache": cache}


@pytest.fixture(scope="module")
def sst2_run(glue_env: dict[str, Path]) -> Path:
    runs = glue_env["base"] / "runs"
    code = run_cli(["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue",
                    "--max-steps", "60", "--output-dir", str(runs), "--cache-dir",
                    str(glue_env["cache"]), "--name", "sst2", "--set", "trainer.progress=false",
                    "--set", "trainer.eval_every=30"])
    assert code == 0
    return runs / "sst2"


def test_train_writes_the_run_folder(sst2_run: Path) -> None:
    from refbench.results import load_result

    for name in ("config.yaml", "metrics.jsonl", "checkpoints", "predictions", "result.json"):
        assert (sst2_run / name).exists(), name
    result = load_result(sst2_run / "result.json")
    assert result.benchmark == "glue-sst2" and result.primary == "accuracy"
    assert result.model is not None and result.model.recipe == "bert_tiny_glue"
    assert result.provenance.dataset_fingerprint
    # the scored checkpoint was chosen on the evaluation split, and result.json says so
    assert result.selection is not None and result.selection["split"] == "validation"
    assert result.selection["key"] == "accuracy" and result.selection["step"] in (30, 60)
    # the run's wall time covers training (config.yaml is written when it starts), not only
    # the final scoring
    started = (sst2_run / "config.yaml").stat().st_mtime
    finished = (sst2_run / "result.json").stat().st_mtime
    assert result.provenance.wall_time_s >= finished - started - 0.1
    losses = [r["loss"] for r in map(json.loads, (sst2_run / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert len(losses) >= 3
    assert sum(losses[-2:]) / 2 < losses[0], losses


def test_predict_and_evaluate_against_official_dev_tsv(sst2_run: Path, glue_env: dict[str, Path]) -> None:
    out = glue_env["base"] / "sub" / "SST-2.tsv"
    assert run_cli(["predict", str(sst2_run), "--split", "validation", "--output", str(out),
                    "--cache-dir", str(glue_env["cache"])]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    result_path = glue_env["base"] / "eval.json"
    assert run_cli(["evaluate", "glue-sst2", "--predictions", str(out), "--references",
                    str(glue_env["root"] / "SST-2" / "dev.tsv"), "--output", str(result_path)]) == 0
    scored = json.loads(result_path.read_text())
    trained = json.loads((sst2_run / "result.json").read_text())
    assert scored["metrics"] == trained["metrics"]
    assert scored["counts"]["references"] == len(lines) - 1

    test_out = glue_env["base"] / "sub" / "test" / "SST-2.tsv"
    assert run_cli(["predict", str(sst2_run), "--split", "test", "--output", str(test_out),
                    "--cache-dir", str(glue_env["cache"])]) == 0
    assert len(test_out.read_text().splitlines()) > 1

    # the owner's side of a leaderboard whose hidden labels are this dev file
    db = glue_env["base"] / "board.sqlite"
    assert run_cli(["leaderboard", "init", "--db", str(db), "--references",
                    str(glue_env["root"])]) == 0
    assert run_cli(["leaderboard", "benchmark", "add", "glue-sst2", "--references",
                    "SST-2/dev.tsv", "--db", str(db)]) == 0
    assert run_cli(["leaderboard", "team", "add", "alpha", "--db", str(db)]) == 0
    from refbench.leaderboard.db import LeaderboardDB
    board = LeaderboardDB.at(db)
    board.submit(board.team_id("alpha"), "glue-sst2", "SST-2.tsv", out.read_bytes())
    assert run_cli(["leaderboard", "worker", "--db", str(db), "--until-idle"]) == 0
    (row,) = board.leaderboard("glue-sst2", decimals=9)
    assert row.verified and row.team == "alpha"
    assert run_cli(["leaderboard", "export", "--db", str(db), "--out",
                    str(glue_env["base"] / "site")]) == 0
    assert "alpha" in (glue_env["base"] / "site" / "b" / "glue-sst2@1.html").read_text()


def test_resume_refuses_to_overwrite_and_continues(sst2_run: Path, glue_env: dict[str, Path]) -> None:
    args = ["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue",
            "--output-dir", str(sst2_run.parent), "--cache-dir", str(glue_env["cache"]),
            "--name", "sst2", "--set", "trainer.progress=false"]
    proc = cli_subprocess(args + ["--max-steps", "60"], glue_env["base"])
    assert proc.returncode == 2 and "already holds checkpoints" in proc.stderr


def test_resume_extends_a_finished_run(glue_env: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`--resume --max-steps N` after a shorter run continues it to N steps, says that the
    schedule changes and records it; another changed setting is refused, config.yaml kept."""
    import yaml

    run = tmp_path / "runs" / "ext"
    args = ["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue",
            "--limit", "32", "--output-dir", str(run.parent), "--cache-dir",
            str(glue_env["cache"]), "--name", "ext", "--set", "trainer.progress=false"]
    assert run_cli(args + ["--max-steps", "4"]) == 0
    capsys.readouterr()
    assert run_cli(args + ["--max-steps", "8", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "extending the run from max_steps 4 to 8 at step 4: the learning-rate schedule is " \
           "recomputed for 8 steps" in err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 4, "event": "extended", "from_max_steps": 4, "to_max_steps": 8} in records
    assert max(r["step"] for r in records) == 8
    written = (run / "config.yaml").read_text()
    assert yaml.safe_load(written)["trainer"]["max_steps"] == 8
    assert json.loads((run / "result.json").read_text())["model"]["config_hash"]

    assert run_cli(args + ["--max-steps", "8", "--resume", "--set", "trainer.lr=0.5"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "[trainer.lr]: cannot resume" in lines[0], lines
    assert "only max_steps (or epochs) may change on resume" in lines[0]
    assert (run / "config.yaml").read_text() == written


@pytest.mark.parametrize("args, needle", [
    (["train", "bert", "--benchmark", "glue-sst", "--recipe", "bert_tiny_glue"], "did you mean 'glue-sst2'"),
    (["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue", "--set", "trainer.lrr=1"],
     "[trainer.lrr]"),
    (["train", "bert", "--benchmark", "glue-sst2", "--set", "trainer.lr"], "malformed override"),
    (["evaluate", "glue-cola", "--predictions", "missing.tsv", "--output", "out.json"],
     "missing.tsv: prediction file not found"),
    (["evaluate", "nope", "--predictions", "x.tsv"], "unknown benchmark 'nope'"),
    (["datasets", "prepare", "glue", "--root", "no-such-dir"], "no-such-dir: dataset folder not found"),
    (["train", "second", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue"],
     "recipe bert_tiny_glue is for baseline 'bert', not 'second' (recipes for second: "
     "second_base_kitti, "),
    (["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_squad"],
     "recipe bert_tiny_squad is for extractive-qa benchmarks; glue-sst2 is a classification "
     "benchmark (recipes for it: bert_base_glue, bert_tiny_glue, bert_tinybert4_glue)"),
    (["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue", "--cache-dir",
      "no-cache"], "dataset glue is not prepared in the cache no-cache (no manifest.json); run "
                   "`refbench datasets prepare glue --root DIR` first, with the same --cache-dir "
                   "or REFBENCH_CACHE"),
    (["train", "efficientbert", "--benchmark", "glue-sst2", "--recipe", "efficientbert_tiny_glue",
      "--set", 'model.ffn_expressions=["tanh(linear1_1(gelu(linear2_1(x,wb1)),wb2))", "x"]'],
     "[model.ffn_expressions[0]]: invalid FFN expression"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = cli_subprocess(args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "out.json").exists()
    assert not (tmp_path / "runs").exists()


def test_predictions_with_missing_or_extra_ids(glue_env: dict[str, Path], tmp_path: Path) -> None:
    """GLUE refuses a file with missing ids (as the GLUE server does); extra ids are ignored
    with one warning line, and `--strict` refuses them."""
    from refbench.datasets.glue.builder import read_task_file

    dev = glue_env["root"] / "SST-2" / "dev.tsv"
    n = len(read_task_file(dev, "sst2", "validation"))
    good = ["index\tprediction"] + [f"{i}\t1" for i in range(n)]
    cases = {"missing": (good[:-1], []), "extra": (good + [f"{n + 5}\t0"], ["--strict"])}
    for label, (lines, flags) in cases.items():
        pred = tmp_path / f"{label}.tsv"
        pred.write_text("\n".join(lines) + "\n")
        proc = cli_subprocess(["evaluate", "glue-sst2", "--predictions", str(pred), "--references",
                               str(dev), "--output", "out.json", *flags], tmp_path)
        assert proc.returncode == 2
        message = proc.stderr.strip()
        assert "\n" not in message and f"{label}.tsv" in message
        assert ("have no prediction" if label == "missing" else "not in the references") in message
        assert not (tmp_path / "out.json").exists()
    proc = cli_subprocess(["evaluate", "glue-sst2", "--predictions", str(tmp_path / "extra.tsv"),
                           "--references", str(dev), "--output", "out.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "1 prediction id(s) not in the references" in warnings[0]
    assert json.loads((tmp_path / "out.json").read_text())["counts"]["extra"] == 1


def test_init_from_a_local_checkpoint(sst2_run: Path, glue_env: dict[str, Path], tmp_path: Path) -> None:
    """`--init-from` starts from a local transformers checkpoint folder (nothing downloaded)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    ckpt = tmp_path / "local-bert"
    tokenizer = AutoTokenizer.from_pretrained(str(sst2_run / "tokenizer"))
    tokenizer.save_pretrained(str(ckpt))
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(str(ckpt))
    runs = tmp_path / "runs"
    assert run_cli(["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue",
                    "--init-from", str(ckpt), "--max-steps", "4", "--limit", "32",
                    "--output-dir", str(runs), "--cache-dir", str(glue_env["cache"]), "--name", "init",
                    "--set", "trainer.progress=false"]) == 0
    from refbench.results import load_result

    result = load_result(runs / "init" / "result.json")
    assert result.split == "validation[:32]" and result.counts["references"] == 32
    assert result.model is not None and result.model.params is not None
    assert result.model.params < 2_000_000


def test_os_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder where a file belongs (predictions or references) and an unreadable file
    give one line and exit 2, never a traceback."""
    from tests.helpers import run_cli

    folder = tmp_path / "a-folder"
    folder.mkdir()
    preds = tmp_path / "CoLA.tsv"
    preds.write_text("index\tprediction\n0\t1\n", encoding="utf-8")
    for args in (["evaluate", "glue-cola", "--predictions", str(folder)],
                 ["evaluate", "glue-cola", "--predictions", str(preds), "--references",
                  str(folder)]):
        assert run_cli(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("refbench: error:") and str(folder) in err[0]
    unreadable = tmp_path / "dev.tsv"
    unreadable.write_bytes(b"\xff\xfe\x00bad")
    assert run_cli(["evaluate", "glue-cola", "--predictions", str(preds), "--references",
                    str(unreadable)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("refbench: error:")


def test_training_from_a_stream_learns_like_the_table(glue_env: dict[str, Path]) -> None:
    """`data.streaming=true`: the runner reads the training split through
    `load_dataset(..., streaming=True)` (a seeded shuffle buffer, the model's own encode and
    collate per micro-batch) and the run learns; `--limit` is refused with it."""
    from refbench.results import load_result

    runs = glue_env["base"] / "runs"
    common = ["train", "bert", "--benchmark", "glue-sst2", "--recipe", "bert_tiny_glue",
              "--max-steps", "60", "--output-dir", str(runs), "--cache-dir",
              str(glue_env["cache"]), "--set", "trainer.progress=false",
              "--set", "trainer.eval_every=0", "--set", "data.streaming=true"]
    assert run_cli(common + ["--name", "streamed", "--set", "data.shuffle_buffer=64"]) == 0
    result = load_result(runs / "streamed" / "result.json")
    assert result.metrics["accuracy"] >= 80.0, result.metrics
    assert run_cli(common + ["--name", "streamed-limit", "--limit", "40"]) == 2
