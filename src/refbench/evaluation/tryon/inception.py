"""The FID InceptionV3 in plain PyTorch, loading pytorch-fid's weights file.

FID is only comparable across papers when it is computed with the TensorFlow Inception
graph of 2015-12-05; pytorch-fid (mseitzer/pytorch-fid) ported its weights to
`pt_inception-2015-12-05-6726825d.pth` and rebuilt the graph as torchvision's Inception3
with patched blocks. torchvision cannot be installed here, so the network is written out
below with the *same module names* (so the file loads with `strict=True`) and the same
patches:

- `FIDInceptionA` / `FIDInceptionC` / `FIDInceptionE_1`: the pool branch averages with
  `count_include_pad=False` (TensorFlow's average pool ignores the zero padding);
- `FIDInceptionE_2` (`Mixed_7c`): the pool branch is a 3 x 3 *max* pool, as in the graph;
- every convolution is `BasicConv2d`: conv (no bias), BatchNorm (eps 0.001), ReLU.

Input handling is pytorch-fid's `InceptionV3(resize_input=True, normalize_input=True)`:
RGB in [0, 1] (`ToTensor` of a PIL RGB image), bilinear resize to 299 x 299 with
`align_corners=False` and no antialiasing, then `2x - 1`. The feature is the 2048-d output
of the final adaptive average pool ("pool3"). The file's `fc` (1008 classes) is loaded and
kept, unused, so the whole file is checked.

Nothing is downloaded: the user passes the file (`load_fid_inception(path)`); without it,
FID and KID are left out of a result with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.errors import RefbenchError

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048
#: pytorch-fid's `--dims` choices: 64 first max pool, 192 second max pool, 768 the input of
#: the aux classifier (Mixed_6e), 2048 the final average pool (the FID standard)
DIMS: tuple[int, ...] = (64, 192, 768, 2048)
INPUT_SIZE = 299
NUM_CLASSES = 1008


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg3(x: Tensor) -> Tensor:
    """TensorFlow's 3 x 3 average pool: the padded zeros do not count."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """`FIDInceptionE_1` (`max_pool=False`, Mixed_7b) or `FIDInceptionE_2` (`max_pool=True`,
    Mixed_7c)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's `InceptionV3([3])` with `use_fid_inception=True`; `forward` takes RGB
    in [0, 1] of any size and returns the N x 2048 pool3 features."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # in the weights file; not used for FID
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def preprocess(x: Tensor) -> Tensor:
        """pytorch-fid's input path: bilinear to 299 x 299 (align_corners=False), then
        [0, 1] -> [-1, 1]."""
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return 2 * x - 1

    def features(self, x: Tensor, dims: int = FEATURE_DIM) -> Tensor:
        """N x `dims` features of an already preprocessed N x 3 x 299 x 299 batch: the output
        of pytorch-fid's block for `dims`, averaged over space (`get_activations`)."""
        if dims not in DIMS:
            raise RefbenchError(f"Inception features come in {DIMS} dimensions, not {dims}",
                                key="fid_dims")
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = getattr(self, name)(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        if dims == 64:
            return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        if dims == 192:
            return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        if dims == 768:
            return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)

    def forward(self, x: Tensor, dims: int = FEATURE_DIM) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise RefbenchError(f"Inception input must be N x 3 x H x W, got {tuple(x.shape)}")
        return self.features(self.preprocess(x), dims)


def expected_keys() -> list[str]:
    """The state-dict keys the weights file must hold (BatchNorm's `num_batches_tracked`
    is not in pytorch-fid's file and is not required)."""
    return [k for k in FIDInceptionV3().state_dict() if not k.endswith("num_batches_tracked")]


def load_fid_inception(path: str | Path, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The network with the user's `pt_inception-2015-12-05-6726825d.pth` (or any file with
    the same keys and shapes); a one-line error naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise RefbenchError(f"Inception weights file not found (pytorch-fid's {WEIGHTS_FILE})",
                            path=path)
    if path.is_dir():
        raise RefbenchError("expected the Inception weights file, found a folder", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise RefbenchError(f"cannot read Inception weights: {' '.join(str(exc).split())[:200]}",
                            path=path) from None
    if not isinstance(state, dict):
        raise RefbenchError("Inception weights file does not hold a state dict", path=path)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model = FIDInceptionV3()
    own = model.state_dict()
    missing = [k for k in expected_keys() if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise RefbenchError(f"not the FID Inception weights: {len(missing)} key(s) missing "
                            f"(first {missing[:2]}), {len(unexpected)} unexpected (first "
                            f"{unexpected[:2]})", path=path)
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise RefbenchError(f"weight {key} has shape {tuple(value.shape)}, the network "
                                f"wants {tuple(own[key].shape)}", path=path)
    model.load_state_dict(state, strict=False)
    return model.to(device)
