"""What the loss terms of one training step read, with the FER critic's outputs computed once."""

from __future__ import annotations

from functools import cached_property

import torch

from edge_affectsr.distill.archs.fer_critic import FERCritic
from edge_affectsr.distill.archs.output import SROutput


class LossInputs:
    """The model's output ``out`` (``sr [B, 3, H, W]``, ``features``, ``nodes``, ``lm_pred``), the
    ``batch`` (``hr [B, 3, H, W]``, ``lm_hr [B, N, 2]``, ``found_lr [B]``; when distilling the
    teacher's ``t_sr``, ``t_feat``, ``t_nodes``, ``t_probs`` and the critic's ``hr_probs``) and the
    critic's outputs.

    Each critic output is computed on first use and shared by every term that reads it: the critic
    is most of a student step's cost. Its logits and its feature maps are separate forwards.
    """

    def __init__(self, out: SROutput, batch: dict[str, torch.Tensor], critic: FERCritic | None) -> None:
        self.out, self.batch, self.critic = out, batch, critic

    @property
    def sr(self) -> torch.Tensor:
        return self.out.sr

    @property
    def hr(self) -> torch.Tensor:
        return self.batch["hr"]

    @cached_property
    def sr_logits(self) -> torch.Tensor:
        """The critic's logits ``[B, K]`` on the SR faces; gradients flow back into the SR."""
        return self.critic(self.sr)

    @cached_property
    def sr_features(self) -> list[torch.Tensor]:
        """The critic's feature maps ``[B, C_i, H_i, W_i]`` on the SR faces, shallow to deep."""
        return self.critic.features(self.sr)

    @cached_property
    def hr_features(self) -> list[torch.Tensor]:
        """The critic's feature maps on the HR faces (targets: no gradient)."""
        return [f.detach() for f in self.critic.features(self.hr)]

    @cached_property
    def hr_probs(self) -> torch.Tensor:
        """The critic's class probabilities ``[B, K]`` on the HR faces: the ones the student's
        training precomputed for every face, else computed here."""
        if "hr_probs" in self.batch:
            return self.batch["hr_probs"]
        with torch.no_grad():
            return self.critic.probs(self.hr)
