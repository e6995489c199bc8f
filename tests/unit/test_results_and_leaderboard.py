"""result.json schema 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refbench.errors import RefbenchError
from refbench.results import ModelInfo, Provenance, Result, load_result


def make_result(value: float, model: str = "m") -> Result:
    return Result(benchmark="glue-sst2", benchmark_version=1, split="validation",
                  metrics={"accuracy": value, "score": value},
                  directions={"accuracy": "higher", "score": "higher"}, primary="accuracy",
                  model=ModelInfo(model, 10, "r", "abc"), counts={"references": 4},
                  provenance=Provenance("0.1.0", None, None, "a" * 64, "b" * 64, 0, "cpu", 0.1))


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    make_result(91.5).write(path)
    again = load_result(path)
    assert again == make_result(91.5)
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 1
    assert set(doc["provenance"]) == {"refbench_version", "git_commit", "dataset_fingerprint",
                                      "label_set_sha256", "predictions_sha256", "seed",
                                      "hardware", "wall_time_s"}


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d.pop("metrics"), "metrics"),
    (lambda d: d["metrics"].update(accuracy="x"), "metrics.accuracy"),
    (lambda d: d.update(primary="f1"), "primary"),
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d["provenance"].pop("seed"), "provenance"),
    (lambda d: d["directions"].update(accuracy="up"), "directions"),
])
def test_invalid_result_names_key(tmp_path: Path, mutate, key: str) -> None:
    path = tmp_path / "r.json"
    doc = make_result(1.0).to_json()
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(RefbenchError, match=rf"r.json \[{key}\]"):
        load_result(path)
