"""AffectSRNet, the full teacher: RRDB backbone + landmark GCN + split-attention fusion."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edge_affectsr import landmark_graph
from edge_affectsr.distill.archs.fusion import SplitAttentionFusion
from edge_affectsr.distill.archs.graph import LandmarkGCN, LandmarkHead, NodeEncoder, splat_to_grid
from edge_affectsr.distill.archs.output import SROutput
from edge_affectsr.distill.archs.registry import ARCH_REGISTRY
from edge_affectsr.distill.archs.rrdb import RRDB, PixelShuffleUpsampler


class TeacherConfig(BaseModel):
    """Architecture hyper-parameters (the ``model:`` section of a teacher config)."""

    branch_keys: ClassVar[frozenset[str]] = frozenset()  # none: --init needs the same section

    model_config = ConfigDict(extra="forbid")
    scale: int = Field(4, description="upscaling factor")
    nf: int = Field(32, description="feature channels of the RRDB trunk")
    gc: int = Field(16, description="growth channels inside each dense block")
    blocks: int = Field(3, description="RRDB blocks in the trunk")
    hr_nf: int = Field(16, description="channels of the last upsampling step (full-resolution convs dominate the cost)")
    use_graph: bool = Field(True, description="the landmark GCN branch; false: image-only ablation")
    landmark_subset: str = Field("full", description="edge_affectsr.landmark_graph subset the GCN is built on")
    gcn_hidden: int = Field(32, description="node embedding width")
    gcn_layers: int = Field(3, description="GCN layers")
    splat_sigma_px: float = Field(
        1.0, description="Gaussian radius (LR px) that spreads node embeddings onto the image grid")

    @property
    def outputs(self) -> frozenset[str]:
        """The ``SROutput`` fields this network fills besides ``sr`` (what loss terms may read)."""
        return frozenset({"features", "nodes", "lm_pred"} if self.use_graph else {"features"})


@ARCH_REGISTRY.register("teacher")
class AffectSRNet(nn.Module):
    """``lr [B, 3, h, w]`` in [0, 1], ``lm [B, N, 2]`` normalised, ``found [B]`` -> ``SROutput``
    with ``sr [B, 3, s*h, s*w]`` (not clamped), ``features [B, nf, h, w]`` and, with the graph,
    ``nodes [B, N, gcn_hidden]`` and ``lm_pred [B, N, 2]``.

    The output is a residual over the bicubic upscale of the input, so the network only learns the
    missing detail.
    """

    config_class: ClassVar[type[TeacherConfig]] = TeacherConfig

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv_first = nn.Conv2d(3, cfg.nf, 3, 1, 1)
        self.trunk = nn.Sequential(*(RRDB(cfg.nf, cfg.gc) for _ in range(cfg.blocks)))
        self.conv_trunk = nn.Conv2d(cfg.nf, cfg.nf, 3, 1, 1)
        self.upsample = PixelShuffleUpsampler(cfg.nf, cfg.scale, cfg.hr_nf)
        if cfg.use_graph:
            edge_index = torch.from_numpy(landmark_graph.edge_index(cfg.landmark_subset))
            n = len(landmark_graph.subset_nodes(cfg.landmark_subset))
            self.node_encoder = NodeEncoder(n, cfg.nf, cfg.gcn_hidden)
            self.gcn = LandmarkGCN(cfg.gcn_hidden, cfg.gcn_layers, edge_index)
            self.lm_head = LandmarkHead(cfg.gcn_hidden)
            self.fusion = SplitAttentionFusion(cfg.nf, cfg.gcn_hidden)

    def forward(self, lr: torch.Tensor, lm: torch.Tensor | None = None, found: torch.Tensor | None = None) -> SROutput:
        shallow = self.conv_first(lr)
        deep = self.trunk(shallow)
        nodes = lm_pred = None
        if self.cfg.use_graph:
            if lm is None:
                raise ValueError("this AffectSRNet uses the landmark graph: pass landmarks [B, N, 2]")
            found = torch.ones(lr.shape[0], device=lr.device) if found is None else found
            nodes = self.gcn(self.node_encoder(lm, found, shallow))
            lm_map = splat_to_grid(nodes, lm, lr.shape[-1], self.cfg.splat_sigma_px)
            deep = self.fusion(deep, lm_map, nodes.mean(dim=1))
            lm_pred = self.lm_head(nodes, lm)
        feat = shallow + self.conv_trunk(deep)
        base = F.interpolate(lr, scale_factor=self.cfg.scale, mode="bicubic", align_corners=False)
        return SROutput(sr=base + self.upsample(feat), nodes=nodes, lm_pred=lm_pred, features=feat)
