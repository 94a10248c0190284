"""device/capture/builtin.py: the synthetic far-camera clip, and BlazeFace finding its small face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_affectsr.builtin_face import FACE_PATH, builtin_face
from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.config import BuiltinSourceConfig
from edge_affectsr.device.capture.sources import open_source
from edge_affectsr.runtime.detect import MODEL_NAME, DetectorConfig, FaceDetector, iou_matrix, mediapipe_model_path


@pytest.fixture(scope="module")
def clip() -> tuple[BuiltinSequence, list]:
    seq = BuiltinSequence(frames=60)
    return seq, list(seq)


def test_the_face_ships_in_the_package_small():
    assert FACE_PATH.is_file() and FACE_PATH.stat().st_size < 20_000
    face = builtin_face()
    assert face.shape == (190, 190, 3) and face.dtype == np.uint8


def test_frames_are_640x480_bgr_with_a_small_moving_face(clip):
    seq, frames = clip
    assert len(frames) == 60 and [f.index for f in frames] == list(range(60))
    boxes = np.array([seq.face_box(i) for i in range(60)])
    sides = boxes[:, 2] - boxes[:, 0]
    assert sides.min() == 64 and sides.max() == 112 and (boxes[:, 3] - boxes[:, 1] == sides).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 480).all()
    assert np.ptp(boxes[:, 0]) > 300 and np.ptp(boxes[:, 1]) > 100  # it travels
    for i in (0, 17, 45):
        image = frames[i].image
        assert image.shape == (480, 640, 3) and image.dtype == np.uint8
        x0, y0, x1, y1 = seq.face_box(i)
        face_bgr = cv2.cvtColor(builtin_face(), cv2.COLOR_RGB2BGR)
        pasted = cv2.resize(face_bgr, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(image[y0:y1, x0:x1], pasted)
        assert image[5, 5].tolist() == image[5, 600].tolist()  # plain background elsewhere


def test_config_opens_it_and_frames_match():
    source = open_source(BuiltinSourceConfig(kind="builtin", frames=3))
    assert isinstance(source, BuiltinSequence) and len(list(source)) == 3


def test_the_face_is_detected_in_most_frames(clip):
    seq, frames = clip
    detector = FaceDetector(mediapipe_model_path(MODEL_NAME), DetectorConfig(tiles=(3, 2), tiles_per_call=None))
    found = 0
    for frame in frames:
        dets = detector.detect(frame.image)
        if not dets:
            continue
        assert len(dets) == 1
        square = np.array([seq.face_box(frame.index)], float)
        x0, y0, x1, y1 = dets[0].bbox
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        assert square[0, 0] < cx < square[0, 2] and square[0, 1] < cy < square[0, 3]
        assert iou_matrix(np.array([dets[0].bbox]), square)[0, 0] > 0.2  # the face is ~55 % of the square
        found += 1
    assert found >= 0.9 * len(frames)
