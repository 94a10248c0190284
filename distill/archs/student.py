"""The edge student: a small residual CNN steered by a dense landmark GCN (a spatial prior placed
where the landmarks are, and/or a global channel gate), built only from ops that survive int8
conversion and run on the Edge TPU, mobile GPU delegates and CPUs.

Deployable by construction: 3x3/1x1 convolutions, ReLU, add/mul/concat, fully connected layers,
a sigmoid gate, nearest-neighbour resize, static shapes. No gather/scatter (landmarks enter as
coordinates, not as sampled image features), no SiLU/GELU/HardSwish/PReLU. The output is an
image-space anchor (the LR input repeated scale^2 times) plus the learned residual, clipped to
[0, 1], then depth-to-space in DCR order last, so the Edge TPU can run everything before it (it
cannot run DEPTH_TO_SPACE).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from edge_affectsr.distill.archs.dense_gcn import DenseGCNLayer
from edge_affectsr.distill.archs.output import SROutput
from edge_affectsr import landmark_graph, protocol


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Keys that add or remove a branch which starts as the identity: ``--init`` may change them.
    branch_keys: ClassVar[frozenset[str]] = frozenset({"film_gate", "pooled_regions", "prior_grid"})
    scale: int = 4
    channels: int = 28
    blocks: int = 4
    use_graph: bool = True
    landmark_subset: str = "contours"
    gcn_hidden: int = 16
    gcn_layers: int = 2
    film_gate: bool = True  # the global scale/shift from pooled nodes
    pooled_regions: int = 8
    prior_grid: int = 0  # side of the spatial landmark prior (0: none); must divide the LR size

    @model_validator(mode="after")
    def _branches_fit(self) -> StudentConfig:
        """Checked when a config is read (a clear error before any data loads), not when the model is built."""
        if self.use_graph and not (self.film_gate or self.prior_grid):
            raise ValueError("use_graph needs a way into the image: film_gate or prior_grid")
        if self.prior_grid and not self.use_graph:
            raise ValueError("prior_grid needs use_graph: true (the prior places the graph's node embeddings)")
        lr_size = protocol.lr_size(self.scale)
        if self.prior_grid and lr_size % self.prior_grid:
            raise ValueError(f"prior_grid {self.prior_grid} must divide the LR size {lr_size}")
        return self


class DepthToSpaceDCR(torch.autograd.Function):
    """TF's DEPTH_TO_SPACE (DCR): output ``(h*r+i, w*r+j, c)`` = input channel ``(i*r+j)*C + c``.
    Exports to ONNX as one ``DepthToSpace(mode='DCR')`` (PixelShuffle would export CRD, which
    onnx2tf can only express with 6-D transposes)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, r: int) -> torch.Tensor:  # noqa: D102
        ctx.r = r
        b, c, h, w = x.shape
        out = x.view(b, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
        return out.reshape(b, c // (r * r), h * r, w * r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        b, c, hr, wr = grad.shape
        r = ctx.r
        g = grad.view(b, c, hr // r, r, wr // r, r).permute(0, 3, 5, 1, 2, 4)
        return g.reshape(b, c * r * r, hr // r, wr // r), None

    @staticmethod
    def symbolic(g, x, r: int):  # noqa: D102
        return g.op("DepthToSpace", x, blocksize_i=r, mode_s="DCR")


def depth_to_space_dcr(x: torch.Tensor, r: int) -> torch.Tensor:
    return DepthToSpaceDCR.apply(x, r)


class ResBlock(nn.Module):
    """conv3x3-ReLU-conv3x3 + skip. ``[B, C, h, w] -> [B, C, h, w]``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LandmarkGraph(nn.Module):
    """Dense GCN over the landmarks, and optionally a global FiLM of the image features.

    ``lm [B, N, 2] -> (gate [B, C, 1, 1] in (0, 2) | None, shift [B, C, 1, 1] | None, nodes [B, N, H])``.
    The FiLM pools the nodes with a learned linear map into a few "regions" (a fully connected
    op); its gate ``2 * sigmoid`` starts at 1, so an untrained branch leaves the image path alone.
    Measured: a student that only has the FiLM scores the same with the mean face shape as with its
    landmarks (docs/students.md), hence ``film_gate: false`` with a spatial prior instead.
    """

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        n = len(landmark_graph.subset_nodes(cfg.landmark_subset))
        self.coord = nn.Linear(2, cfg.gcn_hidden)
        self.node_id = nn.Parameter(torch.randn(n, cfg.gcn_hidden) * 0.1)
        self.gcn = nn.ModuleList(DenseGCNLayer(cfg.gcn_hidden, cfg.gcn_hidden, cfg.landmark_subset)
                                 for _ in range(cfg.gcn_layers))
        self.act = nn.ReLU()
        self.film = cfg.film_gate
        if not self.film:
            return
        self.pool = nn.Linear(n, cfg.pooled_regions, bias=False)
        nn.init.constant_(self.pool.weight, 1.0 / n)
        # 1x1 convs on a [B, H*R, 1, 1] map rather than linear layers: their outputs are then real
        # 4-D feature maps, which onnx2tf lays out NHWC like the image features they scale.
        self.to_gate = nn.Conv2d(cfg.gcn_hidden * cfg.pooled_regions, cfg.channels, 1)
        self.to_shift = nn.Conv2d(cfg.gcn_hidden * cfg.pooled_regions, cfg.channels, 1)
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

    ``nodes [B, N, H] -> [B, C, h, w]``, the LR size (a ``grid x grid`` map upsampled nearest).
    A per-node projection to the image channels, then a fully connected layer over the node axis
    initialised to the mean-shape Gaussian splat (trainable: FaceMesh positions on aligned faces
    wander a cell or so). Landmark-dependent positions would need data-dependent weights (a
    BATCH_MATMUL, wrong in int8 on LiteRT); the actual coordinates still arrive through each node's
    embedding. The projection starts at zero: an untrained prior adds
    nothing, so a trained student can be fine-tuned with it (``--init``).
    """

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.grid = cfg.prior_grid
        self.upscale = protocol.lr_size(cfg.scale) // cfg.prior_grid  # a constant: the export's Resize has fixed scales
        self.proj = nn.Linear(cfg.gcn_hidden, cfg.channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        splat = torch.from_numpy(mean_shape_splat(cfg.landmark_subset, cfg.prior_grid))
        self.splat = nn.Linear(splat.shape[1], splat.shape[0], bias=False)
        self.splat.weight.data.copy_(splat)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        x = self.splat(self.proj(nodes).transpose(1, 2))  # [B, C, grid*grid]
        x = x.reshape(x.shape[0], x.shape[1], self.grid, self.grid)
        return F.interpolate(x, scale_factor=self.upscale, mode="nearest")


def _rename_gate_keys(module: nn.Module, state: dict, prefix: str, *_) -> None:
    """Checkpoints written before the spatial prior call the graph branch ``gate``."""
    old = prefix + "gate."
    for key in [k for k in state if k.startswith(old)]:
        state[prefix + "graph." + key[len(old):]] = state.pop(key)


class StudentSR(nn.Module):
    """``lr [B, 3, h, w]`` in [0, 1], ``lm [B, N, 2]`` -> ``SROutput`` with ``sr`` in [0, 1].

    ``found`` is accepted for parity with the teacher and ignored: where FaceMesh failed, the
    landmarks are the core's mean shape, and the deployed model has no third input.
    """

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, r = cfg.channels, cfg.scale
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList(ResBlock(c) for _ in range(cfg.blocks))
        self.graph = LandmarkGraph(cfg) if cfg.use_graph else None
        self.prior = LandmarkPrior(cfg) if cfg.prior_grid else None
        # The prior's map has the LR size of the training protocol; without it, any size works.
        self.lr_size = protocol.lr_size(cfg.scale) if self.prior is not None else None
        self.tail = nn.Conv2d(c, 3 * r * r, 3, 1, 1)
        # The anchor: the LR input repeated r*r times along channels (nearest-neighbour upscaling
        # after the DCR depth-to-space), added to the residual. Both are fixed 1x1 convs, the sum
        # a concat + [I | I] conv: a plain Add before the depth-to-space makes onnx2tf 1.29.24 lose
        # the NHWC layout (output [1,192,128,2]), and concatenating the raw input would force the
        # int8 input to share the residual's coarser scale.
        n = 3 * r * r
        self.anchor = nn.Conv2d(3, n, 1, bias=False)
        self.anchor.weight.data.copy_(torch.eye(3).repeat(r * r, 1)[:, :, None, None])
        self.merge = nn.Conv2d(2 * n, n, 1, bias=False)
        self.merge.weight.data.copy_(torch.cat([torch.eye(n), torch.eye(n)], dim=1)[:, :, None, None])
        for fixed in (self.anchor, self.merge):
            fixed.weight.requires_grad_(False)
        self.register_load_state_dict_pre_hook(_rename_gate_keys)

    def forward(self, lr: torch.Tensor, lm: torch.Tensor | None = None, found: torch.Tensor | None = None) -> SROutput:
        r = self.cfg.scale
        feat = self.head(lr)
        nodes = None
        mid = len(self.blocks) // 2
        for i, block in enumerate(self.blocks):
            if i == mid and self.graph is not None:
                gate, shift, nodes = self.graph(lm)
                if gate is not None:
                    feat = feat * gate + shift
                if self.prior is not None:
                    feat = feat + self.prior(nodes)
            feat = block(feat)
        out = torch.clamp(self.merge(torch.cat([self.tail(feat), self.anchor(lr)], dim=1)), 0.0, 1.0)
        return SROutput(sr=depth_to_space_dcr(out, r), nodes=nodes, features=feat)
