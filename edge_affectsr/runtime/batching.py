"""One TFLite model run on N items at once: a single invoke at batch N when the graph takes it.

Why try, and why a fallback: the bundle's models are converted at batch 1. ``resize_tensor_input``
plus ``allocate_tensors`` gives many graphs a batch dimension for free (the FER critic's does:
XNNPACK re-plans it in ~0.02 ms), but a graph holding a constant batch-1 shape refuses (the
shipped SR model's landmark prior ends in a Reshape to ``[1, 28, 8, 8]``). So the first batch of
more than one item tries the resize, and a graph that refuses, or whose outputs do not come back
with N rows, is restored to batch 1 and run once per item from then on, which one log line says.
The interpreter is resized only when N changes. Integer kernels give the same bytes at any batch
(the tests compare batched with one-by-one runs on real faces).

What batching buys on a CPU (``edge-affectsr bench`` prints it; docs/device.md has the numbers):
little for these small, compute-bound int8 models: the critic's CPU time per face drops ~20 %
at batch >= 2, the SR model (made batchable by hand for the measurement) none. The per-face
saving of the batched path is mostly the Python work around each invoke; see ``sr.py``.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_affectsr.runtime.interpreter import Model

log = logging.getLogger(__name__)


class BatchRunner:
    """``runner(**inputs)``: every input ``[N, ...]`` in its tensor's dtype -> every output ``[N, ...]``
    by name. Not thread-safe (it owns the interpreter's shapes). ``batching=False`` never resizes."""

    def __init__(self, model: Model, batching: bool = True) -> None:
        self.model = model
        self.batching = batching  # cleared for good when the graph refuses a batch
        self.batch = 1  # the interpreter's current batch size

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        if self.batching and not self._resize(n):
            self.batching = False
            log.info("%s: the graph takes no batch dimension; its items run one invoke each",
                     self.model.choice.model)
        if not self.batching:
            self._resize(1)
        if self.batch == n:
            return self.model.run(**inputs)
        runs = [self.model.run(**{k: v[i:i + 1] for k, v in inputs.items()}) for i in range(n)]
        return {name: np.concatenate([r[name] for r in runs]) for name in self.model.outputs}

    def _resize(self, n: int) -> bool:
        """Give every input a leading dimension ``n`` (no-op when it has it); False, with the previous
        size restored, when the graph refuses or its outputs do not follow."""
        if n == self.batch:
            return True
        previous = self.batch
        try:
            self._set(n)
            if any(int(d["shape"][0]) != n for d in self.model.interpreter.get_output_details()):
                raise ValueError(f"outputs do not have {n} rows")
        except (RuntimeError, ValueError) as e:
            log.debug("%s: batch %d refused (%s)", self.model.choice.model, n, e)
            self._set(previous)
            return False
        return True

    def _set(self, n: int) -> None:
        interp = self.model.interpreter
        for t in self.model.inputs.values():
            interp.resize_tensor_input(t.index, [n, *t.shape[1:]])
        interp.allocate_tensors()
        self.batch = n
