"""Run an exported SR model on one face, whatever its format and runtime, with uint8 RGB in and
out, so verification compares like with like."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_affectsr.tflite_runtime import make_interpreter


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zp = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(detail["dtype"])


def _dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return q
    scale, zp = detail["quantization"]
    return (q.astype(np.float32) - zp) * scale


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


class TFLiteRunner:
    """``lr`` uint8 ``[h, w, 3]``, ``lm`` float ``[N, 2]`` -> SR uint8 ``[H, W, 3]``."""

    def __init__(self, path: Path, runtime: str, threads: int = 2) -> None:
        self.it = make_interpreter(path, runtime=runtime, threads=threads)
        ins = self.it.get_input_details()
        self.img = next(d for d in ins if len(d["shape"]) == 4)
        self.lm = next(d for d in ins if len(d["shape"]) == 3)
        self.out = self.it.get_output_details()[0]

    def __call__(self, lr: np.ndarray, lm: np.ndarray) -> np.ndarray:
        self.it.set_tensor(self.img["index"], _quantize(lr[None].astype(np.float32) / 255.0, self.img))
        self.it.set_tensor(self.lm["index"], _quantize(lm[None].astype(np.float32), self.lm))
        self.it.invoke()
        return _to_uint8(_dequantize(self.it.get_tensor(self.out["index"]), self.out)[0])


class OnnxRunner:
    """The same call on ``sr.onnx`` with onnxruntime (NCHW in, NCHW out)."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, lr: np.ndarray, lm: np.ndarray) -> np.ndarray:
        img = (lr.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self.sess.run(None, {"img": img, "lm": lm[None].astype(np.float32)})[0]
        return _to_uint8(out[0].transpose(1, 2, 0))


def run_all(runner, lr: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, float]:
    """SR for every face and the median ms per face (first call excluded: warm-up)."""
    runner(lr[0], lm[0])
    outs, times = [], []
    for x, l in zip(lr, lm):
        t = time.perf_counter()
        outs.append(runner(x, l))
        times.append(time.perf_counter() - t)
    return np.stack(outs), 1000 * float(np.median(times))
