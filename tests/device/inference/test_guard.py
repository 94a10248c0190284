"""device/inference/guard.py and the FER critic: the expression-preservation guard on real faces.

Faces are CelebA val photos pasted into a frame and taken through the device's own detector,
FaceMesh and aligner, so the guard sees what it sees on a camera. "Good" output: the bicubic
upscale sharpened with an unsharp mask (a change that keeps the expression); "bad": a heavy blur
and the face upside down. Needs the shared data and a bundle (for the int8 critic).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_affectsr import landmark_graph
from edge_affectsr.device.inference.guard import ExpressionGuard, GuardConfig, canonical_detection, landmark_error
from edge_affectsr.protocol import bicubic_up
from edge_affectsr.runtime.align import Aligner
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.detect import MODEL_NAME as DETECTOR_NAME
from edge_affectsr.runtime.detect import DetectorConfig, FaceDetector, mediapipe_model_path
from edge_affectsr.runtime.interpreter import InterpreterConfig
from edge_affectsr.runtime.landmarks import MODEL_NAME as LANDMARK_NAME
from edge_affectsr.runtime.landmarks import FaceLandmarker

from device_bundle import require_bundle

N_FACES = 8


@pytest.fixture(scope="module")
def celeba(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "celeba" / "val").glob("*.jpg"))[::4][:N_FACES]
    if len(files) < N_FACES:
        pytest.skip("too few CelebA val faces")
    return files


@pytest.fixture(scope="module")
def mesh_models():
    return FaceDetector(mediapipe_model_path(DETECTOR_NAME), DetectorConfig().whole_frame()), FaceLandmarker(mediapipe_model_path(LANDMARK_NAME))


@pytest.fixture(scope="module")
def faces(celeba, mesh_models):
    """Aligned faces (lr, hr, landmarks) the way the pipeline makes them."""
    detector, landmarker = mesh_models
    aligner = Aligner(32, landmark_graph.subset_nodes("contours"))
    out = []
    for f in celeba:
        frame = np.full((480, 640, 3), (90, 110, 120), np.uint8)
        frame[100:318, 200:378] = cv2.imread(str(f))
        det = detector.detect(frame)[0]
        out.append(aligner(frame, landmarker(frame, det).points))
    return out


@pytest.fixture(scope="module")
def critic():
    return load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"]), self_test=False).critic


def sharpened(lr: np.ndarray) -> np.ndarray:
    bic = bicubic_up(lr)
    return np.clip(cv2.addWeighted(bic, 1.6, cv2.GaussianBlur(bic, (0, 0), 2), -0.6, 0), 0, 255).astype(np.uint8)


def test_landmark_error_is_in_inter_ocular_distances():
    mesh = landmark_graph.mean_shape() * 128
    regions = landmark_graph.regions()
    iod = np.linalg.norm(mesh[regions["right_eye"]].mean(0) - mesh[regions["left_eye"]].mean(0))
    assert landmark_error(mesh, mesh) == 0
    assert landmark_error(mesh + [0.1 * iod, 0], mesh) == pytest.approx(0.1)


def test_facemesh_finds_the_aligned_face_with_the_canonical_detection(faces, mesh_models):
    _, landmarker = mesh_models
    for face in faces:
        found = landmarker(cv2.cvtColor(face.hr, cv2.COLOR_RGB2BGR), canonical_detection(128))
        assert landmarker.found(found)
        assert landmark_error(found.points, face.landmarks_full * 128) < 0.1


def test_good_outputs_pass_and_bad_ones_fail(faces, critic, mesh_models):
    guard = ExpressionGuard(critic, mesh_models[1])
    good = [guard(f.lr, sharpened(f.lr), f.landmarks_full).guard for f in faces]
    blurred = [guard(f.lr, cv2.GaussianBlur(bicubic_up(f.lr), (0, 0), 6), f.landmarks_full).guard for f in faces]
    flipped = [guard(f.lr, np.ascontiguousarray(f.hr[::-1]), f.landmarks_full).guard for f in faces]
    assert sum(g.preserved for g in good) >= 0.6 * len(faces), good
    assert not any(g.preserved for g in blurred + flipped), blurred + flipped
    assert np.median([g.kl for g in good]) < np.median([g.kl for g in flipped])
    for g in good:
        assert g.kl >= 0 and math.isfinite(g.landmark_error) and not g.fallback


def test_fallback_reports_the_bicubic_image(faces, critic, mesh_models):
    guard = ExpressionGuard(critic, mesh_models[1], GuardConfig(fallback_to_bicubic=True))
    face = faces[0]
    bad = np.ascontiguousarray(face.hr[::-1])
    verdict = guard(face.lr, bad, face.landmarks_full)
    assert not verdict.guard.preserved and verdict.guard.fallback
    np.testing.assert_array_equal(verdict.image, bicubic_up(face.lr))
    np.testing.assert_array_equal(verdict.probabilities, verdict.p_bicubic)
    kept = ExpressionGuard(critic, mesh_models[1])(face.lr, bad, face.landmarks_full)
    assert kept.image is bad and not kept.guard.fallback  # without the policy the SR output is reported


def test_guard_options(faces, critic, mesh_models):
    face = faces[0]
    off = ExpressionGuard(critic, mesh_models[1], GuardConfig(enabled=False))(face.lr, face.hr, face.landmarks_full)
    assert off.guard.preserved and math.isnan(off.guard.kl) and abs(off.p_sr.sum() - 1) < 1e-9
    no_mesh = ExpressionGuard(critic, mesh_models[1], GuardConfig(landmarks=False))(face.lr, face.hr, face.landmarks_full)
    assert math.isnan(no_mesh.guard.landmark_error) and no_mesh.guard.kl >= 0


def test_preserved_needs_the_sr_reading_to_be_plausible_under_bicubic(faces, critic, mesh_models):
    face = faces[0]
    sr = sharpened(face.lr)

    def verdict(min_prob: float):
        config = GuardConfig(min_reference_prob=min_prob, kl_max=1e9, landmarks=False)
        return ExpressionGuard(critic, mesh_models[1], config)(face.lr, sr, face.landmarks_full)

    loose = verdict(0.0)
    support = float(loose.p_bicubic[np.argmax(loose.p_sr)])  # bicubic's probability of the SR's reading
    assert loose.guard.preserved and verdict(support).guard.preserved
    assert not verdict(min(1.0, support + 1e-3)).guard.preserved or support + 1e-3 > 1.0


class NoLandmarker:
    """A landmarker that must not be called: a keypoint face has no landmarks to check against."""

    def __call__(self, *args):
        raise AssertionError("FaceMesh ran on a keypoint face's output")


def test_a_face_without_landmarks_gets_a_verdict_without_the_landmark_check(faces, critic):
    face = faces[0]
    mean = landmark_graph.mean_shape()
    verdict = ExpressionGuard(critic, NoLandmarker())(face.lr, sharpened(face.lr), mean, found=False)
    g = verdict.guard
    assert math.isnan(g.landmark_error) and g.kl >= 0 and math.isfinite(g.reference_prob)
    assert g.preserved == (g.reference_prob >= 0.15 and g.kl <= 1.0)
