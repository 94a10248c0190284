"""edge_affectsr/runtime/critic.py: the one FER preprocessing (device and conversion) against Pillow's
reference, and the int8 critic of the shipped bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_affectsr.assets import FER_CLASSES
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.protocol import make_hr, resize
from edge_affectsr.runtime.critic import FerCritic, critic_input
from edge_affectsr.runtime.interpreter import load_interpreter

from device_bundle import require_bundle

ONE_GREY_LEVEL = 1 / 127.5


def pillow_reference(rgb: np.ndarray) -> np.ndarray:
    """What the FER critic was calibrated on: BT.601 grey, 64x64 box resize, [-1, 1] (all Pillow)."""
    grey = Image.fromarray(rgb).convert("L").resize((64, 64), Image.BOX)
    return (np.asarray(grey, dtype=np.float32) / 255.0 - 0.5)[..., None] * 2.0


def check_against_pillow(hr: np.ndarray) -> None:
    """The SR size (128: OpenCV's fast path) within one grey level; other sizes go through Pillow."""
    ours = critic_input(hr)
    assert ours.shape == (64, 64, 1) and ours.dtype == np.float32
    assert np.abs(ours - pillow_reference(hr)).max() <= ONE_GREY_LEVEL + 1e-6
    for image in (resize(hr, 32), resize(hr, 100)):
        np.testing.assert_allclose(critic_input(image), pillow_reference(image), atol=1e-6)


def test_critic_input_matches_pillow_on_the_builtin_face():
    check_against_pillow(make_hr(Image.fromarray(builtin_face())))


@pytest.mark.data
def test_critic_input_matches_pillow_on_real_faces(shared_data: Path):
    files = sorted((shared_data / "celeba" / "val").glob("*.jpg"))[::4][:4]
    if len(files) < 4:
        pytest.skip("too few CelebA val faces")
    for f in files:
        check_against_pillow(make_hr(Image.open(f)))


def test_bundle_critic_reads_the_builtin_face():
    critic = FerCritic(load_interpreter(require_bundle() / "fer_int8.tflite", delegate_order=("cpu",)))
    p = critic.probabilities(make_hr(Image.fromarray(builtin_face())))
    assert p.shape == (len(FER_CLASSES),) and abs(p.sum() - 1.0) < 1e-9 and critic.label(p) in FER_CLASSES



def test_a_batch_of_faces_gives_the_probabilities_of_one_call_each():
    """All of a frame's faces (SR outputs and bicubic upscales, any sizes) in one critic call, one
    invoke at batch N, the same numbers as one call per face."""
    hr = make_hr(Image.fromarray(builtin_face()))
    faces = [np.ascontiguousarray(np.roll(hr, shift, axis=1)) for shift in range(0, 48, 6)] + [resize(hr, 32), hr[::-1]]
    path = require_bundle() / "fer_int8.tflite"
    batched = FerCritic(load_interpreter(path, delegate_order=("cpu",)))
    p = batched.probabilities_batch(faces)
    assert batched.runner.batching and batched.runner.batch == len(faces)
    single = FerCritic(load_interpreter(path, delegate_order=("cpu",)))
    assert np.array_equal(p, np.stack([single.probabilities(f) for f in faces]))
    assert np.allclose(p.sum(axis=1), 1.0) and len({tuple(np.round(x, 6)) for x in p}) > len(faces) // 2  # rows differ
