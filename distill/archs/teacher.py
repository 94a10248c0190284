"""AffectSRNet, the full teacher: RRDB backbone + landmark GCN + split-attention fusion."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from edge_affectsr.distill.archs.output import SROutput
from edge_affectsr.distill.archs.fusion import SplitAttentionFusion
from edge_affectsr.distill.archs.graph import LandmarkGCN, LandmarkHead, NodeEncoder, splat_to_grid
from edge_affectsr.distill.archs.rrdb import RRDB, PixelShuffleUpsampler
from edge_affectsr import landmark_graph


class TeacherConfig(BaseModel):
    """Architecture hyper-parameters (the ``model:`` section of a teacher config)."""

    branch_keys: ClassVar[frozenset[str]] = frozenset()  # none: --init needs the same section

    model_config = ConfigDict(extra="forbid")
    scale: int = 4
    nf: int = 32
    gc: int = 16
    blocks: int = 3
    hr_nf: int = 16
    use_graph: bool = True
    landmark_subset: str = "full"
    gcn_hidden: int = 32
    gcn_layers: int = 3
    splat_sigma_px: float = 1.0


class AffectSRNet(nn.Module):
    """``lr [B, 3, h, w]`` in [0, 1], ``lm [B, N, 2]`` normalised, ``found [B]`` -> ``SROutput``.

    The output is a residual over the bicubic upscale of the input, so the network only learns the
    missing detail.
    """

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
