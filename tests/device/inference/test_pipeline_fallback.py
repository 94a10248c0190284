"""device/inference/pipeline.py, ``landmarks.fallback``: faces FaceMesh rejects are upscaled from the
detector's keypoints with the mean face shape (``keypoints``, the default) or dropped (``skip``).

Two kinds of rejection: a stand-in landmarker that rejects every face (the large built-in face, where
the real FaceMesh would accept it: the paths can be compared on one face), and the real FaceMesh on
the built-in face staged small and blurred in a whole camera frame. Needs a bundle (skipped otherwise).
"""

from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from device_bundle import require_bundle
from edge_affectsr import landmark_graph
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, Pipeline, PipelineConfig
from edge_affectsr.device.reporting.metrics import Metrics
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.service.camera_small import SmallFaces, on_face, stage
from edge_affectsr.device.service.telemetry import DAEMON_COUNTERS
from edge_affectsr.runtime.align import transform_points
from edge_affectsr.runtime.bundle_models import load_bundle
from edge_affectsr.runtime.detect import DetectorConfig
from edge_affectsr.runtime.interpreter import InterpreterConfig
from edge_affectsr.runtime.landmarks import LandmarkConfig


class Landmarker:
    """The bundle's FaceMesh with another ``landmarks:`` config; ``reject_all``: every face rejected."""

    def __init__(self, real, fallback: str, reject_all: bool = False) -> None:
        self.real, self.reject_all = real, reject_all
        self.config = LandmarkConfig(fallback=fallback)

    def __call__(self, frame, detection):
        return self.real(frame, detection)

    def found(self, landmarks) -> bool:
        return not self.reject_all and landmarks.presence >= self.config.presence_threshold


class RecordingSR:
    """The bundle's SR backend, remembering the ``found`` flags it was given."""

    def __init__(self, real) -> None:
        self.real, self.found = real, []
        self.lr_size = real.lr_size

    def __call__(self, lr, landmarks, found):
        self.found.append(np.asarray(found).tolist())
        return self.real(lr, landmarks, found)


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(require_bundle(), InterpreterConfig(delegate_order=["cpu"]),
                       DetectorConfig(tiles=(8, 6), tiles_per_call=None), self_test=False)


def run(bundle, fallback: str, reject_all: bool, image: np.ndarray, min_face_px: float = 24.0):
    """One frame through a pipeline whose landmarker follows ``fallback``; (result, pipeline, SR spy)."""
    sr = RecordingSR(bundle.sr)
    swapped = dataclasses.replace(bundle, landmarker=Landmarker(bundle.landmarker, fallback, reject_all), sr=sr)
    pipe = Pipeline(swapped, PipelineConfig(min_face_px=min_face_px), stats=Stats(extra_counters=EXTRA_COUNTERS))
    return pipe.process(Frame(0, time.monotonic(), image), "test"), pipe, sr


@pytest.fixture(scope="module")
def large_face() -> np.ndarray:
    return BuiltinSequence(1, face_px=(150, 150)).render(0)


def test_a_rejected_face_is_upscaled_from_keypoints_with_the_mean_shape(bundle, large_face):
    result, pipe, sr = run(bundle, "keypoints", True, large_face)
    assert len(result.faces) == len(result.events) == 1, result.counts
    face = result.faces[0]
    assert not face.aligned.found and sr.found == [[False]]  # the SR model is told: not found
    np.testing.assert_array_equal(face.aligned.landmarks_full, landmark_graph.mean_shape())
    assert face.sr.shape == (128, 128, 3)
    event = face.event
    assert event.landmarks == "keypoints" and event.to_dict()["landmarks"] == "keypoints"
    assert math.isnan(event.guard.landmark_error) and event.to_dict()["guard"]["landmark_error"] is None
    expression_checks = event.guard.reference_prob >= 0.15 and event.guard.kl <= 1.0
    assert event.guard.kl >= 0 and event.guard.preserved == (event.sr_model != "camera" and expression_checks)
    if event.sr_model == "camera":  # no landmark check, and the expression checks do not count there
        assert event.guard.verdict == "unverified"
    assert result.counts == {"keypoint_faces": 1, "faces": 1, f"guard_{event.guard.verdict}": 1}
    assert pipe.stats.counter("keypoint_faces") == 1 and pipe.stats.counter("no_landmarks") == 0
    assert 'edge_affectsr_keypoint_faces_total{camera="cam"} 1.0' in Metrics(pipe.stats, "cam").render().decode()
    assert pipe.stats.snapshot()["counters"]["keypoint_faces"] == 1  # /api/stats


def test_skip_drops_a_rejected_face_as_before(bundle, large_face):
    result, pipe, sr = run(bundle, "skip", True, large_face)
    assert result.faces == [] and result.counts == {"no_landmarks": 1} and sr.found == []
    assert pipe.stats.counter("keypoint_faces") == 0


def test_faces_facemesh_accepts_take_the_facemesh_path_either_way(bundle, large_face):
    """Both paths on the same face: the keypoint crop is close to the FaceMesh one (a large face)."""
    (result, pipe, sr), (fallback, _, _) = run(bundle, "keypoints", False, large_face), run(bundle, "keypoints", True, large_face)
    face = result.faces[0]
    assert face.aligned.found and face.event.landmarks == "facemesh" and sr.found == [[True]]
    assert math.isfinite(face.event.guard.landmark_error) and "keypoint_faces" not in result.counts
    corners = np.array([[0, 0], [128, 0], [0, 128], [128, 128]], float)
    in_frame = [transform_points(cv2.invertAffineTransform(f.aligned.matrix), corners) for f in (face, fallback.faces[0])]
    assert np.abs(in_frame[0] - in_frame[1]).max() < 0.15 * face.aligned.face_px  # measured: 0.07


def test_a_small_blurred_face_facemesh_really_rejects(bundle):
    """The built-in face at 24 px, JPEG on the whole frame: FaceMesh rejects it; the default upscales it."""
    photo = Image.fromarray(np.asarray(builtin_face()))
    staged = stage(photo, SmallFaces.parse("jpeg:24", (8, 6)), 0)
    det = next(d for d in bundle.detector.detect(staged.frame_bgr) if on_face(d.bbox, staged.box))
    assert not bundle.landmarker.found(bundle.landmarker(staged.frame_bgr, det))
    result, pipe, _ = run(bundle, "keypoints", False, staged.frame_bgr, min_face_px=8)
    faces = [f for f in result.faces if on_face(f.event.bbox, staged.box)]
    assert len(faces) == 1 and faces[0].event.landmarks == "keypoints" and pipe.stats.counter("keypoint_faces") >= 1
    skipped, _, _ = run(bundle, "skip", False, staged.frame_bgr, min_face_px=8)
    assert not any(on_face(f.event.bbox, staged.box) for f in skipped.faces) and skipped.counts.get("no_landmarks")


def test_the_default_is_keypoints_and_the_daemon_counts_it():
    assert LandmarkConfig().fallback == "keypoints"
    assert "keypoint_faces" in DAEMON_COUNTERS and "no_landmarks" in DAEMON_COUNTERS
