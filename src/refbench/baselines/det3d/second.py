"""SECOND's sparse 3D backbone (OpenPCDet `VoxelBackBone8x`), layer for layer.

Submanifold and strided sparse convolutions (spconv) turn the voxel grid into a
feature volume 8x coarser in x and y and squeezed to 2 heights; with HeightCompression
and BaseBEVBackbone (`det3d.bev`) it forms SECOND's feature extractor. Layers and
indice keys are OpenPCDet's so that OpenPCDet checkpoints load name for name."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import nn

from refbench.baselines.det3d.detector import Detector3D, DetectorConfig
from refbench.baselines.det3d.spconv_utils import import_spconv
from refbench.registry import BASELINES


def _norm(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


def post_act_block(spconv: Any, in_channels: int, out_channels: int, kernel_size: Any,
                   indice_key: str, stride: Any = 1, padding: Any = 0,
                   conv_type: str = "subm") -> nn.Module:
    """Sparse conv (no bias) + BatchNorm1d + ReLU (OpenPCDet `post_act_block`)."""
    if conv_type == "subm":
        conv = spconv.SubMConv3d(in_channels, out_channels, kernel_size, bias=False,
                                 indice_key=indice_key)
    elif conv_type == "spconv":
        conv = spconv.SparseConv3d(in_channels, out_channels, kernel_size, stride=stride,
                                   padding=padding, bias=False, indice_key=indice_key)
    else:
        raise ValueError(f"unknown conv_type {conv_type!r}")
    return spconv.SparseSequential(conv, _norm(out_channels), nn.ReLU())


class VoxelBackBone8x(nn.Module):
    """Sparse 3D CNN with total stride 8 (OpenPCDet `VoxelBackBone8x`)."""

    def __init__(self, input_channels: int, grid_size: Sequence[int]) -> None:
        super().__init__()
        spconv = import_spconv()
        nx, ny, nz = (int(v) for v in grid_size)
        self.sparse_shape = [nz + 1, ny, nx]
        block = partial(post_act_block, spconv)
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(input_channels, 16, 3, padding=1, bias=False, indice_key="subm1"),
            _norm(16), nn.ReLU())
        self.conv1 = spconv.SparseSequential(block(16, 16, 3, padding=1, indice_key="subm1"))
        self.conv2 = spconv.SparseSequential(
            block(16, 32, 3, stride=2, padding=1, indice_key="spconv2", conv_type="spconv"),
            block(32, 32, 3, padding=1, indice_key="subm2"),
            block(32, 32, 3, padding=1, indice_key="subm2"))
        self.conv3 = spconv.SparseSequential(
            block(32, 64, 3, stride=2, padding=1, indice_key="spconv3", conv_type="spconv"),
            block(64, 64, 3, padding=1, indice_key="subm3"),
            block(64, 64, 3, padding=1, indice_key="subm3"))
        self.conv4 = spconv.SparseSequential(
            block(64, 64, 3, stride=2, padding=(0, 1, 1), indice_key="spconv4",
                  conv_type="spconv"),
            block(64, 64, 3, padding=1, indice_key="subm4"),
            block(64, 64, 3, padding=1, indice_key="subm4"))
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv3d(64, 128, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False,
                                indice_key="spconv_down2"),
            _norm(128), nn.ReLU())
        self.num_point_features = 128
        self.backbone_channels = {"x_conv1": 16, "x_conv2": 32, "x_conv3": 64, "x_conv4": 64}

    def forward(self, batch_dict: dict) -> dict:
        spconv = import_spconv()
        x = spconv.SparseConvTensor(features=batch_dict["voxel_features"],
                                    indices=batch_dict["voxel_coords"].int(),
                                    spatial_shape=self.sparse_shape,
                                    batch_size=int(batch_dict["batch_size"]))
        x = self.conv_input(x)
        x_conv1 = self.conv1(x)
        x_conv2 = self.conv2(x_conv1)
        x_conv3 = self.conv3(x_conv2)
        x_conv4 = self.conv4(x_conv3)
        batch_dict["encoded_spconv_tensor"] = self.conv_out(x_conv4)
        batch_dict["encoded_spconv_tensor_stride"] = 8
        batch_dict["multi_scale_3d_features"] = {
            "x_conv1": x_conv1, "x_conv2": x_conv2, "x_conv3": x_conv3, "x_conv4": x_conv4}
        batch_dict["multi_scale_3d_strides"] = {"x_conv1": 1, "x_conv2": 2, "x_conv3": 4,
                                                "x_conv4": 8}
        return batch_dict


# -- the registered baseline -------------------------------------------------------------


@BASELINES.register("second", family="SECOND (Yan et al., 2018)", tasks="kitti, waymo")
class Second(Detector3D):
    """SECOND: mean VFE, `VoxelBackBone8x` (spconv), height compression, BaseBEVBackbone and
    an anchor head. The reference single-stage detector of VoTr's tables."""

    Config = DetectorConfig

    def build_backbone(self, cfg: DetectorConfig, grid: Any) -> nn.Module:
        return VoxelBackBone8x(cfg.num_point_features, grid.grid_size)
