"""`resnet50unet`: feature-inversion U-Net with a ResNet-50 encoder (bottleneck blocks 3-4-6-3)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import UNetDecoder
from .bottleneck import IdentityBottleneck


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNet50Encoder(nn.Module):
    """ResNet-50 (He et al. 2016) feature pyramid: strides 2, 4, 8, 16, 32. `base` 64 is the paper's width."""

    def __init__(self, in_channels: int = 3, base: int = 64, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True)
        )
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layers = nn.ModuleList()
        self.channels = [base]
        cin = base
        for i, n in enumerate(blocks):
            planes = base * 2**i
            layer = [Bottleneck(cin, planes, 1 if i == 0 else 2)]
            cin = planes * Bottleneck.expansion
            layer += [Bottleneck(cin, planes, 1) for _ in range(n - 1)]
            self.layers.append(nn.Sequential(*layer))
            self.channels.append(cin)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = [x]
        x = self.pool(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class ResNet50UNet(nn.Module):
    def __init__(self, size: int = 128, base: int = 32, decoder_widths=(192, 96, 64, 32, 24)):
        super().__init__()
        self.bottleneck = IdentityBottleneck(size)
        self.encoder = ResNet50Encoder(in_channels=4, base=base)
        ch = self.encoder.channels
        self.decoder = UNetDecoder(ch[:-1], ch[-1], list(decoder_widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(self.bottleneck(x))
        return self.decoder(feats[-1], feats[:-1])
