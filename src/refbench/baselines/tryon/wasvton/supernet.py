"""WAS-VTON's networks: the NAS-Warping flow estimator and the NAS-Fusion generator, each as
a one-shot weight-sharing supernet (every candidate operation / skip present, one path run
per step) or as the fixed network of one architecture (only the chosen parts built).

From the paper: warping by flow estimated with a stack of repeatable warping cells whose
count and convolutions are searched per clothing category; a fusion network whose skip
connections between the person and the warped garment are searched; one-shot search.

refbench's choices (documented, not the paper's): a CP-VTON-style person representation
(body shape, cloth-agnostic person image, pose maps; `baseline.py`) and CP-VTON's composition (`tryon = warped x m + rendered x (1 -
m)`); features at half resolution; each cell reads the person features and the garment
features warped by the current flow (a 1 x 1 reduction), applies its operation and adds a
zero-initialised flow increment (so an untrained stack is the identity warp), the flow
upsampled to full resolution warps the garment (`grid_sample`, border padding, as the
garments of `tps.py`); the fusion U-Net has a person stream and a garment stream of
`FUSION_LEVELS` levels and each decoder level concatenates the skip its code names (in
the supernet the unchosen stream is zeros, so the weights keep one shape; the fixed network
builds only the channels it uses). The supernet shares one warping stack across the
categories (one-shot weight sharing); the fixed network builds one stack per category.
No normalisation layers: a sampled path needs no BN recalibration.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.baselines.tryon.wasvton.space import (CATEGORIES, FUSION_LEVELS, MAX_CELLS, OPS,
                                                    SKIPS, Arch)
from refbench.errors import RefbenchError

#: the person representation: body shape 1 + cloth-agnostic image 3 + COCO-18 pose maps
AGNOSTIC_NC = 1 + 3 + 18


def make_op(name: str, channels: int) -> nn.Module:
    """One candidate convolution (`space.OPS`), followed by LeakyReLU(0.2)."""
    c = channels
    if name == "conv3":
        conv: nn.Module = nn.Conv2d(c, c, 3, padding=1)
    elif name == "conv5":
        conv = nn.Conv2d(c, c, 5, padding=2)
    elif name == "dil3":
        conv = nn.Conv2d(c, c, 3, padding=2, dilation=2)
    elif name in ("sep3", "sep5"):
        k = int(name[-1])
        conv = nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, groups=c), nn.Conv2d(c, c, 1))
    else:
        raise RefbenchError(f"unknown warping operation {name!r} (one of {', '.join(OPS)})")
    return nn.Sequential(conv, nn.LeakyReLU(0.2))


def identity_grid(batch: int, height: int, width: int, like: Tensor) -> Tensor:
    """`(B, H, W, 2)` the sampling grid of "no warp" under `align_corners=False`."""
    ys = (torch.arange(height, dtype=like.dtype, device=like.device) * 2 + 1) / height - 1
    xs = (torch.arange(width, dtype=like.dtype, device=like.device) * 2 + 1) / width - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    return grid.unsqueeze(0).expand(batch, height, width, 2)


def flow_warp(image: Tensor, flow: Tensor, padding_mode: str = "border") -> Tensor:
    """Sample `image` at identity + `flow` (`(B, 2, h, w)` normalised offsets, resized to the
    image's size first)."""
    b, _, h, w = image.shape
    if flow.shape[-2:] != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    grid = identity_grid(b, h, w, image) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)


class WarpCell(nn.Module):
    """One repeatable warping cell with the candidate operations `ops`."""

    def __init__(self, channels: int, ops: Sequence[str]) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.LeakyReLU(0.2))
        self.ops = nn.ModuleDict({op: make_op(op, channels) for op in ops})
        self.head = nn.Conv2d(channels, 2, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, person: Tensor, cloth: Tensor, flow: Tensor, op: str) -> Tensor:
        x = self.reduce(torch.cat([person, flow_warp(cloth, flow)], 1))
        return flow + self.head(self.ops[op](x))


def _encoder(in_nc: int, channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_nc, channels, 3, padding=1), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.LeakyReLU(0.2))


class WarpNet(nn.Module):
    """The NAS-Warping stack: `cells` cells, each with `candidates[i]` operations (all of
    `OPS` in the supernet, the chosen one in a fixed network)."""

    def __init__(self, channels: int, candidates: Sequence[Sequence[str]]) -> None:
        super().__init__()
        self.person_enc = _encoder(AGNOSTIC_NC, channels)
        self.cloth_enc = _encoder(4, channels)
        self.cells = nn.ModuleList(WarpCell(channels, ops) for ops in candidates)

    def forward(self, agnostic: Tensor, cloth: Tensor, cloth_mask: Tensor,
                ops: Sequence[str]) -> dict[str, Tensor]:
        if not 1 <= len(ops) <= len(self.cells):
            raise RefbenchError(f"{len(ops)} warping cells asked of a stack of {len(self.cells)}")
        person = self.person_enc(agnostic)
        garment = self.cloth_enc(torch.cat([cloth, cloth_mask], 1))
        flow = person.new_zeros(person.shape[0], 2, *person.shape[-2:])
        for cell, op in zip(self.cells, ops):
            flow = cell(person, garment, flow, op)
        return {"flow": flow, "warped_cloth": flow_warp(cloth, flow, "border"),
                "warped_mask": flow_warp(cloth_mask, flow, "zeros")}


class FusionNet(nn.Module):
    """The NAS-Fusion U-Net. `skips=None` builds the supernet (every skip's channels); a
    tuple builds the fixed network of that code."""

    def __init__(self, channels: int, skips: Sequence[str] | None = None,
                 levels: int = FUSION_LEVELS) -> None:
        super().__init__()
        self.levels, self.fixed = levels, None if skips is None else tuple(skips)
        widths = [channels * min(2 ** i, 4) for i in range(levels)]
        self.widths = widths
        self.person_enc, self.garment_enc = nn.ModuleList(), nn.ModuleList()
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            for enc, nc in ((self.person_enc, AGNOSTIC_NC), (self.garment_enc, 4)):
                prev = nc if i == 0 else widths[i - 1]
                enc.append(nn.Sequential(nn.Conv2d(prev, w, 3, stride=stride, padding=1),
                                         nn.LeakyReLU(0.2)))
        self.bottleneck = nn.Sequential(nn.Conv2d(2 * widths[-1], widths[-1], 3, stride=2,
                                                  padding=1), nn.LeakyReLU(0.2))
        self.decoder = nn.ModuleList()
        dec_in = widths[-1]
        for i in reversed(range(levels)):
            skip = self.fixed[i] if self.fixed is not None else "both"
            width = widths[i] * (2 if skip == "both" else 0 if skip == "none" else 1)
            out = widths[max(i - 1, 0)]
            self.decoder.append(nn.Sequential(nn.Conv2d(dec_in + width, out, 3, padding=1),
                                              nn.LeakyReLU(0.2)))
            dec_in = out
        self.out = nn.Conv2d(dec_in, 4, 3, padding=1)

    def forward(self, agnostic: Tensor, warped: Tensor, warped_mask: Tensor,
                skips: Sequence[str]) -> dict[str, Tensor]:
        skips = tuple(skips)
        if self.fixed is not None and skips != self.fixed:
            raise RefbenchError(f"this fusion network is fixed to {self.fixed}, asked {skips}")
        p, g = agnostic, torch.cat([warped, warped_mask], 1)
        feats = []
        for p_enc, g_enc in zip(self.person_enc, self.garment_enc):
            p, g = p_enc(p), g_enc(g)
            feats.append((p, g))
        x = self.bottleneck(torch.cat([p, g], 1))
        for block, i in zip(self.decoder, reversed(range(self.levels))):
            pf, gf = feats[i]
            x = F.interpolate(x, size=pf.shape[-2:], mode="bilinear", align_corners=False)
            parts = [x]
            if self.fixed is None:  # supernet: constant width, unchosen streams are zeros
                parts += [pf if skips[i] in ("person", "both") else torch.zeros_like(pf),
                          gf if skips[i] in ("garment", "both") else torch.zeros_like(gf)]
            else:
                parts += ([pf] if skips[i] in ("person", "both") else []) + \
                         ([gf] if skips[i] in ("garment", "both") else [])
            x = block(torch.cat(parts, 1))
        out = self.out(x)
        rendered, mask = torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])
        return {"rendered": rendered, "composition_mask": mask,
                "tryon": warped * mask + rendered * (1 - mask)}


class WasVtonNet(nn.Module):
    """Warping then fusion. `arch=None`: the supernet (shared warping stack of `max_cells`
    cells with every operation, supernet fusion); an `Arch`: its fixed network (one warping
    stack per category, the fusion of its code)."""

    def __init__(self, channels: int, arch: Arch | None = None, max_cells: int = MAX_CELLS,
                 levels: int = FUSION_LEVELS) -> None:
        super().__init__()
        self.arch = arch
        if arch is None:
            self.warp = nn.ModuleDict({"shared": WarpNet(channels, [OPS] * max_cells)})
            self.fusion = FusionNet(channels, None, levels)
        else:
            self.warp = nn.ModuleDict({c: WarpNet(channels, [(op,) for op in arch.warp[c]])
                                       for c in CATEGORIES})
            self.fusion = FusionNet(channels, arch.fusion, levels)

    def forward(self, batch: Mapping[str, Tensor], categories: Sequence[str],
                arch: Arch) -> dict[str, Tensor]:
        """`categories[i]` routes sample i through its category's warping path."""
        agnostic, cloth, mask = batch["agnostic"], batch["cloth"], batch["cloth_mask"]
        parts: dict[str, list[Tensor]] = {}
        order: list[int] = []
        for category in CATEGORIES:
            index = [i for i, c in enumerate(categories) if c == category]
            if not index:
                continue
            net = self.warp["shared" if self.arch is None else category]
            sel = torch.tensor(index, device=cloth.device)
            got = net(agnostic[sel], cloth[sel], mask[sel], arch.warp[category])
            for key, value in got.items():
                parts.setdefault(key, []).append(value)
            order += index
        if len(order) != len(categories):
            raise RefbenchError(f"unknown clothing category among {sorted(set(categories))}")
        inverse = torch.argsort(torch.tensor(order, device=cloth.device))
        out = {key: torch.cat(values)[inverse] for key, values in parts.items()}
        # the fusion learns from the warp's output, not through it (CP-VTON's GMM -> TOM)
        fused = self.fusion(agnostic, out["warped_cloth"].detach(),
                            out["warped_mask"].detach(), arch.fusion)
        return {**out, **fused}


def check_supernet_path(arch: Arch, max_cells: int, levels: int) -> None:
    for category, ops in arch.warp.items():
        if len(ops) > max_cells:
            raise RefbenchError(f"{category}: {len(ops)} cells, the supernet has {max_cells}",
                                key="model.arch")
    if len(arch.fusion) != levels or any(s not in SKIPS for s in arch.fusion):
        raise RefbenchError(f"fusion code {arch.fusion} does not fit {levels} levels",
                            key="model.arch")
