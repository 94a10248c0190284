"""The SR architectures by name. A name is what a training config's and a checkpoint's ``kind``
says (``teacher``, ``student``); each class says which pydantic schema its ``model:`` section has
(``config_class``). Importing ``edge_affectsr.distill.archs`` registers them all."""

from __future__ import annotations

from edge_affectsr.registry import Registry

ARCH_REGISTRY: Registry = Registry("architecture")
