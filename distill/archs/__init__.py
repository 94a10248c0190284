"""The SR networks, registered by name in ``ARCH_REGISTRY`` (imported here so that it is filled)."""

from edge_affectsr.distill.archs import student, teacher  # noqa: F401  (registers them)
