"""The ``.onnx`` SR backend: the ONNX export run with onnxruntime on the CPU.

Registered under the ``edge_affectsr.backends`` entry-point group (pyproject.toml), so
``edge_affectsr.runtime.backend.load_model`` opens ``sr.onnx`` like any other model and
verification compares like with like (uint8 RGB in and out, the same rounding as the TFLite runner).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_affectsr.landmark_graph import subset_nodes
from edge_affectsr.runtime.backend import subset_for
from edge_affectsr.runtime.sr import to_uint8


class OnnxBackend:
    """``sr.onnx`` (NCHW image ``img`` and landmarks ``lm`` in, NCHW out), one face at a time."""

    def __init__(self, path: Path, name: str | None = None, threads: int = 2) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        shapes = {i.name: i.shape for i in self.sess.get_inputs()}
        self.name = name or Path(path).stem
        self.lr_size = int(shapes["img"][2])  # the export has fixed sizes
        self.scale = int(self.sess.get_outputs()[0].shape[2]) // self.lr_size
        self.nodes = subset_nodes(subset_for(int(shapes["lm"][1]), Path(path)))
        self.params = self.macs = None  # not recoverable from a converted graph

    def __call__(self, lr: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
        return np.stack([self._one(face, pts[self.nodes]) for face, pts in zip(lr, landmarks)])

    def _one(self, lr: np.ndarray, lm: np.ndarray) -> np.ndarray:
        img = (lr.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self.sess.run(None, {"img": img, "lm": lm[None].astype(np.float32)})[0]
        return to_uint8(out[0].transpose(1, 2, 0))
