"""M3D-VTON's Texture Fusion Module (TFM): fuses the warped garment with the person into
the try-on image through a learned composition mask.

Input (9 channels, the official order): the warped garment (RGB), its mask, the
head-hand-lower image, MTM's segmentation as raw label values (0..19 as one float channel,
as the official loader passes it) and MTM's initial front depth. A U-Net (`unet.py`, 6
levels, 64 filters at 512 x 320) outputs a rendered person (3 channels, tanh) and a
composition mask (1 channel, sigmoid); the try-on is
`warped_cloth * mask + rendered * (1 - mask)`.

Losses (official defaults, weights 1): L1 between try-on and person, the perceptual loss
between them (`losses.PerceptualLoss`: VGG19 with the user's weights file, else the
documented weights-free substitute) and L1 between the composition mask and the upper
clothes of MTM's segmentation (`parse == 5`). The optional try-on GAN (off by default in
the official options) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from refbench.baselines.tryon.losses import PerceptualLoss
from refbench.baselines.tryon.unet import UnetGenerator

#: warped garment (3) + its mask (1) + head-hand-lower (3) + segmentation (1) + front depth (1)
TFM_INPUT_NC = 9
TFM_OUTPUT_NC = 4


@dataclass
class TFMWeights:
    """The official `lambda_*` of TFM's loss."""

    l1: float = 1.0
    vgg: float = 1.0
    mask: float = 1.0


def tfm_input(warped_cloth: Tensor, warped_mask: Tensor, hhl: Tensor, parse: Tensor,
              front_init: Tensor) -> Tensor:
    """The 9-channel input in the official order; `parse` is `(B, H, W)` label ids."""
    return torch.cat([warped_cloth, warped_mask, hhl, parse.unsqueeze(1).to(hhl.dtype),
                      front_init], 1)


def tfm_tryon(net: UnetGenerator, x: Tensor, warped_cloth: Tensor) -> dict[str, Tensor]:
    """Rendered person, composition mask and try-on (module docstring)."""
    rendered, mask = torch.split(net(x), [3, 1], 1)
    rendered, mask = torch.tanh(rendered), torch.sigmoid(mask)
    return {"rendered": rendered, "mask": mask,
            "tryon": warped_cloth * mask + rendered * (1 - mask)}


def tfm_losses(out: dict[str, Tensor], person: Tensor, parse_cloth_mask: Tensor,
               perceptual: PerceptualLoss, weights: TFMWeights) -> dict[str, Tensor]:
    """The official TFM loss and its parts (module docstring)."""
    l1 = weights.l1 * F.l1_loss(out["tryon"], person)
    vgg = weights.vgg * perceptual(out["tryon"], person)
    mask = weights.mask * F.l1_loss(out["mask"], parse_cloth_mask)
    return {"loss": l1 + vgg + mask, "l1": l1, "vgg": vgg, "mask": mask}
