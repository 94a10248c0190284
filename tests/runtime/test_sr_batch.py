"""edge_affectsr/runtime/sr.py and batching.py: all the faces of a frame in one SR call, the same bytes as
one call per face, on real faces (the built-in clip through the device's face path)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import Pipeline
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.batching import BatchRunner
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.interpreter import InterpreterConfig, load_interpreter
from edge_affectsr.runtime.sr import TFLiteSR, to_uint8

BUNDLE = resolve_model("bundle-x4")


@pytest.fixture(scope="module")
def clip_faces() -> tuple[np.ndarray, np.ndarray]:
    """Aligned LR faces ``[N, 32, 32, 3]`` and their subset landmarks ``[N, K, 2]``: the built-in clip's
    face at 8 sizes and places, as the device pipeline aligns it."""
    bundle = load_bundle(BUNDLE, InterpreterConfig(delegate_order=["cpu"]), self_test=False)
    seq, pipeline = BuiltinSequence(8, face_px=(120, 170)), Pipeline(bundle)
    faces = [f.aligned for i in range(8) for f in pipeline.process(Frame(i, i / 25, seq.render(i))).faces]
    assert len(faces) == 8
    return np.stack([f.lr for f in faces]), np.stack([f.landmarks_full[bundle.nodes] for f in faces])


def sr_runner() -> TFLiteSR:
    return TFLiteSR(load_interpreter(BUNDLE / "sr_int8.tflite", delegate_order=("cpu",)))


def float_path(runner: TFLiteSR, lr: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The conversion every other consumer uses: ``run_float`` and :func:`to_uint8`, one face."""
    out = runner.model.run_float(**{runner.img.name: lr[None].astype(np.float32) / 255.0,
                                    runner.lm.name: lm[None].astype(np.float32)})
    return to_uint8(out[runner.out.name][0])


def test_a_batch_gives_the_bytes_of_one_call_per_face(clip_faces, caplog):
    lr, lm = clip_faces
    batched = sr_runner()
    with caplog.at_level(logging.INFO, logger="edge_affectsr.runtime.batching"):
        out = batched.batch(lr, lm)
    single = sr_runner()
    assert out.shape == (8, 128, 128, 3) and out.dtype == np.uint8
    for i in range(len(lr)):
        assert np.array_equal(out[i], single(lr[i], lm[i]))
        assert np.array_equal(out[i], float_path(single, lr[i], lm[i]))  # the byte tables change nothing
    # the shipped SR graph reshapes its landmark prior to a constant [1, 28, 8, 8]: no batch dimension
    assert not batched.runner.batching and batched.runner.batch == 1
    assert any("takes no batch dimension" in r.getMessage() for r in caplog.records)


def test_the_golden_output_still_reproduces_after_a_batch(clip_faces):
    lr, lm = clip_faces
    runner = sr_runner()
    runner.batch(lr[:3], lm[:3])
    golden = [np.load(BUNDLE / f"golden_{k}.npy") for k in ("lr", "lm", "sr")]
    assert np.array_equal(runner(golden[0], golden[1]), golden[2])


def test_a_batch_with_wrong_shapes_is_refused(clip_faces):
    lr, lm = clip_faces
    runner = sr_runner()
    with pytest.raises(ValueError, match="SR landmarks must be"):
        runner.batch(lr[:3], lm[:2])
    with pytest.raises(ValueError, match="SR input must be 32x32x3"):
        runner.batch(np.zeros((2, 64, 64, 3), np.uint8), lm[:2])


def test_the_runner_resizes_only_when_the_batch_changes():
    """The FER critic's graph takes a batch: resized to N, kept while N stays, back to 1 for one item."""
    model = load_interpreter(BUNDLE / "fer_int8.tflite", delegate_order=("cpu",))
    runner = BatchRunner(model)
    x = np.zeros((3, 64, 64, 1), np.int8)
    name = model.input().name
    assert runner(**{name: x})[model.output().name].shape == (3, 7) and runner.batch == 3
    runner(**{name: x})
    assert runner.batch == 3
    assert runner(**{name: x[:1]})[model.output().name].shape == (1, 7) and runner.batch == 1
    off = BatchRunner(load_interpreter(BUNDLE / "fer_int8.tflite", delegate_order=("cpu",)), batching=False)
    assert off(**{name: x})[model.output().name].shape == (3, 7) and off.batch == 1  # one invoke per item
