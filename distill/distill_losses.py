"""Distillation losses for the student, all parameter-free so the student trains alone.

Spatial-affinity distillation compares *which positions look alike* in the teacher's and the
student's LR feature maps, so their channel counts may differ; graph-embedding distillation does the
same over landmark nodes. Output and expression distillation follow the teacher's SR and its
critic distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from edge_affectsr.distill.archs.output import SROutput
from edge_affectsr.distill.losses import charbonnier, pixel_loss


class DistillWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pixel: float = 1.0  # student SR vs ground truth HR
    pixel_type: str = "charbonnier"
    output: float = 1.0  # student SR vs teacher SR
    feature: float = 0.0  # spatial affinity of LR features
    expression_teacher: float = 0.0  # KL(critic(teacher SR) || critic(student SR))
    expression_hr: float = 0.0  # KL(critic(HR) || critic(student SR))
    graph: float = 0.0  # affinity of landmark-node embeddings

    @property
    def needs_teacher(self) -> bool:
        return bool(self.output or self.feature or self.expression_teacher or self.graph)


def affinity(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Cosine-similarity matrix over positions. ``[B, C, P]`` with ``dim=1`` (features over
    positions P) -> ``[B, P, P]``."""
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


def kl_to(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits, dim=1), target_probs, reduction="batchmean")


def distill_loss(w: DistillWeights, out: SROutput, batch: dict, critic) -> tuple[torch.Tensor, dict]:
    """Weighted total and parts. ``batch`` holds ``hr`` and, when distilling, the teacher's ``t_sr``,
    ``t_feat``, ``t_nodes``, ``t_probs`` and the critic's ``hr_probs``."""
    sr = out.sr
    parts = {"pixel": pixel_loss(sr, batch["hr"], w.pixel_type)}
    if w.output:
        parts["output"] = charbonnier(sr, batch["t_sr"].float())
    if w.feature:
        parts["feature"] = spatial_affinity_loss(out.features, batch["t_feat"].float())
    if w.graph and out.nodes is not None:
        parts["graph"] = node_affinity_loss(out.nodes, batch["t_nodes"].float())
    if w.expression_teacher or w.expression_hr:
        logits = critic(sr)
        if w.expression_teacher:
            parts["expression_teacher"] = kl_to(logits, batch["t_probs"])
        if w.expression_hr:
            parts["expression_hr"] = kl_to(logits, batch["hr_probs"])
    total = sum(getattr(w, k) * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
