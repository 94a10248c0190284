"""RRDB super-resolution backbone blocks (ESRGAN, Wang et al. 2018), in BasicSR's style."""

from __future__ import annotations

import torch
from torch import nn


def scale_init(module: nn.Module, scale: float = 0.1) -> None:
    """Kaiming init scaled down, so deep residual stacks start close to identity (as BasicSR)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            m.weight.data.mul_(scale)
            if m.bias is not None:
                m.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs. ``[B, nf, H, W] -> [B, nf, H, W]``."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc, 3, 1, 1) for i in range(4))
        self.conv_out = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        scale_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, 1))))
        return x + 0.2 * self.conv_out(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs. ``[B, nf, H, W] -> [B, nf, H, W]``."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.rdbs = nn.Sequential(*(ResidualDenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdbs(x)


class PixelShuffleUpsampler(nn.Module):
    """x2 steps of conv + PixelShuffle, then a 3x3 conv to RGB. ``[B, nf, h, w] -> [B, 3, s*h, s*w]``.

    Channels shrink to ``hr_nf`` in the last step: the full-resolution convs dominate the cost.
    """

    def __init__(self, nf: int, scale: int, hr_nf: int = 16) -> None:
        super().__init__()
        steps = {2: 1, 4: 2, 8: 3}[scale]
        layers: list[nn.Module] = []
        c = nf
        for i in range(steps):
            out = hr_nf if i == steps - 1 else nf
            layers += [nn.Conv2d(c, out * 4, 3, 1, 1), nn.PixelShuffle(2), nn.LeakyReLU(0.2, inplace=True)]
            c = out
        layers.append(nn.Conv2d(c, 3, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
