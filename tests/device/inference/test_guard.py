"""device/inference/guard.py and the FER critic: the expression-preservation guard.

Faces are pasted into a frame and taken through the device's own detector, FaceMesh and aligner,
so the guard sees what it sees on a camera: the built-in face (scikit-image's astronaut) at eight
sizes and places, half of them mirrored, which needs no data set; and, where the shared data is,
CelebA val photos as well. "Good" output: the bicubic upscale sharpened with an unsharp mask (a
change that keeps the expression); "bad": a heavy blur and the face upside down. The thresholds
themselves are driven at their exact boundaries by a critic of fixed probabilities and a
landmarker of fixed points, so a flipped comparison (``kl < kl_max`` for ``kl <= kl_max``) fails
here, with no data set and no model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest

from edge_affectsr import landmark_graph
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.inference.guard import ExpressionGuard, GuardConfig, canonical_detection, landmark_error
from edge_affectsr.metrics import kl_divergence
from edge_affectsr.protocol import bicubic_up
from edge_affectsr.runtime.align import Aligner
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.critic import FER_CLASSES
from edge_affectsr.runtime.detect import MODEL_NAME as DETECTOR_NAME
from edge_affectsr.runtime.detect import DetectorConfig, FaceDetector, mediapipe_model_path
from edge_affectsr.runtime.interpreter import InterpreterConfig
from edge_affectsr.runtime.landmarks import MODEL_NAME as LANDMARK_NAME
from edge_affectsr.runtime.landmarks import FaceLandmarker

from device_bundle import require_bundle

N_FACES = 8
# the built-in face's square side, its top-left corner in a 640x480 frame, mirrored?
PLACEMENTS = [(218, 200, 100, False), (180, 100, 150, False), (240, 300, 120, True), (200, 220, 200, True),
              (160, 380, 60, False), (230, 150, 220, False), (190, 60, 40, True), (210, 330, 180, True)]


def blank_frame() -> np.ndarray:
    return np.full((480, 640, 3), (90, 110, 120), np.uint8)


@pytest.fixture(scope="module")
def builtin_frames() -> list[np.ndarray]:
    face = cv2.cvtColor(builtin_face(), cv2.COLOR_RGB2BGR)
    frames = []
    for side, x, y, mirrored in PLACEMENTS:
        frame = blank_frame()
        frame[y:y + side, x:x + side] = cv2.resize(face[:, ::-1] if mirrored else face, (side, side))
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def celeba_frames(shared_data: Path) -> list[np.ndarray]:
    files = sorted((shared_data / "celeba" / "val").glob("*.jpg"))[::4][:N_FACES]
    if len(files) < N_FACES:
        pytest.skip("too few CelebA val faces")
    frames = []
    for f in files:
        frame = blank_frame()
        frame[100:318, 200:378] = cv2.imread(str(f))
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def mesh_models():
    return FaceDetector(mediapipe_model_path(DETECTOR_NAME), DetectorConfig().whole_frame()), FaceLandmarker(mediapipe_model_path(LANDMARK_NAME))


def aligned(frames: list[np.ndarray], mesh_models) -> list:
    """Aligned faces (lr, hr, landmarks) the way the pipeline makes them."""
    detector, landmarker = mesh_models
    aligner = Aligner(32, landmark_graph.subset_nodes("contours"))
    return [aligner(frame, landmarker(frame, detector.detect(frame)[0]).points) for frame in frames]


@pytest.fixture(scope="module")
def faces(builtin_frames, mesh_models):
    return aligned(builtin_frames, mesh_models)


@pytest.fixture(scope="module", params=["builtin", "celeba"])
def face_set(request, mesh_models):
    """The built-in face's variants everywhere; CelebA's eight photos where the shared data is."""
    return aligned(request.getfixturevalue(f"{request.param}_frames"), mesh_models)


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


def test_facemesh_finds_the_aligned_face_with_the_canonical_detection(face_set, mesh_models):
    _, landmarker = mesh_models
    for face in face_set:
        found = landmarker(cv2.cvtColor(face.hr, cv2.COLOR_RGB2BGR), canonical_detection(128))
        assert landmarker.found(found)
        assert landmark_error(found.points, face.landmarks_full * 128) < 0.1


def test_good_outputs_pass_and_bad_ones_fail(face_set, critic, mesh_models):
    guard = ExpressionGuard(critic, mesh_models[1])
    good = [guard(f.lr, sharpened(f.lr), f.landmarks_full).guard for f in face_set]
    blurred = [guard(f.lr, cv2.GaussianBlur(bicubic_up(f.lr), (0, 0), 6), f.landmarks_full).guard for f in face_set]
    flipped = [guard(f.lr, np.ascontiguousarray(f.hr[::-1]), f.landmarks_full).guard for f in face_set]
    assert sum(g.preserved for g in good) >= 0.6 * len(face_set), good
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


# --- camera-routed faces (guard.camera_faces): the landmark check alone, or "unverified" ------------------

STRICT = {"min_reference_prob": 1.0, "fallback_to_bicubic": True}  # fails every output's expression checks
LOOSE = {"min_reference_prob": 0.0, "kl_max": 1e9, "fallback_to_bicubic": True}  # passes every one's


def upside_down(face) -> np.ndarray:
    return np.ascontiguousarray(face.hr[::-1])


def test_a_camera_routed_face_without_a_landmark_check_is_unverified_and_never_swapped(faces, critic, mesh_models):
    face = faces[0]
    bad = upside_down(face)
    cases = [(landmark_graph.mean_shape(), False, {}),  # aligned from the detector's keypoints
             (face.landmarks_full, True, {"landmarks": False})]  # FaceMesh on the output turned off
    for landmarks, found, option in cases:
        verdict = ExpressionGuard(critic, mesh_models[1], GuardConfig(**STRICT, **option))(
            face.lr, bad, landmarks, found, camera=True)
        g = verdict.guard
        assert g.verdict == "unverified" and not g.preserved and not g.fallback and verdict.image is bad
        assert math.isnan(g.landmark_error) and not g.landmark_checked and g.kl >= 0  # the numbers still recorded
        old = ExpressionGuard(critic, mesh_models[1], GuardConfig(**STRICT, **option, camera_faces="all_checks"))(
            face.lr, bad, landmarks, found, camera=True)
        assert old.guard.verdict == "changed" and old.guard.fallback  # today's rule: failed, swapped for bicubic
        np.testing.assert_array_equal(old.image, bicubic_up(face.lr))


def test_a_camera_routed_facemesh_face_is_judged_by_its_landmarks_alone(face_set, critic, mesh_models):
    landmarker = mesh_models[1]
    strict, loose = ExpressionGuard(critic, landmarker, GuardConfig(**STRICT)), ExpressionGuard(
        critic, landmarker, GuardConfig(**LOOSE))
    good = [strict(f.lr, sharpened(f.lr), f.landmarks_full, camera=True).guard for f in face_set]
    for g in good:  # every expression check failed; the landmark error alone decides
        assert g.landmark_checked and g.verdict == ("preserved" if g.landmark_error <= 0.10 else "changed")
    assert sum(g.preserved for g in good) >= 0.6 * len(face_set), good
    assert all(not strict(f.lr, sharpened(f.lr), f.landmarks_full).guard.preserved for f in face_set)  # not routed
    for f in face_set:  # every expression check passed; the landmark check fails the face upside down
        verdict = loose(f.lr, upside_down(f), f.landmarks_full, camera=True)
        assert verdict.guard.verdict == "changed" and verdict.guard.landmark_error > 0.10 and verdict.guard.fallback


def outputs_of(face_set) -> list[tuple[list, list, list, list]]:
    """(lr, sr, landmarks, found) of a sharpened, a blurred and an upside-down output of every face."""
    lr, lms = [f.lr for f in face_set], [f.landmarks_full for f in face_set]
    found = [True] * len(face_set)
    return [(lr, [make(f) for f in face_set], lms, found)
            for make in (lambda f: sharpened(f.lr), lambda f: cv2.GaussianBlur(bicubic_up(f.lr), (0, 0), 6), upside_down)]


def test_clean_routed_faces_and_the_all_checks_policy_are_judged_as_before(face_set, critic, mesh_models):
    """Clean-routed and unrouted faces get the same verdicts under either policy, and ``all_checks``
    gives camera-routed faces those verdicts too: today's rule, with two verdicts only."""
    policies = [ExpressionGuard(critic, mesh_models[1], GuardConfig(camera_faces=p)) for p in ("landmarks", "all_checks")]
    for lr, sr, lms, found in outputs_of(face_set):
        n = len(sr)
        unrouted = [v.guard for v in policies[0].batch(lr, sr, lms, found)]
        before = [g.to_dict() for g in unrouted]
        for guard in policies:
            assert [v.guard.to_dict() for v in guard.batch(lr, sr, lms, found, camera=[False] * n)] == before
        assert [v.guard.to_dict() for v in policies[1].batch(lr, sr, lms, found, camera=[True] * n)] == before
        for g in unrouted:
            old_rule = g.reference_prob >= 0.15 and g.kl <= 1.0 and not g.landmark_error > 0.10
            assert g.verdict == ("preserved" if old_rule else "changed") and g.preserved == old_rule


# --- the thresholds at their boundaries (no data set, no model) ---------------------------------------


class FixedCritic:
    """Reads every SR output as ``p_sr`` and every bicubic upscale as ``p_bicubic``: the guard puts a
    face's SR output first and its bicubic upscale after it in one batch (only the SR output when off)."""

    classes = FER_CLASSES

    def __init__(self, p_sr, p_bicubic) -> None:
        self.p_sr, self.p_bicubic = np.asarray(p_sr, np.float64), np.asarray(p_bicubic, np.float64)

    def probabilities_batch(self, images) -> np.ndarray:
        bicubic = len(images) // 2
        return np.stack([self.p_sr] * (len(images) - bicubic) + [self.p_bicubic] * bicubic)


class Landmarks(NamedTuple):
    points: np.ndarray


class FixedLandmarker:
    """Finds ``points`` (frame pixels) in any image."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = points

    def __call__(self, image, detection) -> Landmarks:
        return Landmarks(self.points)

    def found(self, landmarks: Landmarks) -> bool:
        return True


LR, SR = np.zeros((32, 32, 3), np.uint8), np.zeros((128, 128, 3), np.uint8)
MESH = landmark_graph.mean_shape()  # [478, 2] in [0, 1]
P_BICUBIC = [0.05, 0.02, 0.03, 0.40, 0.20, 0.10, 0.20]  # happy, then sad and neutral
P_SR = [0.02, 0.01, 0.02, 0.25, 0.45, 0.05, 0.20]  # sad: plausible under bicubic (0.20), not its top


def verdict(config: GuardConfig, p_sr=P_SR, p_bicubic=P_BICUBIC, landmarker=None):
    return ExpressionGuard(FixedCritic(p_sr, p_bicubic), landmarker, config)(LR, SR, MESH).guard


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def test_kl_at_kl_max_passes_and_just_above_it_fails():
    kl = kl_divergence(np.array([P_BICUBIC]), np.array([P_SR]))
    assert 0 < kl < 1
    at = verdict(GuardConfig(kl_max=kl, min_reference_prob=0.0, landmarks=False))
    assert at.kl == kl and at.preserved  # kl <= kl_max: the boundary itself passes
    assert not verdict(GuardConfig(kl_max=below(kl), min_reference_prob=0.0, landmarks=False)).preserved


def test_the_reference_probability_at_the_minimum_passes_and_just_below_fails():
    support = P_BICUBIC[int(np.argmax(P_SR))]  # bicubic's probability of the SR output's reading (sad)
    at = verdict(GuardConfig(min_reference_prob=support, kl_max=10.0, landmarks=False))
    assert at.reference_prob == support and at.preserved and not at.agreement  # plausible, not the same top-1
    assert not verdict(GuardConfig(min_reference_prob=float(np.nextafter(support, 1.0)), kl_max=10.0,
                                   landmarks=False)).preserved


def test_the_landmark_error_at_the_maximum_passes_and_just_above_it_fails():
    reference = MESH * SR.shape[0]
    shifted = reference + [1.5, 0.0]  # FaceMesh on the output finds the face 1.5 px to the right
    error = landmark_error(shifted, reference)
    assert 0 < error < 1
    loose = GuardConfig(min_reference_prob=0.0, kl_max=10.0)
    at = verdict(loose.model_copy(update={"landmark_max": error}), landmarker=FixedLandmarker(shifted))
    assert at.landmark_error == error and at.preserved and at.landmark_checked
    assert not verdict(loose.model_copy(update={"landmark_max": below(error)}), landmarker=FixedLandmarker(shifted)).preserved


def test_every_check_must_pass_and_a_failure_falls_back_when_asked():
    same = verdict(GuardConfig(landmarks=False), p_sr=P_BICUBIC)  # identical readings: KL 0, top-1 agrees
    assert same.preserved and same.agreement and same.kl == pytest.approx(0.0, abs=1e-12)
    implausible = [0.01, 0.01, 0.01, 0.01, 0.01, 0.94, 0.01]  # surprise: bicubic gives it 0.10 < 0.15
    failed = verdict(GuardConfig(landmarks=False, kl_max=100.0, fallback_to_bicubic=True), p_sr=implausible)
    assert not failed.preserved and failed.fallback and failed.reference_prob == 0.10
    unchecked = verdict(GuardConfig(enabled=False), p_sr=implausible)
    assert unchecked.preserved and math.isnan(unchecked.kl)  # off: reported as preserved, with no numbers


def test_a_camera_routed_face_keeps_its_tracks_last_landmark_verdict_between_checks():
    shifted = MESH * SR.shape[0] + [1.5, 0.0]
    error = landmark_error(shifted, MESH * SR.shape[0])
    config = GuardConfig(min_reference_prob=1.0, landmark_max=below(error), landmark_every=5)  # expression fails
    guard = ExpressionGuard(FixedCritic(P_BICUBIC, P_BICUBIC), FixedLandmarker(shifted), config)

    def upscale(track: int, found: bool = True):
        return guard.batch([LR], [SR], [MESH], [found], tracks=[track], camera=[True])[0].guard

    first, second = upscale(3), upscale(3)
    assert first.landmark_checked and first.verdict == "changed"
    assert not second.landmark_checked and second.landmark_error == error and second.verdict == "changed"
    assert upscale(4, found=False).verdict == "unverified"  # a keypoint face: no landmarks, no last error
