"""Bird's-eye-view stages of SECOND-style detectors (OpenPCDet `HeightCompression` and
`BaseBEVBackbone`), layer for layer, so parameter counts and shapes match the reference
models and OpenPCDet checkpoints map onto them name for name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class HeightCompression(nn.Module):
    """Dense 3D features (B, C, D, H, W) -> BEV map (B, C*D, H, W) by stacking heights."""

    def __init__(self, num_bev_features: int) -> None:
        super().__init__()
        self.num_bev_features = num_bev_features

    def forward(self, batch_dict: dict) -> dict:
        dense = batch_dict["encoded_spconv_tensor"].dense()
        n, c, d, h, w = dense.shape
        batch_dict["spatial_features"] = dense.reshape(n, c * d, h, w)
        batch_dict["spatial_features_stride"] = batch_dict["encoded_spconv_tensor_stride"]
        return batch_dict


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class BaseBEVBackbone(nn.Module):
    """Levels of 3x3 convolutions (the first strided), each upsampled back to a common
    resolution and concatenated into `spatial_features_2d` (OpenPCDet `BaseBEVBackbone`;
    an upsample stride below 1 becomes a strided convolution)."""

    def __init__(self, input_channels: int, layer_nums: Sequence[int],
                 layer_strides: Sequence[int], num_filters: Sequence[int],
                 upsample_strides: Sequence[float], num_upsample_filters: Sequence[int]) -> None:
        super().__init__()
        levels = len(layer_nums)
        if not (len(layer_strides) == len(num_filters) == levels):
            raise ValueError("layer_nums, layer_strides and num_filters must have one entry per level")
        if len(upsample_strides) != len(num_upsample_filters) or len(upsample_strides) < levels:
            raise ValueError("upsample_strides and num_upsample_filters need one entry per level")
        c_in_list = [input_channels, *num_filters[:-1]]
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        for idx in range(levels):
            layers: list[nn.Module] = [
                nn.ZeroPad2d(1),
                nn.Conv2d(c_in_list[idx], num_filters[idx], kernel_size=3,
                          stride=layer_strides[idx], padding=0, bias=False),
                _bn(num_filters[idx]), nn.ReLU()]
            for _ in range(layer_nums[idx]):
                layers += [nn.Conv2d(num_filters[idx], num_filters[idx], kernel_size=3,
                                     padding=1, bias=False), _bn(num_filters[idx]), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            stride = upsample_strides[idx]
            if stride >= 1:
                up: nn.Module = nn.ConvTranspose2d(num_filters[idx], num_upsample_filters[idx],
                                                   int(stride), stride=int(stride), bias=False)
            else:
                down = int(np.round(1 / stride))
                up = nn.Conv2d(num_filters[idx], num_upsample_filters[idx], down, stride=down,
                               bias=False)
            self.deblocks.append(nn.Sequential(up, _bn(num_upsample_filters[idx]), nn.ReLU()))
        c_in = int(sum(num_upsample_filters[:levels]))
        if len(upsample_strides) > levels:
            last = int(upsample_strides[-1])
            self.deblocks.append(nn.Sequential(
                nn.ConvTranspose2d(c_in, c_in, last, stride=last, bias=False), _bn(c_in),
                nn.ReLU()))
        self.num_bev_features = c_in

    def forward(self, batch_dict: dict) -> dict:
        spatial = batch_dict["spatial_features"]
        ups = []
        x = spatial
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            batch_dict[f"spatial_features_{int(spatial.shape[2] / x.shape[2])}x"] = x
            ups.append(deblock(x))
        x = torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]
        if len(self.deblocks) > len(self.blocks):
            x = self.deblocks[-1](x)
        batch_dict["spatial_features_2d"] = x
        return batch_dict
