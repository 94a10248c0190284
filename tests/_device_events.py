"""A realistic FaceEvent factory shared by the device reporting tests (and their child processes)."""

from __future__ import annotations

from edge_affectsr.device.reporting.events import FaceEvent, Guard

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
