"""Identity bottleneck: the part of every generator that decides what the network may know about the face.

The generator never sees identity detail: the inner face (an ellipse over the central part of the crop) is replaced
by a very coarse version of itself (pose, skin tone and lighting survive at `hint_cells` x `hint_cells`; eyes, nose
and mouth shapes do not), and the network has to paint a new face there. Because this sits inside the network, it
is exported into the ONNX/TensorRT graph: no serving path can feed the generator the original face.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def face_mask(size: int, inner: float = 0.7, soft: float = 0.12) -> torch.Tensor:
    """Soft ellipse (1 inside, 0 outside) covering the inner face of an expanded face crop, shape [1,1,S,S]."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    # Faces sit slightly below centre in an expanded box (forehead and hair above), and are taller than wide.
    radius = torch.sqrt((xx / (inner * 0.85)) ** 2 + ((yy - 0.08) / inner) ** 2)
    mask = torch.clamp((1 + soft - radius) / (2 * soft), 0, 1)
    return mask[None, None]


class IdentityBottleneck(nn.Module):
    def __init__(self, size: int, hint_cells: int = 8):
        super().__init__()
        self.hint_cells = hint_cells
        self.register_buffer("mask", face_mask(size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B,3,S,S] in [-1,1] -> [B,4,S,S]: masked face with coarse hint, plus the mask as a 4th channel."""
        size = x.shape[-1]
        hint = F.adaptive_avg_pool2d(x, self.hint_cells)
        hint = F.interpolate(hint, size=(size, size), mode="bilinear", align_corners=False)
        mask = self.mask.expand(x.shape[0], 1, size, size)
        return torch.cat([x * (1 - mask) + hint * mask, mask], dim=1)
