"""A small IoU tracker: one integer id per person across frames.

Why this simple: the camera sees few faces and runs at 25+ fps, so boxes of the same face overlap
a lot from one frame to the next; greedy matching on IoU is enough and costs microseconds. Ids
let the daemon smooth per-face results (expression over time) and report "a new face appeared".
A track survives ``max_missed`` frames without a match (a missed detection, a tile not scanned
this frame) before it expires; its id is never reused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.runtime.detect import iou_matrix

log = logging.getLogger(__name__)


class TrackerConfig(BaseModel):
    """The ``tracker:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    iou_threshold: float = Field(
        0.1, gt=0.0, le=1.0, description="IoU a box needs with a track's last box to continue it")
    max_missed: int = Field(5, ge=0, description="frames a track may go unmatched before it expires")


@dataclass
class Track:
    """A tracked face: its id, last box (x0, y0, x1, y1), age in frames and frames since seen."""

    id: int
    box: np.ndarray
    hits: int = 1
    missed: int = 0


class IouTracker:
    """``update(boxes)`` -> one id per box, in the boxes' order; ``expired`` the tracks that update ended."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.expired: list[Track] = []
        self._next_id = 1

    def update(self, boxes: np.ndarray | list) -> list[int]:
        """Match this frame's boxes ``[n, 4]`` to the live tracks (greedy, highest IoU first, IoU
        >= threshold), start tracks for the unmatched boxes, age and expire the unmatched tracks."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        pairs = self._match(boxes)
        ids = [0] * len(boxes)
        matched_tracks = set()
        for t, b in pairs:
            track = self.tracks[t]
            track.box, track.hits, track.missed = boxes[b], track.hits + 1, 0
            ids[b] = track.id
            matched_tracks.add(t)
        survivors, self.expired = [], []
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.missed += 1
                if track.missed > self.config.max_missed:
                    log.info("track %d expired after %d frames", track.id, track.hits)
                    self.expired.append(track)
                    continue
            survivors.append(track)
        self.tracks = survivors
        for b in range(len(boxes)):
            if ids[b] == 0:
                ids[b] = self._start(boxes[b])
        return ids

    def _match(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """Greedy (track, box) pairs in decreasing IoU."""
        if not self.tracks or not len(boxes):
            return []
        iou = iou_matrix(np.stack([t.box for t in self.tracks]), boxes)
        pairs = []
        for flat in np.argsort(-iou, axis=None):
            t, b = divmod(int(flat), iou.shape[1])
            if iou[t, b] < self.config.iou_threshold:
                break
            if all(t != pt and b != pb for pt, pb in pairs):
                pairs.append((t, b))
        return pairs

    def _start(self, box: np.ndarray) -> int:
        track = Track(self._next_id, box)
        self._next_id += 1
        self.tracks.append(track)
        log.info("track %d started at (%.0f, %.0f, %.0f, %.0f)", track.id, *box)
        return track.id
