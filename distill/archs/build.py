"""Build the network a checkpoint describes: its ``kind`` picks the architecture, its ``config.model``
the hyper-parameters."""

from __future__ import annotations

from torch import nn

from edge_affectsr.distill.archs.student import StudentConfig, StudentSR
from edge_affectsr.distill.archs.teacher import AffectSRNet, TeacherConfig

ARCHS = {"teacher": (AffectSRNet, TeacherConfig), "student": (StudentSR, StudentConfig)}


def build_sr_model(kind: str, model_cfg: dict) -> nn.Module:
    arch, schema = ARCHS[kind]
    return arch(schema.model_validate(model_cfg))
