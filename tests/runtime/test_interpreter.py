"""edge_affectsr/runtime/interpreter.py: runtime and delegate choice, recorded fallbacks, named tensors, quantisation.

This machine has no Coral and no GPU delegate library, so the fallback path is the real one here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge_affectsr.config import ConfigError, load_config
from edge_affectsr.errors import UserError
from edge_affectsr.runtime import interpreter
from edge_affectsr.runtime.detect import mediapipe_model_path
from edge_affectsr.runtime.interpreter import (
    DelegateRequiredError, InterpreterConfig, InterpreterError, TensorInfo, dequantize, load_interpreter,
    load_with_config, quantize,
)

BLAZEFACE = "face_detection_short_range.tflite"


@pytest.fixture(scope="module")
def model_path() -> Path:
    return mediapipe_model_path(BLAZEFACE)


def test_missing_edgetpu_falls_back_to_cpu_and_says_why(model_path, caplog):
    with caplog.at_level(logging.INFO, logger="edge_affectsr.runtime.interpreter"):
        model = load_interpreter(model_path, delegate_order=("edgetpu", "cpu"), threads=2)
    choice = model.choice
    assert choice.delegate == "cpu" and choice.runtime == "ai-edge-litert" and choice.threads == 2
    edgetpu = choice.attempts[0]
    assert edgetpu.delegate == "edgetpu" and edgetpu.library == "libedgetpu.so.1" and not edgetpu.ok
    assert edgetpu.error.startswith("OSError") and "libedgetpu.so.1" in edgetpu.error
    assert choice.attempts[-1].delegate == "cpu" and choice.attempts[-1].ok
    assert choice.fell_back
    # the fallback is logged, once, on one line, with the reason
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_affectsr.runtime.interpreter"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "delegate cpu" in lines[0] and "edgetpu failed: OSError" in lines[0]
    assert "edgetpu failed" in choice.summary()


def test_default_order_tries_gpu_too(model_path):
    choice = load_interpreter(model_path).choice
    assert [a.delegate for a in choice.attempts][0] == "edgetpu"
    assert "gpu" in [a.delegate for a in choice.attempts] and choice.delegate == "cpu"


def test_cpu_only_is_not_a_fallback(model_path):
    choice = load_interpreter(model_path, delegate_order=("cpu",)).choice
    assert not choice.fell_back and "failed" not in choice.summary()


def test_required_delegate_refuses_to_run_on_cpu(model_path):
    with pytest.raises(DelegateRequiredError, match="require_delegate") as info:
        load_interpreter(model_path, delegate_order=("edgetpu", "cpu"), require_delegate=True)
    assert isinstance(info.value, UserError) and "libedgetpu.so.1" in str(info.value)


def test_config_drives_the_loader(model_path, tmp_path):
    path = tmp_path / "device.yaml"
    path.write_text("delegate_order: [gpu, cpu]\nthreads: 1\ndelegate_libraries:\n  gpu: [/nowhere/libgpu.so]\n")
    model = load_with_config(model_path, load_config(path, InterpreterConfig))
    assert model.choice.threads == 1
    assert model.choice.attempts[0].library == "/nowhere/libgpu.so" and not model.choice.attempts[0].ok
    path.write_text("delegate_order: [tpu]\n")
    with pytest.raises(ConfigError, match="delegate_order"):
        load_config(path, InterpreterConfig)
    path.write_text("threads: 2\nrequire_delegates: true\n")
    with pytest.raises(ConfigError, match="require_delegates: unknown key"):
        load_config(path, InterpreterConfig)


def test_bad_model_files_are_user_errors(tmp_path):
    with pytest.raises(InterpreterError, match="not found"):
        load_interpreter(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(InterpreterError, match="not a loadable TFLite model"):
        load_interpreter(junk, delegate_order=("cpu",))


def test_missing_runtime_says_what_to_install(model_path, monkeypatch):
    """A board with neither wheel: registered runtimes whose modules are not installed."""
    monkeypatch.setitem(interpreter.RUNTIMES, "absent-runtime", "edge_affectsr_absent_runtime.interpreter")
    with pytest.raises(InterpreterError, match="no TFLite runtime is installed.*pip install ai-edge-litert"):
        load_interpreter(model_path, runtimes=("absent-runtime",))


def test_misspelt_runtime_is_named(model_path):
    with pytest.raises(InterpreterError, match="unknown TFLite runtime 'ai_edge_litert'; choose from"):
        load_interpreter(model_path, runtimes=("ai_edge_litert",))


def test_named_inputs_and_outputs(model_path):
    model = load_interpreter(model_path, delegate_order=("cpu",))
    assert model.input().name == "input" and model.input().shape == (1, 128, 128, 3)
    assert {t.shape for t in model.outputs.values()} == {(1, 896, 16), (1, 896, 1)}
    out = model.run(input=np.zeros((1, 128, 128, 3), np.float32))
    assert set(out) == set(model.outputs) and all(np.isfinite(v).all() for v in out.values())
    with pytest.raises(ValueError, match="missing"):
        model.run()
    with pytest.raises(ValueError, match="float32"):
        model.run(input=np.zeros((1, 128, 128, 3), np.uint8))
    with pytest.raises(ValueError, match="name one"):
        model.output()


def test_tflite_runtime_fallback_gives_the_same_outputs(model_path):
    """The fallback runtime must compute the same thing (a runtime bug was seen in int8 before)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    a = load_interpreter(model_path, delegate_order=("cpu",), runtimes=("ai-edge-litert",))
    b = load_interpreter(model_path, delegate_order=("cpu",), runtimes=("tflite-runtime",))
    assert b.choice.runtime == "tflite-runtime"
    out_a, out_b = a.run(input=x), b.run(input=x)
    for name in out_a:
        np.testing.assert_allclose(out_a[name], out_b[name], rtol=1e-4, atol=1e-4)


def test_quantize_uses_scale_and_zero_point():
    t = TensorInfo("x", 0, (4,), np.dtype(np.int8), scale=0.5, zero_point=-3)
    q = quantize(np.array([0.0, 1.0, -1.26, 1000.0]), t)
    assert q.dtype == np.int8 and q.tolist() == [-3, -1, -6, 127]  # round(x / 0.5) - 3, clipped
    np.testing.assert_allclose(dequantize(q, t), [0.0, 1.0, -1.5, 65.0])
    u = TensorInfo("y", 0, (2,), np.dtype(np.uint8), scale=1 / 255, zero_point=0)
    assert quantize(np.array([0.0, 1.0]), u).tolist() == [0, 255]
    f = TensorInfo("z", 0, (2,), np.dtype(np.float32), scale=0.0, zero_point=0)
    assert quantize(np.array([0.25, 2]), f).dtype == np.float32 and not f.quantized


def test_run_float_on_a_float_model_is_run(model_path):
    model = load_interpreter(model_path, delegate_order=("cpu",))
    x = np.full((1, 128, 128, 3), 0.1, np.float32)
    a, b = model.run(input=x), model.run_float(input=x)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
