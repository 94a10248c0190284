"""Multimodal Split Attention Fusion (after Su et al., MSAF 2020): the landmark embedding steers
which image-feature channels pass."""

from __future__ import annotations

import torch
from torch import nn


class SplitAttentionFusion(nn.Module):
    """Fuse image features with a landmark feature map.

    ``feat [B, C, H, W]``, ``lm_map [B, G, H, W]`` (splatted node embeddings) and ``lm_global
    [B, G]`` (pooled graph embedding) ``-> [B, C, H, W]``. A joint descriptor of both modalities
    gives, per channel, a softmax over the two splits (image, landmark); the weighted sum is added
    back through a 1x1 conv, so an untrained fusion starts as the identity.
    """

    def __init__(self, channels: int, graph_dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.lm_proj = nn.Conv2d(graph_dim, channels, 1)
        mid = max(channels // reduction, 8)
        self.squeeze = nn.Sequential(nn.Linear(channels + graph_dim, mid), nn.ReLU(inplace=True))
        self.excite = nn.Linear(mid, 2 * channels)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, feat: torch.Tensor, lm_map: torch.Tensor, lm_global: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = feat.shape
        lm_feat = self.lm_proj(lm_map)
        joint = torch.cat([(feat + lm_feat).mean(dim=(2, 3)), lm_global], dim=1)
        attn = self.excite(self.squeeze(joint)).view(b, 2, c, 1, 1).softmax(dim=1)
        fused = attn[:, 0] * feat + attn[:, 1] * lm_feat
        return feat + self.out(fused)
