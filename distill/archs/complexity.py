"""Model size and cost: trainable parameters and multiply-adds, for budgets and the eval table."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Trainable parameters (the student's fixed anchor/merge convs are not learned, so not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, lr_size: int, n_landmarks: int) -> int:
    """Multiply-adds of one forward pass of ``nn.Conv2d`` and ``nn.Linear`` layers, counted with forward
    hooks. Exact for the student (everything it computes is one of those); a lower bound for the
    teacher, whose torch-geometric ``GCNConv`` and landmark splatting are not counted."""
    total = 0

    def conv_hook(m, _i, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, _i, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(torch.rand(1, 3, lr_size, lr_size), torch.rand(1, n_landmarks, 2))
    for h in hooks:
        h.remove()
    return total
