"""The loss terms by name, and what a term may need.

A training config's ``loss:`` section lists terms by their registered name with a weight; a term
is a :class:`LossTerm` that reads one step's :class:`LossInputs` and returns its unweighted value.
Adding a loss is a registered class and a line in a config.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from edge_affectsr.distill.losses.inputs import LossInputs
from edge_affectsr.registry import Registry

LOSS_REGISTRY: Registry = Registry("loss")

# What a term may need besides the SR and HR faces, and where a config gets it (for its errors).
NEEDS = {
    "critic": "the FER critic",
    "teacher": "the teacher's targets, which only `edge-affectsr distill` computes",
    "features": "the model's LR features",
    "nodes": "the landmark graph's node embeddings (model.use_graph: true)",
    "lm_pred": "landmark predictions, which only the teacher makes (model.use_graph: true)",
}


class LossTerm(nn.Module):
    """One term of a training loss: ``forward(x: LossInputs) -> []``, a scalar, unweighted.

    ``needs``: keys of ``NEEDS``. The training config is checked against them when it is read, and
    the training commands build the critic and the teacher's targets only for terms that need them.
    """

    needs: ClassVar[frozenset[str]] = frozenset()

    def forward(self, x: LossInputs) -> torch.Tensor:
        raise NotImplementedError
