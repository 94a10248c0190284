"""A small IoU tracker: one integer id per person across frames.

Why this simple: at 25+ fps boxes of the same face usually overlap a lot from one frame to the
next; greedy matching on IoU is enough and costs microseconds. Ids let the daemon smooth per-face
results (expression over time) and report "a new face appeared". A small face that moves fast
(most of its own width per frame: a 30 px face crossing the frame in two seconds) overlaps its last
box little or not at all, so a detection no track overlaps enough may still continue the nearest
track no box continued, when its centre moved at most ``centre_distance`` box sides; in a crowd
neighbours' centres are further apart than that, so the fallback does not swap people. A track
survives ``max_missed`` frames without a match (a missed detection, a tile not scanned this frame)
before it expires; its id is never reused.
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
    centre_distance: float = Field(
        1.0, ge=0.0, description="a box IoU left unmatched continues the nearest unmatched track whose centre is at "
                                 "most this many of the track box's sides away (0: IoU only)")
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
        >= threshold; then the nearest centres), start tracks for the unmatched boxes, age and expire
        the unmatched tracks."""
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
        """Greedy (track, box) pairs: in decreasing IoU, then the pairs left in increasing centre distance."""
        if not self.tracks or not len(boxes):
            return []
        tracks = np.stack([t.box for t in self.tracks])
        pairs = greedy_pairs(iou_matrix(tracks, boxes), self.config.iou_threshold, [])
        if self.config.centre_distance > 0:
            pairs = greedy_pairs(-centre_shift(tracks, boxes), -self.config.centre_distance, pairs)
        return pairs

    def _start(self, box: np.ndarray) -> int:
        track = Track(self._next_id, box)
        self._next_id += 1
        self.tracks.append(track)
        log.info("track %d started at (%.0f, %.0f, %.0f, %.0f)", track.id, *box)
        return track.id


def greedy_pairs(score: np.ndarray, floor: float, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``pairs`` extended with (row, column) pairs of ``score [T, B]`` of at least ``floor``, best
    first, each row and column used once."""
    rows, cols = {t for t, _ in pairs}, {b for _, b in pairs}
    out = list(pairs)
    for flat in np.argsort(-score, axis=None, kind="stable"):
        t, b = divmod(int(flat), score.shape[1])
        if score[t, b] < floor:
            break
        if t not in rows and b not in cols:
            out.append((t, b))
            rows.add(t)
            cols.add(b)
    return out


def centre_shift(tracks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[T, B]``: how far each box's centre is from each track box's centre, in that track box's
    sides (its larger of width and height)."""
    side = np.maximum(tracks[:, 2] - tracks[:, 0], tracks[:, 3] - tracks[:, 1])
    distance = np.linalg.norm(centres(tracks)[:, None] - centres(boxes)[None], axis=2)
    return distance / np.maximum(side, 1e-9)[:, None]


def centres(boxes: np.ndarray) -> np.ndarray:
    """Box centres ``[n, 2]`` of boxes ``[n, 4]`` (x0, y0, x1, y1)."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2
