"""Losses of the try-on networks, re-derived from M3D-VTON's `models/networks.py` and
`util/util.py` (WAS-VTON reuses the image ones).

- `log_l1`: the depth loss, `mean(log(|p - g| + 1))` (`DepthLoss`);
- `sobel` + `depth_grad_loss`: the 3 x 3 Sobel x / y of a depth map (zero padding, as the
  official `nn.Conv2d`) and `log_l1` on each (`DepthGradLoss`);
- `depth_to_normal_ortho` + `normal_loss`: the normal map of an orthographic depth map
  (NormalGAN's four-corner construction) and `mean(1 - cos)` between normal maps;
- `PerceptualLoss`: the VGG19 loss of pix2pixHD / CP-VTON, `sum_i w_i L1(phi_i(x), phi_i(y))`
  over relu1_1..relu5_1 with `w = 1/32, 1/16, 1/8, 1/4, 1`, target features detached, on
  the [-1, 1] images as the official code feeds them (no ImageNet normalisation). The VGG19
  weights come only from a file the user supplies (torchvision's `vgg19-dcbac2ef.pth`
  state dict, keys `features.<i>.weight|bias`); nothing is downloaded. Without one the
  documented substitute `pyramid` is used: the same five weights on the L1 distance of the
  Sobel gradients (per channel) of a five-level average-pooled image pyramid, finest level
  weighted 1/32 as relu1_1, coarsest 1 as relu5_1. It is weights-free and rewards the same
  thing at the same scales (edges and texture placement), but its values are not VGG's;
  `none` drops the term;
- `total_variation`: mean absolute difference of neighbouring pixels (smoothness prior).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.errors import RefbenchError

PERCEPTUAL_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
#: torchvision VGG19 `features` indices of the convolutions and the five slice ends
#: (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1: layers 0-1, 2-6, 7-11, 12-20, 21-29)
VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
VGG19_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
VGG19_POOLS = (4, 9, 18, 27)
VGG19_SLICE_ENDS = (2, 7, 12, 21, 30)
PerceptualKind = Literal["vgg19", "pyramid", "none"]


def log_l1(pred: Tensor, target: Tensor) -> Tensor:
    """M3D-VTON's depth loss: the mean of `log(|pred - target| + 1)`."""
    return torch.log(torch.abs(pred - target) + 1).mean()


def sobel(depth: Tensor) -> Tensor:
    """`(B, 1, H, W)` -> `(B, 2, H, W)`: the official 3 x 3 Sobel x and y (cross-correlation,
    zero padding), `kx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]`, `ky = kx^T`."""
    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1).to(depth)
    return F.conv2d(depth, kernel, padding=1)


def depth_grad_loss(pred_grad: Tensor, target_grad: Tensor) -> Tensor:
    """`log_l1` of the x gradients plus `log_l1` of the y gradients (`DepthGradLoss`)."""
    return log_l1(pred_grad[:, 0], target_grad[:, 0]) + log_l1(pred_grad[:, 1], target_grad[:, 1])


def depth_to_normal_ortho(depth: Tensor) -> Tensor:
    """`(B, 1, H, W)` world-z depth -> `(B, 3, H, W)` normals (`util.depth2normal_ortho`).

    Pixels become orthographic camera points: `x = (X + o) / s - 1`, `y = (H - 1 - Y) / s - 1`
    with `s = H / 2` and `o = (H - W) / 2 - 1` (the official 256 and 95 at 512 x 320).
    At each inner pixel the four neighbours' vectors are kept only on the nearer side of
    each axis, the four corner normals (cross products) are normalised and summed; normals
    equal to the first pixel's (the flat background's zero) become `(0, 0, 1)` and the
    one-pixel border is zero, as in the official function."""
    b, _, h, w = depth.shape
    scale, offset = h / 2.0, (h - w) / 2.0 - 1.0
    ys, xs = torch.meshgrid(torch.arange(h, dtype=depth.dtype, device=depth.device),
                            torch.arange(w, dtype=depth.dtype, device=depth.device), indexing="ij")
    x = ((xs + offset) / scale - 1).expand(b, h, w)
    y = ((h - 1 - ys) / scale - 1).expand(b, h, w)
    p = torch.stack([x, y, depth[:, 0]], dim=3)
    centre = p[:, 1:-1, 1:-1]
    vw, vs = p[:, 1:-1, :-2] - centre, p[:, 2:, 1:-1] - centre
    ve, vn = p[:, 1:-1, 2:] - centre, p[:, :-2, 1:-1] - centre
    cw = vw * (vw[..., 2] < ve[..., 2]).unsqueeze(3).to(depth)
    ce = ve * (vw[..., 2] > ve[..., 2]).unsqueeze(3).to(depth)
    cn = vn * (vn[..., 2] < vs[..., 2]).unsqueeze(3).to(depth)
    cs = vs * (vn[..., 2] > vs[..., 2]).unsqueeze(3).to(depth)

    def unit(v: Tensor) -> Tensor:
        return F.normalize(v, p=2, dim=3)

    normal = (unit(torch.cross(cn, cw, dim=3)) + unit(torch.cross(cw, cs, dim=3))
              + unit(torch.cross(cs, ce, dim=3)) + unit(torch.cross(ce, cn, dim=3)))
    same = torch.all(normal == normal[0, 0, 0], dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=depth.dtype, device=depth.device)
    normal = torch.where(same, up, normal)
    normal = F.pad(normal, (0, 0, 1, 1, 1, 1))
    return normal.permute(0, 3, 1, 2)


def normal_loss(pred_normal: Tensor, target_normal: Tensor) -> Tensor:
    """`mean(1 - cos(pred, target))` over pixels (`NormalLoss`, eps 1e-12)."""
    return (1 - F.cosine_similarity(pred_normal, target_normal, dim=1, eps=1e-12)).mean()


def total_variation(image: Tensor) -> Tensor:
    """Anisotropic total variation: mean |x[i+1] - x[i]| over rows plus over columns."""
    return ((image[..., 1:, :] - image[..., :-1, :]).abs().mean()
            + (image[..., :, 1:] - image[..., :, :-1]).abs().mean())


# -- perceptual ---------------------------------------------------------------------------
class VGG19Features(nn.Module):
    """VGG19's convolutional trunk up to relu5_1, returning the five slice outputs; weights
    from a torchvision `vgg19` state dict (only `features.*` keys are read)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, conv = 3, 0
        for index in range(VGG19_SLICE_ENDS[-1]):
            if index in VGG19_POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            elif index in VGG19_CONVS:
                layers.append(nn.Conv2d(in_ch, VGG19_CHANNELS[conv], 3, padding=1))
                in_ch, conv = VGG19_CHANNELS[conv], conv + 1
            else:
                layers.append(nn.ReLU(inplace=False))
        self.layers = nn.ModuleList(layers)

    def load_torchvision(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise RefbenchError("VGG19 weights file not found (torchvision's vgg19-dcbac2ef.pth)",
                                path=path, key="model.vgg_weights")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch's errors for cut or foreign files
            raise RefbenchError(f"cannot read VGG19 weights: {' '.join(str(exc).split())[:160]}",
                                path=path) from None
        mine = {}
        for index in (i for i in VGG19_CONVS if i < VGG19_SLICE_ENDS[-1]):
            for part in ("weight", "bias"):
                key = f"features.{index}.{part}"
                if key not in state:
                    raise RefbenchError(f"not a torchvision VGG19 state dict: no {key!r}", path=path)
                mine[f"layers.{index}.{part}"] = state[key]
        try:
            self.load_state_dict(mine)
        except RuntimeError as exc:
            raise RefbenchError(f"VGG19 weights of the wrong shape: {str(exc).splitlines()[0]}",
                                path=path) from None

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index + 1 in VGG19_SLICE_ENDS:
                outs.append(x)
        return outs


def image_pyramid_gradients(image: Tensor, levels: int = 5) -> list[Tensor]:
    """Per-channel Sobel gradients of `levels` average-pooled scales (finest first)."""
    out = []
    b, c, _, _ = image.shape
    for level in range(levels):
        if level:
            if min(image.shape[-2:]) < 2:
                break
            image = F.avg_pool2d(image, 2)
        grads = sobel(image.reshape(b * c, 1, *image.shape[-2:]))
        out.append(grads.reshape(b, c * 2, *image.shape[-2:]))
    return out


class PerceptualLoss(nn.Module):
    """The weighted five-level feature L1 (module docstring): `vgg19` with user weights,
    `pyramid` (the weights-free substitute) or `none` (always 0)."""

    def __init__(self, kind: PerceptualKind = "pyramid", vgg_weights: str | None = None) -> None:
        super().__init__()
        if kind not in ("vgg19", "pyramid", "none"):
            raise RefbenchError(f"unknown perceptual loss {kind!r} (vgg19, pyramid, none)",
                                key="model.perceptual")
        if kind == "vgg19" and not vgg_weights:
            raise RefbenchError("perceptual: vgg19 needs model.vgg_weights (torchvision's "
                                "vgg19-dcbac2ef.pth, supplied by you: nothing is downloaded); "
                                "or use the weights-free substitute perceptual: pyramid",
                                key="model.vgg_weights")
        self.kind = kind
        # a plain attribute, not a submodule: frozen, outside checkpoints and the optimizer
        self._vgg: list[VGG19Features] = []
        if kind == "vgg19":
            vgg = VGG19Features()
            vgg.load_torchvision(str(vgg_weights))
            vgg.requires_grad_(False).eval()
            self._vgg.append(vgg)

    def features(self, x: Tensor) -> list[Tensor]:
        if self.kind == "vgg19":
            vgg = self._vgg[0]
            if next(vgg.parameters()).device != x.device:
                vgg.to(x.device)
            return vgg(x)
        return image_pyramid_gradients(x, len(PERCEPTUAL_WEIGHTS))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if self.kind == "none":
            return x.new_zeros(())
        loss = x.new_zeros(())
        for weight, fx, fy in zip(PERCEPTUAL_WEIGHTS, self.features(x), self.features(y)):
            loss = loss + weight * F.l1_loss(fx, fy.detach())
        return loss
