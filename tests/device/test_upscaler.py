"""The Python API (``edge_affectsr.FaceUpscaler``, ``edge_affectsr.load_model``) on the real shipped
bundle and the built-in face: the README's example as written, any image size, lists of images,
single crops, and no torch behind a bundle."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from device_bundle import require_bundle
from PIL import Image

import edge_affectsr
from edge_affectsr.builtin_face import FACE_PATH, builtin_face
from edge_affectsr.errors import UserError
from edge_affectsr.metrics import psnr
from edge_affectsr.protocol import bicubic_up, make_hr, make_lr

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "tensorflow", "mediapipe", "keras")


def readme_example() -> str:
    """The first ``python`` code block of the README's "Python API" section."""
    section = (ROOT / "README.md").read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def up() -> edge_affectsr.FaceUpscaler:
    return edge_affectsr.FaceUpscaler(require_bundle())


def framed(face_rgb: np.ndarray, size: tuple[int, int], top_left: tuple[int, int]) -> np.ndarray:
    """``face_rgb`` pasted into a plain RGB image of ``size`` (rows, cols) at ``top_left`` (row, col)."""
    image = np.full((*size, 3), (120, 110, 90), np.uint8)
    y, x = top_left
    image[y:y + face_rgb.shape[0], x:x + face_rgb.shape[1]] = face_rgb
    return image


def test_the_readme_example_runs_as_written_without_torch(tmp_path):
    require_bundle()
    script = readme_example() + (
        "\nimport sys\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = done.stdout.strip().splitlines()
    assert re.fullmatch(r"\([\d., ]+\) \(32, 32, 3\) -> \(128, 128, 3\) \w+ p=0\.\d\d (preserved|changed)", first)
    assert second.split()[0] in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    with Image.open(tmp_path / "face_sr.png") as im:
        assert im.size == (128, 128)


def test_import_edge_affectsr_stays_light_until_the_api_is_used():
    code = ("import sys, edge_affectsr\n"
            "loaded = [m for m in ('edge_affectsr.device', 'edge_affectsr.runtime', 'cv2') if m in sys.modules]\n"
            "assert not loaded, loaded\n"
            "assert {'FaceUpscaler', 'UpscaledFace', 'load_model'} <= set(dir(edge_affectsr))\n"
            "from edge_affectsr.runtime.backend import load_model\n"
            "assert edge_affectsr.load_model is load_model\n"
            "print(edge_affectsr.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", done.stdout.strip())
    with pytest.raises(AttributeError, match="no attribute 'FaceUpscalr'"):
        edge_affectsr.FaceUpscalr  # noqa: B018


def test_load_model_gives_the_bare_sr_backend():
    backend = edge_affectsr.load_model(require_bundle())
    lr = make_lr(make_hr(Image.fromarray(builtin_face())), 4)
    from edge_affectsr import landmark_graph

    sr = backend(lr[None], landmark_graph.mean_shape()[None].astype(np.float32), np.array([False]))
    assert backend.scale == 4 and sr.shape == (1, 128, 128, 3) and sr.dtype == np.uint8


def test_a_face_is_found_at_any_image_size_without_padding(up):
    """The built-in face on its own (190 px, the face filling it), in a 640x480 frame and in a
    1920x1080 one: found where it is, with the same expression reading."""
    face = builtin_face()
    alone = up(face)
    assert len(alone) == 1
    for size, (y, x) in (((480, 640), (200, 300)), ((1080, 1920), (700, 1500))):
        [found] = up(framed(face, size, (y, x)))
        shift = np.array([x, y, x, y], float)
        # the int8 detector's box regressors step 1.3 of its 128 input px: corners move by up to ~4 % of
        # the face's width with its place in the frame (its conversion gate: mean corner error <= 5 %)
        width = alone[0].box[2] - alone[0].box[0]
        assert np.abs(np.array(found.box) - shift - alone[0].box).max() < 0.05 * width
        assert found.expression == alone[0].expression
    got = alone[0]
    assert got.lr.shape == (32, 32, 3) and got.sr.shape == got.aligned.shape == (128, 128, 3)
    assert got.sr.dtype == got.lr.dtype == np.uint8
    assert set(got.probabilities) == set(up.classes) and sum(got.probabilities.values()) == pytest.approx(1, abs=1e-3)
    assert got.expression == max(got.probabilities, key=got.probabilities.get)
    assert got.preserved == got.guard.preserved and got.landmarks == "facemesh"
    assert got.to_dict()["guard"]["preserved"] == got.preserved
    # the SR output is closer to the aligned crop than the bicubic upscale of the same LR
    assert psnr(got.sr, got.aligned) > psnr(bicubic_up(got.lr), got.aligned) + 1.0


def test_a_list_of_images_gives_a_list_per_image_largest_face_first(up):
    face = builtin_face()
    small = cv2.resize(face, (120, 120), interpolation=cv2.INTER_AREA)
    two = framed(face, (480, 800), (150, 500))
    two[180:300, 60:180] = small
    empty = np.full((300, 400, 3), 128, np.uint8)
    results = up([two, empty, FACE_PATH])
    assert [len(r) for r in results] == [2, 0, 1]
    big, little = results[0]
    assert big.box[0] > 400 and little.box[0] < 200  # largest first
    assert (big.box[2] - big.box[0]) > 1.4 * (little.box[2] - little.box[0])


def test_colour_orders_and_image_kinds_agree(up):
    rgb = framed(builtin_face(), (400, 400), (100, 100))
    want = up(rgb)[0]
    for image, bgr in ((rgb[..., ::-1].copy(), True), (Image.fromarray(rgb), False),
                       (np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), False)):
        got = up(image, bgr=bgr)[0]
        assert got.box == want.box and np.array_equal(got.sr, want.sr)
    assert up(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))  # a grey photo still has its face
    with pytest.raises(UserError, match="uint8 H x W x 3"):
        up(rgb.astype(np.float32))
    with pytest.raises(UserError, match="not a readable image"):
        up(Path(__file__))


def test_upscale_crop_beats_bicubic_on_a_protocol_lr_face(up):
    hr = make_hr(Image.fromarray(builtin_face()))
    lr = make_lr(hr, 4)
    face = up.upscale_crop(lr)
    assert face.box is None and face.aligned is None and face.landmarks == "facemesh"
    assert np.array_equal(face.lr, lr) and face.sr.shape == (128, 128, 3)
    assert psnr(face.sr, hr) > psnr(bicubic_up(lr), hr) + 1.0
    bigger = up.upscale_crop(Image.fromarray(builtin_face()))  # resized to the model's 32 px
    assert bigger.lr.shape == (32, 32, 3) and bigger.expression == face.expression


def test_a_checkpoint_does_the_sr_step_with_the_bundles_face_models():
    pytest.importorskip("torch")
    # the sharp-input student: the built-in photo is a clean face (student-x4, the camera student,
    # gains ~1 dB on clean faces, not a margin a test can rely on)
    up = edge_affectsr.FaceUpscaler("student-x4-clean", face_models=require_bundle())
    [face] = up(FACE_PATH)
    assert up.name == "student-x4-clean" and face.sr.shape == (128, 128, 3)
    assert psnr(face.sr, face.aligned) > psnr(bicubic_up(face.lr), face.aligned) + 1.0
