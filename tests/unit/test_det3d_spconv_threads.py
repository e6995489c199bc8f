"""spconv's CPU kernels are exact only single-threaded; `import_spconv` makes them so.

Without the fix, a SubMConv3d / SparseConv3d on 20k voxels with 2 torch threads differs
from the dense convolution by up to ~0.5 and from run to run."""

from __future__ import annotations

import pytest

pytest.importorskip("spconv", reason="the [3d] extra is not installed")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from refbench.baselines.det3d.spconv_utils import import_spconv  # noqa: E402

SHAPE = (20, 96, 96)


@pytest.fixture()
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _voxels(n: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    coords = torch.stack([torch.zeros(n, dtype=torch.int32)]
                         + [torch.randint(0, s, (n,), generator=gen, dtype=torch.int32)
                            for s in SHAPE], 1)
    coords = torch.unique(coords, dim=0)
    return coords, torch.randn(len(coords), 8, generator=gen, requires_grad=True)


@pytest.mark.parametrize("kind", ["subm", "strided"])
def test_sparse_convs_equal_dense_convs_with_two_threads(kind: str, two_threads: None) -> None:
    sp = import_spconv()
    torch.manual_seed(0)
    coords, feats = _voxels()
    if kind == "subm":
        conv = sp.SubMConv3d(8, 16, 3, bias=False, indice_key="k")
    else:
        conv = sp.SparseConv3d(8, 16, 3, stride=2, padding=1, bias=False, indice_key="k")
    weight = conv.weight.permute(0, 4, 1, 2, 3)
    x = sp.SparseConvTensor(feats, coords, list(SHAPE), 1)
    dense = F.conv3d(x.dense(), weight, stride=1 if kind == "subm" else 2, padding=1)
    z, y, w = (coords[:, i].long() for i in (1, 2, 3))
    for _ in range(3):
        out = conv(sp.SparseConvTensor(feats, coords, list(SHAPE), 1))
        if kind == "subm":
            torch.testing.assert_close(out.features, dense[0, :, z, y, w].T, atol=1e-4, rtol=1e-4)
        else:
            torch.testing.assert_close(out.dense(), dense, atol=1e-4, rtol=1e-4)
    # gradients too (the backward ops are serialised the same way)
    out = conv(sp.SparseConvTensor(feats, coords, list(SHAPE), 1))
    grad_sparse, = torch.autograd.grad(out.features.square().sum(), feats)
    ref = F.conv3d(x.dense(), weight, stride=1 if kind == "subm" else 2, padding=1)
    if kind == "subm":
        loss = ref[0, :, z, y, w].square().sum()
    else:
        mask = (out.dense() != 0).any(1, keepdim=True).float().detach()
        loss = (ref * mask).square().sum()
    grad_dense, = torch.autograd.grad(loss, feats)
    torch.testing.assert_close(grad_sparse, grad_dense, atol=1e-3, rtol=1e-3)
    assert torch.get_num_threads() == 2  # the caller's setting is restored
