"""A restricted unpickler for the official releases that ship pickles.

Several official formats are Python pickles: the CIFAR python batches (Python 2
cPickle, protocol 2), tensorpack's LMDB records of Product1M region features
(`pickle.dumps(obj, protocol=-1)`), and more. Unpickling runs whatever a pickle names,
so a downloaded file could execute code the moment it is read. Every reader in refbench
goes through `SafeUnpickler` instead of `pickle.load`: it builds plain values (lists,
dicts, strings, bytes, numbers) and numpy arrays, scalars and dtypes, and refuses every
other global before anything it names is looked up.

What it resolves, under numpy 1.x and 2.x module names, is exactly what numpy's own
pickles of arrays, scalars and dtypes use (protocols 2-5): `numpy.ndarray` (only as the
type `_reconstruct` builds, never as a callable, so a pickle cannot allocate an array of
any shape it likes), `numpy.dtype`, `multiarray._reconstruct` (only numpy's own call
`(ndarray, (0,), code)`), `multiarray.scalar`, `numeric._frombuffer`; and
`_codecs.encode` to latin-1 only (protocol 2 writes bytes with it). Persistent ids are
refused too. A refusal raises `RefusedPickle`, whose `what` names the global, so a
reader can turn it into a one-line `RefbenchError` naming the file.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

import numpy as np


class RefusedPickle(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list (`what`, e.g. `global os.system`)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"refused {what}")
        self.what = what


class _NdarrayToken:
    """Stands for `numpy.ndarray` in a pickle: accepted as the type `_reconstruct` builds,
    but not callable, so a pickle cannot allocate an array of any shape it likes."""


_NDARRAY = _NdarrayToken()


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a pickle may name, under numpy 1.x and 2.x module names: what
    numpy's own pickles of arrays, scalars and dtypes use (protocols 2-5), and
    `_codecs.encode` for latin-1 only (protocol 2 writes bytes with it)."""
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:  # pragma: no cover - numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")

    def reconstruct(subtype: Any, shape: Any, code: Any) -> np.ndarray:
        if subtype is not _NDARRAY or shape != (0,):
            raise RefusedPickle("_reconstruct call other than numpy's own (ndarray, (0,))")
        return multiarray._reconstruct(np.ndarray, (0,), code)

    def latin1(text: str, encoding: str = "utf-8") -> bytes:
        if encoding not in ("latin1", "latin-1"):
            raise RefusedPickle(f"_codecs.encode to {encoding!r}")
        return text.encode("latin-1")

    names: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): latin1}
    for package in ("numpy.core", "numpy._core"):  # numpy 1.x wrote numpy.core names
        names[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        names[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        names[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return names


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain values and numpy arrays: `find_class` answers
    from a fixed allow-list and refuses every other global; persistent ids are refused.
    Takes `pickle.Unpickler`'s arguments (e.g. `encoding="latin1"` for Python 2 files)."""

    allowed: dict[tuple[str, str], Any] = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedPickle(f"global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("persistent id")


def safe_loads(data: bytes, **kwargs: Any) -> Any:
    """Unpickle `data` with `SafeUnpickler` (raises `pickle.UnpicklingError` subclasses);
    `kwargs` go to the unpickler (`encoding=...`)."""
    return SafeUnpickler(io.BytesIO(data), **kwargs).load()


__all__ = ["RefusedPickle", "SafeUnpickler", "safe_loads"]
