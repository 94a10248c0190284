"""The super-resolution model on the device: uint8 RGB LR face + normalised landmarks -> uint8 RGB SR face.

Why a wrapper: the bundle's SR model has two inputs (image ``[1, h, w, 3]`` in [0, 1] and landmarks
``[1, N, 2]``) whose tensor names depend on the conversion, and int8 quantisation on both sides;
picking the inputs by rank and doing the (de)quantisation in one place keeps the pipeline, the
self-test and the benchmark calling it the same way ``convert/runners.TFLiteRunner`` did when the
golden output was written.
"""

from __future__ import annotations

import numpy as np

from device.interpreter import Model, TensorInfo
from edge_affectsr.errors import UserError


class SrModelError(UserError):
    """An SR model whose tensors do not look like the student's (image + landmarks in, image out)."""


class SrModel:
    """``sr(lr_rgb, landmarks)`` -> SR image; ``lr_size``, ``out_size`` and ``num_landmarks`` from the model."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._img, self._lm = _inputs_by_rank(model)
        self._out = model.output()
        self.lr_size = int(self._img.shape[1])
        self.out_size = int(self._out.shape[1])
        self.num_landmarks = int(self._lm.shape[1])

    @property
    def scale(self) -> int:
        return self.out_size // self.lr_size

    def __call__(self, lr_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``lr_rgb`` uint8 ``[h, w, 3]``, ``landmarks`` float ``[N, 2]`` in [0, 1] of the crop -> uint8 RGB."""
        if lr_rgb.shape != (self.lr_size, self.lr_size, 3):
            raise ValueError(f"SR input must be {self.lr_size}x{self.lr_size}x3, got {lr_rgb.shape}")
        if landmarks.shape != (self.num_landmarks, 2):
            raise ValueError(f"SR landmarks must be [{self.num_landmarks}, 2], got {landmarks.shape}")
        img = lr_rgb[None].astype(np.float32) * np.float32(1 / 255.0)
        out = self.model.run_float(**{self._img.name: img, self._lm.name: landmarks[None].astype(np.float32)})
        sr = out[self._out.name][0]
        return np.clip(np.round(sr * 255.0), 0, 255).astype(np.uint8)


def _inputs_by_rank(model: Model) -> tuple[TensorInfo, TensorInfo]:
    """(image [1, h, w, 3], landmarks [1, N, 2]) whatever the converter named them."""
    by_rank = {len(t.shape): t for t in model.inputs.values()}
    if len(model.inputs) != 2 or set(by_rank) != {3, 4} or by_rank[4].shape[-1] != 3 or by_rank[3].shape[-1] != 2:
        raise SrModelError(f"{model.choice.model}: expected inputs image [1, h, w, 3] and landmarks [1, N, 2], "
                           f"got {[t.shape for t in model.inputs.values()]}")
    return by_rank[4], by_rank[3]
