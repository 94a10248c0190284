"""The landmark branch of the teacher: node features, a torch-geometric GCN, and the map back to
image space."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sample_at_landmarks(feat: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
    """Bilinear image features at the landmarks. ``[B, C, H, W], [B, N, 2] -> [B, N, C]``.

    Landmarks are normalised ``(x, y)`` in [0, 1] of the image, as FaceMesh reports them.
    """
    grid = (lm * 2 - 1).unsqueeze(2)  # [B, N, 1, 2]
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(-1).transpose(1, 2)


def splat_to_grid(nodes: torch.Tensor, lm: torch.Tensor, size: int, sigma_px: float = 1.0) -> torch.Tensor:
    """Spread node embeddings onto a ``size x size`` grid with Gaussian weights around each landmark.

    ``[B, N, C], [B, N, 2] -> [B, C, size, size]``. Pixels far from every landmark get ~0 (the
    ``+ 1`` in the normaliser), so the background is left to the image branch.
    """
    coords = (torch.arange(size, device=lm.device, dtype=lm.dtype) + 0.5) / size
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    pix = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # [P, 2]
    d2 = ((lm.unsqueeze(2) - pix) ** 2).sum(-1)  # [B, N, P]
    w = torch.exp(-d2 / (2 * (sigma_px / size) ** 2))
    out = torch.einsum("bnp,bnc->bcp", w, nodes) / (w.sum(1).unsqueeze(1) + 1.0)
    return out.reshape(nodes.shape[0], nodes.shape[2], size, size)


class NodeEncoder(nn.Module):
    """Per-node input features: coordinates, the found flag, a learned node identity, and image
    features sampled at the landmark. ``lm [B, N, 2], found [B], img_feat [B, C, H, W] -> [B, N, hidden]``."""

    def __init__(self, num_nodes: int, img_channels: int, hidden: int, id_dim: int = 16) -> None:
        super().__init__()
        self.node_id = nn.Parameter(torch.randn(num_nodes, id_dim) * 0.1)
        self.proj = nn.Linear(2 + 1 + id_dim + img_channels, hidden)

    def forward(self, lm: torch.Tensor, found: torch.Tensor, img_feat: torch.Tensor) -> torch.Tensor:
        b, n, _ = lm.shape
        flag = found.float().view(b, 1, 1).expand(b, n, 1)
        ids = self.node_id.unsqueeze(0).expand(b, -1, -1)
        x = torch.cat([lm * 2 - 1, flag, ids, sample_at_landmarks(img_feat, lm)], dim=-1)
        return F.relu(self.proj(x))


class LandmarkGCN(nn.Module):
    """Stacked ``GCNConv`` over the face-mesh graph, residual. ``[B, N, H] -> [B, N, H]``.

    ``GCNConv`` normalises with ``D^-1/2 (A + I) D^-1/2``, the same constant the student's dense
    layer uses, so the teacher's weights carry over.
    """

    def __init__(self, hidden: int, layers: int, edge_index: torch.Tensor) -> None:
        # Imported here: torch-geometric takes seconds to import and only a graph teacher needs
        # it, not every import of the architectures (they register on import).
        from torch_geometric.nn import GCNConv

        super().__init__()
        self.register_buffer("edge_index", edge_index.long(), persistent=False)
        self.convs = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + F.relu(conv(x, self.edge_index))
        return x


class LandmarkHead(nn.Module):
    """Predicts each landmark's offset to its HR position: the graph/landmark loss's target, which
    makes the node embeddings carry geometry. ``[B, N, H], [B, N, 2] -> [B, N, 2]``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, 2)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, nodes: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
        return lm + 0.05 * torch.tanh(self.fc(nodes))
