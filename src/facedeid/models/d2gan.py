"""`d2gan`: CycleGAN-style ResNet generator and the two PatchGAN discriminators of the dual-discriminator GAN.

Discriminator `real_fake` tells real faces from generated ones; `orig_deid` tells an (original, de-identified) pair
from an (original, original) pair, i.e. it learns to spot "this is still the same face", which the generator
is trained to defeat (together with the identity bottleneck it shares with the other generators).
"""

from __future__ import annotations

import torch
from torch import nn

from .bottleneck import IdentityBottleneck


class ResnetBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson et al. / CycleGAN generator: c7s1-ngf, two stride-2 downs, residual blocks, two ups, c7s1-3, tanh."""

    def __init__(self, size: int = 128, ngf: int = 32, n_blocks: int = 6):
        super().__init__()
        self.bottleneck = IdentityBottleneck(size)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(4, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True),
        ]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, 2, 1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(2):
            # Resize-convolution instead of transposed convolution: no checkerboard artefacts, exports cleanly.
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, 1, 1),
                nn.InstanceNorm2d(ch // 2), nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.bottleneck(x))


class PatchDiscriminator(nn.Module):
    """70x70-style PatchGAN (Isola et al. 2017): a grid of real/fake logits."""

    def __init__(self, in_channels: int = 3, ndf: int = 32, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            nxt = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, nxt, 4, stride, 1), nn.InstanceNorm2d(nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        layers += [nn.Conv2d(ch, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class D2GAN(nn.Module):
    """Training container: generator plus the real-vs-fake and original-vs-de-identified discriminators."""

    def __init__(self, size: int = 128, ngf: int = 32, ndf: int = 32):
        super().__init__()
        self.generator = ResnetGenerator(size, ngf)
        self.d_real_fake = PatchDiscriminator(3, ndf)
        self.d_orig_deid = PatchDiscriminator(6, ndf)
