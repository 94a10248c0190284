"""Distillation terms: the student follows the teacher's outputs, all parameter-free so the student
trains alone.

Spatial-affinity distillation compares *which positions look alike* in the teacher's and the
student's LR feature maps, so their channel counts may differ; graph-embedding distillation does the
same over landmark nodes. Output distillation follows the teacher's SR (expression distillation, the
critic on it, is in ``critic.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge_affectsr.distill.losses.inputs import LossInputs
from edge_affectsr.distill.losses.pixel import charbonnier
from edge_affectsr.distill.losses.registry import LOSS_REGISTRY, LossTerm


def affinity(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Cosine-similarity matrix over positions. ``[B, C, P]`` with ``dim=1`` (features over
    positions P) -> ``[B, P, P]``; ``[B, P, C]`` with ``dim=2`` -> ``[B, P, P]``."""
    x = F.normalize(x, dim=dim)
    return x.transpose(1, 2) @ x if dim == 1 else x @ x.transpose(1, 2)


def spatial_affinity_loss(f_student: torch.Tensor, f_teacher: torch.Tensor, pool: int = 2) -> torch.Tensor:
    """``[B, Cs, h, w]`` vs ``[B, Ct, h, w]``: L1 between their spatial self-similarity maps, on
    ``pool``-averaged maps (the ``(hw)^2`` matrices cost ``pool^4`` times less)."""
    fs, ft = F.avg_pool2d(f_student, pool), F.avg_pool2d(f_teacher, pool)
    return F.l1_loss(affinity(fs.flatten(2), 1), affinity(ft.flatten(2), 1))


def node_affinity_loss(n_student: torch.Tensor, n_teacher: torch.Tensor) -> torch.Tensor:
    """``[B, N, Hs]`` vs ``[B, N, Ht]`` on the same nodes: L1 between node self-similarities."""
    return F.l1_loss(affinity(n_student, 2), affinity(n_teacher, 2))


@LOSS_REGISTRY.register("output")
class OutputLoss(LossTerm):
    """Charbonnier distance of the student's SR to the teacher's. ``sr, t_sr [B, 3, H, W] -> []``."""

    needs = frozenset({"teacher"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        return charbonnier(x.sr, x.batch["t_sr"].float())


@LOSS_REGISTRY.register("feature")
class FeatureAffinityLoss(LossTerm):
    """Spatial affinity of the LR features. ``features [B, Cs, h, w], t_feat [B, Ct, h, w] -> []``."""

    needs = frozenset({"teacher", "features"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        return spatial_affinity_loss(x.out.features, x.batch["t_feat"].float())


@LOSS_REGISTRY.register("graph")
class GraphAffinityLoss(LossTerm):
    """Affinity of the landmark-node embeddings. ``nodes [B, N, Hs], t_nodes [B, N, Ht] -> []``."""

    needs = frozenset({"teacher", "nodes"})

    def forward(self, x: LossInputs) -> torch.Tensor:
        return node_affinity_loss(x.out.nodes, x.batch["t_nodes"].float())
