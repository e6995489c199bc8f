"""`refbench train/predict/evaluate` with EfficientBERT on synthetic SQuAD v1.1: the span head
through the CLI, plain and distilled from a `bert_tiny_squad` teacher run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli



pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def squad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("eb-squad-cli")
    root, cache = base / "squad", base / "cache"
    assert run_cli(["datasets", "synthesize", "squad", "--out", str(root), "--n", "64"]) == 0
    assert run_cli(["datasets", "prepare", "squad", "--root", str(root), "--cache-dir", str(cache),
                    "-c", "v1.1"]) == 0
    return {"base": base, "root": root, "cache": cache, "runs": base / "runs"}


def _train(squad: dict[str, Path], baseline: str, recipe: str, name: str, steps: int,
           *extra: str) -> Path:
    code = run_cli(["train", baseline, "--benchmark", "squad-v1.1", "--recipe", recipe,
                    "--max-steps", str(steps), "--output-dir", str(squad["runs"]),
                    "--cache-dir", str(squad["cache"]), "--name", name,
                    "--set", "trainer.progress=false", "--set", "trainer.eval_every=0", *extra])
    assert code == 0
    return squad["runs"] / name


def _losses(run: Path) -> list[float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r["loss"] for r in records if "loss" in r]


def test_train_predict_evaluate_squad(squad: dict[str, Path]) -> None:
    from refbench.results import load_result

    run = _train(squad, "efficientbert", "efficientbert_tiny_squad", "plain", 80,
                 "--set", "trainer.log_every=20", "--set", "trainer.lr=3e-3")
    result = load_result(run / "result.json")
    assert result.benchmark == "squad-v1.1" and result.primary == "f1"
    assert result.model is not None and result.model.name == "efficientbert"
    assert result.metrics["f1"] > 0, result.metrics  # it found some answer tokens
    losses = _losses(run)
    assert len(losses) == 4 and losses[-1] < 0.6 * losses[0], losses
    trained = json.loads((run / "result.json").read_text())
    out = squad["base"] / "sub" / "predictions.json"
    assert run_cli(["predict", str(run), "--split", "validation", "--output", str(out),
                    "--cache-dir", str(squad["cache"])]) == 0
    answers = json.loads(out.read_text())
    assert answers and all(isinstance(v, str) for v in answers.values())
    scored_path = squad["base"] / "eval.json"
    assert run_cli(["evaluate", "squad-v1.1", "--predictions", str(out), "--references",
                    str(squad["root"] / "dev-v1.1.json"), "--output", str(scored_path)]) == 0
    scored = json.loads(scored_path.read_text())
    assert scored["metrics"] == trained["metrics"]


def test_distilled_student_through_the_cli(squad: dict[str, Path]) -> None:
    teacher = _train(squad, "bert", "bert_tiny_squad", "teacher", 8)
    run = _train(squad, "efficientbert", "efficientbert_tiny_squad", "distilled", 8,
                 "--set", f"model.distill.teacher_run={teacher}", "--set", "trainer.log_every=4")
    config = json.loads((run / "model_config.json").read_text())
    assert config["distill"]["teacher_run"] == str(teacher)
    assert config["teacher_hidden_size"] == 64  # bert_tiny_squad's width
    assert (run / "tokenizer" / "tokenizer.json").read_text() == \
        (teacher / "tokenizer" / "tokenizer.json").read_text()
    assert all(loss is not None for loss in _losses(run))
    assert "f1" in json.loads((run / "result.json").read_text())["metrics"]
