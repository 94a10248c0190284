"""device/reporting/events.py: the event record every sink writes, and its one-line JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from _device_events import make_event, make_track_event
from edge_affectsr.device.reporting.events import FaceEvent, Guard, TrackEvent, format_time, parse_time, utc_now_iso


def test_json_is_one_line_with_every_field():
    line = make_event(7, track_id=4).to_json()
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == ["time", "kind", "frame", "source", "file", "track_id", "bbox", "lr_size", "landmarks", "expression",
                          "probabilities", "raw_expression", "raw_probabilities", "guard", "latency_ms", "model",
                          "model_version"]
    assert data["kind"] == "face" and data["raw_probabilities"] == data["probabilities"]  # not smoothed: the same
    assert data["landmarks"] == "facemesh"  # the default path
    assert data["frame"] == 7 and data["track_id"] == 4 and data["lr_size"] == [32, 32]
    assert data["guard"] == {"preserved": True, "agreement": True, "kl": 0.012, "landmark_error": 0.031, "fallback": False,
                             "reference_prob": None, "landmark_checked": True, "reference": "bicubic",
                             "verdict": "preserved"}
    assert data["latency_ms"]["sr"] == 2.9 and data["expression"] == "happy"
    assert parse_time(data["time"]).tzinfo is not None and data["time"].endswith("Z")


def test_numpy_values_from_the_pipeline_become_plain_json():
    event = make_event(frame=np.int64(3), track_id=np.int32(2), bbox=np.array([1, 2, 3, 4.5], np.float32),
                       lr_size=np.array([16, 16]), probabilities={"happy": np.float32(0.9), "sad": np.float32(0.1)},
                       guard=Guard(np.bool_(False), np.bool_(True), np.float32(0.25), np.float64(0.1), np.bool_(True)),
                       latency_ms={"sr": np.float64(2.0004)})
    data = json.loads(event.to_json())
    assert data["frame"] == 3 and data["bbox"] == [1.0, 2.0, 3.0, 4.5] and data["lr_size"] == [16, 16]
    assert data["probabilities"] == {"happy": 0.9, "sad": 0.1}  # float32 noise rounded away
    assert data["guard"]["preserved"] is False and data["guard"]["fallback"] is True
    assert type(event.frame) is int and type(event.guard.kl) is float


def test_non_finite_numbers_are_null_not_invalid_json():
    event = make_event(guard=Guard(False, False, math.nan, math.inf), latency_ms={"sr": math.nan})
    line = event.to_json()
    assert "NaN" not in line and "Infinity" not in line
    data = json.loads(line)
    assert data["guard"]["kl"] is None and data["guard"]["landmark_error"] is None and data["latency_ms"]["sr"] is None


def test_round_trip_and_immutability():
    event = make_event(5)
    again = FaceEvent.from_json(event.to_json())
    assert again == event
    assert FaceEvent.from_dict({"id": 12, **event.to_dict()}) == event  # a stored row carries its id
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.frame = 6  # type: ignore[misc]


def test_the_landmark_path_is_recorded_and_old_events_read_as_facemesh():
    event = make_event(3, landmarks="keypoints", guard=Guard(True, True, 0.1, math.nan))
    data = json.loads(event.to_json())
    assert data["landmarks"] == "keypoints" and data["guard"]["landmark_error"] is None
    assert FaceEvent.from_json(event.to_json()).landmarks == "keypoints"
    old = {k: v for k, v in make_event(3).to_dict().items() if k != "landmarks"}  # written before the field
    assert FaceEvent.from_dict(old).landmarks == "facemesh"
    with pytest.raises(ValueError, match="landmarks"):
        make_event(landmarks="dlib")


def test_guard_may_be_given_as_a_dict():
    event = make_event(guard={"preserved": True, "agreement": False, "kl": 0.5, "landmark_error": 0.2})
    assert event.guard == Guard(True, False, 0.5, 0.2, False)


def test_the_guard_reference_is_recorded_and_old_events_read_as_bicubic():
    event = make_event(guard=Guard(True, False, 0.5, 0.2, reference="calibrated"))
    assert json.loads(event.to_json())["guard"]["reference"] == "calibrated"
    assert FaceEvent.from_json(event.to_json()).guard.reference == "calibrated"
    old = make_event().to_dict()
    del old["guard"]["reference"]  # written before the field
    assert FaceEvent.from_dict(old).guard.reference == "bicubic"
    with pytest.raises(ValueError, match="guard reference"):
        Guard(True, True, 0.1, 0.1, reference="hr")


def test_the_verdict_is_recorded_and_old_events_read_as_preserved_or_changed():
    unverified = make_event(guard=Guard.judged("unverified", agreement=False, kl=0.4, landmark_error=math.nan,
                                               landmark_checked=False))
    data = json.loads(unverified.to_json())["guard"]
    assert data["verdict"] == "unverified" and data["preserved"] is False  # not verified is not preserved
    assert FaceEvent.from_json(unverified.to_json()) == unverified
    for preserved, verdict in ((True, "preserved"), (False, "changed")):
        old = make_event(guard=Guard(preserved, True, 0.1, 0.05)).to_dict()
        del old["guard"]["verdict"]  # written before the field: two verdicts only
        assert FaceEvent.from_dict(old).guard.verdict == verdict
    with pytest.raises(ValueError, match="contradicts"):
        Guard(True, True, 0.1, 0.1, verdict="unverified")
    with pytest.raises(ValueError, match="guard verdict"):
        Guard(False, True, 0.1, 0.1, verdict="maybe")


def test_a_track_without_verified_upscales_has_no_pass_rate_and_old_tracks_none_unverified():
    none_verified = make_track_event(guard_pass_rate=math.nan, guard_unverified=90)
    data = json.loads(none_verified.to_json())
    assert data["guard_pass_rate"] is None and data["guard_unverified"] == 90
    again = TrackEvent.from_json(none_verified.to_json())
    assert math.isnan(again.guard_pass_rate) and again.guard_unverified == 90
    track = make_track_event()
    old = track.to_dict()
    del old["guard_unverified"]  # written before the field: every upscale was verified
    assert TrackEvent.from_dict(old) == track and track.guard_unverified == 0


@pytest.mark.parametrize("field,value", [("bbox", (1, 2, 3)), ("lr_size", (32,))])
def test_malformed_geometry_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        make_event(**{field: value})


def test_times_are_fixed_width_utc_and_sort_as_text():
    a = datetime(2025, 1, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
    b = a + timedelta(milliseconds=1)
    assert format_time(a) == "2025-01-31T23:59:59.999Z" and format_time(b) == "2025-02-01T00:00:00.000Z"
    assert format_time(a) < format_time(b)
    assert format_time(a.astimezone(timezone(timedelta(hours=2)))) == format_time(a)
    assert parse_time("2025-01-31T12:00:00") == datetime(2025, 1, 31, 12, tzinfo=timezone.utc)  # naive = UTC
    assert len(utc_now_iso()) == 24
