"""LPIPS (AlexNet, v0.1) as HR-VITON's `evaluate.py` computes it, from user-supplied weights.

HR-VITON builds `PerceptualLoss(model="net-lin", net="alex")` (its `eval_models`, a copy of
richzhang/PerceptualSimilarity, version 0.1) and feeds both images through
`Resize((128, 128))` on the PIL image (PIL bilinear), `ToTensor`, `Normalize(0.5, 0.5)`, so
inputs are 128 x 128 in [-1, 1]. The distance is then:

1. the scaling layer: `(x - shift) / scale`, shift (-.030, -.088, -.188), scale (.458, .448,
   .450);
2. torchvision AlexNet `features` cut after each ReLU: relu1 = [0, 1], relu2 = [2..4],
   relu3 = [5..7], relu4 = [8, 9], relu5 = [10, 11] (64, 192, 384, 256, 256 channels);
3. per layer, features unit-normalised over channels (`x / (sqrt(sum x^2) + 1e-10)`), the
   squared difference, a learned 1 x 1 convolution to one channel (no bias; dropout is off
   in eval), the spatial mean;
4. the sum over the five layers.

Two weight files, neither downloaded: the torchvision AlexNet ImageNet checkpoint
(`alexnet-owt-7be5be79.pth`, keys `features.{0,3,6,8,10}.{weight,bias}`, classifier keys
ignored; a features-only file with keys `{0,3,6,8,10}.*` is accepted too), and the LPIPS
linear heads `weights/v0.1/alex.pth` (keys `lin{0..4}.model.1.weight`). Without them LPIPS is
left out of a result with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from refbench.errors import RefbenchError
from refbench.evaluation.tryon.images import resize_bilinear

SIZE = 128
CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)
#: indices of the convolutions in torchvision's `alexnet().features`
CONV_INDICES: tuple[int, ...] = (0, 3, 6, 8, 10)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class AlexNetLPIPS(nn.Module):
    """LPIPS v0.1 'alex' (module docstring). `forward(x, y)` takes N x 3 x H x W in [-1, 1]
    and returns N distances."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.ModuleDict({
            "0": nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            "3": nn.Conv2d(64, 192, kernel_size=5, padding=2),
            "6": nn.Conv2d(192, 384, kernel_size=3, padding=1),
            "8": nn.Conv2d(384, 256, kernel_size=3, padding=1),
            "10": nn.Conv2d(256, 256, kernel_size=3, padding=1),
        })
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def taps(self, x: Tensor) -> list[Tensor]:
        """relu1..relu5 of AlexNet's features."""
        f = self.features
        h1 = F.relu(f["0"](x))
        h2 = F.relu(f["3"](F.max_pool2d(h1, kernel_size=3, stride=2)))
        h3 = F.relu(f["6"](F.max_pool2d(h2, kernel_size=3, stride=2)))
        h4 = F.relu(f["8"](h3))
        h5 = F.relu(f["10"](h4))
        return [h1, h2, h3, h4, h5]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx = self.taps((x - self.shift) / self.scale)
        fy = self.taps((y - self.shift) / self.scale)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for lin, a, b in zip(self.lins, fx, fy):
            a = a / (torch.sqrt(torch.sum(a ** 2, dim=1, keepdim=True)) + EPS)
            b = b / (torch.sqrt(torch.sum(b ** 2, dim=1, keepdim=True)) + EPS)
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


def _load(path: Path, what: str) -> dict[str, Tensor]:
    if not path.exists():
        raise RefbenchError(f"{what} not found", path=path)
    if path.is_dir():
        raise RefbenchError(f"expected the {what}, found a folder", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise RefbenchError(f"cannot read {what}: {' '.join(str(exc).split())[:200]}",
                            path=path) from None
    if not isinstance(state, dict):
        raise RefbenchError(f"{what} does not hold a state dict", path=path)
    return state


def load_lpips(alexnet_path: str | Path, lin_path: str | Path) -> AlexNetLPIPS:
    """LPIPS from the AlexNet checkpoint and the LPIPS `alex.pth` heads (module docstring)."""
    model = AlexNetLPIPS()
    alex_path, heads_path = Path(alexnet_path), Path(lin_path)
    alex = _load(alex_path, "AlexNet weights file")
    heads = _load(heads_path, "LPIPS linear-layer weights file (alex.pth)")
    state: dict[str, Tensor] = {}
    for index in CONV_INDICES:
        for kind in ("weight", "bias"):
            key = next((k for k in (f"features.{index}.{kind}", f"{index}.{kind}") if k in alex),
                       None)
            if key is None:
                raise RefbenchError(f"AlexNet weights lack features.{index}.{kind}",
                                    path=alex_path)
            state[f"features.{index}.{kind}"] = alex[key]
    for layer in range(len(CHANNELS)):
        key = f"lin{layer}.model.1.weight"
        if key not in heads:
            raise RefbenchError(f"LPIPS weights lack {key}", path=heads_path)
        state[f"lins.{layer}.weight"] = heads[key]
    own = model.state_dict()
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            source = heads_path if key.startswith("lins") else alex_path
            raise RefbenchError(f"weight {key} has shape {tuple(value.shape)}, LPIPS/alex wants "
                                f"{tuple(own[key].shape)}", path=source)
    model.load_state_dict(state, strict=False)
    return model


def to_input(rgb: np.ndarray) -> Tensor:
    """HR-VITON's LPIPS transform of one uint8 RGB image: PIL bilinear to 128 x 128, [0, 1],
    then (x - 0.5) / 0.5; 1 x 3 x 128 x 128."""
    small = resize_bilinear(rgb, SIZE, SIZE)
    x = torch.from_numpy(np.array(small)).permute(2, 0, 1).float() / 255.0
    return ((x - 0.5) / 0.5).unsqueeze(0)


@torch.no_grad()
def lpips_pairs(model: AlexNetLPIPS, gts: list[np.ndarray], preds: list[np.ndarray],
                batch_size: int = 64) -> np.ndarray:
    """Per-pair LPIPS of uint8 RGB images (HR-VITON calls `model(gt, pred)`)."""
    out = []
    for start in range(0, len(gts), batch_size):
        x = torch.cat([to_input(g) for g in gts[start:start + batch_size]])
        y = torch.cat([to_input(p) for p in preds[start:start + batch_size]])
        out.append(model(x, y).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)
