"""Small faces: the zoom-level tile schedule (runtime/scan.py), NMS across tiles (runtime/nms.py), track
mosaics (runtime/roi_detect.py), and BlazeFace finding the built-in face pasted 18-24 px wide into a
1280x720 frame (no shared data needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.runtime.align import CANONICAL_BOX
from edge_affectsr.runtime.detect import (
    FULL_RANGE_NAME, MODEL_NAME, MODELS, Detection, DetectorConfig, FaceDetector, iou_matrix, mediapipe_model_path,
)
from edge_affectsr.runtime.frames import BACKGROUND
from edge_affectsr.runtime.nms import drop_nested, merge_regions
from edge_affectsr.runtime.roi_detect import RoiConfig, TrackingDetector
from edge_affectsr.runtime.scan import ScanSchedule, square_tiles, zoom_levels

HD = (720, 1280)  # rows, columns


def face_frame(places: list[tuple[int, int]], face_px: float | list[float],
               size: tuple[int, int] = HD) -> tuple[np.ndarray, np.ndarray]:
    """The built-in face with a box ``face_px`` wide (one width, or one per place) at each top-left corner;
    (BGR frame, true boxes [n, 4])."""
    widths = face_px if isinstance(face_px, list) else [face_px] * len(places)
    frame = np.empty((*size, 3), np.uint8)
    frame[:] = BACKGROUND
    boxes = []
    for (x, y), width in zip(places, widths):
        side = round(width / (CANONICAL_BOX[2] - CANONICAL_BOX[0]))
        frame[y:y + side, x:x + side] = cv2.resize(cv2.cvtColor(builtin_face(), cv2.COLOR_RGB2BGR), (side, side),
                                                   interpolation=cv2.INTER_AREA)
        boxes.append(np.asarray(CANONICAL_BOX) * side + [x, y, x, y])
    return frame, np.array(boxes)


def covered(tiles, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for x, y, w, h in tiles:
        mask[y:y + h, x:x + w] = True
    return mask


def det(box, score: float) -> Detection:
    return Detection(tuple(float(v) for v in box), score, np.zeros((6, 2), np.float32))


# --- the schedule ---------------------------------------------------------------------------------


def test_zoom_levels_shrink_each_level_to_the_previous_overlap():
    """Short-range (16 px floor of 128) down to 16 px faces on 1280x720: tiles of 128, 256, 512, 1024 px."""
    levels = zoom_levels(1280, 720, 128, 16.0, 16.0, 0.25)
    assert [lv[0][2] for lv in levels] == [128, 256, 512, 1024]
    for level in levels:
        assert covered(level, 1280, 720).all()
        side = level[0][2]
        xs = sorted({x for x, _, _, _ in level})
        assert all(b - a <= side * 0.75 + 1 for a, b in zip(xs, xs[1:]))  # neighbours overlap by >= 25 %
        assert all(x + w <= 1280 and y + h <= 720 for x, y, w, h in level)
    assert zoom_levels(1280, 720, 128, 16.0, 200.0, 0.25) == []  # a whole-frame face needs no tiles
    assert len(zoom_levels(640, 480, 128, 16.0, 32.0, 0.25)) == 2  # 256 and 512 px tiles


def test_square_tiles_are_cut_to_a_frame_smaller_than_them():
    tiles = square_tiles(1280, 720, 1024, 0.25)
    assert tiles == [(0, 0, 1024, 720), (256, 0, 1024, 720)]


def test_schedule_rotates_tiles_after_the_whole_frame_coarse_first():
    schedule = ScanSchedule(128, 16.0, 32.0, 0.25, tiles_per_call=3)
    tiles = schedule.tiles(640, 480)
    assert tiles[0][2] == 512 and tiles[-1][2] == 256  # coarse level first
    seen = []
    for _ in range(-(-len(tiles) // 3)):
        regions = schedule.regions(640, 480)
        assert regions[0] == (0, 0, 640, 480) and len(regions) == 4
        seen += regions[1:]
    assert set(seen) == set(tiles)
    first = ScanSchedule(128, 16.0, 32.0, 0.25, tiles_per_call=3).regions(640, 480)
    schedule.regions(640, 480)
    schedule.restart()
    assert schedule.regions(640, 480) == first  # a new input starts the rotation from the coarsest tile
    fixed = ScanSchedule(128, 16.0, 16.0, 0.25, tiles=(3, 2))
    assert len(fixed.regions(640, 480)) == 7 and ScanSchedule(128, 16.0, 16.0, 0.25, tiles=(1, 1)).regions(64, 48) == [(0, 0, 64, 48)]


def test_zoom_levels_need_overlapping_tiles():
    with pytest.raises(ValueError, match="overlap"):
        zoom_levels(1280, 720, 128, 16.0, 16.0, 0.0)


# --- NMS across tiles -----------------------------------------------------------------------------------


def test_a_face_seen_by_several_regions_is_one_detection():
    """Tile A (0..90) cuts the face at x=90: a third of a box, IoU 0.25 with the whole one, so NMS alone
    keeps both; tile B (60..160) and the whole frame see it whole (merged by NMS, IoU 0.85)."""
    kps = np.zeros((1, 6, 2), np.float32)
    cut = (np.array([[84.0, 40, 90, 64]]), kps, np.array([0.6], np.float32))
    whole = (np.array([[84.0, 40, 108, 64]]), kps, np.array([0.9], np.float32))
    frame = (np.array([[83.0, 39, 109, 65]]), kps, np.array([0.7], np.float32))
    assert iou_matrix(cut[0], whole[0])[0, 0] < 0.3
    merged = merge_regions([cut, whole, frame], 0.3, 10)
    assert len(merged) == 1 and merged[0].score == pytest.approx(0.9)
    np.testing.assert_allclose(merged[0].bbox, (83.5625, 39.5625, 108.4375, 64.4375), atol=1e-4)  # 0.9 / 0.7 weighted mean
    other = (np.array([[10.0, 10, 30, 30]]), kps, np.array([0.5], np.float32))
    assert len(merge_regions([cut, whole, other], 0.3, 10)) == 2 and len(merge_regions([cut, whole, other], 0.3, 1)) == 1
    assert merge_regions([(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))], 0.3, 10) == []


def test_nested_boxes_keep_the_better_face_and_a_box_round_a_crowd_goes():
    face, hair = det((100, 100, 120, 120), 0.9), det((92, 90, 132, 130), 0.6)  # hair box: IoU 0.25, nested
    assert drop_nested([face, hair]) == [face]
    crowd = det((0, 0, 400, 400), 0.95)  # the best score, but it holds two faces' centres
    other = det((300, 300, 320, 320), 0.7)
    assert drop_nested([crowd, face, other]) == [face, other]
    apart = [face, det((200, 100, 220, 120), 0.8)]
    assert drop_nested(apart) == apart


# --- the real model -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path():
    return mediapipe_model_path(MODEL_NAME)


def test_zoom_levels_find_small_faces_the_old_grid_misses(model_path):
    places = [(200, 150), (640, 420), (1100, 80)]
    frame, truth = face_frame(places, 18)
    zoom = FaceDetector(model_path, DetectorConfig(tiles_per_call=None)).detect(frame)
    assert len(zoom) == 3
    assert (iou_matrix(truth, np.array([d.bbox for d in zoom])).max(axis=1) > 0.4).all()
    assert FaceDetector(model_path, DetectorConfig(tiles=(3, 2), tiles_per_call=None)).detect(frame) == []


def test_track_mosaics_find_tracked_faces_with_one_call_per_four(model_path):
    """No tiles at all: only the tracks' squares, four per model call, find the four faces (16-24 px)."""
    places = [(100, 100), (500, 300), (900, 500), (1200, 40)]
    frame, truth = face_frame(places, [16, 18, 20, 24])
    scanner = FaceDetector(model_path, DetectorConfig().whole_frame())
    roi = FaceDetector(model_path, DetectorConfig().whole_frame())
    calls = []
    run = roi.model.run
    roi.model.run = lambda **kw: calls.append(1) or run(**kw)
    tracking = TrackingDetector(scanner, roi, RoiConfig(per_call=4))
    found = tracking.detect(frame, list(truth + [1.5, -1.0, 1.5, -1.0]))  # last frame's boxes, a little off
    assert len(calls) == 1 and len(found) == 4
    assert (iou_matrix(truth, np.array([d.bbox for d in found])).max(axis=1) > 0.4).all()
    assert scanner.detect(frame) == []  # the whole frame alone sees none of them


def test_a_round_of_tiles_takes_scan_frames_frames_whatever_the_frame_size():
    hd = ScanSchedule(128, 16.0, 20.0, 0.25, tiles_per_call=1, scan_frames=8)
    assert len(hd.tiles(1280, 720)) == 87 and hd.per_frame(1280, 720) == 11
    vga = ScanSchedule(128, 16.0, 20.0, 0.25, tiles_per_call=1, scan_frames=8)
    assert len(vga.tiles(640, 480)) == 26 and vga.per_frame(640, 480) == 4 and len(vga.regions(640, 480)) == 5
    assert ScanSchedule(128, 16.0, 20.0, 0.25, tiles_per_call=6, scan_frames=8).per_frame(640, 480) == 6  # the floor
    assert ScanSchedule(128, 16.0, 20.0, 0.25, tiles_per_call=None, scan_frames=8).per_frame(640, 480) is None  # all


def test_full_range_model_is_told_apart_by_its_shapes():
    detector = FaceDetector(mediapipe_model_path(FULL_RANGE_NAME), DetectorConfig(tiles_per_call=None))
    assert detector.spec is MODELS["full_range"] and detector.size == 192 and len(detector.anchors) == 2304
    frame, truth = face_frame([(300, 200)], 40, (480, 640))
    found = detector.detect(frame)
    assert len(found) == 1 and iou_matrix(truth, np.array([found[0].bbox]))[0, 0] > 0.4
