"""The edge student: a small residual CNN steered by a dense landmark GCN (a spatial prior placed
where the landmarks are, and/or a global channel gate), built only from ops that survive int8
conversion and run on the Edge TPU, mobile GPU delegates and CPUs.

Deployable by construction: 3x3/1x1 convolutions, ReLU, add/mul/concat, fully connected layers,
a sigmoid gate, nearest-neighbour resize, static shapes. No gather/scatter (landmarks enter as
coordinates, not as sampled image features), no SiLU/GELU/HardSwish/PReLU. The output is an
image-space anchor (the LR input repeated scale^2 times) plus the learned residual, clipped to
[0, 1] (in training; see ``forward``), then depth-to-space in DCR order last, so the Edge TPU can run everything before it (it
cannot run DEPTH_TO_SPACE).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from edge_affectsr import protocol
from edge_affectsr.distill.archs.depth_to_space import depth_to_space_dcr
from edge_affectsr.distill.archs.output import SROutput
from edge_affectsr.distill.archs.registry import ARCH_REGISTRY
from edge_affectsr.distill.archs.student_graph import LandmarkGraph, LandmarkPrior


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Keys that add or remove a branch which starts as the identity: ``--init`` may change them.
    branch_keys: ClassVar[frozenset[str]] = frozenset({"film_gate", "pooled_regions", "prior_grid"})
    scale: int = Field(4, description="upscaling factor")
    channels: int = Field(28, description="feature channels of the residual CNN")
    blocks: int = Field(4, description="residual blocks")
    use_graph: bool = Field(True, description="the landmark GCN branch; false: image-only ablation")
    landmark_subset: str = Field("contours", description="edge_affectsr.landmark_graph subset the GCN is built on")
    gcn_hidden: int = Field(16, description="node embedding width")
    gcn_layers: int = Field(2, description="dense GCN layers")
    film_gate: bool = Field(True, description="the global scale/shift from pooled nodes")
    pooled_regions: int = Field(8, description="learned node pools feeding the FiLM gate")
    prior_grid: int = Field(0, description="side of the spatial landmark prior (0: none); must divide the LR size")

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

    @property
    def outputs(self) -> frozenset[str]:
        """The ``SROutput`` fields this network fills besides ``sr`` (what loss terms may read)."""
        return frozenset({"features", "nodes"} if self.use_graph else {"features"})


class ResBlock(nn.Module):
    """conv3x3-ReLU-conv3x3 + skip. ``[B, C, h, w] -> [B, C, h, w]``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _rename_gate_keys(module: nn.Module, state: dict, prefix: str, *_) -> None:
    """Checkpoints written before the spatial prior call the graph branch ``gate``."""
    old = prefix + "gate."
    for key in [k for k in state if k.startswith(old)]:
        state[prefix + "graph." + key[len(old):]] = state.pop(key)


@ARCH_REGISTRY.register("student")
class StudentSR(nn.Module):
    """``lr [B, 3, h, w]`` in [0, 1], ``lm [B, N, 2]`` -> ``SROutput`` with ``sr [B, 3, s*h, s*w]``
    in [0, 1], ``features [B, channels, h, w]`` and, with the graph, ``nodes [B, N, gcn_hidden]``.

    ``found`` is accepted for parity with the teacher and ignored: where FaceMesh failed, the
    landmarks are the core's mean shape, and the deployed model has no third input.
    """

    config_class: ClassVar[type[StudentConfig]] = StudentConfig

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, r = cfg.channels, cfg.scale
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList(ResBlock(c) for _ in range(cfg.blocks))
        self.graph = LandmarkGraph(cfg.landmark_subset, cfg.gcn_hidden, cfg.gcn_layers, cfg.film_gate, c,
                                   cfg.pooled_regions) if cfg.use_graph else None
        lr_size = protocol.lr_size(r)
        self.prior = LandmarkPrior(cfg.landmark_subset, cfg.gcn_hidden, c, cfg.prior_grid,
                                   lr_size) if cfg.prior_grid else None
        # The prior's map has the LR size of the training protocol; without it, any size works.
        self.lr_size = lr_size if self.prior is not None else None
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

    def forward(self, lr: torch.Tensor, lm: torch.Tensor | None = None, found: torch.Tensor | None = None,
                clamp: bool = True) -> SROutput:
        """``clamp=False`` leaves the output unclipped: the exported graph does (``convert/export.py``)."""
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
        out = self.merge(torch.cat([self.tail(feat), self.anchor(lr)], dim=1))
        if clamp:
            out = torch.clamp(out, 0.0, 1.0)
        return SROutput(sr=depth_to_space_dcr(out, r), nodes=nodes, features=feat)
