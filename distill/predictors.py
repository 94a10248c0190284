"""Everything that turns LR faces into SR faces behind one call, so ``eval`` and ``upscale`` treat
bicubic, the teacher and (later) the student and TFLite models alike.

A predictor takes ``lr`` uint8 ``[B, h, w, 3]``, landmarks ``[B, N_full, 2]`` (all 478 points,
normalised, found on the bicubic upscale of ``lr``) and ``found`` bool ``[B]``, and returns SR uint8
``[B, h*scale, w*scale, 3]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from distill.archs.build import build_sr_model
from distill.archs.complexity import count_macs, count_params
from distill.checkpoints import load_checkpoint
from distill.data.dataset import to_tensor_image, to_uint8_image
from edge_affectsr import protocol
from edge_affectsr.landmark_graph import subset_nodes
from edge_affectsr.models import resolve_model
from edge_affectsr.errors import UserError


class BicubicPredictor:
    def __init__(self, scale: int) -> None:
        self.name, self.scale = "bicubic", scale
        self.params = self.macs = None

    def __call__(self, lr: np.ndarray, lm: np.ndarray, found: np.ndarray) -> np.ndarray:
        return np.stack([protocol.resize(x, x.shape[0] * self.scale) for x in lr])


class TorchPredictor:
    """A teacher or student checkpoint, run with torch on the CPU."""

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
        self.params = count_params(self.model)
        self.macs = count_macs(self.model, protocol.lr_size(self.scale), len(self.nodes))

    @torch.no_grad()
    def __call__(self, lr: np.ndarray, lm: np.ndarray, found: np.ndarray) -> np.ndarray:
        x = to_tensor_image(lr)
        l = torch.from_numpy(np.ascontiguousarray(lm[:, self.nodes])).float()
        return to_uint8_image(self.model(x, l, torch.from_numpy(np.asarray(found))).sr)


def load_predictor(ref: str) -> TorchPredictor:
    path = resolve_model(ref)
    if path.suffix == ".pt":
        return TorchPredictor(path, name=str(ref) if not Path(ref).exists() else f"{path.parent.name}/{path.stem}")
    raise UserError(f"{path}: unsupported model type (expected a .pt checkpoint)")
