"""What every SR network in ``distill/archs`` returns, so training and evaluation treat the teacher
and the student alike."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SROutput:
    sr: torch.Tensor  # [B, 3, H, W]; the teacher's is not clamped, the student's is
    nodes: torch.Tensor | None = None  # [B, N, hidden] graph embedding per landmark
    lm_pred: torch.Tensor | None = None  # [B, N, 2] predicted HR landmark positions (teacher)
    features: torch.Tensor | None = None  # [B, C, h, w] LR features (for distillation)
