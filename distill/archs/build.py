"""Build the network a checkpoint or a config describes: its ``kind`` picks the registered
architecture, its ``model`` section the hyper-parameters."""

from __future__ import annotations

from torch import nn

from edge_affectsr.distill.archs.registry import ARCH_REGISTRY


def build_sr_model(kind: str, model_cfg: dict) -> nn.Module:
    arch = ARCH_REGISTRY.get(kind)
    return arch(arch.config_class.model_validate(model_cfg))
