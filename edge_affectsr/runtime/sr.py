"""A converted SR model as a plain function: uint8 RGB LR face + landmarks -> uint8 RGB SR face.

Shared by ``convert`` (verification, golden output), ``eval``/``upscale`` (scoring a ``.tflite``
file or a bundle like a checkpoint, through :mod:`edge_affectsr.runtime.backend`) and the device
(on its delegate-aware interpreter), so all of them quantise and dequantise the same way
(:meth:`Model.run_float`) and a bundle's golden output reproduces on the device bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_affectsr.errors import UserError
from edge_affectsr.runtime.interpreter import Model, load_interpreter


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped): how every SR output becomes pixels."""
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


class TFLiteSR:
    """``lr`` uint8 ``[h, w, 3]``, ``lm`` float ``[N, 2]`` in [0, 1] of the crop -> SR uint8 ``[H, W, 3]``.

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
        if lr.dtype != np.uint8:
            raise ValueError(f"{self.name}: SR input must be uint8 RGB (0-255), got {lr.dtype}")
        if lr.shape != (self.lr_size, self.lr_size, 3):
            raise ValueError(f"{self.name}: SR input must be {self.lr_size}x{self.lr_size}x3, got {lr.shape}")
        if lm.shape != (self.num_landmarks, 2):
            raise ValueError(f"{self.name}: SR landmarks must be [{self.num_landmarks}, 2], got {lm.shape}")
        out = self.model.run_float(**{self.img.name: lr[None].astype(np.float32) / 255.0,
                                      self.lm.name: lm[None].astype(np.float32)})
        return to_uint8(out[self.out.name][0])
