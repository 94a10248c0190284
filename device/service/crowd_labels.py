"""Expression labels on crowd clips: flicker of the raw and the smoothed label, and how often each
agrees with the person's HR label.

Why: smoothing (``smoothing:``, :mod:`~edge_affectsr.device.inference.smoothing`) must earn its place
twice: a person's label should change far less often than the per-frame label does, and it should
not drift away from what the face shows. The reference a clip offers is each person's **HR label**:
the critic's label of the clean HR crop the clip was rendered from (what the pipeline would say
with a perfect camera and perfect SR). Every upscaled face is tied to its person through the
detection it came from (crowd_score.py's matching); faces on false detections are left out.

* **Flicker**: label changes per track-second, for the raw (per-frame) and the smoothed label of
  the same upscales. A track's seconds run from the frame of its first label to that of its last at
  the clip's fps, so a face the budget skips in some frames still lives through them.
* **Agreement**: the share of upscales whose raw, and whose smoothed, label is the person's HR label.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge_affectsr.device.inference.smoothing import label_changes
from edge_affectsr.device.reporting.events import FaceEvent
from edge_affectsr.runtime.critic import FerCritic


class LabelCheck:
    """``add(frame index, events, person per track id)`` over a clip; ``summary()``."""

    def __init__(self, critic: FerCritic, faces: int, hr_faces: Sequence[np.ndarray], fps: float) -> None:
        labels = [critic.label(p) for p in critic.probabilities_batch(list(hr_faces))]
        self.reference = [labels[i % len(labels)] for i in range(faces)]  # the clip cycles the photos the same way
        self.fps = fps
        self.frames: dict[int, list[int]] = {}
        self.raw: dict[int, list[str]] = {}
        self.smoothed: dict[int, list[str]] = {}
        self.agree_raw = self.agree_smoothed = 0

    def add(self, index: int, events: Sequence[FaceEvent], person_by_track: dict[int, int]) -> None:
        for event in events:
            person = person_by_track.get(event.track_id)
            if person is None:
                continue
            raw = event.raw_expression or event.expression
            self.frames.setdefault(event.track_id, []).append(index)
            self.raw.setdefault(event.track_id, []).append(raw)
            self.smoothed.setdefault(event.track_id, []).append(event.expression)
            self.agree_raw += raw == self.reference[person]
            self.agree_smoothed += event.expression == self.reference[person]

    def summary(self) -> dict:
        labelled = sum(len(f) for f in self.frames.values())
        seconds = sum(f[-1] - f[0] + 1 for f in self.frames.values()) / self.fps

        def rate(labels: dict[int, list[str]]) -> float | None:
            return round(sum(label_changes(v) for v in labels.values()) / seconds, 3) if seconds else None

        def share(agreed: int) -> float | None:
            return round(agreed / labelled, 4) if labelled else None
        return {"labelled_faces": labelled, "track_seconds": round(seconds, 2),
                "flicker_raw": rate(self.raw), "flicker_smoothed": rate(self.smoothed),
                "agreement_raw": share(self.agree_raw), "agreement_smoothed": share(self.agree_smoothed),
                "hr_labels": dict(sorted((label, self.reference.count(label)) for label in set(self.reference)))}
