"""Run the ONNX export on one face with uint8 RGB in and out (the TFLite twin is the core's
``edge_affectsr.tflite_sr``), so verification compares like with like."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_affectsr.tflite_sr import to_uint8


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
        return to_uint8(out[0].transpose(1, 2, 0))


def run_all(runner, lr: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, float]:
    """SR for every face and the median ms per face (first call excluded: warm-up)."""
    runner(lr[0], lm[0])
    outs, times = [], []
    for x, l in zip(lr, lm):
        t = time.perf_counter()
        outs.append(runner(x, l))
        times.append(time.perf_counter() - t)
    return np.stack(outs), 1000 * float(np.median(times))
