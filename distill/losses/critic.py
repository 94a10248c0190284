"""Terms scored by the frozen FER critic (mini-Xception). It stands in for ImageNet VGG, whose
weights cannot be had offline: its feature maps give the perceptual and style terms, its class
distribution the expression-consistency terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge_affectsr.distill.losses.inputs import LossInputs
from edge_affectsr.distill.losses.registry import LOSS_REGISTRY, LossTerm


def gram(f: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, C]`` normalised Gram matrix (style statistics)."""
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def kl_to(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """``KL(target || softmax(logits))``, batch mean. ``[B, K], [B, K] -> []``."""
    return F.kl_div(F.log_softmax(logits, dim=1), target_probs, reduction="batchmean")


@LOSS_REGISTRY.register("perceptual")
class PerceptualLoss(LossTerm):
    """L1 between the critic's feature maps on SR and on HR, summed over its blocks.
    ``sr, hr [B, 3, H, W] -> []``."""

    needs = frozenset({"critic"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        return sum(F.l1_loss(a, b) for a, b in zip(x.sr_features, x.hr_features))


@LOSS_REGISTRY.register("style")
class StyleLoss(LossTerm):
    """L1 between the Gram matrices of the critic's feature maps on SR and on HR, summed over its
    blocks. ``sr, hr [B, 3, H, W] -> []``."""

    needs = frozenset({"critic"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        return sum(F.l1_loss(gram(a), gram(b)) for a, b in zip(x.sr_features, x.hr_features))


@LOSS_REGISTRY.register("expression_hr")
class ExpressionLoss(LossTerm):
    """``KL(critic(HR) || critic(SR))``: the SR face must show the HR face's expression.
    ``sr, hr [B, 3, H, W] -> []``."""

    needs = frozenset({"critic"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        return kl_to(x.sr_logits, x.hr_probs)


@LOSS_REGISTRY.register("expression_teacher")
class ExpressionTeacherLoss(LossTerm):
    """``KL(critic(teacher SR) || critic(SR))``: the student shows the expression the teacher's SR
    shows. ``sr [B, 3, H, W], t_probs [B, K] -> []``."""

    needs = frozenset({"critic", "teacher"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        return kl_to(x.sr_logits, x.batch["t_probs"])
