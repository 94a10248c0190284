"""The ``loss:`` section of a training config: registered term name -> weight, summed in the order
listed. ``--set loss.NAME=W`` sets a weight or adds a term; weight 0 leaves a term out.

Checkpoints store the config they were trained with, and those before the loss registry have the
old layout, which is read here too: a ``pixel_type`` key (``charbonnier`` | ``l1``) chose the
distance of ``pixel`` (now the terms ``pixel`` and ``pixel_l1``), and the teacher called
``expression_hr`` ``expression``. Every other old key was already a term's name and weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from edge_affectsr.distill.losses.registry import LOSS_REGISTRY, NEEDS

PIXEL_TERMS = {"charbonnier": "pixel", "l1": "pixel_l1"}  # old pixel_type -> term
OLD_NAMES = {"expression": "expression_hr"}


def from_old_layout(loss: object) -> object:
    """The old layout (above) as term -> weight, in the same order; the new layout unchanged."""
    if not isinstance(loss, dict):
        return loss  # pydantic names the type error
    pixel_type = loss.get("pixel_type", "charbonnier")
    if not isinstance(pixel_type, str) or pixel_type not in PIXEL_TERMS:
        raise ValueError(f"pixel_type must be 'charbonnier' or 'l1', got {pixel_type!r}")
    renames = {**OLD_NAMES, "pixel": PIXEL_TERMS[pixel_type]}
    terms: dict = {}
    for key, weight in loss.items():
        name = renames.get(key, key)
        if name in terms:
            raise ValueError(f"the loss term {name!r} is given twice (by its name and by an old one)")
        if key != "pixel_type":
            terms[name] = weight
    return terms


def registered(loss: dict[str, float]) -> dict[str, float]:
    for name in loss:
        LOSS_REGISTRY.get(name)  # an unknown name lists the known ones
    return loss


LossWeights = Annotated[dict[str, float], BeforeValidator(from_old_layout), AfterValidator(registered)]


def loss_needs(weights: Mapping[str, float]) -> frozenset[str]:
    """What the terms with a non-zero weight need (keys of ``NEEDS``)."""
    return frozenset().union(*(LOSS_REGISTRY.get(name).needs for name, w in weights.items() if w))


def check_loss_fits(weights: Mapping[str, float], available: set[str]) -> None:
    """Every term with a non-zero weight gets what it needs from ``available`` (keys of ``NEEDS``:
    the model's outputs, the critic, the teacher's targets when distilling), else a ValueError
    that names the term and what it lacks."""
    problems = [f"loss.{name} needs {NEEDS[need]}" for name, w in weights.items() if w
                for need in sorted(LOSS_REGISTRY.get(name).needs - available)]
    if problems:
        raise ValueError("; ".join(problems))
