"""What a .tflite file contains: its ops in execution order and every tensor's shape, type and
quantisation, read through the interpreter (no TensorFlow needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int


@dataclass
class OpInfo:
    index: int
    name: str
    inputs: list[int]
    outputs: list[int]


@dataclass
class ModelInfo:
    path: Path
    size_bytes: int
    ops: list[OpInfo]
    tensors: dict[int, TensorInfo]
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.name] = counts.get(op.name, 0) + 1
        return counts


def _tensor(d: dict) -> TensorInfo:
    scale, zp = d.get("quantization", (0.0, 0))
    return TensorInfo(d["index"], d["name"], tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]).name, float(scale), int(zp))


def inspect_tflite(path: Path) -> ModelInfo:
    from edge_affectsr.runtime.interpreter import load_interpreter

    it = load_interpreter(path, delegate_order=["cpu"], runtimes=["ai-edge-litert"]).interpreter
    tensors = {}
    for d in it.get_tensor_details():
        tensors[d["index"]] = _tensor(d)
    ops = [OpInfo(o["index"], o["op_name"], [int(i) for i in o["inputs"]], [int(i) for i in o["outputs"]])
           for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]
    return ModelInfo(
        path=Path(path), size_bytes=Path(path).stat().st_size, ops=ops, tensors=tensors,
        inputs=[_tensor(d) for d in it.get_input_details()], outputs=[_tensor(d) for d in it.get_output_details()],
    )
