"""The guard's three verdicts in every output that shows one: the annotated video's box colours, the
live view's boxes and history points, the per-face CSV. Three faces of one frame, one per verdict."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from _device_events import LABELS, make_event
from edge_affectsr.device.reporting.events import GUARD_VERDICTS, Guard
from edge_affectsr.device.reporting.face_report import FaceReport
from edge_affectsr.device.reporting.live_state import LiveState, ShownFace
from edge_affectsr.device.reporting.video_out import COLORS, annotate


@pytest.fixture
def faces() -> list[ShownFace]:
    """A kept, a changed and an unverified face side by side in a 480x640 frame."""
    out = []
    for i, verdict in enumerate(GUARD_VERDICTS):
        error = math.nan if verdict == "unverified" else 0.05
        guard = Guard.judged(verdict, agreement=True, kl=0.1, landmark_error=error)
        event = make_event(i, track_id=i + 1, bbox=(60 + 180 * i, 250, 180 + 180 * i, 370), guard=guard)
        out.append(ShownFace(event, np.zeros((32, 32, 3), np.uint8), np.full((128, 128, 3), 128, np.uint8)))
    return out


def test_the_video_boxes_each_face_in_its_verdicts_colour(faces):
    frame = np.zeros((480, 640, 3), np.uint8)
    out = annotate(frame, faces)
    for face in faces:
        x0, y0, x1, y1 = (int(v) for v in face.event.bbox)
        assert tuple(out[(y0 + y1) // 2, x0]) == COLORS[face.event.guard.verdict]  # the box's left edge
    assert len({COLORS[v] for v in GUARD_VERDICTS}) == 3


def test_the_live_view_sends_the_verdict_and_ticks_only_changed_faces(faces):
    state = LiveState(preview=False)
    state.observe(0, np.zeros((480, 640, 3), np.uint8), faces, "test")
    message = state.message()
    assert [b["verdict"] for b in message["boxes"]] == list(GUARD_VERDICTS)
    assert [b["preserved"] for b in message["boxes"]] == [True, False, False]
    assert [points[-1][3] for points in message["history"].values()] == list(GUARD_VERDICTS)
    assert sorted(f["guard"]["verdict"] for f in message["faces"]) == sorted(GUARD_VERDICTS)


def test_the_csv_report_has_a_verdict_column(faces, tmp_path):
    report = FaceReport(tmp_path / "faces.csv", LABELS)
    report.write([f.event for f in faces])
    report.close()
    with open(tmp_path / "faces.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["verdict"], r["preserved"], r["landmark_error"]) for r in rows] == [
        ("preserved", "True", "0.05"), ("changed", "False", "0.05"), ("unverified", "False", "")]
