"""Small building blocks shared by the generators."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: type = nn.ReLU6):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(inplace=True),
    )


class UpBlock(nn.Module):
    """Decoder stage of a U-Net: upsample x2, concatenate the encoder skip, two 3x3 convs."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Sequential(
            conv_bn_act(cin + cskip, cout, act=nn.ReLU),
            conv_bn_act(cout, cout, act=nn.ReLU),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNetDecoder(nn.Module):
    """Decoder over a list of encoder features (finest first), ending in a tanh RGB image at input resolution."""

    def __init__(self, skip_channels: list[int], bottom_channels: int, widths: list[int]):
        super().__init__()
        if len(widths) != len(skip_channels) + 1:
            raise ValueError(f"need one width per skip plus one for the output: {len(skip_channels) + 1} widths, "
                             f"got {len(widths)}")
        stages, cin = [], bottom_channels
        for cskip, cout in zip(reversed(skip_channels), widths[:-1]):
            stages.append(UpBlock(cin, cskip, cout))
            cin = cout
        stages.append(UpBlock(cin, 0, widths[-1]))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.Conv2d(widths[-1], 3, 3, padding=1), nn.Tanh())

    def forward(self, bottom: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = bottom
        for stage, skip in zip(self.stages, list(reversed(skips)) + [None]):
            x = stage(x, skip)
        return self.head(x)
