"""Scoring detections and tracks against a crowd clip's true boxes.

Matching rule (stated in every report): a detection matches a person when the detection's centre lies
inside that person's true face box and the two boxes' widths are within a factor of 2; each person
and each detection match at most once, detections taken best score first, each to the eligible person
whose box centre is nearest. Why not IoU: the true box is BlazeFace's mean box on aligned faces
(crowd_clips.py), and any detector's own box convention (tighter, taller, shifted to the forehead)
would cost IoU without being a wrong detection; a centre on the face at about the right size is what
the pipeline needs to crop the face.

Identity switches: for each person, the track ids of the detections matched to them, frame by frame;
every change of id between two matched frames is a switch (the daemon's tracker lost or swapped them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WIDTH_RATIO = 2.0
MATCH_RULE = ("a detection matches a person when its centre lies inside the person's true face box and the widths "
              "are within a factor of 2; one-to-one, best score first, nearest centre")


def match(truth: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """For each detection ``boxes [m, 4]`` the index of the person in ``truth [n, 4]`` it matches, or -1."""
    truth, boxes = np.asarray(truth, float).reshape(-1, 4), np.asarray(boxes, float).reshape(-1, 4)
    out = np.full(len(boxes), -1)
    if not len(truth) or not len(boxes):
        return out
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centres[:, None, 0] >= truth[None, :, 0]) & (centres[:, None, 0] <= truth[None, :, 2])
              & (centres[:, None, 1] >= truth[None, :, 1]) & (centres[:, None, 1] <= truth[None, :, 3]))
    ratio = (boxes[:, 2] - boxes[:, 0])[:, None] / np.maximum(truth[None, :, 2] - truth[None, :, 0], 1e-9)
    eligible = inside & (ratio <= WIDTH_RATIO) & (ratio >= 1 / WIDTH_RATIO)
    distance = np.linalg.norm(centres[:, None] - (truth[None, :, :2] + truth[None, :, 2:]) / 2, axis=2)
    taken = np.zeros(len(truth), bool)
    order = np.argsort(-np.asarray(scores)) if scores is not None else np.arange(len(boxes))
    for d in order:
        options = np.flatnonzero(eligible[d] & ~taken)
        if len(options):
            p = options[np.argmin(distance[d, options])]
            out[d], taken[p] = p, True
    return out


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
