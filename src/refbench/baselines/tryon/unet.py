"""The U-Net generator of M3D-VTON's TFM (pix2pix's recursive U-Net with CP-VTON's change:
up-sampling by bilinear interpolation + 3 x 3 convolution instead of transposed convs),
and the pix2pix weight initialisation every M3D-VTON network gets (`init_net`).

Each level halves the size with a 4 x 4 stride-2 convolution (LeakyReLU 0.2 before it
except at the outermost level, norm after it except at the outermost and innermost), and
doubles it back with ReLU -> bilinear x2 (`align_corners=True`) -> 3 x 3 conv -> norm; the
skip connection concatenates a level's input to its output. Widths: ngf, 2ngf, 4ngf, then
8ngf for the remaining `num_downs - 3` levels (dropout, when asked, only in the 8ngf -> 8ngf
levels, as pix2pix); fewer than pix2pix's minimum of 5 levels simply stops the list early
(4 levels fit the 128 x 80 synthetic release); with InstanceNorm (affine-free, as
`get_norm_layer('instance')`) convolutions keep their bias. Height and width must be
multiples of `2 ** num_downs` (512 x 320 with the official 6 levels: 8 x 5 at the bottom).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from refbench.errors import RefbenchError

NormKind = Literal["instance", "batch", "none"]


def norm_layer(kind: NormKind, channels: int) -> nn.Module:
    """pix2pix's `get_norm_layer`: InstanceNorm without affine or running statistics,
    BatchNorm with both, or nothing."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise RefbenchError(f"unknown norm {kind!r} (instance, batch, none)", key="model.norm")


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """pix2pix's `init_weights(..., 'normal', 0.02)`: conv / linear weights ~ N(0, gain),
    biases 0; BatchNorm weights ~ N(1, gain), biases 0."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


class UnetBlock(nn.Module):
    """One level: down, the inner levels, up; its input concatenated to its output except
    at the outermost level."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, norm: NormKind = "instance",
                 use_dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        use_bias = norm != "batch"
        input_nc = outer_nc if input_nc is None else input_nc
        down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1,
                              bias=use_bias)
        upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        up_in = inner_nc if innermost else inner_nc * 2
        up_conv = nn.Conv2d(up_in, outer_nc, kernel_size=3, stride=1, padding=1, bias=use_bias)
        if outermost:
            layers = [down_conv, submodule, nn.ReLU(True), upsample, up_conv]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), upsample, up_conv,
                      norm_layer(norm, outer_nc)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down_conv, norm_layer(norm, inner_nc), submodule,
                      nn.ReLU(True), upsample, up_conv, norm_layer(norm, outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*[m for m in layers if m is not None])

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """`(B, input_nc, H, W)` -> `(B, output_nc, H, W)` raw outputs (the caller applies tanh /
    sigmoid), built from the innermost level out as pix2pix's `UnetGenerator`."""

    def __init__(self, input_nc: int, output_nc: int, num_downs: int = 6, ngf: int = 64,
                 norm: NormKind = "instance", use_dropout: bool = False) -> None:
        super().__init__()
        if num_downs < 2:
            raise RefbenchError(f"the U-Net needs at least 2 levels (got {num_downs})",
                                key="model.num_downs")
        self.num_downs = num_downs
        # (outer, inner) widths from the outermost level in; the last level is the innermost
        widths = [(output_nc, ngf), (ngf, ngf * 2), (ngf * 2, ngf * 4), (ngf * 4, ngf * 8)]
        widths = (widths + [(ngf * 8, ngf * 8)] * max(0, num_downs - 4))[:num_downs]
        outer, inner = widths[-1]
        block = UnetBlock(outer, inner, innermost=True, norm=norm)
        for depth in range(num_downs - 2, 0, -1):
            outer, inner = widths[depth]
            block = UnetBlock(outer, inner, submodule=block, norm=norm,
                              use_dropout=use_dropout and inner == outer == ngf * 8)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                               outermost=True, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        factor = 2 ** self.num_downs
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise RefbenchError(f"a {self.num_downs}-level U-Net needs height and width that are "
                                f"multiples of {factor}, got {x.shape[-2]}x{x.shape[-1]}")
        return self.model(x)


def check_unet_size(height: int, width: int, num_downs: int) -> None:
    """Refuse, naming the key, a resolution the U-Net cannot halve `num_downs` times."""
    factor = 2 ** num_downs
    if height % factor or width % factor:
        raise RefbenchError(f"{height}x{width} is not a multiple of 2^{num_downs} = {factor} "
                            f"(lower model.num_downs: 4 fits 128x80, the official 6 fits 512x320)",
                            key="model.num_downs")
