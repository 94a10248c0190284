"""Training loss terms, registered by name in ``LOSS_REGISTRY`` (imported here so that it is filled)."""

from edge_affectsr.distill.losses import critic, distillation, landmark, pixel  # noqa: F401  (registers them)
