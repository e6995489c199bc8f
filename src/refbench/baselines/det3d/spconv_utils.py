"""Import spconv for the SECOND backbone, with its CPU backward and CPU threading fixed.

spconv 2.3.8's `spconv.pytorch.ops` asks `get_current_stream()` for a CUDA stream in
several backward paths without first checking that the tensors live on a GPU, and that
function calls `torch.cuda.current_stream()` unconditionally: on a machine (or a torch
build) without CUDA the backward pass of every sparse convolution then raises (upstream
issue traveller59/spconv #366). The CPU kernels ignore the stream, so `import_spconv`
replaces the module-level name with a wrapper that answers 0 when CUDA is unavailable
and defers to the original otherwise. The patch is applied once and marked, so calling
`import_spconv` again (or from several modules) is harmless.

Second, its CPU kernels race when torch uses more than one thread: results differ from
the dense convolution (and from run to run). `import_spconv` wraps the ops the sparse
convolutions call so they run with one thread on CPU tensors (see `SERIAL_OPS`).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from refbench.errors import RefbenchError

#: attribute set on the wrapper so the patch is recognised and never stacked
PATCH_MARK = "_refbench_cpu_stream_patch"


#: spconv.pytorch.ops functions that race when torch runs more than one CPU thread
SERIAL_OPS = ("get_indice_pairs", "get_indice_pairs_implicit_gemm", "indice_conv",
              "indice_conv_backward", "implicit_gemm", "implicit_gemm_backward",
              "indice_maxpool", "indice_maxpool_backward", "indice_maxpool_implicit_gemm",
              "indice_maxpool_implicit_gemm_backward", "indice_avgpool_implicit_gemm",
              "indice_avgpool_implicit_gemm_backward")


def _serial_on_cpu(original: Callable[..., Any]) -> Callable[..., Any]:
    """Run a spconv op with one torch CPU thread when its tensors are on the CPU.

    spconv 2.3.8's CPU kernels give wrong results with several threads: on 20k voxels a
    SubMConv3d or SparseConv3d differs from the dense convolution by up to ~0.5 (out of
    values of a few units) and from run to run with 2 threads, and matches it exactly with
    one. The op runs serially; the caller's thread count is restored afterwards."""

    @functools.wraps(original)
    def serial(*args: Any, **kwargs: Any) -> Any:
        tensors = (v for v in itertools.chain(args, kwargs.values()) if isinstance(v, torch.Tensor))
        first = next(tensors, None)
        threads = torch.get_num_threads()
        if threads == 1 or (first is not None and first.is_cuda):
            return original(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return original(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    setattr(serial, PATCH_MARK, True)
    return serial


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
        for name in SERIAL_OPS:
            op = getattr(spconv_ops, name, None)
            if op is not None and not getattr(op, PATCH_MARK, False):
                setattr(spconv_ops, name, _serial_on_cpu(op))
        # spconv's dense() indexes with a list, which torch deprecates on every call
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence",
                                category=UserWarning, module="spconv")
    return spconv_pytorch
