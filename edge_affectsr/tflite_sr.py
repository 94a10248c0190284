"""The exported SR model as a plain function: uint8 RGB LR face + landmarks -> uint8 RGB SR face.

Shared by ``convert`` (verification, golden output), ``eval``/``upscale`` (scoring a ``.tflite``
file or a bundle like a checkpoint) and the device runtime (on its delegate-aware interpreter), so
all of them quantise and dequantise the same way and a bundle's golden output reproduces on the
device bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_affectsr.errors import UserError
from edge_affectsr.tflite_runtime import make_interpreter


def quantize(x: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    """Real values -> ``dtype``: ``q = round(x / scale) + zero_point``, clipped to the integer range;
    a plain cast for float tensors (``scale`` 0). The device runtime quantises through this too, so
    a bundle's golden output (written here) reproduces there bit for bit."""
    if scale == 0.0 or not np.issubdtype(dtype, np.integer):
        return np.asarray(x, dtype=dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    """``dtype`` values -> float32: ``x = scale * (q - zero_point)``."""
    if scale == 0.0 or not np.issubdtype(dtype, np.integer):
        return np.asarray(q, dtype=np.float32)
    return (np.asarray(q, dtype=np.float32) - zero_point) * np.float32(scale)


def _q(x: np.ndarray, detail: dict) -> np.ndarray:
    return quantize(x, detail["dtype"], *detail["quantization"])


def _dq(q: np.ndarray, detail: dict) -> np.ndarray:
    return dequantize(q, detail["dtype"], *detail["quantization"])


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


class TFLiteRunner:
    """``lr`` uint8 ``[h, w, 3]``, ``lm`` float ``[N, 2]`` in [0, 1] of the crop -> SR uint8 ``[H, W, 3]``.

    Wraps an allocated interpreter from any loader (``open`` here; the device's delegate-aware
    ``load_interpreter``). The inputs are picked by rank, since their tensor names depend on the
    conversion. Not thread-safe, like the interpreter under it.
    """

    def __init__(self, interpreter, name: str) -> None:
        self.it, self.name = interpreter, name
        ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
        by_rank = {len(d["shape"]): d for d in ins}
        if (len(ins) != 2 or set(by_rank) != {3, 4} or by_rank[4]["shape"][-1] != 3 or by_rank[3]["shape"][-1] != 2
                or len(outs) != 1 or len(outs[0]["shape"]) != 4):
            raise UserError(f"{name} is not an SR model (expected inputs image [1, h, w, 3] and landmarks [1, N, 2] "
                            f"and one image output; it has inputs {[list(d['shape']) for d in ins]})")
        self.img, self.lm, self.out = by_rank[4], by_rank[3], outs[0]

    @classmethod
    def open(cls, path: Path, runtime: str, threads: int = 2) -> TFLiteRunner:
        return cls(make_interpreter(path, runtime=runtime, threads=threads), str(path))

    @property
    def lr_size(self) -> int:
        return int(self.img["shape"][1])

    @property
    def out_size(self) -> int:
        return int(self.out["shape"][1])

    @property
    def num_landmarks(self) -> int:
        return int(self.lm["shape"][1])

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
        self.it.set_tensor(self.img["index"], _q(lr[None].astype(np.float32) / 255.0, self.img))
        self.it.set_tensor(self.lm["index"], _q(lm[None].astype(np.float32), self.lm))
        self.it.invoke()
        return to_uint8(_dq(self.it.get_tensor(self.out["index"]), self.out)[0])
