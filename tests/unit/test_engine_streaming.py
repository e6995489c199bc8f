"""Training from a stream (`engine/streaming.py`): the trainer learns from an iterable
dataset, a resumed streamed run is bit-identical to an uninterrupted one, ranks read
disjoint parts that cover the split, and the stream cycles epoch after epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refbench.engine import DistContext, Trainer
from refbench.engine.streaming import StreamingRows
from refbench.errors import RefbenchError
from tests.unit.engine_workers import toy

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(n: int = 96) -> list[dict]:
    return [{"id": i, "x": f["x"].tolist(), "y": f["y"]} for i, f in enumerate(toy.make_features(n))]


def _stream(n: int = 96, shards: int = 4, **kwargs) -> StreamingRows:
    import datasets as hf_datasets

    table = hf_datasets.Dataset.from_list(_rows(n))
    return StreamingRows(table.to_iterable_dataset(num_shards=shards), n, **kwargs)


def _collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {"x": torch.tensor([r["x"] for r in rows], dtype=torch.float32),
            "y": torch.tensor([r["y"] for r in rows], dtype=torch.long)}


def _fit(run_dir: Path, config, collate=_collate, resume: bool = False) -> torch.nn.Module:
    model = toy.make_model()
    trainer = Trainer(model, config, run_dir, _stream(seed=config.seed, shuffle_buffer=32),
                      collate, dist=DistContext.single("cpu"))
    trainer.fit(resume=resume)
    return model


def test_a_streamed_run_learns(tmp_path: Path) -> None:
    features = toy.make_features()
    evaluate = toy.make_evaluator(features)
    untrained = evaluate(toy.make_model())["loss"]
    model = _fit(tmp_path / "run", toy.config(max_steps=60, lr=3e-2))
    assert evaluate(model)["loss"] < 0.6 * untrained


def test_a_resumed_streamed_run_is_bit_identical(tmp_path: Path) -> None:
    config = toy.config(max_steps=18, save_every=5, keep_last=3)
    reference = _fit(tmp_path / "ref", config)
    calls = [0]

    def stop_after_7(rows: list[dict]) -> dict[str, torch.Tensor]:
        calls[0] += 1
        if calls[0] > 7:
            raise KeyboardInterrupt
        return _collate(rows)

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut", config, collate=stop_after_7)
    resumed = _fit(tmp_path / "cut", config, resume=True)
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_ranks_read_disjoint_parts_that_cover_the_split() -> None:
    stream = _stream(n=40, shards=4, shuffle_buffer=0)
    seen = []
    for rank in range(2):
        batches = stream.micro_batches(rank, 2, size=5)
        part = [r["id"] for _ in range(4) for r in next(batches)]
        seen.append(part)
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(40))


def test_the_stream_cycles_and_drops_the_incomplete_last_micro_batch() -> None:
    stream = _stream(n=10, shards=1, shuffle_buffer=0)
    batches = stream.micro_batches(0, 1, size=4)
    ids = [[r["id"] for r in next(batches)] for _ in range(4)]
    assert ids == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_shuffle_is_seeded_and_moves_with_the_epoch() -> None:
    def order(seed: int) -> list[list[int]]:
        batches = _stream(n=32, shards=4, seed=seed, shuffle_buffer=16).micro_batches(0, 1, 32)
        return [[r["id"] for r in next(batches)] for _ in range(2)]

    first = order(3)
    assert first == order(3)
    assert first[0] != first[1] and sorted(first[0]) == list(range(32))
    assert first != order(4)


def test_worker_processes_read_every_row_once() -> None:
    batches = _stream(n=32, shards=4, shuffle_buffer=0, workers=2).micro_batches(0, 1, 4)
    ids = [r["id"] for _ in range(8) for r in next(batches)]
    assert sorted(ids) == list(range(32))


def test_too_few_rows_for_one_micro_batch_is_one_line() -> None:
    with pytest.raises(RefbenchError, match="fewer than 8 rows"):
        next(_stream(n=6, shards=1).micro_batches(0, 1, 8))
    with pytest.raises(RefbenchError, match="data.workers"):
        _stream(workers=-1)
