"""The deployable GCN layer: ``Â (X W) + b`` with the constant normalised adjacency from the core,
written as two linear layers so that it converts to ``FULLY_CONNECTED`` ops only.

Why not ``torch.matmul(A, XW)``: that lowers to an int8 ``BATCH_MATMUL`` with a constant left
operand, which ai-edge-litert 2.1.0's CPU path computes wrongly (see shared/notes/toolchain.md), and
PyG's ``GCNConv`` exports only as scatter/gather ops. A linear layer over the node axis with weight
``Â`` (symmetric, so ``Â^T = Â``) computes the same aggregation as a plain fully connected op.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_affectsr import landmark_graph


class DenseGCNLayer(nn.Module):
    """``[B, N, F_in] -> [B, N, F_out]``; same parameters (``lin.weight``, ``bias``) as PyG's GCNConv."""

    def __init__(self, in_dim: int, out_dim: int, subset: str = "full") -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        adj = torch.from_numpy(landmark_graph.normalized_adjacency(subset))
        self.aggregate = nn.Linear(adj.shape[0], adj.shape[0], bias=False)
        self.aggregate.weight.data.copy_(adj)
        self.aggregate.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x).transpose(1, 2)  # [B, F_out, N]: nodes last, so the FC runs over them
        return self.aggregate(h).transpose(1, 2) + self.bias

    @torch.no_grad()
    def load_from_gcnconv(self, conv: nn.Module) -> None:
        """Carry a torch-geometric ``GCNConv``'s trained weights over (its graph may differ)."""
        self.lin.weight.copy_(conv.lin.weight)
        self.bias.copy_(conv.bias)
