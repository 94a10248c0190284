"""edge_affectsr/runtime/sr.py: the one TFLite SR runner that convert, eval and the device all use."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_affectsr.errors import UserError
from edge_affectsr.metrics import psnr
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.interpreter import available_runtimes, load_interpreter
from edge_affectsr.runtime.sr import TFLiteSR

BUNDLE = resolve_model("bundle-x4")


@pytest.fixture(scope="module")
def golden() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.load(BUNDLE / f"golden_{k}.npy") for k in ("lr", "lm", "sr"))


def test_runner_reproduces_the_bundles_golden_output(golden):
    """The golden output was written through this runner on ai-edge-litert: bit for bit."""
    lr, lm, expected = golden
    runner = TFLiteSR.open(BUNDLE / "sr_int8.tflite", "ai-edge-litert", threads=1)
    assert (runner.lr_size, runner.out_size, runner.scale, runner.num_landmarks) == (32, 128, 4, lm.shape[0])
    assert np.array_equal(runner(lr, lm), expected)


@pytest.mark.skipif("tflite-runtime" not in available_runtimes(), reason="tflite-runtime not installed")
def test_the_older_runtime_passes_the_bundles_self_test_bar(golden):
    """tflite-runtime's int8 kernels round a few pixels differently: within the manifest's bar."""
    lr, lm, expected = golden
    bar = json.loads((BUNDLE / "manifest.json").read_text())["golden"]["min_psnr_db"]
    assert psnr(TFLiteSR.open(BUNDLE / "sr_int8.tflite", "tflite-runtime")(lr, lm), expected) >= bar


def test_device_interpreter_under_the_runner_gives_the_same_bytes(golden):
    """The device wraps its delegate-aware model in the same runner: no second (de)quantisation."""
    lr, lm, expected = golden
    model = load_interpreter(BUNDLE / "sr_int8.tflite", delegate_order=("cpu",))
    assert np.array_equal(TFLiteSR(model)(lr, lm), expected)


def test_wrong_input_shapes_are_refused(golden):
    lr, lm, _ = golden
    runner = TFLiteSR.open(BUNDLE / "sr_int8.tflite", "ai-edge-litert")
    with pytest.raises(ValueError, match="SR input must be 32x32x3"):
        runner(np.zeros((64, 64, 3), np.uint8), lm)
    with pytest.raises(ValueError, match="SR landmarks must be"):
        runner(lr, lm[:10])
    with pytest.raises(ValueError, match="must be uint8 RGB"):  # a [0, 1] float image would come out black
        runner(lr.astype(np.float32) / 255, lm)


def test_a_model_that_is_not_sr_is_refused():
    with pytest.raises(UserError, match="is not an SR model"):
        TFLiteSR.open(BUNDLE / "face_landmark.tflite", "ai-edge-litert")
