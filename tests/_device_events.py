"""Realistic event factories (face, track, group) shared by the device reporting tests (and their child processes)."""

from __future__ import annotations

from edge_affectsr.device.reporting.events import FaceEvent, GroupEvent, Guard, TrackEvent

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def make_event(i: int = 0, *, track_id: int | None = None, time: str | None = None, **overrides) -> FaceEvent:
    """Event number ``i``: frame i, a face drifting right, 'happy' with a preserved expression."""
    probs = {label: 0.01 for label in LABELS}
    probs["happy"] = 0.94
    fields = dict(
        frame=i, source="builtin", track_id=track_id if track_id is not None else 1 + i % 3,
        bbox=(100.0 + i, 80.0, 164.0 + i, 144.0), lr_size=(32, 32), expression="happy", probabilities=probs,
        guard=Guard(preserved=True, agreement=True, kl=0.012, landmark_error=0.031, fallback=False),
        latency_ms={"detect": 2.5, "landmarks": 1.2, "sr": 2.9, "fer": 0.8, "guard": 0.6},
        model="affectsr-student-x4", model_version="0.1.0",
    )
    fields.update(overrides)
    if time is not None:
        fields["time"] = time
    return FaceEvent(**fields)


def make_track_event(track_id: int = 1, **overrides) -> TrackEvent:
    """A track that was mostly happy for 4 s."""
    fields = dict(source="builtin", track_id=track_id, start="2025-06-01T12:00:00.000Z", duration_s=4.0, frames=100,
                  upscales=90, expression="happy", share=0.8, probabilities=dict.fromkeys(LABELS, 0.05) | {"happy": 0.7},
                  guard_pass_rate=0.75, ended="lost", model="affectsr-student-x4", model_version="0.1.0")
    fields.update(overrides)
    return TrackEvent(**fields)


def make_group_event(**overrides) -> GroupEvent:
    """Three people over 10 s: two happy, one neutral."""
    histogram = dict.fromkeys(LABELS, 0) | {"happy": 2, "neutral": 1}
    probabilities = dict.fromkeys(LABELS, 0.05) | {"happy": 0.5, "neutral": 0.25}
    fields = dict(source="builtin", start="2025-06-01T12:00:00.000Z", window_s=10.0, frames=250, faces=3,
                  faces_per_frame=2.6, histogram=histogram, probabilities=probabilities)
    fields.update(overrides)
    return GroupEvent(**fields)
