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


def test_low_overlap_is_not_a_match():
    tracker = IouTracker(TrackerConfig(iou_threshold=0.5))
    tracker.update([box(100, 100)])
    assert tracker.update([box(130, 100)]) == [2]  # IoU 1/3 < 0.5


def test_config_is_validated():
    with pytest.raises(ConfigError, match="max_miss: unknown key"):
        validate({"max_miss": 3}, TrackerConfig)
