"""A converted SR model as a plain function: uint8 RGB LR face + landmarks -> uint8 RGB SR face.

Shared by ``convert`` (verification, golden output), ``eval``/``upscale`` (scoring a ``.tflite``
file or a bundle like a checkpoint, through :mod:`edge_affectsr.runtime.backend`) and the device
(on its delegate-aware interpreter), so all of them quantise and dequantise the same way
(:meth:`Model.run_float`) and a bundle's golden output reproduces on the device bit for bit.

Faces come in batches (:meth:`TFLiteSR.batch`: all the faces of a frame in one call, through
:class:`~edge_affectsr.runtime.batching.BatchRunner`). The uint8 -> input and output -> uint8
conversions are per-pixel functions of one byte, so they run as 256-entry tables built once from
those very functions (:func:`byte_table`): the same bytes as ``run_float`` + :func:`to_uint8`
without the float round trip of a 128x128x3 output (``edge-affectsr bench`` times both).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_affectsr.errors import UserError
from edge_affectsr.runtime.batching import BatchRunner
from edge_affectsr.runtime.interpreter import Model, TensorInfo, dequantize, load_interpreter, quantize


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped): how every SR output becomes pixels."""
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def byte_table(fn, dtype: np.dtype) -> np.ndarray:
    """``fn`` applied to each of the 256 values of a one-byte ``dtype``, indexed by the value's bits
    (``table[x.view(np.uint8)] == fn(x)`` element for element)."""
    return fn(np.arange(256, dtype=np.uint8).view(dtype))


def lookup(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[x]`` for uint8 ``x`` of any shape (OpenCV's LUT: several times faster than numpy indexing)."""
    return cv2.LUT(np.ascontiguousarray(x).reshape(-1, 1), table).reshape(x.shape)


def input_table(t: TensorInfo) -> np.ndarray:
    """uint8 pixel -> the image input's value, as ``run_float`` makes it from ``pixel / 255``."""
    return byte_table(lambda px: quantize(px.astype(np.float32) / 255.0, t), np.dtype(np.uint8))


def output_table(t: TensorInfo) -> np.ndarray | None:
    """A one-byte output's value -> uint8 pixel (dequantised, then :func:`to_uint8`); None for a
    wider output (float models), which is converted directly."""
    if np.dtype(t.dtype).itemsize != 1:
        return None
    return byte_table(lambda q: to_uint8(dequantize(q, t)), np.dtype(t.dtype))


class TFLiteSR:
    """``lr`` uint8 ``[h, w, 3]``, ``lm`` float ``[N, 2]`` in [0, 1] of the crop -> SR uint8 ``[H, W, 3]``;
    :meth:`batch` does the same for ``[B, ...]`` stacks of faces.

    Wraps a loaded :class:`Model` (``open`` here; the device's delegate-aware loader). The inputs
    are picked by rank, since their tensor names depend on the conversion. Not thread-safe, like
    the interpreter under it.
    """

    def __init__(self, model: Model) -> None:
        self.model, self.name = model, model.choice.model
        ins, outs = list(model.inputs.values()), list(model.outputs.values())
        by_rank = {len(t.shape): t for t in ins}
        if (len(ins) != 2 or set(by_rank) != {3, 4} or by_rank[4].shape[-1] != 3 or by_rank[3].shape[-1] != 2
                or len(outs) != 1 or len(outs[0].shape) != 4):
            raise UserError(f"{self.name} is not an SR model (expected inputs image [1, h, w, 3] and landmarks [1, N, 2] "
                            f"and one image output; it has inputs {[list(t.shape) for t in ins]})")
        self.img, self.lm, self.out = by_rank[4], by_rank[3], outs[0]
        self.runner = BatchRunner(model)
        self._in_table, self._out_table = input_table(self.img), output_table(self.out)

    @classmethod
    def open(cls, path: Path, runtime: str, threads: int = 2) -> TFLiteSR:
        """``path`` on the CPU of one named runtime (``convert`` compares runtimes this way)."""
        return cls(load_interpreter(path, delegate_order=["cpu"], threads=threads, runtimes=[runtime]))

    @property
    def lr_size(self) -> int:
        return int(self.img.shape[1])

    @property
    def out_size(self) -> int:
        return int(self.out.shape[1])

    @property
    def num_landmarks(self) -> int:
        return int(self.lm.shape[1])

    @property
    def scale(self) -> int:
        return self.out_size // self.lr_size

    def __call__(self, lr: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """One face."""
        return self.batch(lr[None], lm[None])[0]

    def batch(self, lr: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """``lr`` uint8 ``[B, h, w, 3]``, ``lm`` float ``[B, N, 2]`` -> uint8 ``[B, H, W, 3]``, one model call."""
        if lr.dtype != np.uint8:
            raise ValueError(f"{self.name}: SR input must be uint8 RGB (0-255), got {lr.dtype}")
        if lr.shape[1:] != (self.lr_size, self.lr_size, 3):
            raise ValueError(f"{self.name}: SR input must be {self.lr_size}x{self.lr_size}x3, got {lr.shape[1:]}")
        if lm.shape != (len(lr), self.num_landmarks, 2):
            raise ValueError(f"{self.name}: SR landmarks must be [{self.num_landmarks}, 2] per face "
                             f"({len(lr)} faces), got {lm.shape}")
        out = self.runner(**{self.img.name: lookup(lr, self._in_table),
                             self.lm.name: self.model.quantize(self.lm.name, lm.astype(np.float32))})[self.out.name]
        if self._out_table is None:
            return to_uint8(self.model.dequantize(self.out.name, out))
        return lookup(out.view(np.uint8), self._out_table)
