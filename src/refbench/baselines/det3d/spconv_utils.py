"""Import spconv for the SECOND backbone, with its CPU backward made to work.

spconv 2.3.8's `spconv.pytorch.ops` asks `get_current_stream()` for a CUDA stream in
several backward paths without first checking that the tensors live on a GPU, and that
function calls `torch.cuda.current_stream()` unconditionally: on a machine (or a torch
build) without CUDA the backward pass of every sparse convolution then raises (upstream
issue traveller59/spconv #366). The CPU kernels ignore the stream, so `import_spconv`
replaces the module-level name with a wrapper that answers 0 when CUDA is unavailable
and defers to the original otherwise. The patch is applied once and marked, so calling
`import_spconv` again (or from several modules) is harmless.
"""

from __future__ import annotations

import warnings

from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from refbench.errors import RefbenchError

#: attribute set on the wrapper so the patch is recognised and never stacked
PATCH_MARK = "_refbench_cpu_stream_patch"


def _cpu_safe(original: Callable[[], Any]) -> Callable[[], Any]:
    """A `get_current_stream` that returns 0 (the null stream) without CUDA."""

    def get_current_stream() -> Any:
        if not torch.cuda.is_available():
            return 0
        return original()

    setattr(get_current_stream, PATCH_MARK, True)
    get_current_stream.__wrapped__ = original  # type: ignore[attr-defined]
    return get_current_stream


def import_spconv() -> ModuleType:
    """`spconv.pytorch`, with the CPU backward fix applied (idempotent).

    Raises RefbenchError naming the extra to install when spconv is missing."""
    try:
        import spconv.pytorch as spconv_pytorch
        import spconv.pytorch.ops as spconv_ops
    except ImportError:
        raise RefbenchError("spconv is not installed: pip install 'refbench[3d]'") from None
    current = getattr(spconv_ops, "get_current_stream", None)
    if current is not None and not getattr(current, PATCH_MARK, False):
        spconv_ops.get_current_stream = _cpu_safe(current)
        # spconv's dense() indexes with a list, which torch deprecates on every call
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence",
                                category=UserWarning, module="spconv")
    return spconv_pytorch
