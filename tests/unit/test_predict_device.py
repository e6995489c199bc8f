"""Prediction runs each batch on the model's device (evaluation during GPU training used to
hand CPU batches to a CUDA model). On CPU the "meta" device stands in for a GPU: a model
whose parameters live there must receive its batches there."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from refbench.baselines.base import Baseline, Prediction
from refbench.engine.device import model_device, to_device
from refbench.runner import predict_rows


class DeviceProbe(Baseline):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2, device="meta"))

    def encode(self, rows: Any) -> list[dict[str, Any]]:
        return [{"id": i, "x": float(i)} for i in rows]

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"x": torch.tensor([f["x"] for f in features]),
                "nested": [torch.zeros(1), {"deep": torch.ones(1)}],
                "ids": [f["id"] for f in features]}

    def predict(self, batch: Mapping[str, Any]) -> list[Prediction]:
        where = {batch["x"].device.type, batch["nested"][0].device.type,
                 batch["nested"][1]["deep"].device.type}
        return [Prediction(i, sorted(where)) for i in batch["ids"]]


def test_predict_rows_moves_batches_to_the_model_device() -> None:
    preds = predict_rows(DeviceProbe(), list(range(5)), batch_size=2)
    assert preds == {i: ["meta"] for i in range(5)}


def test_to_device_keeps_plain_values() -> None:
    batch = {"a": torch.zeros(2), "ids": ["x", "y"], "n": 3, "t": (torch.ones(1), "s")}
    moved = to_device(batch, torch.device("meta"))
    assert moved["a"].device.type == "meta" and moved["ids"] == ["x", "y"] and moved["n"] == 3
    assert moved["t"][0].device.type == "meta" and moved["t"][1] == "s"
    assert model_device(nn.Linear(1, 1)).type == "cpu"
    assert model_device(nn.Module()).type == "cpu"
