"""The teacher's landmark term: its graph branch predicts where each landmark sits on the HR face,
which makes the node embeddings carry the face's geometry."""

from __future__ import annotations

import torch

from edge_affectsr.distill.losses.inputs import LossInputs
from edge_affectsr.distill.losses.registry import LOSS_REGISTRY, LossTerm


@LOSS_REGISTRY.register("landmark")
class LandmarkLoss(LossTerm):
    """L1 between predicted and HR landmarks, mean over the faces whose LR landmarks FaceMesh found.
    ``lm_pred, lm_hr [B, N, 2], found_lr [B] -> []``."""

    needs = frozenset({"lm_pred"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        per_face = (x.out.lm_pred - x.batch["lm_hr"]).abs().mean(dim=(1, 2))
        m = x.batch["found_lr"].float()
        return (per_face * m).sum() / m.sum().clamp(min=1.0)
