"""LazyRows: list-like indexing, items decoded once and kept only within the byte budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from refbench.baselines.lazy_rows import LazyRows, total_nbytes


class Squares(LazyRows):
    def __init__(self, n: int, budget: int) -> None:
        super().__init__(budget)
        self.n, self.built = n, 0

    def __len__(self) -> int:
        return self.n

    def item(self, index: int) -> dict[str, Any]:
        def build() -> dict[str, np.ndarray]:
            self.built += 1
            return {"x": np.full(4, index * index, dtype=np.float64)}  # 32 bytes

        return {"index": index, **self.cached(index, build, total_nbytes)}


def test_indexing_is_list_like() -> None:
    rows = Squares(5, budget=1 << 20)
    assert rows[-1]["index"] == 4 and rows[0]["x"][0] == 0
    assert [r["index"] for r in rows[1:4]] == [1, 2, 3] and rows[::-2][0]["index"] == 4
    with pytest.raises(IndexError):
        rows[5]
    with pytest.raises(IndexError):
        rows[-6]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]


def test_cache_keeps_items_within_the_budget_exactly() -> None:
    rows = Squares(4, budget=64)  # room for exactly two 32-byte items
    for _ in range(2):
        for i in range(4):
            rows[i]
    assert rows.built == 4 + 2  # items 0 and 1 cached, 2 and 3 decoded twice
    assert rows._cached_bytes == 64
