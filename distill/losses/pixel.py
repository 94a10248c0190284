"""Pixel terms: the SR faces against the ground-truth HR faces."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge_affectsr.distill.losses.inputs import LossInputs
from edge_affectsr.distill.losses.registry import LOSS_REGISTRY, LossTerm


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``mean(sqrt((x - y)^2 + eps^2))``: L1 made smooth at zero. Same shapes ``[...]`` -> ``[]``."""
    return torch.sqrt((x - y) ** 2 + eps**2).mean()


@LOSS_REGISTRY.register("pixel")
class PixelLoss(LossTerm):
    """Charbonnier distance of SR to HR. ``sr, hr [B, 3, H, W] -> []``."""

    def forward(self, x: LossInputs) -> torch.Tensor:
        return charbonnier(x.sr, x.hr)


@LOSS_REGISTRY.register("pixel_l1")
class PixelL1Loss(LossTerm):
    """L1 distance of SR to HR. ``sr, hr [B, 3, H, W] -> []``."""

    def forward(self, x: LossInputs) -> torch.Tensor:
        return F.l1_loss(x.sr, x.hr)
