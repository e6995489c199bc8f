"""A ResNet image encoder in plain PyTorch that turns a study's images into region features.

torchvision cannot be installed beside the CPU torch wheel here, so the backbone is
written out: the ResNet of He et al. (2016) as torchvision lays it out (7x7 stem, max
pool, four stages of basic blocks (depth 18 / 34) or bottlenecks (50 / 101) with the
stride on the 3x3 convolution, "ResNet v1.5"), with torchvision's module names, so a
standard ImageNet weight file (`resnet50-*.pth` or a safetensors copy of that state
dict) loads key for key (`load_backbone_weights`). Nothing is downloaded: without a
file the weights start random (Kaiming), and the result says which.

A study is a stack of 2-D images: the views of an X-ray study or slices of a CT volume,
each with two channels (a CT slice's lung and mediastinal windows; an X-ray's gray
values twice). A 3-channel ImageNet stem is folded to those channels by summing over
RGB and sharing the sum equally, so a gray image in both channels gets exactly the
response the RGB network gives that gray image in all three. Each image's last feature
map is average-pooled to a `grid` x `grid` lattice: the cells are the "regions" a
VL-BERT-style model attends to, each with its box geometry (corners over the image size
and area fraction, as VL-BERT's visual geometry embedding reads a detector's box) and
the index of its image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.errors import RefbenchError

#: torchvision's stage layout per depth: (block, blocks per stage)
DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}
#: ImageNet gray-level statistics (the mean / std of torchvision's RGB ones), applied to
#: every channel, so a file trained on ImageNet sees the inputs it was trained on
GRAY_MEAN, GRAY_STD = 0.449, 0.226
CHANNELS = 2


@dataclass
class BackboneConfig:
    """The image encoder of a recipe (`model.backbone`)."""

    depth: Literal[18, 34, 50, 101] = 50
    #: channels of the stem (64 in the standard ResNets; a tiny CPU model uses fewer)
    width: int = 64
    #: every image is resized to this square size (pixels)
    image_size: int = 224
    #: regions per image: the last feature map pooled to grid x grid cells
    grid: int = 7
    #: a user-supplied ImageNet state dict (torchvision names; .pth/.pt or .safetensors)
    weights: str | None = None
    #: keep BatchNorm statistics fixed (the usual choice with small medical batches)
    freeze_bn: bool = False


def check_backbone(cfg: BackboneConfig, key: str = "model.backbone") -> None:
    """Sizes that cannot build, named by their recipe key."""
    if cfg.depth not in DEPTHS:
        raise RefbenchError(f"depth must be one of {sorted(DEPTHS)}, got {cfg.depth}",
                            key=f"{key}.depth")
    if cfg.width < 1 or cfg.grid < 1:
        raise RefbenchError("width and grid must be at least 1", key=f"{key}.width")
    if cfg.image_size < 32:
        raise RefbenchError(f"image_size must be at least 32 (the network downsamples by "
                            f"32), got {cfg.image_size}", key=f"{key}.image_size")
    if cfg.weights is not None and cfg.width != 64:
        raise RefbenchError("a standard weight file needs width 64", key=f"{key}.width")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(inplanes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = _shortcut(inplanes, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False),
                         nn.BatchNorm2d(outplanes))


class ResNet(nn.Module):
    """The convolutional trunk (no pooling head, no classifier)."""

    def __init__(self, depth: int, width: int = 64, in_channels: int = CHANNELS) -> None:
        super().__init__()
        kind, layers = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inplanes = width
        for stage, count in enumerate(layers):
            planes = width * 2 ** stage
            blocks = []
            for k in range(count):
                blocks.append(block(inplanes, planes, 2 if (k == 0 and stage > 0) else 1))
                inplanes = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.out_channels = inplanes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return x


def grid_boxes(grid: int) -> Tensor:
    """`(grid * grid, 5)`: each cell's x1, y1, x2, y2 over the image size and its area
    fraction, row by row."""
    edges = torch.linspace(0.0, 1.0, grid + 1)
    rows = []
    for i in range(grid):
        for j in range(grid):
            rows.append([edges[j], edges[i], edges[j + 1], edges[i + 1], 1.0 / grid ** 2])
    return torch.tensor(rows, dtype=torch.float32)


class RegionEncoder(nn.Module):
    """Images `(B, K, 2, S, S)` in [0, 1] -> region features `(B, K * grid^2, C)` with
    their boxes `(B, K * grid^2, 5)`, image indices `(B, K * grid^2)` and mask."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        check_backbone(cfg)
        self.cfg = cfg
        self.backbone = ResNet(cfg.depth, cfg.width)
        self.out_channels = self.backbone.out_channels
        self.register_buffer("boxes", grid_boxes(cfg.grid), persistent=False)

    def train(self, mode: bool = True) -> "RegionEncoder":
        super().train(mode)
        if mode and self.cfg.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, images: Tensor, image_mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, k = images.shape[:2]
        cells = self.cfg.grid ** 2
        x = (images.flatten(0, 1) - GRAY_MEAN) / GRAY_STD
        fmap = F.adaptive_avg_pool2d(self.backbone(x), self.cfg.grid)   # (B*K, C, g, g)
        regions = fmap.flatten(2).transpose(1, 2).reshape(b, k * cells, -1)
        boxes = self.boxes.repeat(k, 1).expand(b, -1, -1)
        index = torch.arange(k, device=images.device).repeat_interleave(cells).expand(b, -1)
        mask = image_mask.repeat_interleave(cells, dim=1)
        return regions, boxes, index, mask


def fold_stem(weight: Tensor, in_channels: int) -> Tensor:
    """An RGB stem `(out, 3, k, k)` -> `(out, in_channels, k, k)`: the RGB sum shared
    equally, so gray input in every channel keeps the RGB network's response."""
    if weight.shape[1] == in_channels:
        return weight
    return weight.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A weight file's tensors (`.safetensors`, or a torch state dict read without
    unpickling code); a one-line error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RefbenchError("backbone weight file not found" if not path.exists()
                            else "a folder, but the backbone weights must be a file", path=path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise RefbenchError(f"unreadable weight file ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:120] if str(exc) else ''})",
                            path=path) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise RefbenchError("not a state dict of tensors", path=path)
    return state


def load_backbone_weights(backbone: ResNet, path: Path) -> int:
    """Load torchvision-named ResNet weights (the `fc` classifier is dropped, a `module.`
    prefix is stripped, the stem is folded to two channels); returns the tensors loaded.
    Every trunk tensor must be present with its shape: a partial load is an error."""
    state = {k.removeprefix("module."): v for k, v in read_state_dict(Path(path)).items()
             if not k.removeprefix("module.").startswith("fc.")}
    if "conv1.weight" in state:
        state["conv1.weight"] = fold_stem(state["conv1.weight"], backbone.conv1.in_channels)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise RefbenchError(f"weights do not fit a ResNet of this depth: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}", path=path)
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise RefbenchError(f"{name} has shape {tuple(tensor.shape)}, the ResNet expects "
                                f"{tuple(own[name].shape)}", path=path)
    backbone.load_state_dict(state, strict=True)
    return len(state)
