"""Medical-VLBERT end to end through the common runner on a synthesized IU X-ray (140
training, 20 validation, 40 test studies whose reports and MeSH terms follow from the
radiographs): `refbench train medical-vlbert --recipe medical-vlbert_tiny_iu-xray` selects
its checkpoint on validation and scores it there; the trained model beats the same network
untrained and the most-frequent-report floor on BLEU-4, CIDEr-D and term F1; `refbench
predict` writes the test reports, which score on iu-xray-r2gen. Both floors run through
the same runner. The Chinese pair runs too: a tiny CX-CHR run starts the COVID-19 CT run
through `init_from`, as the paper transfers CX-CHR to COVID-19 CT.

On this synthetic release the pixel nearest-neighbour floor is perfect (every finding set
of the validation studies occurs in training and the renderer's noise is mild), so it is
printed, not used as a bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from refbench.baselines.report.medical_vlbert import MedicalVLBERTBaseline
from refbench.benchmarks.scoring import evaluate_file
from refbench.config import load_recipe
from refbench.datasets.base import get_builder, load_prepared
from refbench.registry import get_spec
from refbench.results import load_result
from refbench.runner import predict_rows, write_predictions
from tests.helpers import run_cli

#: trains the tiny Medical-VLBERT end to end (about 2 minutes on 2 busy cores)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

RECIPE = "medical-vlbert_tiny_iu-xray"
VAL = get_spec("iu-xray-r2gen-val")
KEYS = ("BLEU-4", "CIDEr-D", "terms/F1_micro")


@pytest.fixture(scope="module")
def iu_xray(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("iu_xray")
    root, cache = base / "iu_xray", base / "cache"
    builder = get_builder("iu_xray")
    builder.synthesize(root, n=200, seed=0)
    builder.prepare(root, cache, configs=["r2gen"])
    return {"base": base, "root": root, "cache": cache}


def train(env: dict[str, Path], baseline: str, recipe: str, benchmark: str, name: str,
          *overrides: str) -> Path:
    runs = env["base"] / "runs"
    sets = [x for o in ("trainer.progress=false", *overrides) for x in ("--set", o)]
    assert run_cli(["train", baseline, "--benchmark", benchmark, "--recipe", recipe,
                    "--output-dir", str(runs), "--cache-dir", str(env["cache"]), "--name", name,
                    *sets]) == 0
    return runs / name


@pytest.fixture(scope="module")
def trained(iu_xray: dict[str, Path]) -> Path:
    return train(iu_xray, "medical-vlbert", RECIPE, "iu-xray-r2gen", "tiny")


def test_trained_model_beats_untrained_and_the_most_frequent_floor(
        iu_xray: dict[str, Path], trained: Path) -> None:
    cache = iu_xray["cache"]
    result = load_result(trained / "result.json")
    assert result.split == "validation"  # selected and scored on validation, never test
    best = json.loads((trained / "checkpoints" / "best.json").read_text())
    assert best["primary"] == "BLEU-4"
    val = load_prepared("iu_xray", split="validation", config="r2gen", cache_dir=str(cache))
    train_rows = load_prepared("iu_xray", split="train", config="r2gen", cache_dir=str(cache))
    torch.manual_seed(0)
    fresh = MedicalVLBERTBaseline.create(load_recipe(RECIPE)["model"], VAL, train_rows,
                                         iu_xray["base"] / "untrained")
    path = write_predictions(VAL, predict_rows(fresh, val, 32),
                             iu_xray["base"] / "untrained" / "reports.json")
    rows = {"trained": result.metrics,
            "untrained": evaluate_file(VAL, path, cache_dir=str(cache)).metrics}
    for floor in ("most-frequent-report", "nn-report"):
        run = train(iu_xray, floor, f"{floor}_tiny_reports", "iu-xray-r2gen-val", floor)
        rows[floor] = load_result(run / "result.json").metrics
    for name, metrics in rows.items():
        print(f"{name:>22}: " + ", ".join(f"{k} {metrics.get(k, 0.0):.3f}" for k in KEYS))
    trained_m, floor_m = rows["trained"], rows["most-frequent-report"]
    assert trained_m["BLEU-4"] > floor_m["BLEU-4"] + 0.1
    assert trained_m["CIDEr-D"] > floor_m["CIDEr-D"] + 1.0
    assert trained_m["terms/F1_micro"] > floor_m["terms/F1_micro"] + 0.3
    assert trained_m["BLEU-4"] > rows["untrained"]["BLEU-4"] + 0.3
    assert trained_m["terms/F1_micro"] > rows["untrained"].get("terms/F1_micro", 0.0)
    losses = [r["loss"] for r in map(json.loads, (trained / "metrics.jsonl").read_text().splitlines())
              if r.get("loss") is not None]
    assert losses[-1] < losses[0] / 2


def test_predict_writes_test_reports(iu_xray: dict[str, Path], trained: Path) -> None:
    out = iu_xray["base"] / "submission" / "reports.json"
    assert run_cli(["predict", str(trained), "--split", "test", "--output", str(out),
                    "--cache-dir", str(iu_xray["cache"])]) == 0
    test = get_spec("iu-xray-r2gen")
    result = evaluate_file(test, out, cache_dir=str(iu_xray["cache"]))
    print("test:", ", ".join(f"{k} {result.metrics.get(k, 0.0):.3f}" for k in KEYS))
    assert result.counts["missing"] == 0 and result.metrics["BLEU-4"] > 0.5


def test_cx_chr_run_starts_the_covid19_ct_run(tmp_path: Path) -> None:
    env = {"base": tmp_path, "cache": tmp_path / "cache"}
    for name in ("cx_chr", "covid19_ct"):
        builder = get_builder(name)
        builder.synthesize(tmp_path / name, n=40, seed=0)
        builder.prepare(tmp_path / name, env["cache"])
    source = train(env, "medical-vlbert", "medical-vlbert_tiny_cx-chr-reports", "cx-chr-reports",
                   "cx", "trainer.max_steps=20", "trainer.eval_every=0", "trainer.save_every=20")
    target = train(env, "medical-vlbert", "medical-vlbert_tiny_covid19-ct-reports",
                   "covid19-ct-reports", "ct", f"init_from={source}", "trainer.max_steps=10",
                   "trainer.eval_every=0", "trainer.save_every=10")
    result = load_result(target / "result.json")
    assert result.split == "validation" and "CIDEr-D" in result.metrics
    reports = json.loads((target / "predictions" / "reports.json").read_text(encoding="utf-8"))
    assert all(" " not in v["report"] for v in reports.values())  # Chinese, re-joined
    src_vocab = json.loads((source / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    dst_vocab = json.loads((target / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    assert all(dst_vocab[t] == i for t, i in src_vocab.items())
