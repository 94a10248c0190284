"""Scoring detections and tracks against a crowd clip's true boxes.

Matching: :func:`edge_affectsr.runtime.crowd_clips.match` (the rule and why it is not IoU are stated
there; ``convert`` gates the int8 detector with the same rule).

Identity switches: for each person, the track ids of the detections matched to them, frame by frame;
every change of id between two matched frames is a switch (the daemon's tracker lost or swapped them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_affectsr.runtime.crowd_clips import match


@dataclass
class ClipScore:
    """Running counts over a clip's frames: true positives, false positives, people missed, and each
    person's track ids (for identity switches)."""

    people: int
    tp: int = 0
    fp: int = 0
    fn: int = 0
    ids: dict[int, list[int]] = field(default_factory=dict)
    per_frame: list[tuple[int, int]] = field(default_factory=list)  # (people found, people there)

    def add(self, truth: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None = None,
            track_ids: list[int] | None = None) -> np.ndarray:
        """Score one frame; returns the detections' person indices (-1: false)."""
        matched = match(truth, boxes, scores)
        hits = int((matched >= 0).sum())
        self.tp, self.fp, self.fn = self.tp + hits, self.fp + len(matched) - hits, self.fn + len(truth) - hits
        self.per_frame.append((hits, len(truth)))
        for d, person in enumerate(matched):
            if person >= 0 and track_ids is not None:
                self.ids.setdefault(int(person), []).append(int(track_ids[d]))
        return matched

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    def recall_from(self, frame: int) -> float:
        """Recall over the frames from ``frame`` on (after the first rounds of the tile rotation)."""
        found, there = (sum(col) for col in zip(*self.per_frame[frame:])) if self.per_frame[frame:] else (0, 0)
        return found / max(there, 1)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    def id_switches(self) -> int:
        return sum(int(np.count_nonzero(np.diff(ids))) for ids in self.ids.values())

    def tracks(self) -> int:
        """Distinct track ids given to true faces (one per person is perfect)."""
        return len({i for ids in self.ids.values() for i in ids})

    def summary(self) -> dict:
        return {"recall": round(self.recall, 4), "precision": round(self.precision, 4), "tp": self.tp, "fp": self.fp,
                "fn": self.fn, "id_switches": self.id_switches(), "tracks": self.tracks(), "people": self.people}
