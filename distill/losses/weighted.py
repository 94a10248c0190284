"""The training loss: the configured terms, built from the registry and summed with their weights."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import nn

from edge_affectsr.distill.archs.fer_critic import FERCritic
from edge_affectsr.distill.archs.output import SROutput
from edge_affectsr.distill.losses.inputs import LossInputs
from edge_affectsr.distill.losses.registry import LOSS_REGISTRY


class WeightedLoss(nn.Module):
    """``sum_i w_i * term_i`` in the order of ``weights``; ``forward(out, batch) -> (total [],
    {name: value})``, the parts for the progress bar.

    Terms of weight 0 are left out (they would only cost time), except those in ``keep``. The FER
    critic is needed when a term reads it; it moves with this module (``.to(device)``).
    """

    def __init__(self, weights: Mapping[str, float], critic: FERCritic | None = None,
                 keep: Collection[str] = ()) -> None:
        super().__init__()
        self.weights = {name: w for name, w in weights.items() if w or name in keep}
        self.terms = nn.ModuleDict({name: LOSS_REGISTRY.get(name)() for name in self.weights})
        need_critic = [name for name, term in self.terms.items() if "critic" in term.needs]
        if need_critic and critic is None:
            raise ValueError(f"the loss terms {', '.join(need_critic)} need the FER critic")
        self.critic = critic

    def forward(self, out: SROutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = LossInputs(out, batch, self.critic)
        parts = {name: term(x) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, {name: float(value.detach()) for name, value in parts.items()}
