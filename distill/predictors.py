"""Everything that turns LR faces into SR faces behind one call, so ``eval`` and ``upscale`` treat
bicubic, teacher and student checkpoints, converted ``.tflite`` models and bundles alike.

A predictor takes ``lr`` uint8 ``[B, h, w, 3]``, landmarks ``[B, N_full, 2]`` (all 478 points,
normalised, found on the bicubic upscale of ``lr``) and ``found`` bool ``[B]``, and returns SR uint8
``[B, h*scale, w*scale, 3]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_affectsr.distill.archs.build import build_sr_model
from edge_affectsr.distill.archs.complexity import count_macs, count_params
from edge_affectsr.distill.checkpoints import load_checkpoint
from edge_affectsr.distill.data.dataset import to_tensor_image, to_uint8_image
from edge_affectsr import landmark_graph, protocol
from edge_affectsr.bundle import verify_bundle
from edge_affectsr.errors import UserError
from edge_affectsr.landmark_graph import subset_nodes
from edge_affectsr.models import resolve_model
from edge_affectsr.tflite_runtime import available_runtimes
from edge_affectsr.tflite_sr import TFLiteRunner


class BicubicPredictor:
    def __init__(self, scale: int) -> None:
        self.name, self.scale = "bicubic", scale
        self.lr_size = self.params = self.macs = None  # any LR size

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
        # A student's landmark prior has the protocol's LR size; other models take any size.
        self.lr_size = getattr(self.model, "lr_size", None)
        self.params = count_params(self.model)
        self.macs = count_macs(self.model, protocol.lr_size(self.scale), len(self.nodes))

    @torch.no_grad()
    def __call__(self, lr: np.ndarray, lm: np.ndarray, found: np.ndarray) -> np.ndarray:
        x = to_tensor_image(lr)
        l = torch.from_numpy(np.ascontiguousarray(lm[:, self.nodes])).float()
        return to_uint8_image(self.model(x, l, torch.from_numpy(np.asarray(found))).sr)


class TFLitePredictor:
    """A converted SR model — a ``.tflite`` file or a bundle's ``sr_int8.tflite`` — one face at a time,
    on the first installed TFLite runtime, so the table scores exactly what the device runs."""

    def __init__(self, path: Path, name: str | None = None, runtime: str | None = None) -> None:
        subset = None
        if path.is_dir():
            manifest = verify_bundle(path)
            subset = manifest.landmarks.get("subset")
            path = path / manifest.models["sr_int8"].file
        runtimes = available_runtimes()
        if not runtimes:
            raise UserError("no TFLite runtime is installed: pip install -e '.[device]'")
        self.runner = TFLiteRunner.open(path, runtime=runtime or runtimes[0], threads=2)
        self.nodes = subset_nodes(subset or subset_for(self.runner.num_landmarks, path))
        self.name = name or path.stem
        self.scale = self.runner.scale
        self.lr_size = self.runner.lr_size  # a converted model takes exactly this LR size
        self.params = self.macs = None  # not recoverable from a converted graph

    def __call__(self, lr: np.ndarray, lm: np.ndarray, found: np.ndarray) -> np.ndarray:
        return np.stack([self.runner(face, pts[self.nodes]) for face, pts in zip(lr, lm)])


def subset_for(num_landmarks: int, path: Path) -> str:
    """The landmark subset whose node count matches a bare model's landmark input."""
    for subset in landmark_graph.SUBSETS:
        if len(subset_nodes(subset)) == num_landmarks:
            return subset
    raise UserError(f"{path}: its landmark input has {num_landmarks} nodes, which matches no landmark subset "
                    f"({', '.join(landmark_graph.SUBSETS)})")


def load_predictor(ref: str) -> TorchPredictor | TFLitePredictor:
    """A checkpoint (``.pt``), a ``.tflite`` file or a bundle folder, by path or shipped name."""
    path = resolve_model(ref)
    name = str(ref) if not Path(ref).exists() else f"{path.parent.name}/{path.stem}"
    if path.suffix == ".pt":
        return TorchPredictor(path, name=name)
    if path.suffix == ".tflite" or path.is_dir():
        return TFLitePredictor(path, name=name if not path.is_dir() else f"{path.name} (int8)")
    raise UserError(f"{path}: unsupported model type (expected a .pt checkpoint, a .tflite file or a bundle folder)")
