"""The exported SR model as a plain function: uint8 RGB LR face + landmarks -> uint8 RGB SR face.

Shared by ``convert`` (verification across runtimes) and ``eval``/``upscale`` (scoring a
``.tflite`` file or a bundle like a checkpoint), so both quantise and dequantise the same way.
The device runtime has its own wrapper (``device/sr.py``) on top of its delegate-aware loader.
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
    """``lr`` uint8 ``[h, w, 3]``, ``lm`` float ``[N, 2]`` -> SR uint8 ``[H, W, 3]``."""

    def __init__(self, path: Path, runtime: str, threads: int = 2) -> None:
        self.it = make_interpreter(path, runtime=runtime, threads=threads)
        ins, outs = self.it.get_input_details(), self.it.get_output_details()
        by_rank = {len(d["shape"]): d for d in ins}
        if len(ins) != 2 or set(by_rank) != {3, 4} or len(outs) != 1 or len(outs[0]["shape"]) != 4:
            raise UserError(f"{path} is not an SR model (expected inputs image [1, h, w, 3] and landmarks [1, N, 2] "
                            f"and one image output; it has inputs {[list(d['shape']) for d in ins]})")
        self.img, self.lm, self.out = by_rank[4], by_rank[3], outs[0]

    @property
    def lr_size(self) -> int:
        return int(self.img["shape"][1])

    @property
    def num_landmarks(self) -> int:
        return int(self.lm["shape"][1])

    @property
    def scale(self) -> int:
        return int(self.out["shape"][1]) // self.lr_size

    def __call__(self, lr: np.ndarray, lm: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.img["index"], _q(lr[None].astype(np.float32) / 255.0, self.img))
        self.it.set_tensor(self.lm["index"], _q(lm[None].astype(np.float32), self.lm))
        self.it.invoke()
        return to_uint8(_dq(self.it.get_tensor(self.out["index"]), self.out)[0])
