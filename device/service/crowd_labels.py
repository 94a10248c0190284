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
  Also the **track vote**'s: each track's most frequent raw label, in hindsight, for all its upscales.
  A filter that cuts flicker pulls each track towards its consensus, so where the critic misreads a
  person the same way on most frames (a bias of the small face, not noise) smoothing spreads the
  misreading; the vote's agreement shows how much of the gap to raw is that and not the filter.

With several seeds (``crowd-bench --seeds``), :func:`pool` adds up each clip's counts over the seeds:
one 20-person clip is a small sample, where one person's track moves agreement by ~5 points.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

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
        self.person: dict[int, int] = {}
        self.agree_raw = self.agree_smoothed = 0

    def add(self, index: int, events: Sequence[FaceEvent], person_by_track: dict[int, int]) -> None:
        for event in events:
            person = person_by_track.get(event.track_id)
            if person is None:
                continue
            raw = event.raw_expression or event.expression
            self.frames.setdefault(event.track_id, []).append(index)
            self.person.setdefault(event.track_id, person)
            self.raw.setdefault(event.track_id, []).append(raw)
            self.smoothed.setdefault(event.track_id, []).append(event.expression)
            self.agree_raw += raw == self.reference[person]
            self.agree_smoothed += event.expression == self.reference[person]

    def vote_agreed(self) -> int:
        """Upscales of tracks whose most frequent raw label (ties: the first reached) is the HR label."""
        return sum(len(labels) for track, labels in self.raw.items()
                   if Counter(labels).most_common(1)[0][0] == self.reference[self.person[track]])

    def summary(self) -> dict:
        """Rates and shares, and the counts behind them (for :func:`pool`)."""
        labelled = sum(len(f) for f in self.frames.values())
        seconds = sum(f[-1] - f[0] + 1 for f in self.frames.values()) / self.fps
        counts = {"changes_raw": sum(label_changes(v) for v in self.raw.values()),
                  "changes_smoothed": sum(label_changes(v) for v in self.smoothed.values()),
                  "agreed_raw": self.agree_raw, "agreed_smoothed": self.agree_smoothed, "agreed_vote": self.vote_agreed()}
        return {"labelled_faces": labelled, "track_seconds": round(seconds, 2), **rates(labelled, seconds, counts),
                **counts, "hr_labels": dict(sorted((label, self.reference.count(label)) for label in set(self.reference)))}


def rates(labelled: int, seconds: float, counts: dict[str, int]) -> dict[str, float | None]:
    """Flicker (changes per track-second) and agreement (share of upscales) from the counts."""
    def rate(changes: int) -> float | None:
        return round(changes / seconds, 3) if seconds else None

    def share(agreed: int) -> float | None:
        return round(agreed / labelled, 4) if labelled else None
    return {"flicker_raw": rate(counts["changes_raw"]), "flicker_smoothed": rate(counts["changes_smoothed"]),
            "agreement_raw": share(counts["agreed_raw"]), "agreement_smoothed": share(counts["agreed_smoothed"]),
            "agreement_vote": share(counts["agreed_vote"])}


SPREAD = ("flicker_ratio", "agreement_raw", "agreement_smoothed", "agreement_gain")


def pool(clips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clip results of several seeds -> one row per clip kind (frame, face px, people): the label counts
    added up over the seeds, their rates, and each seed's min and max of :data:`SPREAD` (``flicker_ratio``
    is smoothed / raw flicker, ``agreement_gain`` smoothed minus raw agreement)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for clip in clips:
        groups.setdefault((clip["frame"], clip["face_px"], clip["faces"]), []).append(clip)
    return [pooled_row(key, [c["labels"] for c in group], [c.get("seed") for c in group]) for key, group in groups.items()]


def pooled_row(key: tuple, labels: list[dict[str, Any]], seeds: list[int | None]) -> dict[str, Any]:
    labelled, seconds = sum(lb["labelled_faces"] for lb in labels), sum(lb["track_seconds"] for lb in labels)
    counts = {k: sum(lb[k] for lb in labels) for k in ("changes_raw", "changes_smoothed", "agreed_raw", "agreed_smoothed",
                                                       "agreed_vote")}
    per_seed = [{"flicker_ratio": lb["flicker_smoothed"] / lb["flicker_raw"] if lb["flicker_raw"] else None,
                 "agreement_raw": lb["agreement_raw"], "agreement_smoothed": lb["agreement_smoothed"],
                 "agreement_gain": None if lb["agreement_raw"] is None else lb["agreement_smoothed"] - lb["agreement_raw"]}
                for lb in labels]
    spread = {k: [round(min(vals), 4), round(max(vals), 4)] if (vals := [s[k] for s in per_seed if s[k] is not None]) else None
              for k in SPREAD}
    return {"frame": key[0], "face_px": key[1], "faces": key[2], "seeds": seeds, "labelled_faces": labelled,
            "track_seconds": round(seconds, 2), **rates(labelled, seconds, counts), **counts, "seed_range": spread}
