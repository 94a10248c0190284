"""The student's landmark branch: a dense GCN over the landmarks, an optional global FiLM of the
image features, and the spatial prior that places node embeddings where the landmarks are. Only
fully connected layers, 1x1 convs and a nearest resize: all of it converts to int8 TFLite."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_affectsr import landmark_graph
from edge_affectsr.distill.archs.dense_gcn import DenseGCNLayer


class LandmarkGraph(nn.Module):
    """Dense GCN over the landmarks, and optionally a global FiLM of the image features.

    ``lm [B, N, 2] -> (gate [B, C, 1, 1] in (0, 2) | None, shift [B, C, 1, 1] | None, nodes [B, N, H])``
    with ``H = hidden``, ``C = channels``; gate and shift only with ``film``. The FiLM pools the nodes
    with a learned linear map into ``regions`` "regions" (a fully connected op); its gate
    ``2 * sigmoid`` starts at 1, so an untrained branch leaves the image path alone. Measured: a
    student that only has the FiLM scores the same with the mean face shape as with its landmarks
    (docs/students.md), hence ``film_gate: false`` with a spatial prior instead.
    """

    def __init__(self, subset: str, hidden: int, layers: int, film: bool, channels: int, regions: int) -> None:
        super().__init__()
        n = len(landmark_graph.subset_nodes(subset))
        self.coord = nn.Linear(2, hidden)
        self.node_id = nn.Parameter(torch.randn(n, hidden) * 0.1)
        self.gcn = nn.ModuleList(DenseGCNLayer(hidden, hidden, subset) for _ in range(layers))
        self.act = nn.ReLU()
        self.film = film
        if not self.film:
            return
        self.pool = nn.Linear(n, regions, bias=False)
        nn.init.constant_(self.pool.weight, 1.0 / n)
        # 1x1 convs on a [B, H*R, 1, 1] map rather than linear layers: their outputs are then real
        # 4-D feature maps, which onnx2tf lays out NHWC like the image features they scale.
        self.to_gate = nn.Conv2d(hidden * regions, channels, 1)
        self.to_shift = nn.Conv2d(hidden * regions, channels, 1)
        for fc in (self.to_gate, self.to_shift):  # start as the identity: gate 1, shift 0
            nn.init.zeros_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, lm: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        x = self.act(self.coord(lm * 2 - 1) + self.node_id)
        for layer in self.gcn:
            x = x + self.act(layer(x))
        if not self.film:
            return None, None, x
        pooled = self.pool(x.transpose(1, 2)).reshape(x.shape[0], -1, 1, 1)  # [B, H * R, 1, 1]
        return 2 * torch.sigmoid(self.to_gate(pooled)), self.to_shift(pooled), x


def mean_shape_splat(subset: str, grid: int, sigma_cells: float = 1.0) -> np.ndarray:
    """Gaussian weights ``[grid*grid, N]`` of each node at its mean-shape position on a
    ``grid x grid`` map (row-major cells); per cell normalised with ``+ 1`` so cells far from every
    landmark stay near 0, as in the teacher's ``splat_to_grid``."""
    centres = (np.arange(grid) + 0.5) / grid
    gy, gx = np.meshgrid(centres, centres, indexing="ij")
    cells = np.stack([gx.ravel(), gy.ravel()], axis=-1)  # [P, 2]
    d2 = ((cells[:, None, :] - landmark_graph.mean_shape(subset)[None]) ** 2).sum(-1)  # [P, N]
    w = np.exp(-d2 / (2 * (sigma_cells / grid) ** 2))
    return (w / (w.sum(1, keepdims=True) + 1.0)).astype(np.float32)


class LandmarkPrior(nn.Module):
    """Node embeddings placed where each landmark sits, so the image branch learns *where* the
    face's parts are (the global gate can only say *whether*).

    ``nodes [B, N, hidden] -> [B, channels, lr_size, lr_size]`` (a ``grid x grid`` map upsampled nearest).
    A per-node projection to the image channels, then a fully connected layer over the node axis
    initialised to the mean-shape Gaussian splat (trainable: FaceMesh positions on aligned faces
    wander a cell or so). Landmark-dependent positions would need data-dependent weights (a
    BATCH_MATMUL, wrong in int8 on LiteRT); the actual coordinates still arrive through each node's
    embedding. The projection starts at zero: an untrained prior adds
    nothing, so a trained student can be fine-tuned with it (``--init``).
    """

    def __init__(self, subset: str, hidden: int, channels: int, grid: int, lr_size: int) -> None:
        super().__init__()
        self.grid = grid
        self.upscale = lr_size // grid  # a constant: the export's Resize has fixed scales
        self.proj = nn.Linear(hidden, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        splat = torch.from_numpy(mean_shape_splat(subset, grid))
        self.splat = nn.Linear(splat.shape[1], splat.shape[0], bias=False)
        self.splat.weight.data.copy_(splat)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        x = self.splat(self.proj(nodes).transpose(1, 2))  # [B, C, grid*grid]
        x = x.reshape(x.shape[0], x.shape[1], self.grid, self.grid)
        return F.interpolate(x, scale_factor=self.upscale, mode="nearest")
