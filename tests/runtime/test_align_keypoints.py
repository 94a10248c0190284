"""edge_affectsr/runtime/align.py, the fallback without landmarks: a face placed from its BlazeFace detection.

Synthetic detections check the geometry (box -> scale and position, keypoints -> roll, shrunk on
tiny faces); the built-in face staged small and blurred in a whole camera frame (FaceMesh rejects
it there) checks that the crop puts its real eyes, nose and mouth where the mean shape has them.
The ground truth is FaceMesh on the clean 128 px HR crop the frame was rendered from, carried into
the frame by the staging's own geometry.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_affectsr import landmark_graph
from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.inference.guard import canonical_detection
from edge_affectsr.device.service.camera_small import SmallFaces, on_face, stage
from edge_affectsr.runtime.align import (CANONICAL_BOX, CANONICAL_KEYPOINTS, KEYPOINT_MESH_POINTS, Aligner,
                                         keypoint_template, matrix_scale, transform_points)
from edge_affectsr.runtime.detect import MODEL_NAME as DETECTOR_NAME
from edge_affectsr.runtime.detect import Detection, FaceDetector, mediapipe_model_path
from edge_affectsr.runtime.landmarks import MODEL_NAME as LANDMARK_NAME
from edge_affectsr.runtime.landmarks import FaceLandmarker

LR = 32
NODES = landmark_graph.subset_nodes("contours")


def placed_detection(side: float, angle_deg: float, centre: tuple[float, float]) -> tuple[Detection, np.ndarray]:
    """A detection of an aligned crop (BlazeFace's mean box; eyes, nose and mouth at the mean shape's
    points, the ears at BlazeFace's mean ones), carried into a frame by a known similarity (crop ->
    frame: ``side`` px for the 128 crop, rotated, centred at ``centre``); and that matrix."""
    a, k = math.radians(angle_deg), side / 128
    linear = k * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    to_frame = np.hstack([linear, (np.array(centre) - linear @ [64.0, 64.0])[:, None]])
    keypoints = transform_points(to_frame, np.vstack([keypoint_template(), CANONICAL_KEYPOINTS[4:]]) * 128)
    box_centre = transform_points(to_frame, np.array([[CANONICAL_BOX[0] + CANONICAL_BOX[2],
                                                        CANONICAL_BOX[1] + CANONICAL_BOX[3]]]) * 64.0)[0]
    half = (CANONICAL_BOX[2] - CANONICAL_BOX[0]) * side / 2  # BlazeFace's box does not turn with the face
    box = (box_centre[0] - half, box_centre[1] - half, box_centre[0] + half, box_centre[1] + half)
    return Detection(box, 0.9, keypoints.astype(np.float32)), to_frame


def roll_deg(matrix: np.ndarray) -> float:
    """The roll a frame -> crop matrix takes out (the face's tilt in the frame)."""
    return -math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))


def test_the_mean_shape_points_are_where_blazeface_puts_its_keypoints():
    template = keypoint_template()
    assert template.shape == (4, 2) and list(KEYPOINT_MESH_POINTS) == ["right_eye", "left_eye", "nose_tip", "mouth_center"]
    assert np.abs(template - np.array(CANONICAL_KEYPOINTS[:4])).max() < 0.01


def test_an_upright_face_is_placed_exactly():
    aligner = Aligner(LR, NODES)
    det, to_frame = placed_detection(96.0, 0.0, (300.0, 200.0))
    matrix = aligner.fit_keypoints(det)
    np.testing.assert_allclose(matrix, cv2.invertAffineTransform(to_frame), atol=1e-3)
    assert aligner.from_keypoints(np.zeros((480, 640, 3), np.uint8), det).face_px == pytest.approx(96.0, rel=1e-4)


def test_roll_is_kept_on_a_large_face_and_shrunk_on_a_tiny_one():
    """Eyes 20 px apart: noise 5 degrees, 80 % of a 20-degree roll kept; 5 px apart: 20 % kept."""
    eyes = float(np.linalg.norm(keypoint_template()[1] - keypoint_template()[0]))  # of the crop
    aligner = Aligner(LR, NODES)
    large, _ = placed_detection(20 / eyes, 20.0, (320.0, 240.0))
    tiny, _ = placed_detection(5 / eyes, 20.0, (320.0, 240.0))
    assert roll_deg(aligner.fit_keypoints(large)) == pytest.approx(20.0 * 0.8, abs=0.01)
    assert roll_deg(aligner.fit_keypoints(tiny)) == pytest.approx(20.0 * 0.2, abs=0.01)
    # the box fixes the scale and centre whatever the roll
    for det in (large, tiny):
        matrix = aligner.fit_keypoints(det)
        assert matrix_scale(matrix) == pytest.approx((CANONICAL_BOX[2] - CANONICAL_BOX[0]) * 128 / det.width)


def test_a_keypoint_face_carries_the_mean_shape_flagged_not_found():
    aligner = Aligner(LR, NODES)
    det, _ = placed_detection(40.0, 0.0, (320.0, 240.0))
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    face = aligner.from_keypoints(frame, det)
    mean = landmark_graph.mean_shape()
    assert not face.found and face.lr.shape == (LR, LR, 3) and face.hr.shape == (128, 128, 3)
    np.testing.assert_array_equal(face.landmarks_full, mean)
    np.testing.assert_array_equal(face.landmarks, mean[NODES])
    assert face.landmarks_full.dtype == np.float32 and face.face_px == pytest.approx(40.0, rel=1e-4)
    np.testing.assert_array_equal(face.lr, aligner.downsample(face.hr))  # downsampled as the aligner does


@pytest.fixture(scope="module")
def models():
    cells = {cell: SmallFaces.parse(cell, (8, 6)) for cell in ("lens:32", "jpeg:24")}
    detectors = {cell: FaceDetector(mediapipe_model_path(DETECTOR_NAME), spec.detector_config()) for cell, spec in cells.items()}
    return cells, detectors, FaceLandmarker(mediapipe_model_path(LANDMARK_NAME))


@pytest.mark.parametrize("cell, worst, median", [("lens:32", 0.10, 0.05), ("jpeg:24", 0.15, 0.08)])
def test_the_builtin_face_small_and_blurred_lands_near_the_mean_shape(models, cell, worst, median):
    """Six placements (seeds) of the built-in face; the crop puts the real eye centres, nose tip and
    mouth centre within ``worst`` of the crop's side of the mean shape's (the FaceMesh aligner on the
    clean crop: 0.011), their median within ``median``."""
    cells, detectors, landmarker = models
    aligner = Aligner(LR, NODES)
    photo = Image.fromarray(np.asarray(builtin_face()))
    template = keypoint_template()
    errors, rejected = [], 0
    for i in range(6):
        staged = stage(photo, cells[cell], i)
        clean = landmarker(cv2.cvtColor(staged.hr, cv2.COLOR_RGB2BGR), canonical_detection(128))
        assert landmarker.found(clean)
        x0, y0, side = staged.box
        k = side / 128  # HR px h sits at frame px x0 + (h + 0.5) k - 0.5
        truth = clean.points * k + [x0 + 0.5 * k - 0.5, y0 + 0.5 * k - 0.5]
        det = next(d for d in detectors[cell].detect(staged.frame_bgr) if on_face(d.bbox, staged.box))
        rejected += not landmarker.found(landmarker(staged.frame_bgr, det))
        points = np.stack([truth[list(p)].mean(axis=0) for p in KEYPOINT_MESH_POINTS.values()])
        errors.append(np.linalg.norm(transform_points(aligner.fit_keypoints(det), points) / 128 - template, axis=1))
    errors = np.array(errors)
    assert rejected >= 3  # the case the fallback is for: FaceMesh rejects these faces
    assert errors.max() < worst and np.median(errors) < median, errors.round(3)
