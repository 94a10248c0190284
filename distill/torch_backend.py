"""The ``.pt`` SR backend: a teacher or student checkpoint run with torch on the CPU.

Registered under the ``edge_affectsr.backends`` entry-point group (pyproject.toml), so the runtime's
``edge_affectsr.runtime.backend.load_model`` opens checkpoints without importing torch itself; the
call is the one every backend has: ``lr`` uint8 ``[B, h, w, 3]``, landmarks ``[B, 478, 2]``
(normalised, found on the bicubic upscale of ``lr``), ``found`` bool ``[B]`` -> SR uint8
``[B, h*scale, w*scale, 3]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_affectsr import protocol
from edge_affectsr.distill.archs.build import build_sr_model
from edge_affectsr.distill.archs.complexity import count_macs, count_params
from edge_affectsr.distill.checkpoints import load_checkpoint
from edge_affectsr.distill.data.dataset import to_tensor_image, to_uint8_image
from edge_affectsr.landmark_graph import subset_nodes


class TorchBackend:
    """A teacher or student checkpoint; ``model`` and ``nodes`` are exposed for distillation,
    which runs the teacher itself on the training device."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        ckpt = load_checkpoint(path)
        self.kind = ckpt["kind"]
        self.model = build_sr_model(self.kind, ckpt["config"]["model"]).eval()
        self.model.load_state_dict(ckpt["model"])
        cfg = self.model.cfg
        self.name = name or Path(path).stem
        self.scale = cfg.scale
        self.nodes = subset_nodes(cfg.landmark_subset)
        self.iteration = ckpt.get("iteration")
        # A student's landmark prior has the protocol's LR size; other models take any size.
        self.lr_size = getattr(self.model, "lr_size", None)
        self.params = count_params(self.model)
        self.macs = count_macs(self.model, protocol.lr_size(self.scale), len(self.nodes))

    @torch.no_grad()
    def __call__(self, lr: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
        x = to_tensor_image(lr)
        l = torch.from_numpy(np.ascontiguousarray(landmarks[:, self.nodes])).float()
        return to_uint8_image(self.model(x, l, torch.from_numpy(np.asarray(found))).sr)
