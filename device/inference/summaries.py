"""Expressions over time: an event when a track ends, and a summary of the group every N seconds.

Why in the pipeline and not in a consumer: a face event says what one frame showed; what people
want from a station or a lecture hall is what each person showed while in view and what the group
shows now. Both need every processed face, including those ``report: track`` does not print, so
they are built where the faces are: from each upscale's *smoothed* distribution (``smoothing:``),
its guard verdict, and the frames a track was detected in (upscaled or not: the budget skips some).
A track's guard pass rate is over the upscales the guard could verify; the ``unverified`` ones
(camera-routed faces without a landmark check, ``guard.camera_faces``) are counted beside it, since
folding them in as passes or failures would report a coin toss as a measurement.

Times: durations and the group window run on the frames' capture timestamps (monotonic seconds);
the ``start`` / ``time`` fields are wall-clock ISO times like every event's. A track ends when the
tracker expires it (``ended: lost``) or when the input ends (``end of input``, with the last,
partial group window).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.reporting.events import (PRESERVED, UNVERIFIED, FaceEvent, GroupEvent, Record, TrackEvent,
                                                   utc_now_iso)

LOST, END_OF_INPUT = "lost", "end of input"


class SummariesConfig(BaseModel):
    """The ``summaries:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    tracks: bool = Field(
        True, description="an event when a track ends: duration, dominant expression, guard pass rate over its verified "
                          "upscales and how many it could not verify")
    min_upscales: int = Field(
        3, ge=1, description="a track upscaled fewer times ends without an event (a passing false detection)")
    group_every_s: float | None = Field(
        10.0, gt=0, description="a group summary (faces, expression histogram, mean probabilities) every this many "
                                "seconds; null: none")


@dataclass
class TrackLog:
    """What one track showed so far."""

    start: str
    first_t: float
    last_t: float
    frames: int = 0
    upscales: int = 0
    passed: int = 0
    unverified: int = 0
    labels: Counter = field(default_factory=Counter)
    prob_sum: np.ndarray | None = None
    last_event: FaceEvent | None = None

    def add(self, event: FaceEvent, p: np.ndarray) -> None:
        self.upscales += 1
        self.passed += event.guard.verdict == PRESERVED
        self.unverified += event.guard.verdict == UNVERIFIED
        self.labels[event.expression] += 1
        self.prob_sum = p.copy() if self.prob_sum is None else self.prob_sum + p
        self.last_event = event

    @property
    def pass_rate(self) -> float:
        """The guard's pass rate over the verified upscales (an unverified face neither passed nor
        failed); NaN when none was verified."""
        verified = self.upscales - self.unverified
        return self.passed / verified if verified else math.nan


@dataclass
class GroupWindow:
    """The faces of the current group window: per track the sum and count of its distributions."""

    start: str
    start_t: float
    frames: int = 0
    upscales: int = 0
    sums: dict[int, np.ndarray] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)


class ExpressionTimeline:
    """Per frame: ``seen(ids, t)``, ``observe(event)`` per upscaled face, ``end(ids)`` for expired
    tracks, ``tick(t, source)`` at the frame's end; ``finish(source)`` when the input ends."""

    def __init__(self, classes: Sequence[str], config: SummariesConfig | None = None) -> None:
        self.config = config or SummariesConfig()
        self.classes = tuple(classes)
        self.tracks: dict[int, TrackLog] = {}
        self.window: GroupWindow | None = None

    def seen(self, track_ids: Iterable[int], t: float) -> None:
        """The tracks detected in a frame captured at ``t``."""
        if self.window is None:
            self.window = GroupWindow(utc_now_iso(), t)
        self.window.frames += 1
        for track_id in track_ids:
            log = self.tracks.setdefault(track_id, TrackLog(utc_now_iso(), t, t))
            log.frames += 1
            log.last_t = max(log.last_t, t)

    def observe(self, event: FaceEvent) -> None:
        """One upscaled face (its smoothed distribution and guard verdict)."""
        p = np.array([event.probabilities[c] for c in self.classes])
        self.tracks[event.track_id].add(event, p)
        window = self.window
        window.upscales += 1
        window.sums[event.track_id] = window.sums.get(event.track_id, 0.0) + p
        window.counts[event.track_id] += 1

    def end(self, track_ids: Iterable[int], reason: str = LOST) -> list[TrackEvent]:
        """Close these tracks; an event for each that was upscaled at least ``min_upscales`` times."""
        logs = [self.tracks.pop(i) for i in list(track_ids) if i in self.tracks]
        if not self.config.tracks:
            return []
        return [self._track_event(log, reason) for log in logs if log.upscales >= self.config.min_upscales]

    def tick(self, t: float, source: str) -> list[GroupEvent]:
        """The group summary, when the window has lasted ``group_every_s`` by ``t``."""
        every = self.config.group_every_s
        if every is None or self.window is None or t - self.window.start_t < every:
            return []
        return [self._close_window(t, source)]

    def finish(self, source: str, t: float) -> list[Record]:
        """The input ended: every live track's event, and the last (partial) group window."""
        out: list[Record] = list(self.end(list(self.tracks), END_OF_INPUT))
        if self.config.group_every_s is not None and self.window is not None and self.window.frames:
            out.append(self._close_window(t, source))
        self.window = None
        return out

    def _track_event(self, log: TrackLog, reason: str) -> TrackEvent:
        label, count = log.labels.most_common(1)[0]
        last = log.last_event
        return TrackEvent(source=last.source, track_id=last.track_id, start=log.start,
                          duration_s=log.last_t - log.first_t, frames=log.frames, upscales=log.upscales,
                          expression=label, share=count / log.upscales,
                          probabilities=dict(zip(self.classes, log.prob_sum / log.upscales)),
                          guard_pass_rate=log.pass_rate, guard_unverified=log.unverified, ended=reason,
                          model=last.model, model_version=last.model_version)

    def _close_window(self, t: float, source: str) -> GroupEvent:
        """The window's summary; a new window starts at ``t``."""
        w = self.window
        means = np.array([w.sums[i] / w.counts[i] for i in w.sums]).reshape(-1, len(self.classes))
        histogram = Counter(self.classes[int(k)] for k in means.argmax(axis=1))
        mean = means.mean(axis=0) if len(means) else np.full(len(self.classes), np.nan)
        self.window = GroupWindow(utc_now_iso(), t)
        return GroupEvent(source=source, start=w.start, window_s=t - w.start_t, frames=w.frames, faces=len(means),
                          faces_per_frame=w.upscales / max(w.frames, 1),
                          histogram={c: histogram[c] for c in self.classes},
                          probabilities=dict(zip(self.classes, mean)))
