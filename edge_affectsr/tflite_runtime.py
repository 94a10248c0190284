"""The TFLite interpreters this project runs on, behind one constructor.

``ai-edge-litert`` is the device default; ``tflite-runtime`` is the fallback for older boards;
``tf.lite`` (TensorFlow) exists only on the workstation and is used by ``convert`` to cross-check
outputs. Each module is imported only when asked for, so the device never loads TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_affectsr.errors import UserError

RUNTIMES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
    "tf.lite": "tensorflow.lite",
}


def available_runtimes() -> list[str]:
    """The runtimes installed here, in preference order (found without importing them)."""
    return [name for name, mod in RUNTIMES.items() if importlib.util.find_spec(mod.split(".")[0]) is not None]


def runtime_module(runtime: str):
    if runtime not in RUNTIMES:
        raise UserError(f"unknown TFLite runtime {runtime!r}; choose one of {list(RUNTIMES)}")
    try:
        if runtime == "tf.lite":  # TensorFlow's API modules load lazily: go through the package
            return importlib.import_module("tensorflow").lite
        return importlib.import_module(RUNTIMES[runtime])
    except ImportError as e:
        raise UserError(f"TFLite runtime {runtime!r} is not installed ({e})") from None


def first_runtime(names: Sequence[str]) -> tuple[str, Any]:
    """``(name, interpreter module)`` of the first of ``names`` that imports (the device's fallback chain)."""
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise UserError(f"unknown TFLite runtime {unknown[0]!r}; choose from {list(RUNTIMES)}")
    errors = []
    for name in names:
        try:
            return name, runtime_module(name)
        except UserError as e:
            errors.append(str(e))
    raise UserError("no TFLite runtime is installed (" + "; ".join(errors) + "); "
                    "install one: pip install ai-edge-litert (or tflite-runtime)")


def make_interpreter(path: Path, runtime: str = "ai-edge-litert", threads: int | None = None, delegates: list | None = None):
    """An allocated interpreter for ``path`` on the given runtime."""
    mod = runtime_module(runtime)
    kwargs = {"model_path": str(path), "num_threads": threads}
    if delegates:
        kwargs["experimental_delegates"] = delegates
    it = mod.Interpreter(**kwargs)
    it.allocate_tensors()
    return it
