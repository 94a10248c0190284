"""What ``/healthz`` answers: ok, or degraded with the reasons, so a health check tells the truth.

Why more than "a frame arrived recently": with the event database failing every write, the daemon
used to answer 200 "ok" while it stored 7 of 137 faces. ``flash --health-url`` and monitoring poll
this endpoint, so anything that makes the camera's output wrong or incomplete must show here:

- **no frame** for ``no_frames_s`` (the camera is gone, the pipeline is stuck);
- **events lost** within the last ``loss_window_s``: failed database writes, JSON lines not
  written, MQTT messages dropped or refused (cumulative counts sampled by :meth:`Health.sample`,
  which the daemon calls a few times a second; the window is measured between samples);
- any further **check** the owner adds, e.g. the SR model running on the CPU although the config
  asked for an accelerator first.

Before the first frame the status is ``starting`` (also 503: not ready yet); once the losses
stop and frames flow again it goes back to ``ok`` by itself, after ``loss_window_s``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from edge_affectsr.device.reporting.stats import Stats

OK, STARTING, DEGRADED = "ok", "starting", "degraded"


@dataclass(frozen=True)
class HealthReport:
    status: str  # ok, starting or degraded
    reasons: tuple[str, ...]
    lost_in_window: int

    @property
    def healthy(self) -> bool:
        return self.status == OK


class LossWindow:
    """Events lost in the last ``window_s``, from cumulative loss counts sampled over time."""

    def __init__(self, window_s: float, losses: Callable[[], Mapping[str, int]], clock: Callable[[], float]) -> None:
        self.window_s, self.losses, self.clock = window_s, losses, clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, dict[str, int]]] = deque()  # (time, counts), oldest first

    def sample(self) -> dict[str, int]:
        """Record the counts now; the losses per kind within the window (counts that grew)."""
        counts, now = dict(self.losses()), self.clock()
        with self._lock:
            self._samples.append((now, counts))
            while len(self._samples) > 1 and self._samples[1][0] <= now - self.window_s:
                self._samples.popleft()  # keep one sample at or before the window's start
            first = self._samples[0][1] if self._samples[0][0] <= now - self.window_s else {}
        return {k: v - first.get(k, 0) for k, v in counts.items() if v > first.get(k, 0)}


class Health:
    """``check()`` -> :class:`HealthReport`; ``sample()`` often (it also runs on every check)."""

    def __init__(self, stats: Stats, no_frames_s: float, loss_window_s: float,
                 losses: Callable[[], Mapping[str, int]] = dict,
                 checks: Sequence[Callable[[], str | None]] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.stats, self.no_frames_s, self.checks = stats, no_frames_s, tuple(checks)
        self.losses = LossWindow(loss_window_s, losses, clock)
        self._recent: dict[str, int] = {}

    def sample(self) -> None:
        self._recent = self.losses.sample()

    def check(self) -> HealthReport:
        self.sample()
        reasons = []
        age = self.stats.last_frame_age()
        if age is not None and age > self.no_frames_s:
            reasons.append(f"no frame for {age:.1f} s (> {self.no_frames_s:g} s)")
        lost = sum(self._recent.values())
        if lost:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self._recent.items()))
            reasons.append(f"{lost} events lost in the last {self.losses.window_s:g} s ({kinds})")
        reasons += [problem for check in self.checks if (problem := check())]
        status = DEGRADED if reasons else STARTING if age is None else OK
        return HealthReport(status, tuple(reasons), lost)
