"""One loader for every TFLite model: the device's, ``eval``'s and ``convert``'s cross-checks.

Why one layer: the runtime and the delegate (Edge TPU, GPU, CPU) are decided once, here, the same
way for the detector, FaceMesh and the SR/FER models, and int8 (de)quantisation follows one rule
(:func:`quantize`), so a bundle's golden output (written by ``convert``) reproduces on the device
bit for bit.

Runtimes: ``ai-edge-litert`` is the device default; ``tflite-runtime`` is the fallback for older
boards; ``tf.lite`` (TensorFlow) exists only on the workstation and is used by ``convert`` to
cross-check outputs. Each is imported only when asked for, so the device never loads TensorFlow.

A delegate that cannot be had falls back to the next one in the configured order, and the choice
comes back as a :class:`DelegateChoice` record (what was chosen, why every earlier delegate failed)
that the daemon logs at start; :func:`load_interpreter` also logs it as one line (WARNING when it
fell back): never a silent fallback. ``cpu`` is the runtime's default path (XNNPACK) and always
works; a missing accelerator library is only an error with ``require_delegate: true``.

An interpreter is not thread-safe: give each thread its own :class:`Model`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import platform
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)

DelegateName = Literal["edgetpu", "gpu", "cpu"]
DEFAULT_ORDER: tuple[DelegateName, ...] = ("edgetpu", "gpu", "cpu")
# Every runtime by name -> its interpreter module; DEVICE_RUNTIMES: the device's fallback chain, in order.
RUNTIMES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
    "tf.lite": "tensorflow.lite",
}
DEVICE_RUNTIMES = ("ai-edge-litert", "tflite-runtime")

# Shared-library names per platform.system(); the first that loads wins. The GPU delegate is not
# in either wheel: it is built from TensorFlow's //tensorflow/lite/delegates/gpu target (Jetson,
# Mali, Adreno boards) and found on the loader path or given as an absolute path in the config.
DELEGATE_LIBRARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "edgetpu": {
        "Linux": ("libedgetpu.so.1",),
        "Darwin": ("libedgetpu.1.dylib",),
        "Windows": ("edgetpu.dll",),
    },
    "gpu": {
        "Linux": ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so"),
        "Darwin": ("libtensorflowlite_gpu_delegate.dylib", "libmetal_delegate.dylib"),
        "Windows": ("tensorflowlite_gpu_delegate.dll",),
    },
}


def available_runtimes() -> list[str]:
    """The runtimes installed here, in preference order (found without importing them)."""
    return [name for name, mod in RUNTIMES.items() if importlib.util.find_spec(mod.split(".")[0]) is not None]


def runtime_module(runtime: str) -> Any:
    """The interpreter module of ``runtime`` (UserError when unknown or not installed)."""
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


class InterpreterError(UserError):
    """A model or runtime that cannot be used; the message says what to install or fix."""


class DelegateRequiredError(InterpreterError):
    """``require_delegate: true`` and no accelerator delegate could be loaded."""


class InterpreterConfig(BaseModel):
    """How to run models: a data section of the device config (``interpreter:``)."""

    model_config = ConfigDict(extra="forbid")
    delegate_order: list[DelegateName] = Field(
        default_factory=lambda: list(DEFAULT_ORDER), min_length=1,
        description="SR model delegates, in order: the first that loads wins")
    threads: int = Field(2, ge=1, le=64, description="CPU threads per interpreter")
    require_delegate: bool = Field(
        False, description="true: refuse to start on the CPU when no accelerator delegate loads")
    delegate_libraries: dict[Literal["edgetpu", "gpu"], list[str]] = Field(
        default_factory=dict, description="library names or paths per delegate, e.g. {gpu: [/opt/libgpu.so]}")

    def on_cpu(self) -> InterpreterConfig:
        """The same settings on the CPU only: for models not compiled for an accelerator."""
        return self.model_copy(update={"delegate_order": ["cpu"], "require_delegate": False})


@dataclass(frozen=True)
class DelegateAttempt:
    """One delegate tried: which library, and the error when it did not work."""

    delegate: str
    library: str | None
    error: str | None = None
    model: str | None = None  # the file tried, when the delegate has its own (an Edge TPU's compiled model)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class DelegateChoice:
    """What :func:`load_interpreter` chose and why every earlier delegate was passed over."""

    model: str
    runtime: str
    delegate: str
    threads: int
    attempts: tuple[DelegateAttempt, ...]

    @property
    def fell_back(self) -> bool:
        return any(not a.ok for a in self.attempts)

    def summary(self) -> str:
        """One log line: ``face_landmark.tflite: ai-edge-litert, delegate cpu, 2 threads (edgetpu failed: ...)``."""
        failed = "; ".join(f"{a.delegate}{f' with {a.model}' if a.model else ''} failed: {a.error}"
                           for a in self.attempts if not a.ok)
        tail = f" ({failed})" if failed else ""
        return f"{self.model}: {self.runtime}, delegate {self.delegate}, {self.threads} threads{tail}"


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, index, shape, dtype and its affine quantisation (if any)."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


def _tensor_info(detail: dict) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=detail["name"], index=int(detail["index"]), shape=tuple(int(s) for s in detail["shape"]),
        dtype=np.dtype(detail["dtype"]), scale=float(scale), zero_point=int(zero_point),
    )


def quantize(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    """Real values -> ``t``'s dtype: ``q = round(x / scale) + zero_point``, clipped to the integer
    range; a plain cast for float tensors (``scale`` 0). The one rule: ``convert`` writes a
    bundle's golden output through it and the device reproduces it bit for bit."""
    if not t.quantized:
        return np.asarray(x, dtype=t.dtype)
    info = np.iinfo(t.dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(t.scale)) + t.zero_point
    return np.clip(q, info.min, info.max).astype(t.dtype)


def dequantize(q: np.ndarray, t: TensorInfo) -> np.ndarray:
    """``t``'s values -> float32: ``x = scale * (q - zero_point)``."""
    if not t.quantized:
        return np.asarray(q, dtype=np.float32)
    return (np.asarray(q, dtype=np.float32) - t.zero_point) * np.float32(t.scale)


class Model:
    """An allocated interpreter with named inputs and outputs.

    ``run(**inputs)`` takes arrays already in each input's dtype (int8 models: quantise first, or
    use ``run_float``) and returns every output by name. Names are the model's tensor names, which
    may contain ``:``; pass them as ``run(**{"serving_default_x:0": arr})``.
    """

    def __init__(self, interpreter: Any, choice: DelegateChoice) -> None:
        self._interp = interpreter
        self.choice = choice
        self.inputs = {t.name: t for t in map(_tensor_info, interpreter.get_input_details())}
        self.outputs = {t.name: t for t in map(_tensor_info, interpreter.get_output_details())}

    @property
    def interpreter(self) -> Any:
        """The runtime's own interpreter, for callers that need more than inputs and outputs
        (``convert``'s op listing)."""
        return self._interp

    def input(self, name: str | None = None) -> TensorInfo:
        """The named input, or the only one when ``name`` is None."""
        return _pick(self.inputs, name, "input")

    def output(self, name: str | None = None) -> TensorInfo:
        return _pick(self.outputs, name, "output")

    def quantize(self, name: str, x: np.ndarray) -> np.ndarray:
        """Real values -> input ``name``'s dtype (see :func:`quantize`)."""
        return quantize(x, self.inputs[name])

    def dequantize(self, name: str, q: np.ndarray) -> np.ndarray:
        """Output (or input) ``name``'s values -> float32 (see :func:`dequantize`)."""
        return dequantize(q, self.outputs.get(name) or self.inputs[name])

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Set every input, invoke once, return all outputs (copies) by name."""
        missing = set(self.inputs) - set(inputs)
        unknown = set(inputs) - set(self.inputs)
        if missing or unknown:
            raise ValueError(f"{self.choice.model}: inputs missing {sorted(missing)}, unknown {sorted(unknown)}; "
                             f"the model takes {sorted(self.inputs)}")
        for name, value in inputs.items():
            t = self.inputs[name]
            if value.dtype != t.dtype:
                raise ValueError(f"{self.choice.model}: input {name} is {t.dtype}, got {value.dtype}"
                                 + (" (quantise it first, or use run_float)" if t.quantized else ""))
            self._interp.set_tensor(t.index, value)
        self._interp.invoke()
        return {name: self._interp.get_tensor(t.index) for name, t in self.outputs.items()}

    def run_float(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """``run`` with real-valued inputs and outputs: quantises and dequantises as each tensor says."""
        raw = self.run(**{k: self.quantize(k, v) for k, v in inputs.items()})
        return {k: self.dequantize(k, v) for k, v in raw.items()}


def _pick(tensors: dict[str, TensorInfo], name: str | None, kind: str) -> TensorInfo:
    if name is not None:
        return tensors[name]
    if len(tensors) != 1:
        raise ValueError(f"the model has {len(tensors)} {kind}s ({sorted(tensors)}): name one")
    return next(iter(tensors.values()))


def delegate_libraries(delegate: str, overrides: dict[str, list[str]] | None = None) -> tuple[str, ...]:
    """Library names to try for a delegate on this platform (config overrides first)."""
    if overrides and overrides.get(delegate):
        return tuple(overrides[delegate])
    return DELEGATE_LIBRARIES.get(delegate, {}).get(platform.system(), ())


def _try_delegate(rt: Any, model_path: Path, delegate: str, threads: int,
                  overrides: dict[str, list[str]] | None) -> tuple[Any | None, list[DelegateAttempt]]:
    """Build an allocated interpreter with this delegate, or return why each library failed."""
    if delegate == "cpu":
        interp = rt.Interpreter(model_path=str(model_path), num_threads=threads)
        interp.allocate_tensors()
        return interp, [DelegateAttempt("cpu", None)]
    libraries = delegate_libraries(delegate, overrides)
    if not libraries:
        return None, [DelegateAttempt(delegate, None, f"no known library on {platform.system()}")]
    attempts = []
    for lib in libraries:
        with _quiet_failed_delegate_cleanup():
            try:
                d = rt.load_delegate(lib)
                interp = rt.Interpreter(model_path=str(model_path), num_threads=threads, experimental_delegates=[d])
                interp.allocate_tensors()
                attempts.append(DelegateAttempt(delegate, lib))
                return interp, attempts
            except (OSError, ValueError, RuntimeError) as e:
                attempts.append(DelegateAttempt(delegate, lib, f"{type(e).__name__}: {_one_line(e)}"))
    return None, attempts


@contextlib.contextmanager
def _quiet_failed_delegate_cleanup():
    """Both runtimes' ``Delegate.__del__`` raises AttributeError ('_library') when the library
    failed to load; Python prints that as a traceback on stderr. The failure is already recorded in
    the DelegateChoice, so swallow exactly that message while the half-built delegate is freed."""
    previous = sys.unraisablehook

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, AttributeError) and "_library" in str(unraisable.exc_value)):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 160 else text[:157] + "..."


def load_interpreter(
    model_path: str | Path,
    delegate_order: Sequence[str] = DEFAULT_ORDER,
    threads: int = 2,
    require_delegate: bool = False,
    delegate_libraries: dict[str, list[str]] | None = None,
    runtimes: Sequence[str] = DEVICE_RUNTIMES,
    delegate_models: dict[str, Path] | None = None,
) -> Model:
    """Load a ``.tflite`` model on the first delegate in ``delegate_order`` that works.

    The first of ``runtimes`` that imports is used. The returned model's ``choice`` records the
    runtime, the delegate, the file loaded and every failed attempt; one INFO line says the same.
    ``delegate_models`` gives a delegate its own file (the Edge TPU runs only a model compiled for
    it: ``{"edgetpu": sr_int8_edgetpu.tflite}``); when that delegate fails, the next one loads
    ``model_path`` and the WARNING line names the compiled file passed over. With
    ``require_delegate`` an accelerator must load, else :class:`DelegateRequiredError` (rather than
    a camera silently running 20x slower on the CPU).
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise InterpreterError(f"model file not found: {model_path}")
    try:
        runtime, rt = first_runtime(runtimes)
    except UserError as e:
        raise InterpreterError(str(e)) from None
    attempts: list[DelegateAttempt] = []
    for delegate in delegate_order:
        if delegate == "cpu" and require_delegate:
            continue
        path = Path((delegate_models or {}).get(delegate, model_path))
        try:
            interp, tried = _try_delegate(rt, path, delegate, threads, delegate_libraries)
        except (ValueError, RuntimeError) as e:  # raised for the cpu path: the model itself is bad
            raise InterpreterError(f"{model_path}: not a loadable TFLite model ({_one_line(e)})") from None
        attempts.extend(tried if path == model_path else (replace(a, model=path.name) for a in tried))
        if interp is not None:
            choice = DelegateChoice(path.name, runtime, delegate, threads, tuple(attempts))
            (log.warning if choice.fell_back else log.info)("model %s", choice.summary())
            return Model(interp, choice)
    reasons = "; ".join(f"{a.delegate} ({a.library}): {a.error}" for a in attempts) or "no delegate configured"
    if require_delegate:
        raise DelegateRequiredError(f"{model_path.name}: require_delegate is set but no accelerator delegate loaded "
                                    f"({reasons}); install the delegate library or set require_delegate: false")
    raise InterpreterError(f"{model_path.name}: no delegate in {list(delegate_order)} worked ({reasons}); add 'cpu'")


def load_with_config(model_path: str | Path, cfg: InterpreterConfig,
                     delegate_models: dict[str, Path] | None = None) -> Model:
    """:func:`load_interpreter` driven by the device config's ``interpreter:`` section."""
    return load_interpreter(model_path, cfg.delegate_order, cfg.threads, cfg.require_delegate,
                            dict(cfg.delegate_libraries), delegate_models=delegate_models)
