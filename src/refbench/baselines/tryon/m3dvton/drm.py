"""M3D-VTON's Depth Refinement Module (DRM): refines MTM's initial front/back depth into the
final double-depth map, guided by the image gradients of the warped garment and of the
person's non-garment parts.

Input (12 channels, the official order): initial front and back depth, the warped garment
(RGB), the head-hand-lower image, the warped garment's Sobel x / y (on the arms + upper
clothes of MTM's segmentation, -1 elsewhere) and the person's Sobel x / y (on head, arms
and lower body, -1 elsewhere). The network is an encoder-decoder with ELU activations: four
stride-2 stages (widths 2, 4, 8, 16 x ngf, norm at the end of each), two residual blocks at
1/16, and three decoder stages that up-sample to the skip's size (bilinear), concatenate
the skip, fuse with a 1 x 1 conv and refine with two 3 x 3 convs; the last stage returns
to full size and ends in tanh. `DRMModel.forward` applies tanh once more to the network's
output (the network already ends with one): kept, the final depth is `tanh(tanh(.))`.

Losses (official defaults): `log_l1` depth loss on each side, the depth-gradient loss
(`log_l1` of the 3 x 3 Sobel x and y of prediction vs ground truth, on each side, weight 1)
and, off by default as in the official options (`--add_normal_loss`), the normal loss
(`1 - cos` of the orthographic normal maps, weight 1.5). The normal-map GAN of the options
(off by default) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.tryon.losses import (depth_grad_loss, depth_to_normal_ortho, log_l1,
                                             normal_loss, sobel)
from refbench.baselines.tryon.unet import NormKind, norm_layer

#: initial depth (2) + warped garment (3) + head-hand-lower (3) + garment and person Sobel (4)
DRM_INPUT_NC = 12


@dataclass
class DRMWeights:
    """The official `lambda_*` and switches of DRM's loss."""

    depth: float = 1.0
    grad: float = 1.0
    normal: float = 1.5
    add_grad_loss: bool = True
    add_normal_loss: bool = False


def _stack(*layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(*layers)


class DRMNet(nn.Module):
    """The DRM encoder-decoder (module docstring); `ngf` is the official `--ngf` (64)."""

    def __init__(self, in_channel: int = DRM_INPUT_NC, out_channel: int = 2, ngf: int = 64,
                 norm: NormKind = "instance") -> None:
        super().__init__()
        g = ngf

        def conv(i: int, o: int, k: int = 3, s: int = 1) -> nn.Conv2d:
            return nn.Conv2d(i, o, k, padding=k // 2, stride=s)

        elu = nn.ELU
        self.l0 = _stack(conv(in_channel, g), elu(), conv(g, g * 2, s=2), elu(),
                         norm_layer(norm, g * 2))
        self.l1 = _stack(conv(g * 2, g * 2), elu(), conv(g * 2, g * 2), elu(),
                         conv(g * 2, g * 4, s=2), elu(), norm_layer(norm, g * 4))
        self.l2 = _stack(conv(g * 4, g * 4), elu(), conv(g * 4, g * 4), elu(),
                         conv(g * 4, g * 8, s=2), elu(), norm_layer(norm, g * 8))
        self.l3 = _stack(conv(g * 8, g * 8), elu(), conv(g * 8, g * 8), elu(),
                         conv(g * 8, g * 16, s=2), elu(), conv(g * 16, g * 16),
                         norm_layer(norm, g * 16))
        self.block1 = _stack(elu(), conv(g * 16, g * 16), elu(), conv(g * 16, g * 16))
        self.block2 = _stack(elu(), conv(g * 16, g * 16), elu(), conv(g * 16, g * 16))
        self.l3u = _stack(conv(g * 24, g * 8, k=1), elu(), conv(g * 8, g * 8), elu(),
                          conv(g * 8, g * 8), elu(), norm_layer(norm, g * 8))
        self.l2u = _stack(conv(g * 12, g * 4, k=1), elu(), conv(g * 4, g * 4), elu(),
                          conv(g * 4, g * 4), elu(), norm_layer(norm, g * 4))
        self.l1u = _stack(conv(g * 6, g * 2, k=1), elu(), conv(g * 2, g * 2), elu(),
                          conv(g * 2, g * 2), elu(), norm_layer(norm, g * 2))
        self.l0u = _stack(conv(g * 2, g, k=1), elu(), conv(g, g), elu(), conv(g, out_channel),
                          nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        x0 = self.l0(x)
        x1 = self.l1(x0)
        x2 = self.l2(x1)
        x3 = self.l3(x2)
        x3 = self.block1(x3) + x3
        x3 = self.block2(x3) + x3

        def up(t: Tensor, like: Tensor) -> Tensor:
            return F.interpolate(t, size=like.shape[2:4], mode="bilinear")

        x3u = self.l3u(torch.cat((up(x3, x2), x2), dim=1))
        x2u = self.l2u(torch.cat((up(x3u, x1), x1), dim=1))
        x1u = self.l1u(torch.cat((up(x2u, x0), x0), dim=1))
        return self.l0u(up(x1u, x))


def drm_input(front_init: Tensor, back_init: Tensor, warped_cloth: Tensor, hhl: Tensor,
              cloth_sobel: Tensor, person_sobel: Tensor) -> Tensor:
    """The 12-channel input in the official order (sobels: x then y)."""
    return torch.cat([front_init, back_init, warped_cloth, hhl, cloth_sobel, person_sobel], 1)


def drm_depth(net: DRMNet, x: Tensor) -> tuple[Tensor, Tensor]:
    """Final front and back depth, `tanh` of the network's (already tanh) output."""
    front, back = torch.split(net(x), [1, 1], 1)
    return torch.tanh(front), torch.tanh(back)


def drm_losses(front: Tensor, back: Tensor, front_gt: Tensor, back_gt: Tensor,
               weights: DRMWeights) -> dict[str, Tensor]:
    """The official DRM loss and its parts (module docstring)."""
    parts = {"fdepth": weights.depth * log_l1(front, front_gt),
             "bdepth": weights.depth * log_l1(back, back_gt)}
    if weights.add_grad_loss:
        parts["fgrad"] = weights.grad * depth_grad_loss(sobel(front), sobel(front_gt))
        parts["bgrad"] = weights.grad * depth_grad_loss(sobel(back), sobel(back_gt))
    if weights.add_normal_loss:
        parts["fnormal"] = weights.normal * normal_loss(depth_to_normal_ortho(front),
                                                        depth_to_normal_ortho(front_gt))
        parts["bnormal"] = weights.normal * normal_loss(depth_to_normal_ortho(back),
                                                        depth_to_normal_ortho(back_gt))
    total = sum(parts.values(), front.new_zeros(()))
    return {"loss": total, **parts}
