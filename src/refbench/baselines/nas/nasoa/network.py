"""Networks built from any architecture code, in plain PyTorch, layer for layer as vega's
DNet builds them (`vega/networks/dnet.py`):

- stem: conv3 stride 2 (3 -> C/2), conv3 (C/2 -> C/2), conv3 stride 2 (C/2 -> C), each
  followed by BatchNorm and ReLU (so the stem divides the resolution by 4);
- one `EncodedBlock` per macro position: every layer is conv + BatchNorm; after a layer its
  connections are applied to the list of outputs (add: `out[j] += proj(out[i])`, with a
  1x1 conv + BN projection when the stride or the width differs; concat: `out[j] =
  cat(proj(out[i]), out[j])`, projected only when the stride differs), then ReLU of
  `out[j]` feeds the next layer; the implicit residual `a0L` closes the block;
- global average pooling and a linear classifier (`fc`, the head that fine-tuning
  replaces; vega's fine-tune recipe names it `head: fc` too).

vega's `conv3_base16` exists in its OPS table but not in `op_names`, so no code reaches it;
it is left out here as well.
"""

from __future__ import annotations

import torch
from torch import nn

from refbench.baselines.nas.nasoa.encoding import Architecture, BlockCode, layer_plan, parse


def _conv(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """vega's OPS[name] followed by BatchNorm (its `create_op`)."""
    if name == "conv1":
        layer: nn.Module = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
    elif name == "conv3_sep":
        layer = nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
                              nn.Conv2d(c_in, c_out, 1, bias=False))
    else:
        groups = {"conv3": 1, "conv3_grp2": 2, "conv3_grp4": 4, "conv3_base1": c_in,
                  "conv3_base32": c_in // 32}[name]
        layer = nn.Conv2d(c_in, c_out, 3, stride, 1, groups=groups, bias=False)
    return nn.Sequential(layer, nn.BatchNorm2d(c_out))


class _Link(nn.Module):
    """An add or concat connection from output `source` to output `target`."""

    def __init__(self, kind: str, source: int, target: int, sizes: list[int],
                 strides: list[int]) -> None:
        super().__init__()
        self.kind, self.source, self.target = kind, source, target
        stride = 2 if strides[source] != strides[target] else 1
        self.proj: nn.Module | None = None
        if kind == "a" and (stride != 1 or sizes[source] != sizes[target]):
            self.proj = _conv("conv1", sizes[source], sizes[target], stride)
        elif kind == "c":
            if stride != 1:
                self.proj = _conv("conv1", sizes[source], sizes[source], stride)
            sizes[target] += sizes[source]

    def forward(self, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = outs[self.source] if self.proj is None else self.proj(outs[self.source])
        outs[self.target] = x + outs[self.target] if self.kind == "a" else \
            torch.cat([x, outs[self.target]], 1)
        return outs


class EncodedBlock(nn.Module):
    """One block of a code, with input width `c_in`, channel multiplier and stride."""

    def __init__(self, block: BlockCode, c_in: int, multiplier: int, stride: int,
                 plan: list[tuple[str, int, int, int]]) -> None:
        super().__init__()
        sizes = [c_in]
        strides = [1] * (block.stride_layer + 1) + [stride] * (block.depth - block.stride_layer)
        links = block.ordered_connections()
        self.layers = nn.ModuleList()
        self.links = nn.ModuleList()
        for i, (name, _c_in, c_out, layer_stride) in enumerate(plan):
            self.layers.append(_conv(name, sizes[-1], c_out, layer_stride))
            sizes.append(c_out)
            self.links.append(nn.ModuleList(_Link(l.kind, l.source, l.target, sizes, strides)
                                            for l in links if l.target == i + 1))
        self.out_channels = sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, current = [x], x
        for layer, links in zip(self.layers, self.links):
            outs.append(layer(current))
            for link in links:
                outs = link(outs)
            current = torch.relu(outs[-1])
        return current


class DNet(nn.Module):
    """The network of an architecture code with an `num_classes`-way linear head."""

    def __init__(self, code: str | Architecture, num_classes: int) -> None:
        super().__init__()
        arch = parse(code) if isinstance(code, str) else code
        self.code = str(arch)
        c = arch.channel
        self.stem = nn.Sequential(_conv("conv3", 3, c // 2, 2), nn.ReLU(),
                                  _conv("conv3", c // 2, c // 2, 1), nn.ReLU(),
                                  _conv("conv3", c // 2, c, 2), nn.ReLU())
        plan = layer_plan(arch)
        blocks = []
        width = c
        for index, macro in enumerate(arch.macro):
            block = EncodedBlock(arch.block_for(index), width, macro.multiplier, macro.stride,
                                 plan[index])
            blocks.append(block)
            width = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.features = width
        self.fc = nn.Linear(width, num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features `(B, features)` (what the head sees)."""
        return self.blocks(self.stem(images)).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(images))

    def reset_head(self, num_classes: int) -> None:
        """A fresh classifier for a new task (fine-tuning keeps every other weight)."""
        self.fc = nn.Linear(self.features, num_classes)


def count_params(model: nn.Module, head: bool = False) -> int:
    """Parameters of `model`; without the classifier unless `head` (zoo members are
    compared by their backbone size, which does not depend on the task)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if head or not name.startswith("fc."))
