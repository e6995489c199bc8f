"""The Pi-NAS supernet and its sub-networks, in plain PyTorch.

Re-derived from the official `SuperResNet` (timm's ResNet/ResNeSt layers) and ResNeSt's
`SplAtConv2d`, without PyTorch-Encoding's JIT CUDA extensions:

- ResNet-D stem: three 3x3 convs (`stem_width`, `stem_width`, `2 * stem_width`, the first
  with stride 2), BN, ReLU, 3x3 max pool with stride 2;
- stages of `planes = base_planes * 2^i` with strides 1, 2, 2, 2; the projection shortcut
  is avg-down (2x2 average pool with `ceil_mode`, `count_include_pad=False`, then a 1x1
  conv and BN) and is *shared by the four candidates of a block* (`downsample_share=True`);
- each block is a split-attention bottleneck: 1x1 conv to the candidate's group width,
  `SplitAttnConv` (a grouped 3x3 conv with `radix * cardinality` groups, BN, ReLU, then
  attention over the radix splits: global pool, 1x1 conv to `max(C * radix / 4, 32)`
  channels, BN, ReLU, 1x1 conv, softmax over the radix, or a sigmoid when radix is 1),
  the `avd` 3x3 average pool carrying the stride (after the split attention), 1x1 conv to
  `4 * planes`, BN whose weight starts at zero (`zero_init_last_bn`), residual, ReLU.

`Supernet.forward(x, arch)` runs the path `arch` (one choice index per block);
`SubNet` is the fixed network of one architecture as an ordinary module, with weights
copied from a supernet by `SubNet.from_supernet`. BatchNorm becomes cross-process under
DDP (`convert_sync_bn`): torch's `SyncBatchNorm` on GPUs, `ProcessGroupBatchNorm` on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.nas.pinas.space import CANDIDATES, RESNEST50_LAYERS, Candidate, SearchSpace
from refbench.errors import RefbenchError

EXPANSION = 4


@dataclass
class SupernetConfig:
    """Shape of the supernet (defaults: the official ResNeSt-50-D of `pinas_learning.py`)."""

    layers: list[int] = field(default_factory=lambda: list(RESNEST50_LAYERS))
    stem_width: int = 32
    base_planes: int = 64
    #: floor of the split-attention bottleneck width (ResNeSt: 32)
    min_attn_channels: int = 32
    in_chans: int = 3

    def space(self) -> SearchSpace:
        return SearchSpace(tuple(int(n) for n in self.layers), CANDIDATES)

    def check(self, key: str = "model.net") -> None:
        """Sizes must be positive and every candidate's grouped conv must divide evenly
        (`group_width` a multiple of `radix * cardinality`), e.g. base_planes 16 or 64."""
        self.space()
        for name in ("stem_width", "base_planes", "min_attn_channels", "in_chans"):
            if getattr(self, name) < 1:
                raise RefbenchError(f"must be >= 1, got {getattr(self, name)}", key=f"{key}.{name}")
        for stage in range(len(self.layers)):
            planes = self.base_planes * 2 ** stage
            for c in CANDIDATES:
                width = c.group_width(planes)
                if width < 1 or width % (c.radix * c.cardinality):
                    raise RefbenchError(f"base_planes {self.base_planes} gives stage {stage} a "
                                        f"group width of {width} for candidate "
                                        f"({c.describe()}), not a positive multiple of "
                                        f"{c.radix * c.cardinality}", key=f"{key}.base_planes")
                attn = attn_channels(width, c.radix, self.min_attn_channels)
                if attn % c.cardinality:
                    raise RefbenchError(f"stage {stage}, candidate ({c.describe()}): "
                                        f"{attn} attention channels do not split into "
                                        f"{c.cardinality} groups; raise min_attn_channels "
                                        f"(official 32) or change base_planes",
                                        key=f"{key}.min_attn_channels")

    @property
    def out_channels(self) -> int:
        return self.base_planes * 2 ** (len(self.layers) - 1) * EXPANSION


def attn_channels(channels: int, radix: int, floor: int, reduction: int = 4) -> int:
    """Width of the split-attention MLP: `max(channels * radix // 4, floor)` (ResNeSt)."""
    return max(channels * radix // reduction, floor)


class SplitAttnConv(nn.Module):
    """ResNeSt's split-attention 3x3 convolution (radix splits x cardinality groups)."""

    def __init__(self, channels: int, stride: int, cardinality: int, radix: int,
                 min_attn_channels: int = 32, reduction: int = 4) -> None:
        super().__init__()
        self.radix, self.cardinality = radix, cardinality
        attn = attn_channels(channels, radix, min_attn_channels, reduction)
        self.conv = nn.Conv2d(channels, channels * radix, 3, stride, 1,
                              groups=cardinality * radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, attn, 1, groups=cardinality)
        self.bn1 = nn.BatchNorm2d(attn)
        self.fc2 = nn.Conv2d(attn, channels * radix, 1, groups=cardinality)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.conv(x)))
        batch, rchannels = x.shape[:2]
        channels = rchannels // self.radix
        splits = x.view(batch, self.radix, channels, *x.shape[2:])
        gap = splits.sum(dim=1) if self.radix > 1 else x
        gap = F.relu(self.bn1(self.fc1(F.adaptive_avg_pool2d(gap, 1))))
        attn = self.fc2(gap)
        if self.radix > 1:
            # fc2's channels are cardinality-major; the softmax runs over the radix
            attn = attn.view(batch, self.cardinality, self.radix, -1).transpose(1, 2)
            attn = F.softmax(attn, dim=1).reshape(batch, self.radix, channels, 1, 1)
            return (splits * attn).sum(dim=1)
        return x * torch.sigmoid(attn)


class Bottleneck(nn.Module):
    """A split-attention bottleneck without its shortcut (the block adds it)."""

    def __init__(self, inplanes: int, planes: int, stride: int, candidate: Candidate,
                 min_attn_channels: int = 32) -> None:
        super().__init__()
        width = candidate.group_width(planes)
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = SplitAttnConv(width, 1, candidate.cardinality, candidate.radix,
                                   min_attn_channels)
        # avd: the stride moves to a 3x3 average pool after the split attention
        self.avd = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(width, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.avd(self.conv2(out))
        return self.bn3(self.conv3(out))


def avg_down(inplanes: int, outplanes: int, stride: int) -> nn.Sequential:
    """ResNet-D projection shortcut: average pool (when strided), 1x1 conv, BN."""
    pool: nn.Module = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) \
        if stride > 1 else nn.Identity()
    return nn.Sequential(pool, nn.Conv2d(inplanes, outplanes, 1, bias=False),
                         nn.BatchNorm2d(outplanes))


class SuperBlock(nn.Module):
    """One searchable block: the candidates and their shared shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int,
                 candidates: Sequence[Candidate], min_attn_channels: int) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(Bottleneck(inplanes, planes, stride, c, min_attn_channels)
                                        for c in candidates)
        needs = stride != 1 or inplanes != planes * EXPANSION
        self.downsample = avg_down(inplanes, planes * EXPANSION, stride) if needs else None

    def forward(self, x: Tensor, choice: int) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.candidates[choice](x) + shortcut)

    def path_modules(self, choice: int) -> list[nn.Module]:
        """The modules a path through this block uses (its candidate and the shortcut)."""
        return [self.candidates[choice]] + ([self.downsample] if self.downsample is not None else [])


def stem(cfg: SupernetConfig) -> nn.Sequential:
    """The deep ResNet-D stem followed by BN, ReLU and the stride-2 max pool."""
    w = cfg.stem_width
    return nn.Sequential(
        nn.Conv2d(cfg.in_chans, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1))


def _block_shapes(cfg: SupernetConfig) -> Iterator[tuple[int, int, int]]:
    """(inplanes, planes, stride) of every block, stage after stage."""
    inplanes = 2 * cfg.stem_width
    for stage, count in enumerate(cfg.layers):
        planes = cfg.base_planes * 2 ** stage
        for index in range(count):
            yield inplanes, planes, (2 if stage > 0 and index == 0 else 1)
            inplanes = planes * EXPANSION


def init_weights(module: nn.Module) -> None:
    """timm's ResNet init: Kaiming-normal (fan-out) convs, BN at (1, 0), then the last BN
    of every bottleneck at zero so each residual branch starts as the identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)


class Supernet(nn.Module):
    """All candidates of every block; `forward(x, arch)` runs one path."""

    def __init__(self, cfg: SupernetConfig) -> None:
        super().__init__()
        self.cfg, self.space = cfg, cfg.space()
        self.stem = stem(cfg)
        self.blocks = nn.ModuleList(SuperBlock(i, p, s, self.space.candidates, cfg.min_attn_channels)
                                    for i, p, s in _block_shapes(cfg))
        init_weights(self)

    def forward(self, x: Tensor, arch: Sequence[int]) -> Tensor:
        """The last stage's feature map `(B, out_channels, h, w)` along `arch`."""
        if len(arch) != len(self.blocks):
            raise ValueError(f"architecture has {len(arch)} choices, the supernet "
                             f"{len(self.blocks)} blocks")
        x = self.stem(x)
        for block, choice in zip(self.blocks, arch):
            x = block(x, int(choice))
        return x

    def features(self, x: Tensor, arch: Sequence[int]) -> Tensor:
        """Globally average-pooled features `(B, out_channels)`."""
        return self(x, arch).mean(dim=(2, 3))

    def path_modules(self, arch: Sequence[int]) -> list[nn.Module]:
        """The stem and, per block, the chosen candidate and the shared shortcut: what the
        path-wise mean teacher updates (official `ema_blocks`)."""
        out: list[nn.Module] = [self.stem]
        for block, choice in zip(self.blocks, arch):
            out.extend(block.path_modules(int(choice)))
        return out


class SubNet(nn.Module):
    """The fixed network of one architecture: an ordinary ResNeSt-D feature extractor."""

    def __init__(self, cfg: SupernetConfig, arch: Sequence[int]) -> None:
        super().__init__()
        self.cfg, self.arch = cfg, tuple(cfg.space().parse(list(arch)))
        self.stem = stem(cfg)
        self.blocks = nn.ModuleList()
        for (inplanes, planes, stride), choice in zip(_block_shapes(cfg), self.arch):
            block = SuperBlock(inplanes, planes, stride, [CANDIDATES[choice]],
                               cfg.min_attn_channels)
            self.blocks.append(block)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, 0)
        return x.mean(dim=(2, 3))

    @classmethod
    def from_supernet(cls, supernet: Supernet, arch: Sequence[int]) -> "SubNet":
        """The sub-network `arch` with the supernet's weights (inherited weights)."""
        net = cls(supernet.cfg, arch)
        net.stem.load_state_dict(supernet.stem.state_dict())
        for mine, theirs, choice in zip(net.blocks, supernet.blocks, net.arch):
            mine.candidates[0].load_state_dict(theirs.candidates[choice].state_dict())
            if mine.downsample is not None:
                mine.downsample.load_state_dict(theirs.downsample.state_dict())
        return net


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is again the sum over processes: every rank's
    loss depends on the global statistics, so each input's gradient collects all ranks'."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        import torch.distributed as dist

        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        import torch.distributed as dist

        out = grad.clone()
        dist.all_reduce(out)
        return out


class ProcessGroupBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across the
    processes of the default group, in plain PyTorch over any backend (gloo on CPU): torch's
    `SyncBatchNorm` refuses CPU tensors. Mean and biased variance come from differentiable
    all-reduces (two passes: sum and count, then the sum of squared deviations), so
    outputs, gradients and the running statistics (momentum update with the unbiased
    variance, as BatchNorm does) equal one process normalising the whole batch. Outside
    training, or in one process, it is an ordinary BatchNorm2d."""

    def forward(self, x: Tensor) -> Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input, got {x.dim()}-D")
        dims = (0, 2, 3)
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.shape[1]])])
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
                n = float(count)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def convert_sync_bn(module: nn.Module) -> nn.Module:
    """Cross-process BatchNorm (the official code's SyncBN) when running multi-process:
    torch's `SyncBatchNorm` on GPUs, `ProcessGroupBatchNorm` on CPU (gloo), both with
    the original parameters and running statistics. One process: unchanged."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return module
    if torch.cuda.is_available():
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_group_bn(module)


def _to_group_bn(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        like = module.weight if module.affine else module.running_mean
        new = ProcessGroupBatchNorm(module.num_features, module.eps, module.momentum,
                                    module.affine, module.track_running_stats,
                                    device=None if like is None else like.device,
                                    dtype=None if like is None else like.dtype)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        if module.affine:
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
        return new
    for name, child in module.named_children():
        module.add_module(name, _to_group_bn(child))
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
