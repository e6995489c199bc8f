"""A sequence of training features decoded from prepared rows on first access.

Several baselines feed the trainer per-item arrays that are costly to decode (region
features, CT slice stacks, video and audio rows): decoding them all up front would hold a
whole split in memory, decoding them on every access would repeat the work each epoch.
`LazyRows` keeps what was decoded while a byte budget lasts, and indexes like a list (an
int, negative from the end, or a slice), so a DataLoader or `rows[a:b]` both work."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, Sequence, TypeVar, overload

T = TypeVar("T")


class LazyRows(Sequence[dict[str, Any]]):
    """Subclasses call `super().__init__(budget)`, define `__len__` and `item(index)`, and
    wrap their expensive decoding in `cached(index, build, nbytes)`."""

    def __init__(self, cache_bytes: int) -> None:
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, Any] = {}
        self._cached_bytes = 0

    def cached(self, index: int, build: Callable[[], T], nbytes: Callable[[T], int]) -> T:
        """`build()` of `index`, decoded once and kept while the byte budget lasts."""
        value = self._cache.get(index)
        if value is None:
            value = build()
            size = nbytes(value)
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[index] = value
                self._cached_bytes += size
        return value

    @abstractmethod
    def item(self, index: int) -> dict[str, Any]:
        """The features of row `index` (0 <= index < len(self))."""

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.item(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.item(index)


def total_nbytes(arrays: Sequence[Any] | dict[str, Any]) -> int:
    """The bytes of a dict's or sequence's arrays (what a cached item costs)."""
    values = arrays.values() if isinstance(arrays, dict) else arrays
    return sum(int(a.nbytes) for a in values)
