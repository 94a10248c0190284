"""The FER critic on int8 TFLite: ``fer_int8.tflite`` from a bundle, expression probabilities of a face.

Why one module for both sides: the critic labels every reported face on the device (expression +
probabilities on the SR output) *and* drives the expression-preservation guard, so its
preprocessing must be exactly the one the bundle was calibrated with; ``convert``'s FER conversion
(``convert/fer_tflite.py``) calibrates through this same :func:`critic_input` (BT.601 grey, 64x64
box resize, ``x / 127.5 - 1``). For the sizes the device feeds it (square multiples of 64: the
128 px SR output and its bicubic twin) OpenCV does it faster: ``COLOR_RGB2GRAY`` uses Pillow's
BT.601 weights and ``INTER_AREA`` is an exact box filter for an integer reduction, so the result
is within one grey level of Pillow's (a test checks it); any other size goes through Pillow.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from edge_affectsr.assets import FER_CLASSES
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.batching import BatchRunner
from edge_affectsr.runtime.interpreter import Model

INPUT_SIZE = 64


class CriticError(UserError):
    """A critic model whose tensors are not the FER mini-Xception's (1x64x64x1 in, 7 classes out)."""


def critic_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB face ``[H, W, 3]`` -> float32 ``[64, 64, 1]`` in [-1, 1], as the bundle's critic expects."""
    h, w = rgb.shape[:2]
    if h != w or h % INPUT_SIZE:  # not an exact box reduction: Pillow itself, as convert does
        grey = np.asarray(Image.fromarray(rgb).convert("L").resize((INPUT_SIZE, INPUT_SIZE), Image.BOX))
    else:
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        if h != INPUT_SIZE:
            grey = cv2.resize(grey, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return (grey.astype(np.float32) * np.float32(1 / 127.5) - 1.0)[..., None]


class FerCritic:
    """``probabilities(rgb)`` -> ``[7]`` float64 summing to 1, in :data:`FER_CLASSES` order;
    ``probabilities_batch(faces)`` -> ``[N, 7]`` in one model call (the model takes a batch: see
    :mod:`edge_affectsr.runtime.batching`)."""

    classes = FER_CLASSES

    def __init__(self, model: Model) -> None:
        self.model = model
        self._input = model.input()
        self._output = model.output()
        if self._input.shape != (1, INPUT_SIZE, INPUT_SIZE, 1) or self._output.shape[-1] != len(FER_CLASSES):
            raise CriticError(f"{model.choice.model}: expected a 1x64x64x1 input and {len(FER_CLASSES)} outputs, "
                              f"got {self._input.shape} -> {self._output.shape}")
        self.runner = BatchRunner(model)

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """Expression distribution of one uint8 RGB face (renormalised after int8 dequantisation)."""
        return self.probabilities_batch([rgb])[0]

    def probabilities_batch(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, 7]``: one distribution per uint8 RGB face (any sizes), one model call."""
        x = np.stack([critic_input(rgb) for rgb in faces])
        q = self.runner(**{self._input.name: self.model.quantize(self._input.name, x)})[self._output.name]
        p = np.clip(self.model.dequantize(self._output.name, q).reshape(len(x), -1).astype(np.float64), 0.0, None)
        total = p.sum(axis=1, keepdims=True)
        uniform = np.full_like(p, 1.0 / len(FER_CLASSES))
        return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)

    def label(self, probabilities: np.ndarray) -> str:
        return self.classes[int(np.argmax(probabilities))]
