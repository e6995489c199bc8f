"""M3D-VTON's Monocular Prediction Module (the code's MTM): from the person representation
and the pre-aligned garment it predicts, in one network, the garment's TPS warp, the
person's initial front/back depth and the person's segmentation.

Two feature extractors (one for the 29-channel person representation: body shape,
head-hand-lower image and 25 pose heat maps; one for the garment) each halve the image four
times (4 x 4 stride-2 convs, ReLU *then* norm, as the official code orders them, then two
3 x 3 convs). For the warp, both feature maps are L2-normalised per position and correlated
(every garment position against every person position: H/16 * W/16 channels), and a
regressor (two stride-2 and two 3 x 3 convs with InstanceNorm, a linear layer and tanh)
outputs the TPS control-point offsets (`tps.py`, 3 x 3 grid by default). For depth and
segmentation the two feature maps are concatenated and decoded by two up-sampling decoders
(bilinear x2 + 3 x 3 conv + InstanceNorm + ReLU, four times): 2 depth channels (front, back;
the decoder ends with an InstanceNorm, then `tanh`) and 20 LIP label logits.

Losses (`mtm_losses`, official defaults): L1 between the warped garment and the person's
upper clothes (`im * pcm + (1 - pcm)`), L1 between tanh depth and the world-z ground truth
(both sides, background 0), and class-weighted cross-entropy of the segmentation (weight
1.5 for background, hat, hair, neck, face and arms, SieveNet's choice; 1 elsewhere); all
weights 1. The official options' two warp regularisers, off by default there and here,
are switched on with `add_theta_loss` (ACGPN's control-point smoothness, weight 0.1) and
`add_grid_loss` (equal steps of the sampling grid, weight 1, l1): `tps.theta_loss`,
`tps.grid_loss`; officially neither runs as shipped (see there), these are what they mean.

Widths: the official 64 base filters, 512-wide features and decoders, a 512-wide regressor
at 512 x 320 (`ngf`, `dec_width`, `reg_width`); the tiny recipes shrink them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.tryon.tps import TpsGridGen, grid_loss, theta_loss, warp
from refbench.baselines.tryon.unet import NormKind, norm_layer
from refbench.errors import RefbenchError

NUM_LABELS = 20
#: LIP labels the official segmentation loss weights 1.5 (background, hat, hair, neck,
#: face, left and right arm)
HEAVY_LABELS = (0, 1, 2, 10, 13, 14, 15)
HEAVY_WEIGHT = 1.5
#: the feature extractors halve the image this many times (the decoders undo it)
DOWNSAMPLINGS = 4


@dataclass
class MTMWeights:
    """The official `lambda_*` of MTM's loss."""

    warp: float = 1.0
    depth: float = 1.0
    segmt: float = 1.0
    theta: float = 0.1
    grid: float = 1.0
    add_theta_loss: bool = False
    add_grid_loss: bool = False
    grid_size: int = 3
    grid_distance: str = "l1"


class FeatureExtraction(nn.Module):
    """in -> ngf -> 2ngf -> 4ngf -> 8ngf (capped at 512), each a 4 x 4 stride-2 conv, ReLU,
    norm; then two 3 x 3 convs at the last width (norm between them)."""

    def __init__(self, input_nc: int, ngf: int, norm: NormKind) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ngf, 4, 2, 1), nn.ReLU(True),
                                   norm_layer(norm, ngf)]
        width = ngf
        for _ in range(DOWNSAMPLINGS - 1):
            out = min(width * 2, 512) if width < 512 else 512
            layers += [nn.Conv2d(width, out, 4, 2, 1), nn.ReLU(True), norm_layer(norm, out)]
            width = out
        layers += [nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(True), norm_layer(norm, width),
                   nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(True)]
        self.out_channels = width
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def l2_normalise(feature: Tensor) -> Tensor:
    """Per-position L2 normalisation over channels (eps 1e-6 inside the root)."""
    return feature / torch.sqrt(torch.sum(feature ** 2, 1, keepdim=True) + 1e-6)


def correlation(feature_a: Tensor, feature_b: Tensor) -> Tensor:
    """`(B, h*w, h, w)`: at each position of B, its dot product with every position of A,
    A's positions enumerated column-major (the official transpose-then-view order)."""
    b, c, h, w = feature_a.shape
    a = feature_a.transpose(2, 3).contiguous().view(b, c, h * w)
    bb = feature_b.view(b, c, h * w).transpose(1, 2)
    return torch.bmm(bb, a).view(b, h, w, h * w).transpose(2, 3).transpose(1, 2)


def _conv_out(size: int, kernel: int = 4, stride: int = 2, pad: int = 1) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class FeatureRegression(nn.Module):
    """Correlation volume -> TPS offsets in (-1, 1): two 4 x 4 stride-2 convs (width, width/2),
    two 3 x 3 convs (width/4, width/8), each InstanceNorm + ReLU, linear, tanh."""

    def __init__(self, input_nc: int, feat_h: int, feat_w: int, output_dim: int,
                 width: int = 512) -> None:
        super().__init__()
        w1, w2, w3, w4 = width, width // 2, width // 4, width // 8
        self.conv = nn.Sequential(
            nn.Conv2d(input_nc, w1, 4, 2, 1), nn.InstanceNorm2d(w1), nn.ReLU(True),
            nn.Conv2d(w1, w2, 4, 2, 1), nn.InstanceNorm2d(w2), nn.ReLU(True),
            nn.Conv2d(w2, w3, 3, padding=1), nn.InstanceNorm2d(w3), nn.ReLU(True),
            nn.Conv2d(w3, w4, 3, padding=1), nn.InstanceNorm2d(w4), nn.ReLU(True))
        out_h, out_w = _conv_out(_conv_out(feat_h)), _conv_out(_conv_out(feat_w))
        if out_h * out_w < 2:
            raise RefbenchError(f"the TPS regressor's {feat_h}x{feat_w} correlation map shrinks to "
                                f"{out_h}x{out_w}, too small for instance norm; use a larger image",
                                key="model.height")
        self.linear = nn.Linear(w4 * out_h * out_w, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.linear(self.conv(x).reshape(x.shape[0], -1)))


class UpDecoder(nn.Module):
    """Features at 1/16 -> full size: two 3 x 3 convs at `width`, then four (bilinear x2,
    3 x 3 conv, norm, ReLU) halving the width (width/2, /4, /8, then `out_nc` with no ReLU,
    and with a final InstanceNorm only when `final_norm`: the depth decoder)."""

    def __init__(self, in_nc: int, out_nc: int, width: int, align_corners: bool,
                 final_norm: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.head = nn.ModuleList([nn.Conv2d(in_nc, width, 3, 1, 1), nn.Conv2d(width, width, 3, 1, 1)])
        self.head_norms = nn.ModuleList([nn.InstanceNorm2d(width), nn.InstanceNorm2d(width)])
        chain = [width, width // 2, width // 4, width // 8, out_nc]
        self.ups = nn.ModuleList(nn.Conv2d(chain[i], chain[i + 1], 3, 1, 1)
                                 for i in range(DOWNSAMPLINGS))
        self.norms = nn.ModuleList(
            nn.InstanceNorm2d(chain[i + 1]) if (i < DOWNSAMPLINGS - 1 or final_norm)
            else nn.Identity() for i in range(DOWNSAMPLINGS))

    def forward(self, x: Tensor) -> Tensor:
        for conv, norm in zip(self.head, self.head_norms):
            x = F.relu(norm(conv(x)))
        for i, (conv, norm) in enumerate(zip(self.ups, self.norms)):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=self.align_corners)
            x = norm(conv(x))
            if i < DOWNSAMPLINGS - 1:
                x = F.relu(x)
        return x


class MTMNet(nn.Module):
    """The MTM network: `(agnostic, cloth)` -> theta, sampling grid, 2 raw depth maps, 20
    segmentation logits (module docstring)."""

    def __init__(self, height: int, width: int, input_nc_a: int = 29, input_nc_b: int = 3,
                 ngf: int = 64, grid_size: int = 3, norm: NormKind = "instance",
                 dec_width: int = 512, reg_width: int = 512) -> None:
        super().__init__()
        factor = 2 ** DOWNSAMPLINGS
        if height % factor or width % factor:
            raise RefbenchError(f"MTM needs height and width that are multiples of {factor}, got "
                                f"{height}x{width}", key="model.height")
        feat_h, feat_w = height // factor, width // factor
        self.extraction_a = FeatureExtraction(input_nc_a, ngf, norm)
        self.extraction_b = FeatureExtraction(input_nc_b, ngf, norm)
        feat = self.extraction_a.out_channels
        self.regression = FeatureRegression(feat_h * feat_w, feat_h, feat_w, 2 * grid_size ** 2,
                                            reg_width)
        self.tps = TpsGridGen(height, width, grid_size)
        self.depth_dec = UpDecoder(2 * feat, 2, dec_width, align_corners=False, final_norm=True)
        self.segmt_dec = UpDecoder(2 * feat, NUM_LABELS, dec_width, align_corners=True,
                                   final_norm=False)

    def forward(self, agnostic: Tensor, cloth: Tensor) -> dict[str, Tensor]:
        feature_a = self.extraction_a(agnostic)
        feature_b = self.extraction_b(cloth)
        both = torch.cat([feature_a, feature_b], 1)
        theta = self.regression(correlation(l2_normalise(feature_a), l2_normalise(feature_b)))
        return {"theta": theta, "grid": self.tps(theta), "depth": self.depth_dec(both),
                "segmt": self.segmt_dec(both)}


def segmentation_weights(device: torch.device | None = None) -> Tensor:
    weights = torch.ones(NUM_LABELS)
    weights[list(HEAVY_LABELS)] = HEAVY_WEIGHT
    return weights.to(device) if device is not None else weights


def mtm_outputs(net: MTMNet, agnostic: Tensor, cloth: Tensor, cloth_mask: Tensor
                ) -> dict[str, Tensor]:
    """Run MTM and apply its heads as `MTMModel.forward`: the garment warped with border
    padding, its mask with zeros, tanh front/back depth, segmentation logits and argmax."""
    out = net(agnostic, cloth)
    front, back = torch.split(torch.tanh(out["depth"]), [1, 1], 1)
    return {"theta": out["theta"], "grid": out["grid"],
            "warped_cloth": warp(cloth, out["grid"], "border"),
            "warped_mask": warp(cloth_mask, out["grid"], "zeros"),
            "front": front, "back": back, "segmt": out["segmt"],
            "parse": out["segmt"].argmax(1)}


def mtm_losses(out: dict[str, Tensor], parse_cloth: Tensor, front_gt: Tensor, back_gt: Tensor,
               parse_gt: Tensor, weights: MTMWeights) -> dict[str, Tensor]:
    """The official MTM loss and its parts (module docstring)."""
    warp_loss = weights.warp * F.l1_loss(out["warped_cloth"], parse_cloth)
    fdepth = weights.depth * F.l1_loss(out["front"], front_gt)
    bdepth = weights.depth * F.l1_loss(out["back"], back_gt)
    segmt = weights.segmt * F.cross_entropy(out["segmt"], parse_gt,
                                            weight=segmentation_weights(parse_gt.device))
    parts = {"warp": warp_loss, "fdepth": fdepth, "bdepth": bdepth, "segmt": segmt}
    if weights.add_theta_loss:
        parts["theta"] = weights.theta * theta_loss(out["theta"], weights.grid_size)
    if weights.add_grid_loss:
        parts["grid"] = weights.grid * grid_loss(out["grid"], weights.grid_distance)
    return {"loss": sum(parts.values(), warp_loss.new_zeros(())), **parts}
