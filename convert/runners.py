"""Run an SR backend over verification faces one at a time, timed.

Verification faces carry only the model's own landmark subset (what onnx2tf calibrates on); every
backend takes the full 478-point mesh and picks its subset, so the subset is put back in place
(the other points are never read) and each format sees exactly the same inputs.
"""

from __future__ import annotations

import time

import numpy as np

from edge_affectsr.landmark_graph import NUM_LANDMARKS


def run_all(backend, lr: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, float]:
    """SR for every face (``lr`` uint8 ``[n, h, w, 3]``, ``lm`` ``[n, N, 2]`` in ``backend.nodes``
    order) and the median ms per face (first call excluded: warm-up)."""
    full = np.zeros((len(lm), NUM_LANDMARKS, 2), np.float32)
    full[:, backend.nodes] = lm
    found = np.ones(len(lr), dtype=bool)
    backend(lr[:1], full[:1], found[:1])
    outs, times = [], []
    for i in range(len(lr)):
        t = time.perf_counter()
        outs.append(backend(lr[i : i + 1], full[i : i + 1], found[i : i + 1])[0])
        times.append(time.perf_counter() - t)
    return np.stack(outs), 1000 * float(np.median(times))
