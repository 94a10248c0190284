"""Training losses, each weighted from the config. The FER critic (frozen mini-Xception) stands in for
ImageNet VGG, whose weights cannot be had offline: its feature maps give the perceptual/style terms
and its class distribution the expression-consistency term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from edge_affectsr.distill.archs.fer_critic import FERCritic


class LossWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pixel: float = 1.0
    pixel_type: str = "charbonnier"  # or "l1"
    perceptual: float = 0.0
    style: float = 0.0
    landmark: float = 0.0
    expression: float = 0.0


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((x - y) ** 2 + eps**2).mean()


def pixel_loss(x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "charbonnier":
        return charbonnier(x, y)
    if kind == "l1":
        return F.l1_loss(x, y)
    raise ValueError(f"loss.pixel_type must be 'charbonnier' or 'l1', got {kind!r}")


def gram(f: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, C]`` normalised Gram matrix (style statistics)."""
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def expression_kl(critic: FERCritic, sr: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """KL(p_target || p_SR) of the critic's expression distributions, batch mean."""
    log_p_sr = F.log_softmax(critic(sr), dim=1)
    return F.kl_div(log_p_sr, target_probs, reduction="batchmean")


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and HR landmarks, over faces where FaceMesh found both."""
    per_face = (pred - target).abs().mean(dim=(1, 2))
    m = mask.float()
    return (per_face * m).sum() / m.sum().clamp(min=1.0)


class SRLoss(nn.Module):
    """Weighted sum of the SR losses; returns the total and each part for the progress bar."""

    def __init__(self, weights: LossWeights, critic: FERCritic | None) -> None:
        super().__init__()
        needs_critic = weights.perceptual or weights.style or weights.expression
        if needs_critic and critic is None:
            raise ValueError("perceptual, style and expression losses need the FER critic")
        self.w = weights
        self.critic = critic

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, lm_pred=None, lm_hr=None, lm_mask=None):
        parts = {"pixel": pixel_loss(sr, hr, self.w.pixel_type)}
        if self.w.perceptual or self.w.style:
            f_sr, f_hr = self.critic.features(sr), [f.detach() for f in self.critic.features(hr)]
            if self.w.perceptual:
                parts["perceptual"] = sum(F.l1_loss(a, b) for a, b in zip(f_sr, f_hr))
            if self.w.style:
                parts["style"] = sum(F.l1_loss(gram(a), gram(b)) for a, b in zip(f_sr, f_hr))
        if self.w.expression:
            with torch.no_grad():
                p_hr = self.critic.probs(hr)
            parts["expression"] = expression_kl(self.critic, sr, p_hr)
        # Also at weight 0 (then a zero gradient): under DDP every parameter behind a model output
        # must get a gradient, or the next iteration fails (here: the teacher's landmark head).
        if lm_pred is not None and lm_hr is not None:
            parts["landmark"] = landmark_loss(lm_pred, lm_hr, lm_mask)
        total = sum(getattr(self.w, k) * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}
