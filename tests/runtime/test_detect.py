"""edge_affectsr/runtime/detect.py: BlazeFace short-range run for real on face photos pasted into 640x480
frames: CelebA val photos where ../shared/data is, variants of the built-in face elsewhere."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import pytest

from edge_affectsr.runtime.detect import (
    MODEL_NAME, NUM_ANCHORS, Detection, DetectorConfig, FaceDetector, ModelFileError, iou_matrix,
    mediapipe_model_path, ssd_anchors, weighted_nms,
)
from edge_affectsr.runtime.scan import tile_regions
from synthetic_faces import val_photos

# BlazeFace's face box inside a CelebA aligned 178x218 image, as fractions (x0, y0, x1, y1): the
# mean over 100 val faces detected at full size. CelebA's own alignment puts the eyes at
# (0.39, 0.51) and (0.61, 0.51); the detector's eye keypoints agree (0.37/0.62, 0.51).
CELEBA_FACE_BOX = np.array([0.21, 0.373, 0.801, 0.856])
# The same for the built-in face's variants of synthetic_faces.val_photos: the mean over the six,
# detected 160 px wide.
VARIANT_FACE_BOX = np.array([0.189, 0.302, 0.77, 0.883])


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(mediapipe_model_path(MODEL_NAME), DetectorConfig().whole_frame())


@pytest.fixture(scope="module")
def tiled() -> FaceDetector:
    return FaceDetector(mediapipe_model_path(MODEL_NAME), DetectorConfig(tiles=(3, 2), tiles_per_call=None))


class Photo(NamedTuple):
    image: np.ndarray  # BGR [H, W, 3]
    face_box: np.ndarray  # where BlazeFace puts the face in it, as fractions (x0, y0, x1, y1)


@pytest.fixture(scope="module")
def photos() -> list[Photo]:
    files, real = val_photos(6, step=100)
    return [Photo(cv2.imread(str(f)), CELEBA_FACE_BOX if real else VARIANT_FACE_BOX) for f in files]


def blank(color=(60, 110, 90), size=(480, 640)) -> np.ndarray:
    frame = np.empty((*size, 3), np.uint8)
    frame[:] = color
    return frame


def paste(frame: np.ndarray, face: Photo, x: int, y: int, width: int) -> np.ndarray:
    """Paste a face photo ``width`` px wide at (x, y); returns the expected face box."""
    height = round(width * face.image.shape[0] / face.image.shape[1])
    frame[y:y + height, x:x + width] = cv2.resize(face.image, (width, height), interpolation=cv2.INTER_AREA)
    return face.face_box * [width, height, width, height] + [x, y, x, y]


def iou(det: Detection, box: np.ndarray) -> float:
    return float(iou_matrix(np.array([det.bbox]), np.asarray(box, float)[None])[0, 0])


# --- post-processing --------------------------------------------------------------------------------


def test_anchors_match_mediapipe_short_range_layout():
    a = ssd_anchors()
    assert a.shape == (NUM_ANCHORS, 2)
    # stride 8: a 16x16 grid, 2 anchors per cell, row-major, centred in the cell
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[511], [15.5 / 16, 15.5 / 16])
    # strides 16, 16, 16 combined: an 8x8 grid, 6 anchors per cell
    np.testing.assert_allclose(a[512:518], np.tile([0.5 / 8, 0.5 / 8], (6, 1)))
    np.testing.assert_allclose(a[518], [1.5 / 8, 0.5 / 8])
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_merges_overlaps_and_keeps_the_rest():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    kps[1] += 3.0
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    out = weighted_nms(boxes, kps, scores, iou_threshold=0.3, max_faces=10)
    assert [round(d.score, 2) for d in out] == [0.9, 0.7]
    np.testing.assert_allclose(out[0].bbox, [0.4, 0, 10.4, 10], atol=1e-5)  # 0.9/1.5 and 0.6/1.5 weights
    np.testing.assert_allclose(out[0].keypoints, 1.2, atol=1e-5)
    assert out[1].bbox == (50, 50, 60, 60)
    assert len(weighted_nms(boxes, kps, scores, 0.3, max_faces=1)) == 1


def test_tiles_cover_the_frame_with_overlap():
    tiles = tile_regions(640, 480, 3, 2, 0.25)
    assert len(tiles) == 6
    covered = np.zeros((480, 640), bool)
    for x, y, w, h in tiles:
        covered[y:y + h, x:x + w] = True
    assert covered.all()
    assert tile_regions(640, 480, 1, 1, 0.25) == [(0, 0, 640, 480)]


def test_model_path_helper_names_what_is_missing():
    assert mediapipe_model_path(MODEL_NAME).stat().st_size > 100_000
    with pytest.raises(ModelFileError, match="no_such_model.tflite"):
        mediapipe_model_path("no_such_model.tflite")


# --- the real model -----------------------------------------------------------------------------------


def test_blank_frames_have_no_face(detector, tiled):
    assert detector.detect(blank()) == []
    assert tiled.detect(blank((0, 0, 0))) == []
    gradient = np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], 480, 0).repeat(3, 2)
    assert detector.detect(np.ascontiguousarray(gradient)) == []


def test_face_is_found_where_it_was_pasted(detector, photos):
    for i, face in enumerate(photos):
        frame = blank()
        expected = paste(frame, face, x=40 + 80 * i, y=30 + 40 * i, width=160)
        found = detector.detect(frame)
        assert len(found) == 1, f"face {i}: {len(found)} detections"
        d = found[0]
        assert iou(d, expected) > 0.5, f"face {i}: IoU {iou(d, expected):.2f}"
        assert d.score > 0.5 and d.keypoints.shape == (6, 2)
        right_eye, left_eye, _, mouth = d.keypoints[:4]
        assert right_eye[0] < left_eye[0]  # the subject's right eye is on the image's left
        assert max(right_eye[1], left_eye[1]) < mouth[1]


def test_small_faces_are_found_with_tiles(tiled, detector, photos):
    """~64 px faces (72 px aligned crops) on a 640x480 frame: below what the whole-frame pass sees."""
    for i, face in enumerate(photos):
        frame = blank()
        expected = paste(frame, face, x=30 + 97 * i, y=40 + 60 * i, width=72)
        found = tiled.detect(frame)
        assert len(found) == 1 and iou(found[0], expected) > 0.5, f"face {i}"
    assert detector.detect(frame) == []  # the reason tiles exist


def test_three_faces_give_three_detections(detector, photos):
    frame = blank()
    expected = [paste(frame, photos[0], 20, 20, 150), paste(frame, photos[1], 240, 200, 150),
                paste(frame, photos[2], 460, 40, 150)]
    found = detector.detect(frame)
    assert len(found) == 3
    for box in expected:
        assert max(iou(d, box) for d in found) > 0.5


def test_letterbox_is_undone_on_portrait_frames(detector, photos):
    """A 480x640 (portrait) frame pads left/right instead of top/bottom."""
    frame = blank(size=(640, 480))
    expected = paste(frame, photos[3], 300, 400, 160)
    found = detector.detect(frame)
    assert len(found) == 1 and iou(found[0], expected) > 0.5


def test_tiles_in_rotation_find_the_face_within_one_round(photos):
    det = FaceDetector(mediapipe_model_path(MODEL_NAME), DetectorConfig(tiles=(3, 2), tiles_per_call=2))
    frame = blank()
    expected = paste(frame, photos[4], 500, 300, 72)  # bottom-right tile
    calls = [det.detect(frame) for _ in range(3)]  # tiles 0-1, 2-3, 4-5 (bottom-right is the last)
    assert [len(c) for c in calls] == [0, 0, 1]
    assert iou(calls[2][0], expected) > 0.5
