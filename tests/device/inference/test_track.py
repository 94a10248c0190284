"""device/inference/track.py: one stable id per face across frames."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.inference.track import IouTracker, TrackerConfig


def box(x: float, y: float, side: float = 60.0) -> list[float]:
    return [x, y, x + side, y + side]


def test_ids_are_stable_while_faces_move():
    tracker = IouTracker()
    first = tracker.update([box(100, 100), box(400, 200)])
    assert first == [1, 2]
    for step in range(1, 20):  # both drift 5 px per frame, listed in either order
        a, b = box(100 + 5 * step, 100 + 2 * step), box(400 - 5 * step, 200)
        ids = tracker.update([b, a] if step % 2 else [a, b])
        assert ids == ([2, 1] if step % 2 else [1, 2])
    assert [t.hits for t in tracker.tracks] == [20, 20]


def test_a_new_face_gets_a_new_id():
    tracker = IouTracker()
    tracker.update([box(100, 100)])
    assert tracker.update([box(102, 101), box(300, 300)]) == [1, 2]
    assert tracker.update([box(500, 100)]) == [3]  # far from both: new person, not a jump


def test_tracks_expire_after_max_missed_and_ids_are_not_reused(caplog):
    tracker = IouTracker(TrackerConfig(max_missed=2))
    tracker.update([box(100, 100)])
    with caplog.at_level(logging.INFO, logger="edge_affectsr.device.inference.track"):
        assert tracker.update([]) == [] and len(tracker.tracks) == 1
        assert tracker.update([]) == [] and len(tracker.tracks) == 1  # missed 2 = still alive
        assert tracker.update([box(101, 100)]) == [1]  # back: same id, miss count reset
        for _ in range(3):
            tracker.update(np.empty((0, 4)))
    assert tracker.tracks == []
    assert any("track 1 expired" in r.getMessage() for r in caplog.records)
    assert tracker.update([box(100, 100)]) == [2]


def test_greedy_matching_gives_each_track_its_best_box():
    tracker = IouTracker()
    tracker.update([box(100, 100), box(150, 100)])  # two overlapping faces
    ids = tracker.update([box(152, 100), box(98, 100)])
    assert ids == [2, 1]


def test_low_overlap_is_not_a_match_without_the_centre_fallback():
    tracker = IouTracker(TrackerConfig(iou_threshold=0.5, centre_distance=0))
    tracker.update([box(100, 100)])
    assert tracker.update([box(130, 100)]) == [2]  # IoU 1/3 < 0.5


def test_a_fast_small_face_keeps_its_id_by_its_centre():
    """A 30 px face moving 27 px a frame (no overlap after two frames) stays one track; a face
    appearing more than a box side away from any track is someone else."""
    tracker = IouTracker()
    ids = [tracker.update([box(100 + 27 * step, 100, side=30)]) for step in range(6)]
    assert ids == [[1]] * 6
    assert tracker.update([box(262, 100, side=30), box(262, 200, side=30)]) == [1, 2]  # 100 px below: new
    off = IouTracker(TrackerConfig(centre_distance=0))
    assert [off.update([box(100 + 27 * step, 100, side=30)]) for step in range(3)] == [[1], [2], [3]]


def test_the_centre_fallback_pairs_only_what_iou_left_and_only_near():
    """IoU pairs first; the fallback continues a track no box overlapped with a box within one side,
    and a box further away than that from a missed track starts a new one."""
    tracker = IouTracker(TrackerConfig(centre_distance=1.0))
    tracker.update([box(100, 100), box(250, 100)])  # two faces 150 px (2.5 sides) apart
    assert tracker.update([box(104, 100), box(190, 100)]) == [1, 2]  # 2nd jumped 60 px: 1 side, IoU 0
    assert tracker.update([box(108, 100)]) == [1]  # face 2 missed this frame
    assert tracker.update([box(108, 100), box(290, 100)]) == [1, 3]  # 100 px from face 2: 1.67 sides


def test_config_is_validated():
    with pytest.raises(ConfigError, match="max_miss: unknown key"):
        validate({"max_miss": 3}, TrackerConfig)
