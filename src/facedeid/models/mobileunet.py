"""`mobileunet`: feature-inversion U-Net with a MobileNetV2 encoder (inverted residual blocks, ReLU6)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import UNetDecoder, conv_bn_act
from .bottleneck import IdentityBottleneck


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn_act(cin, hidden, kernel=1)]
        layers += [
            conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


def _scaled(channels: int, width: float) -> int:
    return max(8, int(round(channels * width / 8)) * 8)


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) feature pyramid: strides 2, 4, 8, 16, 32."""

    # (expansion t, channels c, repeats n, stride s) from the paper's Table 2
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]

    def __init__(self, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        cin = _scaled(32, width)
        self.stem = conv_bn_act(in_channels, cin, stride=2)
        self.stages = nn.ModuleList()
        self.channels: list[int] = []
        stage: list[nn.Module] = []
        for t, c, n, s in self.SETTINGS:
            cout = _scaled(c, width)
            if s == 2 and stage:  # a stride-2 block starts a new pyramid level
                self.stages.append(nn.Sequential(*stage))
                self.channels.append(cin)
                stage = []
            for i in range(n):
                stage.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.stages.append(nn.Sequential(*stage))
        self.channels.append(cin)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats  # strides 2, 4, 8, 16, 32


class MobileUNet(nn.Module):
    """U-Net over MobileNetV2 features. The decoder is deliberately slim (the original expanded 1280 -> 7680)."""

    def __init__(self, size: int = 128, width: float = 1.0, decoder_widths=(128, 64, 48, 32, 24)):
        super().__init__()
        self.bottleneck = IdentityBottleneck(size)
        self.encoder = MobileNetV2Encoder(in_channels=4, width=width)
        ch = self.encoder.channels
        self.decoder = UNetDecoder(ch[:-1], ch[-1], list(decoder_widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(self.bottleneck(x))
        return self.decoder(feats[-1], feats[:-1])
